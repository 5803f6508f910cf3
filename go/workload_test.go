//go:build linux

package pipit

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Workloads W1-W7: pipit against a raw length-prefixed protocol (4-byte length + 4-byte
// id, pipelined, coalesced writes), each server in a process of its own, the clients in
// this one. Run with
//
//	go test -run '^$' -bench Workloads -benchtime 1x
//
// The table printed gives both figures and their ratio.

func init() { childServeHook = childServe }

// childServe runs the server side of the workloads in a child process (see TestMain).
func childServe(mode, path string) {
	switch mode {
	case "pipit":
		mux := NewMux()
		mux.HandleUnary("b", "echo", func(ctx context.Context, req *Request) ([]byte, error) { return req.Payload, nil })
		item := make([]byte, 32)
		mux.HandleStream("b", "rows", func(ctx context.Context, req *Request, w *StreamWriter) error {
			n, _ := strconv.Atoi(string(req.Payload))
			for i := 0; i < n; i++ {
				if err := w.Send(item); err != nil {
					return err
				}
			}
			return nil
		})
		mux.HandleUnary("b", "stats", func(ctx context.Context, req *Request) ([]byte, error) { return procStats(), nil })
		// PIPIT_REUSE=1 measures a server made with Options.ReuseRequestMemory.
		l, err := Listen(path, mux, ListenOptions{Options: Options{ReuseRequestMemory: os.Getenv("PIPIT_REUSE") == "1"}})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		l.Serve(nil)
	case "raw":
		os.Remove(path)
		l, err := net.Listen("unix", path)
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go rawServe(c)
		}
	}
}

// procStats: CPU time used (ns) and peak RSS (KiB) of this process, as "cpu hwm".
func procStats() []byte {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return []byte(fmt.Sprintf("%d %d", cpu.Nanoseconds(), vmHWM()))
}

func vmHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// ---- the raw protocol ------------------------------------------------------
// frame: u32 length of (id + payload)... here: u32 payload length, u32 id, payload.
// Request payload: op byte (0 echo, 1 stream of n 32-byte items, 2 stats) then data.
// A stream ends with an empty frame.

func rawServe(c net.Conn) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 64<<10)
	w := bufio.NewWriterSize(c, 64<<10)
	var hdr [8]byte
	item := make([]byte, 32)
	buf := make([]byte, 0, 64<<10)
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		id := binary.LittleEndian.Uint32(hdr[4:])
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		p := buf[:n]
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		write := func(payload []byte) {
			binary.LittleEndian.PutUint32(hdr[:4], uint32(len(payload)))
			binary.LittleEndian.PutUint32(hdr[4:], id)
			w.Write(hdr[:])
			w.Write(payload)
		}
		switch p[0] {
		case 0:
			write(p[1:])
		case 1:
			count, _ := strconv.Atoi(string(p[1:]))
			for i := 0; i < count; i++ {
				write(item)
			}
			write(nil)
		case 2:
			write(procStats())
		}
		if r.Buffered() == 0 {
			if w.Flush() != nil {
				return
			}
		}
	}
}

type rawCall struct {
	done   chan []byte
	onItem func([]byte) bool // streams: called per frame, true at the end
}

type rawClient struct {
	c       net.Conn
	mu      sync.Mutex
	out     []byte
	spare   []byte
	kick    chan struct{}
	pending map[uint32]*rawCall
	nextID  uint32
	pool    sync.Pool
}

func newRawClient(path string) (*rawClient, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, err
	}
	rc := &rawClient{c: c, kick: make(chan struct{}, 1), pending: make(map[uint32]*rawCall)}
	rc.pool.New = func() any { return &rawCall{done: make(chan []byte, 1)} }
	go rc.writer()
	go rc.reader()
	return rc, nil
}

func (rc *rawClient) writer() {
	for range rc.kick {
		rc.mu.Lock()
		b := rc.out
		rc.out = rc.spare[:0]
		rc.mu.Unlock()
		if len(b) > 0 {
			if _, err := rc.c.Write(b); err != nil {
				return
			}
		}
		rc.mu.Lock()
		rc.spare = b[:0]
		rc.mu.Unlock()
	}
}

