//go:build unix

package pipit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestMain lets the test binary act as a separate server process (PIPIT_CHILD_SOCKET),
// so that a peer can be killed for real.
func TestMain(m *testing.M) {
	if mode := os.Getenv("PIPIT_CHILD_MODE"); mode != "" && childServeHook != nil {
		childServeHook(mode, os.Getenv("PIPIT_CHILD_SOCKET"))
		os.Exit(0)
	}
	if path := os.Getenv("PIPIT_CHILD_SOCKET"); path != "" {
		l, err := Listen(path, testMux(), ListenOptions{})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		l.Serve(nil)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childServeHook serves the workloads' servers (workload_test.go).
var childServeHook func(mode, path string)

func startChild(t *testing.T) (*exec.Cmd, string) {
	path := filepath.Join(t.TempDir(), "child.sock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PIPIT_CHILD_SOCKET="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("child: %q", line)
	}
	return cmd, path
}

// TestPeerKilled: every pending call and stream fails with CONNECTION_CLOSED within a
// bound once the server process is killed.
func TestPeerKilled(t *testing.T) {
	cmd, path := startChild(t)
	c, err := Dial(context.Background(), path, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	if _, err := c.Call(ctx, "t", "echo", []byte("x")); err != nil {
		t.Fatal(err)
	}
	const calls = 50
	errs := make(chan error, calls+1)
	for i := 0; i < calls; i++ {
		go func() {
			_, err := c.Call(ctx, "t", "sleep", []byte("600000"))
			errs <- err
		}()
	}
	streamStarted := make(chan struct{})
	go func() {
		var last error
		n := 0
		for _, err := range c.Stream(ctx, "t", "rows", []byte("1000000000"), Credit(8)) {
			if err != nil {
				last = err
				break
			}
			if n++; n == 100 {
				close(streamStarted)
			}
			time.Sleep(time.Millisecond)
		}
		errs <- last
	}()
	<-streamStarted
	for c.outgoing() < calls+1 {
		time.Sleep(time.Millisecond)
	}
	killed := time.Now()
	cmd.Process.Kill()
	for i := 0; i < calls+1; i++ {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrConnectionClosed) {
				t.Fatalf("call %d: %v", i, err)
			}
		case <-time.After(scale(2 * time.Second)):
			t.Fatalf("only %d of %d calls failed after the kill", i, calls+1)
		}
	}
	t.Logf("all %d calls failed %v after the kill", calls+1, time.Since(killed))
	if _, err := c.Call(ctx, "t", "echo", nil); !errors.Is(err, ErrConnectionClosed) {
		t.Fatalf("call after the end: %v", err)
	}
}

func (c *Conn) outgoing() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.OutgoingCalls()
}

// TestGarbageAfterValidFrames: the server answers what came before, then sends ERROR
// PROTOCOL_ERROR naming the rule, closes that connection, and keeps serving others.
func TestGarbageAfterValidFrames(t *testing.T) {
	path := filepath.Join(t.TempDir(), "g.sock")
	listenT(t, path)
	for _, garbage := range [][]byte{
		{0x01, 0x00, 0x00, 0x0b, 0x00},                   // reserved type
		{0x02, 0x00, 0x00, 0x04, 0x80, 0x00},             // overlong id
		[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),      // not pipit at all
		{0xff, 0xff, 0xff, 0x02},                         // too large
		{0x04, 0x00, 0x00, 0x02, 0x07, 0x00, 0x00, 0x00}, // RESPONSE for no call
	} {
		raw, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		var req []byte
		req = AppendRequest(req, 0, 0, "t", "echo", nil, []byte("ok"))
		raw.Write(req)
		// wait for the answer before the garbage, so the order is known
		time.Sleep(20 * time.Millisecond)
		raw.Write(garbage)
		raw.SetReadDeadline(time.Now().Add(scale(5 * time.Second)))
		all, _ := io.ReadAll(raw)
		raw.Close()
		d := NewDecoder(MaxFrameBytesLimit)
		frames, err := d.Write(all)
		if err != nil {
			t.Fatalf("server output does not decode: %v", err)
		}
		var types []string
		for _, f := range frames {
			types = append(types, f.Type.String())
		}
		last := frames[len(frames)-1]
		if last.Type != TypeError || last.Code != uint32(CodeProtocolError) || !strings.HasPrefix(string(last.Body), "E_") {
			t.Fatalf("garbage %x: frames %v, last %s %q", garbage, types, last.Type, last.Body)
		}
		if frames[1].Type != TypeResponse || string(frames[1].Body) != "ok" {
			t.Fatalf("answer before the garbage missing: %v", types)
		}
	}
	c, err := Dial(context.Background(), path, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Call(context.Background(), "t", "echo", nil); err != nil {
		t.Fatalf("server no longer serves: %v", err)
	}
}

// TestHandlerNeverReturns: the deadline ends the call on both sides even though the
// handler ignores its context; shutdown does not wait for it.
func TestHandlerNeverReturns(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		mux := testMux()
		block := make(chan struct{})
		defer close(block)
		mux.HandleUnary("t", "stuck", func(ctx context.Context, req *Request) ([]byte, error) {
			<-block
			return nil, nil
		})
		client, server := connPair(t, tr, mux, Options{})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := client.Call(ctx, "t", "stuck", nil)
		if !errors.Is(err, ErrDeadlineExceeded) {
			t.Fatalf("stuck: %v", err)
		}
		if el := time.Since(start); el > scale(time.Second) {
			t.Fatalf("took %v", el)
		}
		deadline := time.Now().Add(scale(2 * time.Second))
		for {
			server.mu.Lock()
			n := server.s.IncomingCalls()
			server.mu.Unlock()
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the server still holds the call after its deadline")
			}
			time.Sleep(time.Millisecond)
		}
		sctx, scancel := context.WithTimeout(context.Background(), scale(2*time.Second))
		defer scancel()
		if err := server.Shutdown(sctx); err != nil {
			t.Fatalf("shutdown waited for a handler whose call was over: %v", err)
		}
	})
}

