package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pipit "github.com/pipit-rpc/pipit/go"
)

const testRows = 3000

// serve generates a small table and serves it on a socket; it returns a client connection
// and the server (for its cursors).
func serve(t *testing.T) (*pipit.Conn, *server) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "readings.db")
	if _, err := generate(path, testRows); err != nil {
		t.Fatal(err)
	}
	if !isReady(path) {
		t.Fatal("the generated file is not ready")
	}
	srv, err := openServer(path, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	l, err := pipit.Listen(filepath.Join(dir, "s.sock"), srv.mux(), pipit.ListenOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve(nil)
	c, err := pipit.Dial(context.Background(), l.Path(), nil, pipit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Close()
		l.Close()
		srv.close()
	})
	return c, srv
}

func call(t *testing.T, c *pipit.Conn, method string, payload []byte, opts ...pipit.CallOption) []byte {
	t.Helper()
	b, err := c.Call(context.Background(), "readings", method, payload, opts...)
	if err != nil {
		t.Fatalf("%s: %v", method, err)
	}
	return b
}

func cursorOf(t *testing.T, c *pipit.Conn, tag string) (produced int64, state cursorState, open uint32) {
	b := call(t, c, "cursor", []byte(tag))
	return int64(binary.LittleEndian.Uint64(b)), cursorState(binary.LittleEndian.Uint32(b[8:])), binary.LittleEndian.Uint32(b[12:])
}