func (rc *rawClient) reader() {
	r := bufio.NewReaderSize(rc.c, 64<<10)
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return
		}
		n := binary.LittleEndian.Uint32(hdr[:4])
		id := binary.LittleEndian.Uint32(hdr[4:])
		p := make([]byte, n)
		if _, err := io.ReadFull(r, p); err != nil {
			return
		}
		rc.mu.Lock()
		call := rc.pending[id]
		rc.mu.Unlock()
		if call.onItem != nil {
			if !call.onItem(p) {
				continue
			}
		}
		rc.mu.Lock()
		delete(rc.pending, id)
		rc.mu.Unlock()
		call.done <- p
	}
}

func (rc *rawClient) start(op byte, data []byte, onItem func([]byte) bool) *rawCall {
	call := rc.pool.Get().(*rawCall)
	call.onItem = onItem
	rc.mu.Lock()
	id := rc.nextID
	rc.nextID++
	rc.pending[id] = call
	var hdr [8]byte
	binary.LittleEndian.PutUint32(hdr[:4], uint32(1+len(data)))
	binary.LittleEndian.PutUint32(hdr[4:], id)
	rc.out = append(rc.out, hdr[:]...)
	rc.out = append(rc.out, op)
	rc.out = append(rc.out, data...)
	rc.mu.Unlock()
	select {
	case rc.kick <- struct{}{}:
	default:
	}
	return call
}

func (rc *rawClient) call(op byte, data []byte) []byte {
	call := rc.start(op, data, nil)
	p := <-call.done
	rc.pool.Put(call)
	return p
}

func (rc *rawClient) close() { rc.c.Close(); close(rc.kick) }

// ---- workloads -------------------------------------------------------------

type workClient interface {
	unary(p []byte) []byte
	stream(n int) int
	stats() (cpu time.Duration, hwm int64)
	close()
}

type pipitClient struct{ c *Conn }

func (p pipitClient) unary(b []byte) []byte {
	r, err := p.c.Call(context.Background(), "b", "echo", b)
	if err != nil {
		panic(err)
	}
	return r
}

func (p pipitClient) stream(n int) int {
	k := 0
	for _, err := range p.c.Stream(context.Background(), "b", "rows", []byte(strconv.Itoa(n))) {
		if err != nil {
			panic(err)
		}
		k++
	}
	return k
}

func parseStats(b []byte) (time.Duration, int64) {
	f := strings.Fields(string(b))
	cpu, _ := strconv.ParseInt(f[0], 10, 64)
	hwm, _ := strconv.ParseInt(f[1], 10, 64)
	return time.Duration(cpu), hwm
}

func (p pipitClient) stats() (time.Duration, int64) {
	r, err := p.c.Call(context.Background(), "b", "stats", nil)
	if err != nil {
		panic(err)
	}
	return parseStats(r)
}

func (p pipitClient) close() { p.c.Close() }

type rawWork struct{ rc *rawClient }

func (r rawWork) unary(b []byte) []byte { return r.rc.call(0, b) }
func (r rawWork) stream(n int) int {
	k := 0
	call := r.rc.start(1, []byte(strconv.Itoa(n)), func(p []byte) bool {
		if len(p) == 0 {
			return true
		}
		k++
		return false
	})
	<-call.done
	return k
}
func (r rawWork) stats() (time.Duration, int64) { return parseStats(r.rc.call(2, nil)) }
func (r rawWork) close()                        { r.rc.close() }

