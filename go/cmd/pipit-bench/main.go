//go:build unix

// Command pipit-bench is the Go side of the cross-language cells of the TypeScript socket
// bench (bench/socket-workloads.ts): a server that serves what the TypeScript bench server
// serves, and a client that runs the same workloads and reports the same figures. The
// TypeScript orchestrator builds and starts it:
//
//	pipit-bench server '<params JSON>'
//	pipit-bench client '<params JSON>'
//
// params is the orchestrator's {"quick", "cell", "impl", "path"}. Both roles talk to the
// orchestrator in JSON lines, the messages its Node processes send over IPC: on stdout
// {"ready":1} (server), {"ask":"start"|"stop"} (client), the server's statistics
// {"cpu" µs, "bytes", "maxRss" and "fileRss" MiB}, and {"result":{...}} (client); on stdin the
// answers to asks (client) and {"ask":...} (server; "exit" ends it). Nothing else goes to stdout.
//
// Workloads (the same sizes, counts and durations as the TypeScript client):
//
//	W1   sequential unary calls db/query, 32-byte payload: p50, p99 (µs)
//	W2   64 unary calls in flight: calls/s, CPU per call of both processes, bytes per call
//	     (both directions), peak RSS of both processes
//	W3   64 KiB db/bulk echo, 8 in flight: MiB/s of request payload
//	W4   one db/rows stream of 100,000 32-byte items (W4a: db/rowsAsync, W4b: db/rowsPaged): items/s, CPU per item
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pipit "github.com/pipit-rpc/pipit/go"
)

type params struct {
	Quick bool   `json:"quick"`
	Cell  string `json:"cell"`
	Impl  string `json:"impl"`
	Path  string `json:"path"`
}

// cellResult has the fields of the TypeScript bench's CellResult that a cell fills in.
type cellResult struct {
	Impl           string   `json:"impl"`
	Cell           string   `json:"cell"`
	Codec          string   `json:"codec"`
	P50            *float64 `json:"p50,omitempty"`
	P99            *float64 `json:"p99,omitempty"`
	CallsPerSec    *float64 `json:"callsPerSec,omitempty"`
	MibPerSec      *float64 `json:"mibPerSec,omitempty"`
	ItemsPerSec    *float64 `json:"itemsPerSec,omitempty"`
	ItemCPUUs      *float64 `json:"itemCpuUs,omitempty"`
	ClientCPUUs    *float64 `json:"clientCpuUs,omitempty"`
	ServerCPUUs    *float64 `json:"serverCpuUs,omitempty"`
	Calls          *float64 `json:"calls,omitempty"`
	ClientBytes    *float64 `json:"clientBytes,omitempty"`
	ServerBytes    *float64 `json:"serverBytes,omitempty"`
	ClientRssMiB   *float64 `json:"clientRssMiB,omitempty"`
	ServerRssMiB   *float64 `json:"serverRssMiB,omitempty"`
	ClientFileMiB  *float64 `json:"clientFileMiB,omitempty"`
	ServerFileMiB  *float64 `json:"serverFileMiB,omitempty"`
	BaselineRssMiB *float64 `json:"baselineRssMiB,omitempty"`
}

type stats struct {
	CPU     float64 `json:"cpu"`     // user + system time of the process, µs
	Bytes   float64 `json:"bytes"`   // bytes written by the process (wchar)
	MaxRss  float64 `json:"maxRss"`  // VmHWM, MiB
	FileRss float64 `json:"fileRss"` // RssFile (file-backed resident pages), MiB
}

func main() {
	if len(os.Args) != 3 || (os.Args[1] != "server" && os.Args[1] != "client") {
		fmt.Fprintln(os.Stderr, "usage: pipit-bench client|server <params JSON> (started by the socket bench, bench/socket-workloads.ts)")
		os.Exit(2)
	}
	var p params
	if err := json.Unmarshal([]byte(os.Args[2]), &p); err != nil {
		fmt.Fprintln(os.Stderr, "pipit-bench: params:", err)
		os.Exit(2)
	}
	var err error
	if os.Args[1] == "server" {
		err = serverMain(p)
	} else {
		err = clientMain(p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pipit-bench:", err)
		os.Exit(1)
	}
}

// ---- messages to and from the orchestrator ---------------------------------

var (
	outMu sync.Mutex
	in    = bufio.NewScanner(os.Stdin)
)

func send(v any) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	os.Stdout.Write(append(b, '\n'))
	outMu.Unlock()
}

