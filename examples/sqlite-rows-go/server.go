package main

// The readings and proc services: the same methods, layouts and statuses as the Node
// example's src/server.ts, so its client runs unchanged against this server.
//
// Service readings:
//	all       stream  every row in id order, one 28-byte message per row
//	allPaged  stream  the same as all (the Node server yields it in pages; Go needs no pages)
//	bySensor  stream  rows of one sensor in a time range (a 20-byte query), in ts order
//	add       unary   insert one row (28 bytes); a broken constraint is INVALID_ARGUMENT
//	digest    unary   count, sum(id), total(value) and the fold of the rows all (empty
//	                  payload) or bySensor (a query) would stream
//	cursor    unary   where the stream tagged with metadata "cursor: <tag>" is (payload: the tag)
// Service proc:
//	peakRss   unary   this process's VmHWM in KiB, as decimal text

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pipit "github.com/pipit-rpc/pipit/go"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// keepCursors is how many finished tagged cursors are kept for the cursor method.
const keepCursors = 256

type cursor struct {
	// produced counts the rows Send accepted: the messages handed to pipit, like the
	// rows the Node server's generator yielded.
	produced atomic.Int64
	state    cursorState // under server.mu
}

type server struct {
	reader *sql.DB // mode=ro: streams and digests
	writer *sql.DB // one connection: add
	insert *sql.Stmt
	say    func(format string, args ...any)

	mu       sync.Mutex
	cursors  map[string]*cursor
	order    []string // the cursors' tags, oldest first
	open     int      // cursors open right now
	untagged int
}

// openServer opens the file at path twice: a connection with a cursor open keeps a
// statement in progress, so writes go through a connection of their own, and the file is
// in WAL mode so that readers and the writer do not block each other.
func openServer(path string, say func(string, ...any)) (*server, error) {
	writer, err := sql.Open("sqlite", dsn(path, "_pragma=busy_timeout(5000)"))
	if err != nil {
		return nil, err
	}
	writer.SetMaxOpenConns(1)
	insert, err := writer.Prepare("INSERT INTO readings (id, sensor, ts, value) VALUES (?, ?, ?, ?)")
	if err != nil {
		writer.Close()
		return nil, err
	}
	// database/sql keeps a pool: each stream holds a connection of its own while its rows
	// are open, and rows.Close() finalizes the statement and gives the connection back.
	reader, err := sql.Open("sqlite", dsn(path, "mode=ro&_pragma=busy_timeout(5000)"))
	if err != nil {
		insert.Close()
		writer.Close()
		return nil, err
	}
	if err := reader.Ping(); err != nil {
		reader.Close()
		insert.Close()
		writer.Close()
		return nil, err
	}
	return &server{reader: reader, writer: writer, insert: insert, say: say, cursors: make(map[string]*cursor)}, nil
}

func (s *server) close() {
	s.insert.Close()
	s.reader.Close()
	s.writer.Close()
}

func (s *server) mux() *pipit.Mux {
	m := pipit.NewMux()
	all := func(ctx context.Context, req *pipit.Request, w *pipit.StreamWriter) error {
		return s.streamRows(ctx, req, w, nil)
	}
	m.HandleStream("readings", "all", all)
	// The Node server's allPaged yields pages to save an await per row; a Go handler has no
	// such cost, so it is the same loop: the messages on the wire are the same.
	m.HandleStream("readings", "allPaged", all)
	m.HandleStream("readings", "bySensor", func(ctx context.Context, req *pipit.Request, w *pipit.StreamWriter) error {
		q, err := decodeQuery(req.Payload)
		if err != nil {
			return invalid(err)
		}
		return s.streamRows(ctx, req, w, &q)
	})
	m.HandleUnary("readings", "add", s.add)
	m.HandleUnary("readings", "digest", s.digest)
	m.HandleUnary("readings", "cursor", s.cursor)
	m.HandleUnary("proc", "peakRss", func(ctx context.Context, req *pipit.Request) ([]byte, error) {
		req.SetTextReply(true)
		return strconv.AppendInt(nil, peakRssKiB(), 10), nil
	})
	return m
}

