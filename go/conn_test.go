package pipit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// scale stretches wall-clock bounds for slow machines (emulated ARM, -race).
func scale(d time.Duration) time.Duration { return d * 20 }

type transport struct {
	name string
	pair func(t testing.TB) (net.Conn, net.Conn)
}

func pipePair(t testing.TB) (net.Conn, net.Conn) { return net.Pipe() }

func unixPair(t testing.TB) (net.Conn, net.Conn) {
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ch := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			ch <- nil
			return
		}
		ch <- c
	}()
	a, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	b := <-ch
	if b == nil {
		t.Fatal("accept failed")
	}
	return a, b
}

var transports = []transport{{"pipe", pipePair}, {"unix", unixPair}}

func testMux() *Mux {
	m := NewMux()
	m.HandleUnary("t", "echo", func(ctx context.Context, req *Request) ([]byte, error) {
		req.SetTextReply(req.Text)
		return req.Payload, nil
	})
	m.HandleUnary("t", "meta", func(ctx context.Context, req *Request) ([]byte, error) {
		return []byte(req.Metadata["k"]), nil
	})
	m.HandleUnary("t", "fail", func(ctx context.Context, req *Request) ([]byte, error) {
		code, _ := strconv.Atoi(string(req.Payload))
		return nil, &Error{Code: Code(code), Message: "failed " + string(req.Payload)}
	})
	m.HandleUnary("t", "plain", func(ctx context.Context, req *Request) ([]byte, error) {
		return nil, errors.New("plain error")
	})
	m.HandleUnary("t", "panic", func(ctx context.Context, req *Request) ([]byte, error) {
		panic("boom")
	})
	m.HandleUnary("t", "sleep", func(ctx context.Context, req *Request) ([]byte, error) {
		ms, _ := strconv.Atoi(string(req.Payload))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	m.HandleUnary("t", "deadline", func(ctx context.Context, req *Request) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return []byte("none"), nil
		}
		return []byte(strconv.FormatInt(int64(time.Until(d)/time.Millisecond), 10)), nil
	})
	m.HandleStream("t", "rows", func(ctx context.Context, req *Request, w *StreamWriter) error {
		n, _ := strconv.Atoi(string(req.Payload))
		for i := 0; i < n; i++ {
			if err := w.Send([]byte(strconv.Itoa(i))); err != nil {
				return err
			}
		}
		return nil
	})
	return m
}

func connPair(t *testing.T, tr transport, mux *Mux, opt Options) (*Conn, *Conn) {
	a, b := tr.pair(t)
	client := NewConn(a, mux, opt)
	server := NewConn(b, mux, opt)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

func forTransports(t *testing.T, f func(t *testing.T, tr transport)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { f(t, tr) })
	}
}

func TestConnUnary(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		client, server := connPair(t, tr, testMux(), Options{})
		ctx := context.Background()
		for _, conn := range []*Conn{client, server} { // both ends call
			got, err := conn.Call(ctx, "t", "echo", []byte("hi"), Text())
			if err != nil || string(got) != "hi" {
				t.Fatalf("echo: %q %v", got, err)
			}
		}
		got, err := client.Call(ctx, "t", "meta", nil, Metadata("k", "v"))
		if err != nil || string(got) != "v" {
			t.Fatalf("meta: %q %v", got, err)
		}
		big := bytes.Repeat([]byte("0123456789abcdef"), 200000) // 3.2 MB: fragmented both ways
		got, err = client.Call(ctx, "t", "echo", big)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("big echo: %d bytes, %v", len(got), err)
		}
		cases := []struct {
			method, payload string
			want            *Error
			code            Code
		}{
			{"fail", "4", ErrInvalidArgument, 4},
			{"fail", "8", ErrApplication, 5},  // UNAVAILABLE may not be sent by a handler
			{"fail", "11", ErrApplication, 5}, // nor CONNECTION_CLOSED
			{"fail", "1042", &Error{Code: 1042}, 1042},
			{"plain", "", ErrApplication, 5},
			{"panic", "", ErrInternal, 10},
		}
		for _, c := range cases {
			_, err := client.Call(ctx, "t", c.method, []byte(c.payload))
			var pe *Error
			if !errors.Is(err, c.want) || !errors.As(err, &pe) || pe.Code != c.code {
				t.Fatalf("%s %s: %v", c.method, c.payload, err)
			}
		}
		if _, err := client.Call(ctx, "nope", "x", nil); !errors.Is(err, ErrUnknownService) {
			t.Fatalf("unknown service: %v", err)
		}
		if _, err := client.Call(ctx, "t", "nope", nil); !errors.Is(err, ErrUnknownMethod) {
			t.Fatalf("unknown method: %v", err)
		}
		if _, err := client.Call(ctx, "t", "rows", nil); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("unary call to a stream method: %v", err)
		}
	})
}

