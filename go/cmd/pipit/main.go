// Command pipit serves the testee service (spec/TESTEE.md) and makes calls from the
// command line.
//
//	pipit serve --testee SOCKET
//	pipit call [flags] SOCKET SERVICE METHOD [DATA]
//	pipit stream [flags] SOCKET SERVICE METHOD [DATA]
//
// DATA is the request payload: the argument itself, @FILE for a file's bytes, or - for
// standard input; absent, it is empty. Response bytes go to standard output unchanged.
// The exit status is 0 on success, the status code for codes 1 to 63, 63 for higher codes,
// and 64 for a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	pipit "github.com/pipit-rpc/pipit/go"
)

const exitUsage = 64

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  pipit serve --testee SOCKET
  pipit call [--text] [--timeout MS] [--meta K=V]... SOCKET SERVICE METHOD [DATA]
  pipit stream [--text] [--timeout MS] [--meta K=V]... [--credit N] [--lines] SOCKET SERVICE METHOD [DATA]
DATA: the bytes of the argument, @FILE, or - for standard input.
`)
	os.Exit(exitUsage)
}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "call":
		os.Exit(call(os.Args[2:], false))
	case "stream":
		os.Exit(call(os.Args[2:], true))
	default:
		usage()
	}
}

func serve(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	testee := fs.Bool("testee", false, "serve the testee service")
	if fs.Parse(args) != nil || fs.NArg() != 1 || !*testee {
		usage()
	}
	path := fs.Arg(0)
	l, err := pipit.Listen(path, newTestee(), pipit.ListenOptions{})
	if err != nil {
		report(err)
		return exitFor(err)
	}
	fmt.Printf("listening %s\n", path)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go l.Serve(nil)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.Shutdown(ctx)
	return 0
}

type metaFlag []string

func (m *metaFlag) String() string     { return strings.Join(*m, ",") }
func (m *metaFlag) Set(v string) error { *m = append(*m, v); return nil }

func call(args []string, stream bool) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	text := fs.Bool("text", false, "send the payload with the TEXT flag")
	timeout := fs.Int("timeout", 0, "deadline in milliseconds")
	credit := fs.Int("credit", 0, "stream window")
	lines := fs.Bool("lines", false, "write a newline after each stream message")
	var meta metaFlag
	fs.Var(&meta, "meta", "metadata K=V (repeatable)")
	if fs.Parse(args) != nil || fs.NArg() < 3 || fs.NArg() > 4 {
		usage()
	}
	path, service, method := fs.Arg(0), fs.Arg(1), fs.Arg(2)
	var payload []byte
	if fs.NArg() == 4 {
		var err error
		if payload, err = readData(fs.Arg(3)); err != nil {
			report(err)
			return exitUsage
		}
	}
	var opts []pipit.CallOption
	if *text {
		opts = append(opts, pipit.Text())
	}
	for _, kv := range meta {
		k, v, _ := strings.Cut(kv, "=")
		opts = append(opts, pipit.Metadata(k, v))
	}
	if *credit > 0 {
		opts = append(opts, pipit.Credit(*credit))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if *timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*timeout)*time.Millisecond)
		defer cancel()
	}
	conn, err := pipit.Dial(ctx, path, nil, pipit.Options{})
	if err != nil {
		report(err)
		return exitFor(err)
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		conn.Shutdown(sctx)
	}()
	if !stream {
		res, err := conn.Call(ctx, service, method, payload, opts...)
		if err != nil {
			report(err)
			return exitFor(err)
		}
		os.Stdout.Write(res)
		return 0
	}
	for msg, err := range conn.Stream(ctx, service, method, payload, opts...) {
		if err != nil {
			report(err)
			return exitFor(err)
		}
		os.Stdout.Write(msg)
		if *lines {
			os.Stdout.Write([]byte{'\n'})
		}
	}
	return 0
}

func readData(arg string) ([]byte, error) {
	switch {
	case arg == "-":
		return io.ReadAll(os.Stdin)
	case strings.HasPrefix(arg, "@"):
		return os.ReadFile(arg[1:])
	}
	return []byte(arg), nil
}

func exitFor(err error) int {
	var pe *pipit.Error
	if !errors.As(err, &pe) {
		return int(pipit.CodeConnectionClosed)
	}
	if pe.Code == 0 {
		return int(pipit.CodeInternal)
	}
	if pe.Code > 63 {
		return 63
	}
	return int(pe.Code)
}

func report(err error) {
	var pe *pipit.Error
	if errors.As(err, &pe) {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	fmt.Fprintln(os.Stderr, "pipit:", err)
}