func invalid(err error) error {
	return &pipit.Error{Code: pipit.CodeInvalidArgument, Message: err.Error()}
}

// selectRows is the SELECT a stream runs, its columns in the order of the row layout.
func selectRows(q *query) (string, []any) {
	const columns = "SELECT id, ts, value, sensor FROM readings"
	if q == nil {
		return columns + " ORDER BY id", nil
	}
	return columns + " WHERE sensor = ? AND ts >= ? AND ts < ? ORDER BY ts", []any{int64(q.sensor), q.from, q.to}
}

// streamRows sends the rows of one query, one message per row. Send blocks while the
// caller has no credit, so the cursor reads at most a window of rows (plus the one waiting
// in Send) ahead of the consumer, however large the table. Once the caller cancels, Send
// fails (and the query's context ends); rows.Close() then finalizes the statement.
func (s *server) streamRows(ctx context.Context, req *pipit.Request, w *pipit.StreamWriter, q *query) error {
	tag, tagged := req.Metadata["cursor"]
	c := &cursor{state: stateOpen}
	s.mu.Lock()
	if !tagged {
		s.untagged++
		tag = req.Method + "#" + strconv.Itoa(s.untagged)
	}
	s.setCursor(tag, c)
	s.open++
	s.mu.Unlock()

	start := time.Now()
	state := stateOpen
	var result, sendErr, scanErr error
	closed := "no statement"
	sqlText, args := selectRows(q)
	rows, err := s.reader.QueryContext(ctx, sqlText, args...)
	if err != nil {
		state, result = stateFailed, sqliteStatus(err)
	} else {
		for rows.Next() {
			var r row
			var sensor int64
			if scanErr = rows.Scan(&r.id, &r.ts, &r.value, &sensor); scanErr != nil {
				break
			}
			r.sensor = uint32(sensor)
			// A new slice per row: the connection may hold a message until it is written.
			if sendErr = w.Send(appendRow(make([]byte, 0, rowBytes), r)); sendErr != nil {
				break
			}
			c.produced.Add(1)
		}
		err := rows.Err()
		if err == nil {
			err = scanErr
		}
		switch {
		case sendErr != nil:
			state, result = stateClosedEarly, sendErr
		case err != nil && ctx.Err() != nil:
			state, result = stateClosedEarly, err // the caller left while a row was read
		case err != nil:
			state, result = stateFailed, sqliteStatus(err)
		default:
			state = stateDone
		}
		if err := rows.Close(); err != nil {
			state = stateLeaked
			closed = "rows.Close() failed: " + err.Error()
		} else {
			closed = "rows.Close() finalized the statement"
		}
	}

	s.mu.Lock()
	s.open--
	c.state = state
	if !tagged {
		s.dropCursor(tag)
	}
	for len(s.order) > keepCursors {
		delete(s.cursors, s.order[0])
		s.order = s.order[1:]
	}
	s.mu.Unlock()

	produced := c.produced.Load()
	inUse := s.reader.Stats().InUse
	if state == stateClosedEarly {
		s.say("cursor %q (%s) closed early by the caller after %s rows: Send failed, %s; reader connections in use: %d",
			tag, req.Method, thousands(produced), closed, inUse)
	} else {
		s.say("cursor %q (%s) %s after %s rows in %.2f s, %s; reader connections in use: %d",
			tag, req.Method, state, thousands(produced), time.Since(start).Seconds(), closed, inUse)
	}
	return result
}

// setCursor records c under tag (a tag used again starts anew); s.mu is held.
func (s *server) setCursor(tag string, c *cursor) {
	if _, ok := s.cursors[tag]; ok {
		s.dropCursor(tag)
	}
	s.cursors[tag] = c
	s.order = append(s.order, tag)
}