type results struct {
	p50, p99   time.Duration
	callsPerS  float64
	mibPerS    float64
	itemsPerS  float64
	cpuPerCall time.Duration
	serverHWM  int64
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runWorkloads(c workClient, quick bool) results {
	var r results
	p32 := make([]byte, 32)
	n1, n2, n3 := 20000, 200000, 4000
	if quick {
		n1, n2, n3 = 2000, 20000, 400
	}
	for i := 0; i < 2000; i++ { // warm up
		c.unary(p32)
	}
	// W1: latency of sequential calls.
	lat := make([]time.Duration, n1)
	for i := range lat {
		t := time.Now()
		c.unary(p32)
		lat[i] = time.Since(t)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r.p50, r.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
	if os.Getenv("PIPIT_W1ONLY") != "" {
		return r
	}
	// W2 and W5: 64 calls in flight.
	srvCPU0, _ := c.stats()
	cpu0 := selfCPU()
	t0 := time.Now()
	var wg sync.WaitGroup
	for g := 0; g < 64; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n2/64; i++ {
				c.unary(p32)
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	cpu1 := selfCPU()
	srvCPU1, _ := c.stats()
	calls := (n2 / 64) * 64
	r.callsPerS = float64(calls) / el.Seconds()
	r.cpuPerCall = (cpu1 - cpu0 + srvCPU1 - srvCPU0) / time.Duration(calls)
	// W3: 64 KiB messages, 8 in flight, echoed.
	big := make([]byte, 64<<10)
	t0 = time.Now()
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < n3/8; i++ {
				c.unary(big)
			}
		}()
	}
	wg.Wait()
	r.mibPerS = float64(2*(n3/8)*8*len(big)) / (1 << 20) / time.Since(t0).Seconds()
	// W4: one stream of 100,000 32-byte items.
	t0 = time.Now()
	if k := c.stream(100000); k != 100000 {
		panic(fmt.Sprintf("stream gave %d items", k))
	}
	r.itemsPerS = 100000 / time.Since(t0).Seconds()
	_, r.serverHWM = c.stats()
	return r
}

func startWorkServer(tb testing.TB, mode string) (string, func()) {
	path := filepath.Join(tb.TempDir(), mode+".sock")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "PIPIT_CHILD_MODE="+mode, "PIPIT_CHILD_SOCKET="+path)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		tb.Fatalf("%s server: %q", mode, line)
	}
	return path, func() { cmd.Process.Kill(); cmd.Wait() }
}

var workloadsOnce sync.Once

