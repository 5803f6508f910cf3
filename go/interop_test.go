package pipit

// The Go client against a testee (spec/TESTEE.md) of either implementation, over a real Unix
// socket. The socket comes from PIPIT_TESTEE_SOCKET: the cross-language suite
// (test/interop/ts-client.test.ts) starts the TypeScript or the Go testee and runs
// `go test -run TestInterop` against it. Without the variable the test is skipped.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestInterop(t *testing.T) {
	path := os.Getenv("PIPIT_TESTEE_SOCKET")
	if path == "" {
		t.Skip("PIPIT_TESTEE_SOCKET is not set: the cross-language suite runs this against a testee")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The testee's callback calls testee.echo on us.
	var echoedMu sync.Mutex
	var echoed [][]byte
	mux := NewMux()
	mux.HandleUnary("testee", "echo", func(ctx context.Context, req *Request) ([]byte, error) {
		echoedMu.Lock()
		echoed = append(echoed, bytes.Clone(req.Payload))
		echoedMu.Unlock()
		req.SetTextReply(req.Text)
		return req.Payload, nil
	})
	conn, err := Dial(ctx, path, mux, Options{})
	if err != nil {
		t.Fatalf("dial %s: %v", path, err)
	}
	defer conn.Close()

	t.Run("echo", func(t *testing.T) {
		b := randomBytes(t, 1000)
		got, err := conn.Call(ctx, "testee", "echo", b)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("echo bytes: %v, equal %v", err, bytes.Equal(got, b))
		}
		var text bool
		got, err = conn.Call(ctx, "testee", "echo", []byte("héllo ✓"), Text(), ReplyText(&text))
		if err != nil || string(got) != "héllo ✓" || !text {
			t.Fatalf("echo text: %q text=%v err=%v", got, text, err)
		}
		odd := []byte{0xff, 0x00, 0xc3}
		got, err = conn.Call(ctx, "testee", "echo", odd, Text(), ReplyText(&text))
		if err != nil || !bytes.Equal(got, odd) || !text {
			t.Fatalf("echo text that is not UTF-8: %x text=%v err=%v", got, text, err)
		}
		_, err = conn.Call(ctx, "testee", "echo", []byte("bytes"), ReplyText(&text))
		if err != nil || text {
			t.Fatalf("echo bytes came back with TEXT=%v err=%v", text, err)
		}
	})

	t.Run("sha256 and echo of multi-MiB messages", func(t *testing.T) {
		big := randomBytes(t, 3<<20+17)
		want := sha256.Sum256(big)
		got, err := conn.Call(ctx, "testee", "sha256", big)
		if err != nil || !bytes.Equal(got, want[:]) {
			t.Fatalf("sha256: %x, want %x, err %v", got, want, err)
		}
		huge := randomBytes(t, 5<<20+3)
		got, err = conn.Call(ctx, "testee", "echo", huge)
		if err != nil || !bytes.Equal(got, huge) {
			t.Fatalf("echo 5 MiB: equal %v, err %v", bytes.Equal(got, huge), err)
		}
	})

	t.Run("1000 concurrent calls", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 1001)
		large := randomBytes(t, 4<<20)
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := conn.Call(ctx, "testee", "echo", large)
			if err != nil || !bytes.Equal(got, large) {
				errs <- fmt.Errorf("large echo: %v", err)
			}
		}()
		for i := range 1000 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				want := fmt.Sprintf("call %d", i)
				got, err := conn.Call(ctx, "testee", "echo", []byte(want))
				if err != nil || string(got) != want {
					errs <- fmt.Errorf("call %d: %q %v", i, got, err)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})

	t.Run("rows", func(t *testing.T) {
		var got []string
		for m, err := range conn.Stream(ctx, "testee", "rows", []byte("12 2"), Text()) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(m))
		}
		for i, m := range got {
			if want := fmt.Sprintf("%-2d", i); m != want {
				t.Fatalf("row %d = %q, want %q", i, m, want)
			}
		}
		if len(got) != 12 {
			t.Fatalf("%d rows, want 12", len(got))
		}
	})

	t.Run("rows to a slow consumer with credit 4", func(t *testing.T) {
		i := 0
		for m, err := range conn.Stream(ctx, "testee", "rows", []byte("2000 6"), Text(), Credit(4)) {
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%-6d", i); string(m) != want {
				t.Fatalf("row %d = %q", i, m)
			}
			i++
			if i%100 == 0 {
				time.Sleep(2 * time.Millisecond)
			}
		}
		if i != 2000 {
			t.Fatalf("%d rows, want 2000", i)
		}
	})

	t.Run("fail: codes a handler may send arrive as is, the others as APPLICATION_ERROR", func(t *testing.T) {
		cases := []struct {
			code, want uint32
		}{
			{1, 1}, {4, 4}, {5, 5}, {6, 6}, {7, 7}, {10, 10}, {256, 256}, {4294967295, 4294967295},
			{2, 5}, {3, 5}, {8, 5}, {9, 5}, {11, 5}, {200, 5},
		}
		for _, c := range cases {
			msg := fmt.Sprintf("why %d", c.code)
			_, err := conn.Call(ctx, "testee", "fail", []byte(fmt.Sprintf("%d %s", c.code, msg)), Text())
			var pe *Error
			if !errors.As(err, &pe) || uint32(pe.Code) != c.want || pe.Message != msg {
				t.Errorf("fail %d: got %v, want code %d with %q", c.code, err, c.want, msg)
			}
		}
	})

	t.Run("malformed requests are INVALID_ARGUMENT", func(t *testing.T) {
		for _, c := range [][2]string{{"fail", "0 zero"}, {"fail", "x"}, {"fail", ""}, {"sleep", "soon"}, {"sleep", "-1"}} {
			_, err := conn.Call(ctx, "testee", c[0], []byte(c[1]), Text())
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s %q: %v, want INVALID_ARGUMENT", c[0], c[1], err)
			}
		}
		for _, err := range conn.Stream(ctx, "testee", "rows", []byte("many"), Text()) {
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("rows many: %v, want INVALID_ARGUMENT", err)
			}
		}
	})

	t.Run("sleep: a deadline and a cancel each stop it and count", func(t *testing.T) {
		if _, err := conn.Call(ctx, "testee", "sleep", []byte("5"), Text()); err != nil {
			t.Fatal(err)
		}
		before := cancellations(t, ctx, conn)
		dctx, dcancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err := conn.Call(dctx, "testee", "sleep", []byte("60000"), Text())
		dcancel()
		if !errors.Is(err, ErrDeadlineExceeded) {
			t.Fatalf("sleep past its deadline: %v", err)
		}
		afterDeadline := cancellationsAbove(t, ctx, conn, before)
		if afterDeadline != before+1 {
			t.Fatalf("cancellations %d after a deadline, want %d", afterDeadline, before+1)
		}
		cctx, ccancel := context.WithCancel(ctx)
		time.AfterFunc(20*time.Millisecond, ccancel)
		_, err = conn.Call(cctx, "testee", "sleep", []byte("60000"), Text())
		if !errors.Is(err, ErrCancelled) {
			t.Fatalf("cancelled sleep: %v", err)
		}
		if got := cancellationsAbove(t, ctx, conn, afterDeadline); got != afterDeadline+1 {
			t.Fatalf("cancellations %d after a cancel, want %d", got, afterDeadline+1)
		}
	})

	t.Run("callback", func(t *testing.T) {
		echoedMu.Lock()
		echoed = nil
		echoedMu.Unlock()
		var text bool
		got, err := conn.Call(ctx, "testee", "callback", []byte("ring back ✓"), Text(), ReplyText(&text))
		if err != nil || string(got) != "ring back ✓" || !text {
			t.Fatalf("callback: %q text=%v err=%v", got, text, err)
		}
		echoedMu.Lock()
		defer echoedMu.Unlock()
		if len(echoed) != 1 || string(echoed[0]) != "ring back ✓" {
			t.Fatalf("our echo saw %q", echoed)
		}
	})

	t.Run("unknown routes and call shapes", func(t *testing.T) {
		if _, err := conn.Call(ctx, "testee", "nope", nil); !errors.Is(err, ErrUnknownMethod) {
			t.Errorf("unknown method: %v", err)
		}
		if _, err := conn.Call(ctx, "nobody", "echo", nil); !errors.Is(err, ErrUnknownService) {
			t.Errorf("unknown service: %v", err)
		}
		if _, err := conn.Call(ctx, "testee", "rows", []byte("3"), Text()); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("unary call to rows: %v", err)
		}
		var one []string
		for m, err := range conn.Stream(ctx, "testee", "echo", []byte("single")) {
			if err != nil {
				t.Fatal(err)
			}
			one = append(one, string(m))
		}
		if len(one) != 1 || one[0] != "single" {
			t.Errorf("stream call to echo: %q", one)
		}
	})

	t.Run("introspection", func(t *testing.T) {
		got, err := conn.Call(ctx, "$pipit", "methods", nil)
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for len(got) > 0 {
			s := int(got[0])
			svc := string(got[1 : 1+s])
			got = got[1+s:]
			m := int(got[0])
			method := string(got[1 : 1+m])
			kind := got[1+m]
			got = got[2+m:]
			listed = append(listed, fmt.Sprintf("%s.%s:%d", svc, method, kind))
		}
		want := "testee.callback:1 testee.cancellations:1 testee.echo:1 testee.fail:1 testee.goaway:1 testee.rows:2 testee.sha256:1 testee.sleep:1"
		if strings.Join(listed, " ") != want {
			t.Fatalf("methods:\n got %s\nwant %s", strings.Join(listed, " "), want)
		}
	})

	t.Run("goaway", func(t *testing.T) {
		other, err := Dial(ctx, path, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		if _, err := other.Call(ctx, "testee", "goaway", nil); err != nil {
			t.Fatalf("goaway: %v", err)
		}
		select {
		case <-other.Done():
		case <-ctx.Done():
			t.Fatal("the connection did not close after goaway")
		}
		if err := other.Err(); err != nil {
			t.Fatalf("goaway closed the connection with %v, want a clean close", err)
		}
		if _, err := other.Call(ctx, "testee", "echo", []byte("late")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("a call after the close: %v, want UNAVAILABLE", err)
		}
		again, err := Dial(ctx, path, nil, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		if got, err := again.Call(ctx, "testee", "echo", []byte("again")); err != nil || string(got) != "again" {
			t.Fatalf("a new connection: %q %v", got, err)
		}
	})
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func cancellations(t *testing.T, ctx context.Context, conn *Conn) int {
	got, err := conn.Call(ctx, "testee", "cancellations", nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(string(got))
	if err != nil {
		t.Fatalf("cancellations answered %q", got)
	}
	return n
}

// cancellationsAbove asks until the count passes above: the testee's handler stops after the
// caller's failure, so the count may lag the call by a moment.
func cancellationsAbove(t *testing.T, ctx context.Context, conn *Conn, above int) int {
	for i := 0; ; i++ {
		n := cancellations(t, ctx, conn)
		if n > above || i >= 200 {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}
