//go:build unix

package pipit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// MaxSocketPathBytes is the longest Unix socket path (sun_path is 108 bytes with its NUL).
const MaxSocketPathBytes = 107

// Listener serves pipit on a Unix socket.
//
// Socket file rules (the same as the TypeScript implementation): the socket is created
// owner-only from birth (bound under a temporary name in the same directory with umask
// 077, given its mode, then renamed onto the path); a stale socket left by a dead process
// is replaced; a live one (something accepts a connection) is refused; a path holding
// anything that is not a socket is never deleted. Close removes the file only if it is
// still ours.
type Listener struct {
	l    *net.UnixListener
	path string
	dev  uint64
	ino  uint64
	mux  *Mux
	opt  Options

	mu      sync.Mutex
	conns   map[*Conn]struct{}
	closing bool
	removed bool
}

// ListenOptions are the options of Listen.
type ListenOptions struct {
	Options
	// Mode is the socket file's permission bits; 0 means 0600 (only the owner can connect).
	Mode fs.FileMode
}

// ErrListenerClosed is returned by Accept and Serve after Close or Shutdown.
var ErrListenerClosed = errors.New("pipit: listener closed")

func checkSocketPath(path string) error {
	if path == "" {
		return &Error{Code: CodeInvalidArgument, Message: "socket path is empty"}
	}
	if len(path) > MaxSocketPathBytes {
		return &Error{Code: CodeInvalidArgument, Message: "socket path is " + strconv.Itoa(len(path)) +
			" bytes; Unix sockets allow at most " + strconv.Itoa(MaxSocketPathBytes) + ": " + path}
	}
	return nil
}

// Listen creates the socket file at path and serves mux on every connection accepted.
func Listen(path string, mux *Mux, opt ListenOptions) (*Listener, error) {
	if err := checkSocketPath(path); err != nil {
		return nil, err
	}
	mode := opt.Mode
	if mode == 0 {
		mode = 0o600
	}
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, &Error{Code: CodeUnavailable, Message: "cannot listen on " + path + ": directory " + dir + " does not exist", Cause: err}
		}
		return nil, &Error{Code: CodeUnavailable, Message: "cannot listen on " + path, Cause: err}
	} else if !st.IsDir() {
		return nil, &Error{Code: CodeUnavailable, Message: "cannot listen on " + path + ": " + dir + " is not a directory"}
	}
	// A short random temporary name that fits the same limit as the path.
	room := MaxSocketPathBytes - len(dir) - 2
	n := min(16, max(8, room))
	var rb [8]byte
	rand.Read(rb[:])
	tmp := filepath.Join(dir, "."+hex.EncodeToString(rb[:])[:n])
	if len(tmp) > MaxSocketPathBytes {
		return nil, &Error{Code: CodeInvalidArgument, Message: "socket path " + path +
			": its directory leaves no room for the temporary socket name (paths are limited to " +
			strconv.Itoa(MaxSocketPathBytes) + " bytes); use a shorter directory"}
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	old := syscall.Umask(0o077)
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, &Error{Code: CodeUnavailable, Message: "cannot listen on " + path, Cause: err}
	}
	ul.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		ul.Close()
		os.Remove(tmp)
		return nil, &Error{Code: CodeUnavailable, Message: "cannot listen on " + path, Cause: err}
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	l := &Listener{l: ul, path: path, mux: mux, opt: opt.Options, conns: make(map[*Conn]struct{})}
	if st, err := os.Lstat(path); err == nil {
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			l.dev, l.ino = uint64(sys.Dev), uint64(sys.Ino)
		}
	}
	return l, nil
}

// clearStale removes a stale socket at path; it refuses a live one or a non-socket.
func clearStale(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return &Error{Code: CodeUnavailable, Message: "cannot listen on " + path, Cause: err}
	}
	if st.Mode()&fs.ModeSocket == 0 {
		return &Error{Code: CodeUnavailable, Message: path + " exists and is not a socket; refusing to replace it"}
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return &Error{Code: CodeUnavailable, Message: path + " is in use by a running server"}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &Error{Code: CodeUnavailable, Message: "cannot replace the stale socket " + path, Cause: err}
	}
	return nil
}

// Path is the socket file's path.
func (l *Listener) Path() string { return l.path }

// Accept waits for the next connection.
func (l *Listener) Accept() (*Conn, error) {
	nc, err := l.l.AcceptUnix()
	if err != nil {
		l.mu.Lock()
		closing := l.closing
		l.mu.Unlock()
		if closing || errors.Is(err, net.ErrClosed) {
			return nil, ErrListenerClosed
		}
		return nil, err
	}
	c := NewConn(nc, l.mux, l.opt)
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		c.Close()
		return nil, ErrListenerClosed
	}
	l.conns[c] = struct{}{}
	l.mu.Unlock()
	go func() {
		<-c.Done()
		l.mu.Lock()
		delete(l.conns, c)
		l.mu.Unlock()
	}()
	return c, nil
}

// Serve accepts connections until the listener is closed, then returns ErrListenerClosed.
// onConn, if not nil, is called with each new connection.
func (l *Listener) Serve(onConn func(*Conn)) error {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, ErrListenerClosed) {
				return err
			}
			// EMFILE and the like: back off and keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if onConn != nil {
			onConn(c)
		}
	}
}

// stop closes the listener and removes the socket file if it is still ours.
func (l *Listener) stop() []*Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closing {
		l.closing = true
		l.l.Close()
	}
	if !l.removed {
		l.removed = true
		if st, err := os.Lstat(l.path); err == nil && st.Mode()&fs.ModeSocket != 0 {
			if sys, ok := st.Sys().(*syscall.Stat_t); ok && uint64(sys.Dev) == l.dev && uint64(sys.Ino) == l.ino {
				os.Remove(l.path)
			}
		}
	}
	conns := make([]*Conn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	return conns
}

// Close stops accepting, removes the socket file and closes every connection at once.
func (l *Listener) Close() error {
	for _, c := range l.stop() {
		c.Close()
	}
	return nil
}

// Shutdown stops accepting, removes the socket file, and closes every connection
// gracefully (GOAWAY; calls in flight finish). If ctx ends first, the connections still
// open are closed at once and ctx.Err() returned.
func (l *Listener) Shutdown(ctx context.Context) error {
	conns := l.stop()
	errc := make(chan error, len(conns))
	for _, c := range conns {
		go func() { errc <- c.Shutdown(ctx) }()
	}
	var first error
	for range conns {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Dial connects to the pipit server on the Unix socket at path, serving mux (nil: nothing)
// on the connection.
func Dial(ctx context.Context, path string, mux *Mux, opt Options) (*Conn, error) {
	if err := checkSocketPath(path); err != nil {
		return nil, err
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, &Error{Code: CodeUnavailable, Message: "cannot connect to " + path, Cause: err}
	}
	return NewConn(nc, mux, opt), nil
}