// waitClosed polls until the cursor has left OPEN.
func waitClosed(t *testing.T, c *pipit.Conn, tag string) (int64, cursorState, uint32) {
	deadline := time.Now().Add(2 * time.Second)
	for {
		p, s, o := cursorOf(t, c, tag)
		if s != stateOpen || time.Now().After(deadline) {
			return p, s, o
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestStreamsMatchDigest(t *testing.T) {
	c, _ := serve(t)
	for _, q := range []*query{nil, {from: tsOf(100), to: tsOf(2000), sensor: 7}} {
		var payload []byte
		method := "all"
		if q != nil {
			payload, method = encodeQuery(*q), "bySensor"
		}
		want, err := decodeDigest(call(t, c, "digest", payload))
		if err != nil {
			t.Fatal(err)
		}
		got := digest{fold: foldStart}
		for msg, err := range c.Stream(context.Background(), "readings", method, payload) {
			if err != nil {
				t.Fatal(err)
			}
			r, err := decodeRow(msg)
			if err != nil {
				t.Fatal(err)
			}
			if q != nil && (r.sensor != q.sensor || r.ts < q.from || r.ts >= q.to) {
				t.Fatalf("row %+v is outside the query %+v", r, *q)
			}
			got.count++
			got.idSum += r.id
			got.valueTotal += r.value
			got.fold = foldRow(got.fold, msg)
		}
		if got != want || got.count == 0 {
			t.Errorf("%s streamed %+v, the digest says %+v", method, got, want)
		}
	}
	if d, _ := decodeDigest(call(t, c, "digest", nil)); d.count != testRows {
		t.Errorf("count %d, want %d", d.count, testRows)
	}
}

func TestSlowConsumer(t *testing.T) {
	c, _ := serve(t)
	const credit = 8
	read, maxLead := 0, int64(0)
	for _, err := range c.Stream(context.Background(), "readings", "all", nil, pipit.Credit(credit), pipit.Metadata("cursor", "slow")) {
		if err != nil {
			t.Fatal(err)
		}
		read++
		time.Sleep(3 * time.Millisecond)
		produced, _, _ := cursorOf(t, c, "slow")
		maxLead = max(maxLead, produced-int64(read))
		if read == 3*credit {
			break
		}
	}
	// The Go client grants credit for a message once the loop asks for the next one, so
	// while the body runs the producer can be one short of the window (the Node client
	// grants it as the message is handed over: there the lead reaches the window).
	if maxLead > credit || maxLead < credit-1 {
		t.Errorf("max lead %d, want %d or %d: the window, never past it", maxLead, credit-1, credit)
	}
	produced, state, open := waitClosed(t, c, "slow")
	if state != stateClosedEarly || produced > 4*credit || open != 0 {
		t.Errorf("after the break: %s, %d produced, %d open", state, produced, open)
	}
}

func TestCancelClosesTheCursor(t *testing.T) {
	c, srv := serve(t)
	read := 0
	for _, err := range c.Stream(context.Background(), "readings", "all", nil, pipit.Metadata("cursor", "cancel")) {
		if err != nil {
			t.Fatal(err)
		}
		if read++; read == 100 {
			break
		}
	}
	produced, state, open := waitClosed(t, c, "cancel")
	if state != stateClosedEarly || produced < 100 || produced >= testRows || open != 0 {
		t.Errorf("after the break: %s, %d produced, %d open", state, produced, open)
	}
	if n := srv.reader.Stats().InUse; n != 0 {
		t.Errorf("%d reader connections still in use", n)
	}
}

func TestErrorsAreStatuses(t *testing.T) {
	c, _ := serve(t)
	cases := []struct {
		method  string
		payload []byte
		code    pipit.Code
		message string
	}{
		{"add", appendRow(nil, row{id: 1, ts: t0, sensor: 1}), pipit.CodeInvalidArgument, "SQLITE_CONSTRAINT_PRIMARYKEY: UNIQUE constraint failed: readings.id"},
		{"add", appendRow(nil, row{id: testRows + 1, ts: t0, sensor: 0}), pipit.CodeInvalidArgument, "SQLITE_CONSTRAINT_CHECK: CHECK constraint failed"},
		{"add", make([]byte, 27), pipit.CodeInvalidArgument, "row is 27 bytes, expected 28"},
		{"digest", make([]byte, 3), pipit.CodeInvalidArgument, "query is 3 bytes, expected 20"},
		{"bySensor", make([]byte, 3), pipit.CodeInvalidArgument, "query is 3 bytes, expected 20"},
	}
	for _, tc := range cases {
		var err error
		if tc.method == "bySensor" {
			for _, e := range c.Stream(context.Background(), "readings", tc.method, tc.payload) {
				if e == nil {
					t.Fatal("a row arrived")
				}
				err = e
			}
		} else {
			_, err = c.Call(context.Background(), "readings", tc.method, tc.payload)
		}
		var pe *pipit.Error
		if !errors.As(err, &pe) || pe.Code != tc.code || !strings.HasPrefix(pe.Message, tc.message) {
			t.Errorf("%s: got %v, want %s %q", tc.method, err, tc.code, tc.message)
		}
	}
	if d, _ := decodeDigest(call(t, c, "digest", nil)); d.count != testRows {
		t.Errorf("the table changed: %d rows", d.count)
	}
	// A row that breaks nothing is inserted.
	call(t, c, "add", appendRow(nil, row{id: testRows + 1, ts: tsOf(testRows + 1), value: 0.5, sensor: 3}))
	if d, _ := decodeDigest(call(t, c, "digest", nil)); d.count != testRows+1 {
		t.Errorf("after add: %d rows", d.count)
	}
}

func TestOtherSQLiteErrors(t *testing.T) {
	db, err := sql.Open("sqlite", dsn(filepath.Join(t.TempDir(), "x.db"), ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, err = db.Exec("SELECT * FROM nowhere")
	var pe *pipit.Error
	if !errors.As(sqliteStatus(err), &pe) || pe.Code != pipit.CodeApplicationError || pe.Message != "SQLITE_ERROR: no such table: nowhere" {
		t.Errorf("got %v", sqliteStatus(err))
	}
	plain := errors.New("not from SQLite")
	if sqliteStatus(plain) != plain {
		t.Error("a non-SQLite error was changed")
	}
}

func TestPeakRss(t *testing.T) {
	c, _ := serve(t)
	var text bool
	b, err := c.Call(context.Background(), "proc", "peakRss", nil, pipit.ReplyText(&text))
	if err != nil || !text || len(b) == 0 || strings.Trim(string(b), "0123456789") != "" {
		t.Errorf("peakRss: %q text=%v %v", b, text, err)
	}
}