func BenchmarkWorkloads(b *testing.B) {
	workloadsOnce.Do(func() {
		quick := os.Getenv("PIPIT_QUICK") != ""
		reps := 3
		if n, err := strconv.Atoi(os.Getenv("PIPIT_REPS")); err == nil && n > 0 {
			reps = n
		}
		// Runs alternate between pipit and raw, each with a fresh server process; every
		// figure is the median of its runs (the machine is shared and noisy).
		all := [2][]results{}
		for rep := 0; rep < reps; rep++ {
			for i, mode := range []string{"pipit", "raw"} {
				path, stop := startWorkServer(b, mode)
				var c workClient
				if mode == "pipit" {
					conn, err := Dial(context.Background(), path, nil, Options{})
					if err != nil {
						b.Fatal(err)
					}
					c = pipitClient{conn}
				} else {
					rc, err := newRawClient(path)
					if err != nil {
						b.Fatal(err)
					}
					c = rawWork{rc}
				}
				all[i] = append(all[i], runWorkloads(c, quick))
				c.close()
				stop()
			}
		}
		var res, lo, hi [2]results
		for i := range res {
			res[i] = pickResults(all[i], 0.5)
			lo[i] = pickResults(all[i], 0)
			hi[i] = pickResults(all[i], 1)
		}
		pair := len(AppendResponse(AppendRequest(nil, 1, 0, "db", "query", nil, make([]byte, 32)), 1, FlagEnd, make([]byte, 32)))
		rows := []struct {
			name       string
			get        func(results) float64
			unit, goal string
		}{
			{"W1 latency p50", func(r results) float64 { return us(r.p50) }, "µs", "ratio <= 1.1"},
			{"W1 latency p99", func(r results) float64 { return us(r.p99) }, "µs", ""},
			{"W2 64 in flight", func(r results) float64 { return r.callsPerS }, "calls/s", "ratio >= 0.7"},
			{"W3 64 KiB echo", func(r results) float64 { return r.mibPerS }, "MiB/s", "ratio >= 0.9"},
			{"W4 stream 32 B", func(r results) float64 { return r.itemsPerS }, "items/s", "ratio >= 0.5"},
			{"W5 CPU per call", func(r results) float64 { return us(r.cpuPerCall) }, "µs", "ratio <= 1.5"},
			{"W6 bytes per pair", nil, "B", "pipit = 83"},
			{"W7 server VmHWM", func(r results) float64 { return float64(r.serverHWM) / 1024 }, "MiB", "pipit <= raw + 2"},
		}
		// Each figure is the median of its runs, then [lowest, highest]; the ratio is the
		// medians' ratio, then the ratios of the runs paired in the order they ran.
		fmt.Printf("\n%d runs each\n%-18s %-34s %-34s %-18s %-8s %s\n", reps, "workload", "pipit", "raw", "ratio", "unit", "goal")
		for _, row := range rows {
			if row.get == nil {
				fmt.Printf("%-18s %-34s %-34s %-18.2f %-8s %s\n", row.name, fmt.Sprint(pair), "80", float64(pair)/80, row.unit, row.goal)
				continue
			}
			cell := func(i int) string {
				return fmt.Sprintf("%.4g [%.4g, %.4g]", row.get(res[i]), row.get(lo[i]), row.get(hi[i]))
			}
			ratios := make([]float64, reps)
			for k := range ratios {
				ratios[k] = row.get(all[0][k]) / row.get(all[1][k])
			}
			sort.Float64s(ratios)
			fmt.Printf("%-18s %-34s %-34s %-18s %-8s %s\n", row.name, cell(0), cell(1),
				fmt.Sprintf("%.2f [%.2f, %.2f]", row.get(res[0])/row.get(res[1]), ratios[0], ratios[len(ratios)-1]), row.unit, row.goal)
		}
	})
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// pickResults takes, figure by figure, the value at quantile q of the runs (0: the lowest,
// 0.5: the median, 1: the highest).
func pickResults(rs []results, q float64) results {
	pick := func(get func(results) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		sort.Float64s(v)
		return v[int(q*float64(len(v)-1)+0.5)]
	}
	return results{
		p50:        time.Duration(pick(func(r results) float64 { return float64(r.p50) })),
		p99:        time.Duration(pick(func(r results) float64 { return float64(r.p99) })),
		callsPerS:  pick(func(r results) float64 { return r.callsPerS }),
		mibPerS:    pick(func(r results) float64 { return r.mibPerS }),
		itemsPerS:  pick(func(r results) float64 { return r.itemsPerS }),
		cpuPerCall: time.Duration(pick(func(r results) float64 { return float64(r.cpuPerCall) })),
		serverHWM:  int64(pick(func(r results) float64 { return float64(r.serverHWM) })),
	}
}

func BenchmarkRawUnary(b *testing.B) {
	path := filepath.Join(b.TempDir(), "raw.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go rawServe(c)
		}
	}()
	rc, err := newRawClient(path)
	if err != nil {
		b.Fatal(err)
	}
	defer rc.close()
	p := make([]byte, 32)
	b.ReportAllocs()
	for b.Loop() {
		rc.call(0, p)
	}
}

func BenchmarkEcho64K(b *testing.B) {
	big := make([]byte, 64<<10)
	b.Run("pipit", func(b *testing.B) {
		a, c := unixPair(b)
		client := NewConn(a, nil, Options{})
		server := NewConn(c, testMux(), Options{})
		defer client.Close()
		defer server.Close()
		b.SetBytes(2 * int64(len(big)))
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := client.Call(context.Background(), "t", "echo", big); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
	b.Run("raw", func(b *testing.B) {
		path := filepath.Join(b.TempDir(), "raw.sock")
		l, err := net.Listen("unix", path)
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				go rawServe(c)
			}
		}()
		rc, err := newRawClient(path)
		if err != nil {
			b.Fatal(err)
		}
		defer rc.close()
		b.SetBytes(2 * int64(len(big)))
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				rc.call(0, big)
			}
		})
	})
}
