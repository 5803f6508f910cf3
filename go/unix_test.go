//go:build unix

package pipit

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func listenT(t *testing.T, path string) *Listener {
	t.Helper()
	l, err := Listen(path, testMux(), ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve(nil)
	t.Cleanup(func() { l.Close() })
	return l
}

func TestListenDial(t *testing.T) {
	old := syscall.Umask(0) // the socket must still be 0600 from birth
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "p.sock")
	l := listenT(t, path)
	st, err := os.Lstat(path)
	if err != nil || st.Mode()&fs.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket file %v %v", st.Mode(), err)
	}
	c, err := Dial(context.Background(), path, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := c.Call(context.Background(), "t", "echo", []byte("x"))
	if err != nil || string(got) != "x" {
		t.Fatalf("%q %v", got, err)
	}
	// A live socket is refused.
	if _, err := Listen(path, nil, ListenOptions{}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second listen: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), scale(5*time.Second))
	defer cancel()
	if err := l.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("socket file left behind: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(scale(5 * time.Second)):
		t.Fatal("client not closed by the server's shutdown")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 0 {
		t.Fatalf("files left: %v", entries)
	}
}

func TestListenStaleAndForeign(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, "stale.sock")
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close() // a socket file nobody serves
	l := listenT(t, stale)
	c, err := Dial(context.Background(), stale, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.Close()

	plain := filepath.Join(dir, "file")
	os.WriteFile(plain, []byte("keep"), 0o644)
	if _, err := Listen(plain, nil, ListenOptions{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("listen on a file: %v", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep" {
		t.Fatal("file touched")
	}
	long := filepath.Join(dir, strings.Repeat("x", 120))
	if _, err := Listen(long, nil, ListenOptions{}); !errors.Is(err, ErrInvalidArgument) || !strings.Contains(err.Error(), "107") {
		t.Fatalf("long path: %v", err)
	}
	if _, err := Listen(filepath.Join(dir, "missing", "s"), nil, ListenOptions{}); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing dir: %v", err)
	}
	if _, err := Dial(context.Background(), filepath.Join(dir, "none"), nil, Options{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("dial nothing: %v", err)
	}
}

// TestCloseLeavesForeignFile: the file is removed on Close only if it is still ours.
func TestCloseLeavesForeignFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s")
	l, err := Listen(path, nil, ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	os.WriteFile(path, []byte("other"), 0o644)
	l.Close()
	if b, _ := os.ReadFile(path); string(b) != "other" {
		t.Fatal("a file that is no longer ours was removed")
	}
}
