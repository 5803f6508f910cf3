package pipit

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func BenchmarkDecode(b *testing.B) {
	cases := []struct {
		name  string
		frame func(b []byte, id uint32) []byte
		size  int
	}{
		{"request-32", func(b []byte, id uint32) []byte { return AppendRequest(b, id, 0, "db", "query", nil, make([]byte, 32)) }, 32},
		{"response-32", func(b []byte, id uint32) []byte { return AppendResponse(b, id, FlagEnd, make([]byte, 32)) }, 32},
		{"response-1k", func(b []byte, id uint32) []byte { return AppendResponse(b, id, FlagEnd, make([]byte, 1024)) }, 1024},
		{"response-64k", func(b []byte, id uint32) []byte { return AppendResponse(b, id, FlagEnd, make([]byte, 65000)) }, 65000},
		{"request-ext", func(b []byte, id uint32) []byte {
			ext := AppendExt(nil, 5000, true, 64, true, []MetadataEntry{{"trace", "abc"}})
			return AppendRequest(b, id, FlagStream, "db", "rows", ext, make([]byte, 32))
		}, 32},
		{"credit", func(b []byte, id uint32) []byte { return AppendCredit(b, id, 64) }, 0},
		{"status", func(b []byte, id uint32) []byte { return AppendStatus(b, id, 5, "failed") }, 0},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var stream []byte
			n := 0
			for len(stream) < 60000 || n == 0 {
				stream = c.frame(stream, uint32(n%100))
				n++
			}
			d := NewDecoder(MaxFrameBytesLimit)
			b.SetBytes(int64(len(stream)))
			b.ReportAllocs()
			for b.Loop() {
				buf := d.Buffer()
				k := copy(buf, stream)
				fs, err := d.Commit(k)
				if err != nil || len(fs) != n {
					b.Fatalf("%d frames, %v", len(fs), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/frame")
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	p32, p1k := make([]byte, 32), make([]byte, 1024)
	ext := AppendExt(nil, 5000, true, 64, true, nil)
	buf := make([]byte, 0, 4096)
	cases := []struct {
		name string
		f    func([]byte) []byte
	}{
		{"request-32", func(b []byte) []byte { return AppendRequest(b, 1, 0, "db", "query", nil, p32) }},
		{"request-ext-32", func(b []byte) []byte { return AppendRequest(b, 1, FlagStream, "db", "query", ext, p32) }},
		{"response-32", func(b []byte) []byte { return AppendResponse(b, 1, FlagEnd, p32) }},
		{"response-1k", func(b []byte) []byte { return AppendResponse(b, 1, FlagEnd, p1k) }},
		{"response-header", func(b []byte) []byte { return AppendHeader(b, TypeResponse, FlagEnd, 1, 65000) }},
		{"status", func(b []byte) []byte { return AppendStatus(b, 1, 5, "failed") }},
		{"credit", func(b []byte) []byte { return AppendCredit(b, 1, 64) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf = c.f(buf[:0])
			}
		})
	}
}

// sessionPair joins two sessions in memory: a carries frames both ways.
type sessionPair struct {
	a, b       *Session
	da, db     *Decoder
	ev         []Event
	bufs       [][]byte
	now        time.Time
	onRequest  func(s *Session, in *InCall)
	done, msgs int
}

func newSessionPair(mux Router) *sessionPair {
	p := &sessionPair{a: NewSession(Options{}, nil), b: NewSession(Options{}, mux), now: time.Unix(1, 0)}
	p.da = NewDecoder(p.a.opt.MaxFrameBytes)
	p.db = NewDecoder(p.b.opt.MaxFrameBytes)
	p.onRequest = func(s *Session, in *InCall) { s.Respond(in, in.Req.Payload, false, nil) }
	return p
}

func (p *sessionPair) carry(from, to *Session, d *Decoder) bool {
	moved := false
	var arena []byte
	p.bufs, arena = from.TakeOutput(p.bufs[:0])
	defer from.Recycle(arena)
	for _, buf := range p.bufs {
		frames, err := d.Write(buf)
		to.Receive(frames, err, p.now)
		moved = true
	}
	clear(p.bufs)
	for _, s := range []*Session{from, to} {
		p.ev = s.PollEvents(p.ev)
		for _, e := range p.ev {
			switch e.Kind {
			case EventRequest:
				p.onRequest(s, e.In)
			case EventCallDone:
				p.done++
			case EventCallMessage:
				p.msgs++
			}
		}
		clear(p.ev)
	}
	return moved
}

func (p *sessionPair) run() {
	for p.carry(p.a, p.b, p.db) || p.carry(p.b, p.a, p.da) {
	}
}

type echoRouter struct{}

func (echoRouter) Route(service, method []byte) (Route, Code) {
	return Route{Service: "db", Method: "query", Kind: KindUnary}, CodeOK
}
func (echoRouter) AppendMethods(b []byte) []byte { return b }

func BenchmarkSessionPair(b *testing.B) {
	payload := make([]byte, 32)
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("unary-x%d", batch), func(b *testing.B) {
			p := newSessionPair(echoRouter{})
			calls := make([]OutCall, batch)
			b.ReportAllocs()
			for b.Loop() {
				for i := range calls {
					calls[i] = OutCall{}
					p.a.Call(&calls[i], "db", "query", payload, CallOptions{}, p.now)
				}
				p.run()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/call")
		})
	}
}

// TestSessionPairAllocs: a unary call through two sessions allocates at most 4 times on
// each side (here: the request and response copies and the InCall; the OutCall is the
// caller's).
func TestSessionPairAllocs(t *testing.T) {
	p := newSessionPair(echoRouter{})
	payload := make([]byte, 32)
	var c OutCall
	call := func() {
		c = OutCall{}
		p.a.Call(&c, "db", "query", payload, CallOptions{}, p.now)
		p.run()
	}
	call()
	if a := testing.AllocsPerRun(1000, call); a > 4 {
		t.Fatalf("%v allocations per unary call through a session pair", a)
	} else {
		t.Logf("%v allocations per unary call (both sessions)", a)
	}
}

// TestConnUnaryAllocs: the steady-state unary call over a Unix socket, both sides.
func TestConnUnaryAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	for _, c := range []struct {
		reuse bool
		limit float64
	}{
		// By default the server allocates the call (its handler may keep the request); with
		// ReuseRequestMemory it reuses it (Session.Served). The client's response is a copy
		// of its own, cut from a shared slab.
		{false, 2},
		{true, 1},
	} {
		client, _ := connPair(t, transports[1], testMux(), Options{ReuseRequestMemory: c.reuse})
		ctx := context.Background()
		payload := make([]byte, 32)
		for i := 0; i < 100; i++ {
			client.Call(ctx, "t", "echo", payload)
		}
		a := testing.AllocsPerRun(2000, func() {
			if _, err := client.Call(ctx, "t", "echo", payload); err != nil {
				t.Fatal(err)
			}
		})
		t.Logf("ReuseRequestMemory %v: %.2f allocations per unary call, client and server together", c.reuse, a)
		if a >= c.limit {
			t.Fatalf("ReuseRequestMemory %v: %.2f allocations per unary call (both sides), want less than %v", c.reuse, a, c.limit)
		}
	}
}

func BenchmarkConnUnary(b *testing.B) {
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			a, c := tr.pair(b)
			client := NewConn(a, nil, Options{})
			server := NewConn(c, testMux(), Options{})
			defer client.Close()
			defer server.Close()
			ctx := context.Background()
			payload := make([]byte, 32)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := client.Call(ctx, "t", "echo", payload); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkConnUnaryParallel(b *testing.B) {
	a, c := unixPair(b)
	client := NewConn(a, nil, Options{})
	server := NewConn(c, testMux(), Options{})
	defer client.Close()
	defer server.Close()
	ctx := context.Background()
	payload := make([]byte, 32)
	b.ReportAllocs()
	b.SetParallelism(32)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.Call(ctx, "t", "echo", payload); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkConnStream(b *testing.B) {
	a, c := unixPair(b)
	mux := NewMux()
	item := make([]byte, 32)
	mux.HandleStream("b", "rows", func(ctx context.Context, req *Request, w *StreamWriter) error {
		for i := 0; i < 100000; i++ {
			if err := w.Send(item); err != nil {
				return err
			}
		}
		return nil
	})
	client := NewConn(a, nil, Options{})
	server := NewConn(c, mux, Options{})
	defer client.Close()
	defer server.Close()
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		for _, err := range client.Stream(context.Background(), "b", "rows", nil) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != 100000 {
			b.Fatal(n)
		}
	}
	b.ReportMetric(float64(b.N)*100000/b.Elapsed().Seconds(), "items/s")
}