func (s *server) dropCursor(tag string) {
	delete(s.cursors, tag)
	for i, t := range s.order {
		if t == tag {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
}

func (s *server) add(ctx context.Context, req *pipit.Request) ([]byte, error) {
	r, err := decodeRow(req.Payload)
	if err != nil {
		return nil, invalid(err)
	}
	if _, err := s.insert.ExecContext(ctx, r.id, int64(r.sensor), r.ts, r.value); err != nil {
		return nil, sqliteStatus(err)
	}
	return nil, nil
}

// digest reads every row it describes: a check for the example, not a fast path.
func (s *server) digest(ctx context.Context, req *pipit.Request) ([]byte, error) {
	var q *query
	where := ""
	if len(req.Payload) > 0 {
		qq, err := decodeQuery(req.Payload)
		if err != nil {
			return nil, invalid(err)
		}
		q, where = &qq, " WHERE sensor = ? AND ts >= ? AND ts < ?"
	}
	sqlText, args := selectRows(q)
	var d digest
	err := s.reader.QueryRowContext(ctx, "SELECT count(*), coalesce(sum(id), 0), total(value) FROM readings"+where, args...).
		Scan(&d.count, &d.idSum, &d.valueTotal)
	if err != nil {
		return nil, sqliteStatus(err)
	}
	rows, err := s.reader.QueryContext(ctx, sqlText, args...)
	if err != nil {
		return nil, sqliteStatus(err)
	}
	defer rows.Close()
	d.fold = foldStart
	buf := make([]byte, 0, rowBytes)
	for rows.Next() {
		var r row
		var sensor int64
		if err := rows.Scan(&r.id, &r.ts, &r.value, &sensor); err != nil {
			return nil, err
		}
		r.sensor = uint32(sensor)
		buf = appendRow(buf[:0], r)
		d.fold = foldRow(d.fold, buf)
	}
	if err := rows.Err(); err != nil {
		return nil, sqliteStatus(err)
	}
	return encodeDigest(d), nil
}

func (s *server) cursor(ctx context.Context, req *pipit.Request) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.cursors[string(req.Payload)]
	if c == nil {
		return encodeCursor(0, stateUnknown, s.open), nil
	}
	return encodeCursor(c.produced.Load(), c.state, s.open), nil
}

// sqliteStatus is what a SQLite failure becomes on the wire: SQLite's code name and
// message travel in the status message ("SQLITE_CONSTRAINT_PRIMARYKEY: UNIQUE constraint
// failed: readings.id", as the Node server sends it). A broken constraint is the caller's
// data, INVALID_ARGUMENT; any other SQLite error is APPLICATION_ERROR. Anything else is
// left to pipit (APPLICATION_ERROR with the error's text).
func sqliteStatus(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return err
	}
	rc := se.Code()
	name := resultCodeNames[rc]
	if name == "" {
		name = "SQLITE_" + strconv.Itoa(rc)
	}
	// The driver's text is "<sqlite3_errstr>: <sqlite3_errmsg> (<code>)"; the caller gets
	// sqlite3_errmsg alone, as better-sqlite3 gives it.
	msg := strings.TrimSuffix(se.Error(), " (SQLITE_BUSY)")
	msg = strings.TrimSuffix(msg, " ("+strconv.Itoa(rc)+")")
	if _, after, ok := strings.Cut(msg, ": "); ok {
		msg = after
	}
	code := pipit.CodeApplicationError
	if rc&0xff == sqlite3.SQLITE_CONSTRAINT {
		code = pipit.CodeInvalidArgument
	}
	return &pipit.Error{Code: code, Message: name + ": " + msg}
}

// peakRssKiB is this process's peak resident set (VmHWM) in KiB, or -1 without /proc.
func peakRssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, err := strconv.ParseInt(f[0], 10, 64)
				if err == nil {
					return n
				}
			}
		}
	}
	return -1
}

func mib(kib int64) string {
	if kib < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

// thousands formats 1234567 as "1,234,567".
func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, ch := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(ch)
	}
	return b.String()
}