// TestGoawayDuringBurst: the calls that succeed are exactly a prefix of the calls sent;
// every later one fails UNAVAILABLE (not processed, safe to retry).
func TestGoawayDuringBurst(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		mux := testMux()
		var handled atomic.Int64
		mux.HandleUnary("t", "count", func(ctx context.Context, req *Request) ([]byte, error) {
			handled.Add(1)
			time.Sleep(time.Millisecond)
			return req.Payload, nil
		})
		client, server := connPair(t, tr, mux, Options{})
		const n = 400
		results := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, results[i] = client.Call(context.Background(), "t", "count", []byte{byte(i)})
			}()
			// start the calls in order: call i is sent (or failed) before call i+1 starts
			for {
				client.mu.Lock()
				sent := client.s.sentSeq
				done := client.s.Draining()
				client.mu.Unlock()
				if int(sent) > i || done {
					break
				}
				runtime.Gosched()
			}
			if i == n/2 {
				for handled.Load() == 0 {
					time.Sleep(time.Millisecond)
				}
				server.GoAway()
			}
		}
		wg.Wait()
		ok := 0
		for ok < n && results[ok] == nil {
			ok++
		}
		for i := ok; i < n; i++ {
			if !errors.Is(results[i], ErrUnavailable) {
				t.Fatalf("call %d after the prefix of %d: %v", i, ok, results[i])
			}
		}
		if ok == 0 || ok == n || int(handled.Load()) != ok {
			t.Fatalf("%d calls succeeded, %d handled", ok, handled.Load())
		}
		t.Logf("%d of %d calls processed before GOAWAY", ok, n)
	})
}

// TestPeerNeverReads: a client that sends requests and never reads their responses
// cannot make the server hold more than its write buffer plus its held requests; the
// server stops reading from it, then recovers when it goes away.
func TestPeerNeverReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n.sock")
	opt := ListenOptions{Options: Options{MaxWriteBufferBytes: 1 << 20, MaxInflight: 64}}
	l, err := Listen(path, testMux(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var server *Conn
	got := make(chan *Conn, 1)
	go l.Serve(func(c *Conn) { got <- c })
	raw, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	server = <-got
	payload := bytes.Repeat([]byte{1}, 32<<10)
	stop := make(chan struct{})
	var sent atomic.Int64
	go func() {
		var b []byte
		for id := uint32(0); ; id++ {
			b = AppendRequest(b[:0], id, 0, "t", "echo", nil, payload)
			raw.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
			if _, err := raw.Write(b); err != nil {
				close(stop)
				return
			}
			sent.Add(1)
		}
	}()
	var peak int
	deadline := time.After(scale(3 * time.Second))
	stalled := false
	for !stalled {
		select {
		case <-stop:
			stalled = true
		case <-deadline:
			t.Fatal("the writer never stalled: the server kept reading")
		case <-time.After(time.Millisecond):
		}
		server.mu.Lock()
		out := server.s.Pending() + server.s.backlog
		held := len(server.s.held)
		inc := server.s.IncomingCalls()
		server.mu.Unlock()
		peak = max(peak, out)
		if held > 64 || inc > 64 {
			t.Fatalf("held %d, incoming %d: above maxInflight", held, inc)
		}
	}
	// Output held: at most the write buffer plus what the handlers in flight answer.
	if limit := 1<<20 + 64*(32<<10+16); peak > limit {
		t.Fatalf("server output peaked at %d bytes, limit %d", peak, limit)
	}
	t.Logf("client sent %d requests before the server stopped reading; server output peak %d bytes", sent.Load(), peak)
	raw.Close()
	select {
	case <-server.Done():
	case <-time.After(scale(5 * time.Second)):
		t.Fatal("server connection not closed after the peer left")
	}
}

// TestSlowStreamConsumer: the producer never runs more than the window ahead.
func TestSlowStreamConsumer(t *testing.T) {
	forTransports(t, func(t *testing.T, tr transport) {
		mux := NewMux()
		var produced atomic.Int64
		mux.HandleStream("t", "fast", func(ctx context.Context, req *Request, w *StreamWriter) error {
			for i := 0; i < 300; i++ {
				if err := w.Send([]byte("item")); err != nil {
					return err
				}
				produced.Add(1)
			}
			return nil
		})
		client, _ := connPair(t, tr, mux, Options{})
		const window = 16
		consumed := 0
		for _, err := range client.Stream(context.Background(), "t", "fast", nil, Credit(window)) {
			if err != nil {
				t.Fatal(err)
			}
			consumed++
			if ahead := produced.Load() - int64(consumed); ahead > window {
				t.Fatalf("producer %d ahead of the consumer, window %d", ahead, window)
			}
			if consumed%50 == 0 {
				time.Sleep(5 * time.Millisecond)
			}
		}
		if consumed != 300 {
			t.Fatalf("consumed %d", consumed)
		}
	})
}
