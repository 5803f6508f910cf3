// Command pipit serves the testee service (spec/TESTEE.md) and makes calls from the
// command line, with the arguments and exit statuses of the TypeScript `pipit` command.
//
//	pipit serve --testee SOCKET
//	pipit call SOCKET SERVICE METHOD [DATA] [options]
//	pipit stream SOCKET SERVICE METHOD [DATA] [options]
//
// Run pipit COMMAND --help for the details.
package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	pipit "github.com/pipit-rpc/pipit/go"
)

// Exit statuses: 0 OK, 1 a local failure, 2 bad arguments, 10 + the status code of a
// failed call (CANCELLED 11 ... INTERNAL 20, CONNECTION_CLOSED 21), 22 a reserved status
// number (UNKNOWN), 23 an application-defined status.
const (
	exitFailure     = 1
	exitUsage       = 2
	statusBase      = 10
	exitUnknown     = 22
	exitApplication = 23
)

const usageText = `Usage: pipit COMMAND [arguments] [options]

Commands:
  serve    serve the testee on a Unix socket (pipit serve --testee SOCKET)
  call     make one unary call and print the answer
  stream   make one stream call and print every message
`

const callHelp = `Usage: pipit call SOCKET SERVICE METHOD [DATA] [options]
       pipit stream SOCKET SERVICE METHOD [DATA] [options]

DATA is the request: the argument itself (sent as text, with the TEXT flag), @FILE
(the file's bytes), or - (stdin's bytes). No DATA sends an empty request. A literal
argument starting with @ is written @@ (@@x sends "@x").

  --text, --hex, --base64   encoding of DATA and of the output
  --in ENC            DATA encoding: text, hex, base64, raw (bytes without TEXT)
  --out ENC           output encoding: auto, raw, text, hex, base64 (call), or
                      text, hex, base64, raw (stream: raw is a 4-byte little-endian
                      length before each message)
  --raw               stream: --out raw
  --credit N          stream window (default: adaptive, starting at 128)
  -t, --timeout MS    deadline of the call in milliseconds, sent to the peer
  -m, --metadata K=V  metadata entry (repeatable)
  -h, --help          this help

Exit status: 0 OK, 1 a local failure, 2 bad arguments, 10 + the status code of a
failed call (CANCELLED 11 ... INTERNAL 20, CONNECTION_CLOSED 21), 22 a reserved
status (UNKNOWN), 23 an application-defined status. Ctrl-C cancels the call (11).
`

type usageError string

func (e usageError) Error() string { return string(e) }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usageText)
		os.Exit(exitUsage)
	}
	name, args := os.Args[1], os.Args[2:]
	var code int
	var err error
	switch name {
	case "-h", "--help", "help":
		fmt.Print(usageText)
		return
	case "serve":
		code, err = serve(args)
	case "call":
		code, err = call(args, false)
	case "stream":
		code, err = call(args, true)
	default:
		err = usageError(fmt.Sprintf("unknown command %q (commands: serve, call, stream)", name))
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "pipit %s: %s (see pipit %s --help)\n", name, ue, name)
		os.Exit(exitUsage)
	}
	if err != nil {
		var pe *pipit.Error
		if errors.As(err, &pe) {
			fmt.Fprintln(os.Stderr, describe(err)) // as the TypeScript command: the status alone
		} else {
			fmt.Fprintf(os.Stderr, "pipit %s: %s\n", name, describe(err))
		}
		code = exitFor(err)
	}
	os.Exit(code)
}

// options is a small parser: options may come before, between or after the positionals.
type options struct {
	pos   []string
	flags map[string][]string
}

func parse(args []string, boolFlags, valueFlags map[string]string) (*options, error) {
	o := &options{flags: map[string][]string{}}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "-" || !strings.HasPrefix(a, "-") {
			o.pos = append(o.pos, a)
			continue
		}
		if a == "--" {
			o.pos = append(o.pos, args[i+1:]...)
			break
		}
		name, val, hasVal := strings.Cut(a, "=")
		if n, ok := boolFlags[name]; ok {
			o.flags[n] = append(o.flags[n], "true")
			continue
		}
		n, ok := valueFlags[name]
		if !ok {
			return nil, usageError("unknown option " + name)
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, usageError(name + " needs a value")
			}
			i++
			val = args[i]
		}
		o.flags[n] = append(o.flags[n], val)
	}
	return o, nil
}

