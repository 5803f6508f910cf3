// Command readings-server serves the rows of a SQLite table over a Unix socket with pipit,
// one 28-byte message per row: the Go twin of the Node example's server (examples/sqlite-rows,
// src/server.ts), with the same services, layouts and statuses, so the Node client reads
// from either.
//
//	go run . --socket /tmp/readings.sock --rows 1000000 [--db FILE] [--once] [--ready-fd N]
//	go run . --generate --rows 1000000 [--db FILE]
//
// The table is generated on first use (readings-<rows>.db in the working directory unless
// --db names a file). With --once it exits after its first connection closes: 0 if that
// connection closed gracefully. SIGINT and SIGTERM close gracefully and exit 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	pipit "github.com/pipit-rpc/pipit/go"
)

func sayer(role string) func(format string, args ...any) {
	prefix := fmt.Sprintf("%-6s │ ", role)
	return func(format string, args ...any) {
		os.Stdout.WriteString(prefix + fmt.Sprintf(format, args...) + "\n")
	}
}

func main() {
	os.Exit(run())
}

func run() int {
	socketPath := flag.String("socket", "/tmp/pipit-readings.sock", "the Unix socket to listen on")
	rows := flag.Int64("rows", 1_000_000, "rows of the generated table")
	dbPath := flag.String("db", "", "the SQLite file (default: readings-<rows>.db in the working directory)")
	once := flag.Bool("once", false, "exit after the first connection closes")
	readyFD := flag.Int("ready-fd", 0, "once listening, write \"ready\\n\" to this inherited file descriptor and close it")
	generateOnly := flag.Bool("generate", false, "generate the table if it is missing, then exit")
	flag.Parse()
	say := sayer("server")
	if *rows < 1 {
		say("--rows must be a positive integer, got %d", *rows)
		return 2
	}
	if *dbPath == "" {
		*dbPath = fmt.Sprintf("readings-%d.db", *rows)
	}

	if !isReady(*dbPath) {
		if *generateOnly {
			say("generating %s rows into %s ...", thousands(*rows), *dbPath)
		} else {
			say("%s is missing: generating it here (this process's peak RSS will include that)", *dbPath)
		}
		t := time.Now()
		size, err := generate(*dbPath, *rows)
		if err != nil {
			say("generating %s failed: %v", *dbPath, err)
			return 1
		}
		s := time.Since(t).Seconds()
		say("generated %s rows in %.2f s (%s rows/s, one transaction), %.1f MiB on disk",
			thousands(*rows), s, thousands(int64(float64(*rows)/s)), float64(size)/(1<<20))
	} else if *generateOnly {
		say("using %s (delete it to generate it again)", *dbPath)
	}
	if *generateOnly {
		return 0
	}

	srv, err := openServer(*dbPath, say)
	if err != nil {
		say("cannot open %s: %v", *dbPath, err)
		return 1
	}
	l, err := pipit.Listen(*socketPath, srv.mux(), pipit.ListenOptions{})
	if err != nil {
		srv.close()
		say("%v", err)
		return 1
	}
	say("Go server (%s, modernc.org/sqlite) serving %s on %s (pid %d)", runtime.Version(), *dbPath, *socketPath, os.Getpid())
	if *readyFD > 0 {
		f := os.NewFile(uintptr(*readyFD), "ready")
		f.WriteString("ready\n")
		f.Close()
	}

	exit := make(chan int, 1)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		exit <- 0
	}()
	go l.Serve(func(c *pipit.Conn) {
		go func() {
			<-c.Done()
			code := 0
			if err := c.Err(); err != nil {
				say("client connection failed: %v", err)
				code = 1
			} else {
				say("client disconnected gracefully")
			}
			if *once {
				exit <- code
			}
		}()
	})

	code := <-exit
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	l.Shutdown(ctx)
	cancel()
	srv.close()
	say("peak RSS (VmHWM) %s", mib(peakRssKiB()))
	return code
}