func TestConnDeadlineAndCancel(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		client, _ := connPair(t, tr, testMux(), Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := client.Call(ctx, "t", "sleep", []byte("100000"))
		if !errors.Is(err, ErrDeadlineExceeded) {
			t.Fatalf("sleep past deadline: %v", err)
		}
		if el := time.Since(start); el > scale(time.Second) {
			t.Fatalf("deadline took %v", el)
		}
		ctx2, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel2()
		got, err := client.Call(ctx2, "t", "deadline", nil)
		ms, _ := strconv.Atoi(string(got))
		if err != nil || ms < 5000 || ms > 10000 {
			t.Fatalf("handler deadline %q %v", got, err)
		}
		got, _ = client.Call(context.Background(), "t", "deadline", nil)
		if string(got) != "none" {
			t.Fatalf("no deadline: %q", got)
		}
		ctx3, cancel3 := context.WithCancel(context.Background())
		go func() { time.Sleep(20 * time.Millisecond); cancel3() }()
		_, err = client.Call(ctx3, "t", "sleep", []byte("100000"))
		if !errors.Is(err, ErrCancelled) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancel: %v", err)
		}
		expired, cancel4 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
		defer cancel4()
		if _, err := client.Call(expired, "t", "echo", nil); !errors.Is(err, ErrDeadlineExceeded) {
			t.Fatalf("expired: %v", err)
		}
		// Still usable afterwards.
		if _, err := client.Call(context.Background(), "t", "echo", nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConnStream(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		client, _ := connPair(t, tr, testMux(), Options{})
		ctx := context.Background()
		for _, credit := range []int{0, 1, 3, 128} {
			var opts []CallOption
			if credit > 0 {
				opts = append(opts, Credit(credit))
			}
			n := 0
			for msg, err := range client.Stream(ctx, "t", "rows", []byte("1000"), opts...) {
				if err != nil {
					t.Fatal(err)
				}
				if string(msg) != strconv.Itoa(n) {
					t.Fatalf("message %d is %q", n, msg)
				}
				n++
			}
			if n != 1000 {
				t.Fatalf("credit %d: %d messages", credit, n)
			}
		}
		// break cancels; the connection stays usable
		n := 0
		for _, err := range client.Stream(ctx, "t", "rows", []byte("100000"), Credit(4)) {
			if err != nil {
				t.Fatal(err)
			}
			if n++; n == 10 {
				break
			}
		}
		// a stream call to a unary method gets one message
		var msgs []string
		for m, err := range client.Stream(ctx, "t", "echo", []byte("x")) {
			if err != nil {
				t.Fatal(err)
			}
			msgs = append(msgs, string(m))
		}
		if fmt.Sprint(msgs) != "[x]" {
			t.Fatalf("stream to unary: %v", msgs)
		}
		var last error
		for _, err := range client.Stream(ctx, "t", "fail", []byte("4")) {
			last = err
		}
		if !errors.Is(last, ErrInvalidArgument) {
			t.Fatalf("stream failing: %v", last)
		}
		if _, err := client.Call(ctx, "t", "echo", nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConnShutdown(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		client, server := connPair(t, tr, testMux(), Options{})
		ctx := context.Background()
		var wg sync.WaitGroup
		var ok atomic.Int64
		for i := 0; i < 10; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := client.Call(ctx, "t", "sleep", []byte("50")); err == nil {
					ok.Add(1)
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		sctx, cancel := context.WithTimeout(ctx, scale(5*time.Second))
		defer cancel()
		if err := server.Shutdown(sctx); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if ok.Load() != 10 {
			t.Fatalf("%d of 10 calls in flight finished", ok.Load())
		}
		if err := server.Err(); err != nil {
			t.Fatalf("server closed with %v", err)
		}
		select {
		case <-client.Done():
		case <-time.After(scale(5 * time.Second)):
			t.Fatal("client not closed")
		}
		if err := client.Err(); err != nil {
			t.Fatalf("client closed with %v", err)
		}
		if _, err := client.Call(ctx, "t", "echo", nil); err == nil {
			t.Fatal("call after close succeeded")
		}
	})
}

// TestConnCallback: a handler calls its caller back over the same connection (the reader
// that serves a request itself must hand reading on, or the answer is never read).
func TestConnCallback(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		mux := testMux()
		mux.HandleUnary("t", "callback", func(ctx context.Context, req *Request) ([]byte, error) {
			got, err := req.Conn().Call(ctx, "t", "echo", req.Payload)
			if err != nil {
				return nil, err
			}
			return append([]byte("back:"), got...), nil
		})
		client, _ := connPair(t, tr, mux, Options{})
		for i := 0; i < 200; i++ {
			got, err := client.Call(context.Background(), "t", "callback", []byte(strconv.Itoa(i)))
			if err != nil || string(got) != "back:"+strconv.Itoa(i) {
				t.Fatalf("callback %d: %q %v", i, got, err)
			}
		}
	})
}

func TestCallArgumentLimits(t *testing.T) {
	client, _ := connPair(t, transports[0], testMux(), Options{})
	ctx := context.Background()
	long := strings.Repeat("x", 256)
	for _, c := range []struct {
		service, method string
		opts            []CallOption
	}{
		{long, "m", nil},
		{"t", long, nil},
		{"t", "echo", []CallOption{Metadata(long, "v")}},
		{"t", "echo", []CallOption{Metadata("k", strings.Repeat("v", 70000))}},
	} {
		if _, err := client.Call(ctx, c.service, c.method, nil, c.opts...); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%d-byte service, %d-byte method: %v", len(c.service), len(c.method), err)
		}
	}
	// Large metadata that fits still works.
	got, err := client.Call(ctx, "t", "meta", nil, Metadata("k", strings.Repeat("v", 60000)))
	if err != nil || len(got) != 60000 {
		t.Fatalf("%d %v", len(got), err)
	}
}