func (o *options) has(n string) bool { return len(o.flags[n]) > 0 }
func (o *options) get(n string) string {
	if v := o.flags[n]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

func serve(args []string) (int, error) {
	o, err := parse(args, map[string]string{"--testee": "testee", "-h": "help", "--help": "help"}, nil)
	if err != nil {
		return 0, err
	}
	if o.has("help") {
		fmt.Print("Usage: pipit serve --testee SOCKET\n\nServe the testee service (spec/TESTEE.md) on SOCKET until SIGINT or SIGTERM,\nthen close gracefully and exit 0.\n")
		return 0, nil
	}
	if !o.has("testee") || len(o.pos) != 1 {
		return 0, usageError("needs --testee and one SOCKET")
	}
	path := o.pos[0]
	l, err := pipit.Listen(path, newTestee(), pipit.ListenOptions{})
	if err != nil {
		return 0, err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go l.Serve(nil)
	fmt.Printf("listening %s\n", path)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.Shutdown(ctx)
	return 0, nil
}

func call(args []string, stream bool) (int, error) {
	o, err := parse(args,
		map[string]string{"--text": "text", "--hex": "hex", "--base64": "base64", "--raw": "raw", "-h": "help", "--help": "help"},
		map[string]string{"--in": "in", "--out": "out", "--credit": "credit", "-t": "timeout", "--timeout": "timeout",
			"-m": "metadata", "--metadata": "metadata"})
	if err != nil {
		return 0, err
	}
	if o.has("help") {
		fmt.Print(callHelp)
		return 0, nil
	}
	if len(o.pos) < 3 || len(o.pos) > 4 {
		return 0, usageError("needs SOCKET SERVICE METHOD [DATA]")
	}
	path, service, method := o.pos[0], o.pos[1], o.pos[2]
	if len(service) > pipit.MaxNameBytes || len(method) > pipit.MaxNameBytes {
		return 0, usageError("service and method names are limited to 255 bytes")
	}
	both := ""
	for _, e := range []string{"text", "hex", "base64"} {
		if o.has(e) {
			if both != "" {
				return 0, usageError("--" + both + " and --" + e + " exclude each other")
			}
			both = e
		}
	}
	inEnc, outEnc := both, both
	if o.has("in") {
		inEnc = o.get("in")
	}
	if o.has("out") {
		outEnc = o.get("out")
	}
	if o.has("raw") {
		outEnc = "raw"
	}
	if outEnc == "" {
		outEnc = "auto"
		if stream {
			outEnc = "text"
		}
	}
	validOut := map[string]bool{"auto": !stream, "raw": true, "text": true, "hex": true, "base64": true}
	if !validOut[outEnc] {
		return 0, usageError("--out must be one of auto, raw, text, hex, base64")
	}
	var data *string
	if len(o.pos) == 4 {
		data = &o.pos[3]
	}
	payload, text, err := readPayload(data, inEnc)
	if err != nil {
		return 0, err
	}
	var opts []pipit.CallOption
	if text {
		opts = append(opts, pipit.Text())
	}
	for _, kv := range o.flags["metadata"] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return 0, usageError("--metadata needs KEY=VALUE, got " + strconv.Quote(kv))
		}
		if len(k) > pipit.MaxNameBytes {
			return 0, usageError("a metadata key is over 255 bytes")
		}
		opts = append(opts, pipit.Metadata(k, v))
	}
	if o.has("credit") {
		n, err := strconv.Atoi(o.get("credit"))
		if err != nil || n < 1 || n > pipit.MaxCredit {
			return 0, usageError("--credit must be a number from 1 to 2147483647")
		}
		opts = append(opts, pipit.Credit(n))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if o.has("timeout") {
		ms, err := strconv.ParseUint(o.get("timeout"), 10, 32)
		if err != nil {
			return 0, usageError("--timeout must be a number of milliseconds")
		}
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
	// Ctrl-C cancels the call (CANCEL on the wire).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		<-sig
		cancel()
	}()
	conn, err := pipit.Dial(ctx, path, nil, pipit.Options{})
	if err != nil {
		return 0, err
	}
	defer func() {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		conn.Shutdown(sctx)
	}()
	// A reader of stdout that goes away (| head) ends the command quietly, not by SIGPIPE.
	signal.Ignore(syscall.SIGPIPE)
	werr := &errWriter{w: os.Stdout}
	out := bufio.NewWriterSize(werr, 64<<10)
	defer out.Flush()
	tty := isTerminal(os.Stdout)
	if !stream {
		res, err := conn.Call(ctx, service, method, payload, opts...)
		if err != nil {
			return 0, err
		}
		writeAnswer(out, res, outEnc)
		return 0, nil
	}
	for msg, err := range conn.Stream(ctx, service, method, payload, opts...) {
		if err != nil {
			return 0, err
		}
		writeMessage(out, msg, outEnc)
		if tty {
			out.Flush()
		}
		if werr.err != nil {
			return 0, nil // the reader of stdout went away: leaving the loop cancels the call
		}
	}
	return 0, nil
}

// readPayload reads DATA: literal text (TEXT flag), @FILE, - (stdin), @@ escapes an @.
func readPayload(data *string, enc string) ([]byte, bool, error) {
	if data == nil {
		return []byte{}, false, nil
	}
	d := *data
	var raw []byte
	literal := false
	switch {
	case d == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, false, err
		}
		raw = b
	case strings.HasPrefix(d, "@@"):
		raw, literal = []byte(d[1:]), true
	case strings.HasPrefix(d, "@"):
		b, err := os.ReadFile(d[1:])
		if err != nil {
			return nil, false, err
		}
		raw = b
	default:
		raw, literal = []byte(d), true
	}
	switch enc {
	case "":
		return raw, literal, nil
	case "text":
		return raw, true, nil
	case "raw":
		return raw, false, nil
	case "hex":
		b, err := hex.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
		if err != nil {
			return nil, false, usageError("DATA is not hex")
		}
		return b, false, nil
	case "base64":
		b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			return nil, false, usageError("DATA is not base64")
		}
		return b, false, nil
	}
	return nil, false, usageError("--in must be one of text, hex, base64, raw")
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func printable(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\t' && r != '\r' {
			return false
		}
	}
	return true
}