// receive reads the next message from the orchestrator into v; false at the end of input.
func receive(v any) bool {
	if !in.Scan() {
		return false
	}
	return json.Unmarshal(in.Bytes(), v) == nil
}

// ask has the orchestrator relay "start" or "stop" to the server and returns its answer.
func ask(what string) (stats, error) {
	send(map[string]string{"ask": what})
	var s stats
	if !receive(&s) {
		return s, fmt.Errorf("no answer to %q", what)
	}
	return s, nil
}

func selfStats() stats {
	return stats{
		CPU:     cpuMicros(),
		Bytes:   float64(procField("/proc/self/io", "wchar:")),
		MaxRss:  float64(procField("/proc/self/status", "VmHWM:")) / 1024,
		FileRss: float64(procField("/proc/self/status", "RssFile:")) / 1024,
	}
}

func cpuMicros() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3
}

// procField reads the number after prefix in a /proc file ("VmHWM:" is in KiB), or 0.
func procField(path, prefix string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// ---- payloads ----------------------------------------------------------------

var payload32 = func() []byte {
	b := make([]byte, 32)
	for i := range b {
		b[i] = 0x61
	}
	return b
}()

var bulk = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i * 31)
	}
	return b
}()

// item is stream item i: 32 bytes, its index in the first four, a fresh slice per item (a
// new row, as a cursor makes one).
func item(i uint32) []byte {
	b := make([]byte, 32)
	binary.LittleEndian.PutUint32(b, i)
	for k := 4; k < len(b); k++ {
		b[k] = 0x61
	}
	return b
}

func checkItem(b []byte, i uint32) error {
	if len(b) != 32 || binary.LittleEndian.Uint32(b) != i || b[31] != 0x61 {
		return fmt.Errorf("stream item %d is wrong", i)
	}
	return nil
}

// ---- server --------------------------------------------------------------------

func serverMain(p params) error {
	mux := pipit.NewMux()
	mux.HandleUnary("db", "query", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		return payload32, nil
	})
	mux.HandleUnary("db", "bulk", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		return req.Payload, nil
	})
	rows := func(ctx context.Context, req *pipit.Request, w *pipit.StreamWriter) error {
		if len(req.Payload) < 4 {
			return pipit.NewError(pipit.CodeInvalidArgument, "rows expects a 4-byte count")
		}
		n := binary.LittleEndian.Uint32(req.Payload)
		for i := uint32(0); i < n; i++ {
			if err := w.Send(item(i)); err != nil {
				return err
			}
		}
		return nil
	}
	// Go has no second or third kind of producer: W4a's and W4b's methods are the same loop.
	mux.HandleStream("db", "rows", rows)
	mux.HandleStream("db", "rowsAsync", rows)
	mux.HandleStream("db", "rowsPaged", rows)
	l, err := pipit.Listen(p.Path, mux, pipit.ListenOptions{})
	if err != nil {
		return err
	}
	go l.Serve(nil)
	send(map[string]int{"ready": 1})
	for {
		var m struct {
			Ask string `json:"ask"`
		}
		if !receive(&m) || m.Ask == "exit" {
			l.Close()
			return nil
		}
		send(selfStats())
	}
}

// ---- client ----------------------------------------------------------------------

// runFor keeps inflight calls going for d and returns how many completed. As in the
// TypeScript client, the clock is read every 64 completions.
func runFor(d time.Duration, inflight int, one func() error) (int64, error) {
	var done atomic.Int64
	var stop atomic.Bool
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if err := one(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					stop.Store(true)
					return
				}
				if n := done.Add(1); n&63 == 0 && time.Now().After(end) {
					stop.Store(true)
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
	}
	return done.Load(), nil
}

func ptr(v float64) *float64 { return &v }

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