// TestRequestMemoryReuse: requests of every size, served at once by handlers that echo
// them, reuse calls and pooled memory that the session recycles only once each answer is
// written; a call whose context the handler used is never recycled.
// TestRequestKeptByDefault: without Options.ReuseRequestMemory a handler may keep req.Payload
// and ctx: later calls never write over them.
func TestRequestKeptByDefault(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			mux := testMux()
			var mu sync.Mutex
			var kept [][]byte
			var ctxs []context.Context
			mux.HandleUnary("t", "keep", func(ctx context.Context, req *Request) ([]byte, error) {
				mu.Lock()
				kept = append(kept, req.Payload)
				ctxs = append(ctxs, ctx)
				mu.Unlock()
				return nil, nil
			})
			client, _ := connPair(t, tr, mux, Options{})
			sizes := []int{1, 100, smallPayload, smallPayload + 1, 3000, detachMin + 5, 70000, 300000}
			for round := 0; round < 20; round++ {
				for _, n := range sizes {
					if _, err := client.Call(context.Background(), "t", "keep", bytes.Repeat([]byte{byte(round*len(sizes) + n)}, n)); err != nil {
						t.Fatal(err)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			for k, p := range kept {
				round, n := k/len(sizes), sizes[k%len(sizes)]
				if !bytes.Equal(p, bytes.Repeat([]byte{byte(round*len(sizes) + n)}, n)) {
					t.Fatalf("kept payload %d (round %d, %d bytes) was written over", k, round, n)
				}
			}
			for k, c := range ctxs {
				if c.Err() == nil {
					t.Fatalf("ctx %d of a finished call is not done: it was reused", k)
				}
			}
		})
	}
}

func TestRequestMemoryReuse(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			mux := testMux()
			var kept sync.Map
			mux.HandleUnary("t", "keepctx", func(ctx context.Context, req *Request) ([]byte, error) {
				kept.Store(ctx, true)
				_ = ctx.Err()
				return append([]byte(nil), req.Payload...), nil
			})
			client, _ := connPair(t, tr, mux, Options{ReuseRequestMemory: true})
			sizes := []int{0, 1, 100, smallPayload, smallPayload + 1, 3000, detachMin - 100, detachMin + 5, 70000, 300000}
			var wg sync.WaitGroup
			for g := 0; g < 8; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < 60; i++ {
						n := sizes[(g+i)%len(sizes)]
						p := make([]byte, n)
						for j := range p {
							p[j] = byte(g*31 + i*7 + j)
						}
						method := "echo"
						if i%5 == 0 {
							method = "keepctx"
						}
						r, err := client.Call(context.Background(), "t", method, p)
						if err != nil {
							t.Error(err)
							return
						}
						if !bytes.Equal(r, p) {
							t.Errorf("%s of %d bytes came back changed", method, n)
							return
						}
					}
				}()
			}
			wg.Wait()
			kept.Range(func(k, _ any) bool {
				if k.(context.Context).Err() == nil {
					t.Errorf("a context used by its handler was recycled")
					return false
				}
				return true
			})
		})
	}
}