func writeAnswer(w *bufio.Writer, b []byte, enc string) {
	switch enc {
	case "auto":
		if !isTerminal(os.Stdout) {
			w.Write(b)
			return
		}
		if len(b) == 0 {
			return
		}
		if printable(b) {
			w.Write(b)
			if b[len(b)-1] != '\n' {
				w.WriteByte('\n')
			}
			return
		}
		w.WriteString(hex.Dump(b))
	case "raw":
		w.Write(b)
	case "text":
		w.Write(b)
		w.WriteByte('\n')
	case "hex":
		w.WriteString(hex.EncodeToString(b) + "\n")
	case "base64":
		w.WriteString(base64.StdEncoding.EncodeToString(b) + "\n")
	}
}

func writeMessage(w *bufio.Writer, b []byte, enc string) {
	switch enc {
	case "raw":
		var n [4]byte
		binary.LittleEndian.PutUint32(n[:], uint32(len(b)))
		w.Write(n[:])
		w.Write(b)
	case "text":
		if isTerminal(os.Stdout) && !printable(b) {
			w.WriteString("hex:" + hex.EncodeToString(b) + "\n")
			return
		}
		w.Write(b)
		w.WriteByte('\n')
	case "hex":
		w.WriteString(hex.EncodeToString(b) + "\n")
	case "base64":
		w.WriteString(base64.StdEncoding.EncodeToString(b) + "\n")
	}
}

func statusName(pe *pipit.Error) string {
	switch {
	case pe.Code >= pipit.CodeApplicationMin:
		return "application status"
	case pe.Unknown() || pe.Code > pipit.CodeConnectionClosed:
		return "UNKNOWN"
	}
	return pe.Code.String()
}

// describe is the one line on stderr: status name, number and message.
func describe(err error) string {
	var pe *pipit.Error
	if !errors.As(err, &pe) {
		return err.Error()
	}
	s := fmt.Sprintf("%s (%d)", statusName(pe), uint32(pe.Code))
	if pe.Message != "" {
		s += ": " + pe.Message
	}
	if pe.Cause != nil {
		s += " (" + pe.Cause.Error() + ")"
	}
	return s
}

func exitFor(err error) int {
	var pe *pipit.Error
	if !errors.As(err, &pe) {
		return exitFailure
	}
	switch name := statusName(pe); {
	case name == "application status":
		return exitApplication
	case name == "UNKNOWN":
		return exitUnknown
	case pe.Code == pipit.CodeOK:
		return exitFailure
	}
	return statusBase + int(pe.Code)
}

// errWriter remembers the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