func clientMain(p params) error {
	baseline := float64(procField("/proc/self/status", "VmRSS:")) / 1024
	ctx := context.Background()
	c, err := pipit.Dial(ctx, p.Path, nil, pipit.Options{})
	if err != nil {
		return err
	}
	r := cellResult{Impl: p.Impl, Cell: p.Cell, Codec: "go"}
	q := p.Quick
	pick := func(quick, full int) int {
		if q {
			return quick
		}
		return full
	}
	query := func() error {
		b, err := c.Call(ctx, "db", "query", payload32)
		if err != nil {
			return err
		}
		if len(b) != 32 {
			return fmt.Errorf("wrong response length %d, expected 32", len(b))
		}
		return nil
	}
	switch p.Cell {
	case "W1":
		warm, n := pick(300, 3000), pick(500, 10000)
		for range warm {
			if err := query(); err != nil {
				return err
			}
		}
		lat := make([]float64, n)
		for i := range lat {
			t := time.Now()
			if err := query(); err != nil {
				return err
			}
			lat[i] = float64(time.Since(t).Nanoseconds()) / 1e3
		}
		sort.Float64s(lat)
		r.P50, r.P99 = ptr(lat[n/2]), ptr(lat[n*99/100])
	case "W2":
		if _, err := runFor(time.Duration(pick(200, 700))*time.Millisecond, 64, query); err != nil {
			return err
		}
		s0, err := ask("start")
		if err != nil {
			return err
		}
		self0 := selfStats()
		t0 := time.Now()
		calls, err := runFor(time.Duration(pick(300, 2000))*time.Millisecond, 64, query)
		if err != nil {
			return err
		}
		elapsed := time.Since(t0).Seconds()
		self1 := selfStats()
		s1, err := ask("stop")
		if err != nil {
			return err
		}
		n := float64(calls)
		r.Calls = ptr(n)
		r.CallsPerSec = ptr(n / elapsed)
		r.ClientCPUUs = ptr((self1.CPU - self0.CPU) / n)
		r.ServerCPUUs = ptr((s1.CPU - s0.CPU) / n)
		r.ClientBytes = ptr((self1.Bytes - self0.Bytes) / n)
		r.ServerBytes = ptr((s1.Bytes - s0.Bytes) / n)
		self := selfStats()
		r.ClientRssMiB = ptr(self.MaxRss)
		r.ServerRssMiB = ptr(s1.MaxRss)
		r.ClientFileMiB = ptr(self.FileRss)
		r.ServerFileMiB = ptr(s1.FileRss)
		r.BaselineRssMiB = ptr(baseline)
	case "W3":
		one := func() error {
			b, err := c.Call(ctx, "db", "bulk", bulk)
			if err != nil {
				return err
			}
			if len(b) != len(bulk) || b[12345] != bulk[12345] || b[65535] != bulk[65535] {
				return fmt.Errorf("bulk content differs")
			}
			return nil
		}
		if _, err := runFor(time.Duration(pick(200, 500))*time.Millisecond, 8, one); err != nil {
			return err
		}
		t0 := time.Now()
		calls, err := runFor(time.Duration(pick(300, 2000))*time.Millisecond, 8, one)
		if err != nil {
			return err
		}
		r.MibPerSec = ptr(float64(calls) * float64(len(bulk)) / (1 << 20) / time.Since(t0).Seconds())
	case "W4", "W4a", "W4b":
		n := uint32(pick(20000, 100000))
		method := map[string]string{"W4": "rows", "W4a": "rowsAsync", "W4b": "rowsPaged"}[p.Cell]
		var opts []pipit.CallOption
		if v := os.Getenv("PIPIT_BENCH_CREDIT"); v != "" {
			credit, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("PIPIT_BENCH_CREDIT: %v", err)
			}
			opts = append(opts, pipit.Credit(credit))
		}
		stream := func() error {
			req := binary.LittleEndian.AppendUint32(nil, n)
			var k uint32
			for b, err := range c.Stream(ctx, "db", method, req, opts...) {
				if err != nil {
					return err
				}
				if err := checkItem(b, k); err != nil {
					return err
				}
				k++
			}
			if k != n {
				return fmt.Errorf("stream returned %d of %d items", k, n)
			}
			return nil
		}
		for range pick(1, 4) { // warm-up streams, as the TS client runs them
			if err := stream(); err != nil {
				return err
			}
		}
		var rates, cpus []float64
		for range pick(1, 5) {
			s0, err := ask("start")
			if err != nil {
				return err
			}
			cpu0 := cpuMicros()
			t0 := time.Now()
			if err := stream(); err != nil {
				return err
			}
			elapsed := time.Since(t0).Seconds()
			cpu := cpuMicros() - cpu0
			s1, err := ask("stop")
			if err != nil {
				return err
			}
			rates = append(rates, float64(n)/elapsed)
			cpus = append(cpus, (cpu+s1.CPU-s0.CPU)/float64(n))
		}
		r.ItemsPerSec, r.ItemCPUUs = ptr(median(rates)), ptr(median(cpus))
	default:
		return fmt.Errorf("unknown cell %q", p.Cell)
	}
	sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	c.Shutdown(sctx)
	cancel()
	send(map[string]any{"result": r})
	return nil
}
