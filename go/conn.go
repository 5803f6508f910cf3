// Conn: the session (session.go) put to work on a byte stream, with goroutines, a lock
// and a clock.
//
// Every goroutine that acts on the session takes c.mu, calls the session, then c.after,
// which hands the session's events on (event) and arms the deadline timer, then c.unlock,
// which sees that the output gets written. Its rooms:
//
//	reader.go  one goroutine at a time reads and feeds the session; it may serve the only
//	           call in flight itself, and hands reading on if that takes long
//	writer.go  one goroutine writes the output, coalesced, with one vectored write
//	call.go    Call and Stream, the calls we make
//	serve.go   the goroutines that run handlers, StreamWriter and the handler's context
//
// Nothing here decides anything about the protocol: that is the session's.

package pipit

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one pipit connection over a byte stream. Both ends serve and call on it.
type Conn struct {
	rwc  io.ReadWriteCloser
	mux  *Mux
	base context.Context

	mu       sync.Mutex
	s        *Session
	events   []Event
	fed      []*clientStream // stream calls given messages since the last after
	timer    *time.Timer
	timerAt  time.Time
	pings    map[uint32]chan time.Duration
	closeErr *Error
	sessDone chan struct{} // closed when the session closes

	// The writer (writer.go).
	writing  bool  // a goroutine is writing the session's output
	werr     error // the transport failed to write
	kick     chan struct{}
	relieved chan struct{} // output was written: an overloaded reader may read on
	wbufs    [][]byte
	nb       net.Buffers

	// The reader (reader.go) and the goroutines that serve (serve.go).
	dec     *Decoder
	workers chan *InCall // requests for idle goroutines; nil: the turn to read
	reading bool         // the reader is handling events (under mu)
	inline  *InCall      // a request the reader will serve itself
	// handoff is turn<<2 | state for the reader's current turn of serving a request itself:
	// state 1 while it serves, 2 once reading was passed on, 0 when it went back to reading.
	// The turn number keeps a goroutine that served long from mistaking a later turn for
	// its own. turn is touched only by the goroutine that holds reading.
	handoff      atomic.Uint64
	turn         uint64
	handoffTimer *time.Timer
	idle         atomic.Int32

	readerDone chan struct{}
	writerDone chan struct{}
	done       chan struct{}
	closeOnce  sync.Once
}

// closeGrace is how long a finished connection waits for the other side's end (§9.4).
const closeGrace = 2 * time.Second

// NewConn starts a pipit connection over rwc, serving mux (nil: no services), with the
// given options (zero fields take the defaults).
func NewConn(rwc io.ReadWriteCloser, mux *Mux, opt Options) *Conn {
	var router Router
	if mux != nil {
		router = mux
	}
	c := &Conn{
		rwc:        rwc,
		mux:        mux,
		base:       context.Background(),
		s:          NewSession(opt, router),
		sessDone:   make(chan struct{}),
		kick:       make(chan struct{}, 1),
		workers:    make(chan *InCall),
		relieved:   make(chan struct{}, 1),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
		done:       make(chan struct{}),
	}
	c.s.onMessage = c.onMessage
	c.dec = NewDecoder(c.s.opt.MaxFrameBytes)
	c.handoffTimer = time.AfterFunc(time.Hour, c.onHandoff)
	c.handoffTimer.Stop()
	go c.goroutine(nil)
	go c.writer()
	go func() {
		<-c.readerDone
		<-c.writerDone
		close(c.done)
	}()
	c.kickWriter()
	return c
}

// Done is closed once the connection is over and its transport closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection ended: nil while open or after a clean close (§9.4).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeErr == nil {
		return nil
	}
	return c.closeErr
}

// onMessage takes a message of one of our stream calls (Session.onMessage). Its consumer
// is woken once per batch, by after.
func (c *Conn) onMessage(out *OutCall, msg []byte) {
	cs := out.Tag.(*clientStream)
	if len(cs.msgs) == 0 {
		c.fed = append(c.fed, cs)
	}
	cs.msgs = append(cs.msgs, msg)
}

// after handles the session's events and arms the writer and the timer. Under c.mu.
func (c *Conn) after() {
	if len(c.fed) > 0 {
		for i, cs := range c.fed {
			cs.signal()
			c.fed[i] = nil
		}
		c.fed = c.fed[:0]
	}
	for {
		c.events = c.s.PollEvents(c.events)
		if len(c.events) == 0 {
			break
		}
		for i := range c.events {
			c.event(&c.events[i])
		}
		clear(c.events)
	}
	c.armTimer()
}

func (c *Conn) event(e *Event) {
	switch e.Kind {
	case EventCallDone:
		switch cc := e.Out.Tag.(type) {
		case *clientCall:
			cc.result, cc.err, cc.text = e.Payload, e.Err, e.Text
			cc.done <- struct{}{} // buffered: the one outcome never blocks
		case *clientStream:
			cc.done, cc.err = true, e.Err
			cc.signal()
		}
	case EventCallMessage: // not emitted: see onMessage
		c.onMessage(e.Out, e.Payload)
	case EventRequest:
		e.In.Req.conn = c
		e.In.user.ctx.in = e.In
		e.In.user.ctx.parent = c.base
		if c.reading && c.inline == nil && c.s.IncomingCalls() == 1 && c.s.OutgoingCalls() == 0 {
			c.inline = e.In // the reader serves it (readTurn)
			return
		}
		c.dispatch(e.In)
	case EventAbort:
		e.In.user.ctx.cancel(e.Err)
	case EventWake:
		if w := e.In.user.wake; w != nil {
			select {
			case w <- struct{}{}:
			default:
			}
		}
	case EventPong:
		if ch, ok := c.pings[e.ID]; ok {
			delete(c.pings, e.ID)
			ch <- e.RTT
		}
	case EventClosed:
		c.closeErr = e.Err
		for id, ch := range c.pings {
			delete(c.pings, id)
			close(ch)
		}
		if c.timer != nil {
			c.timer.Stop()
		}
		close(c.sessDone)
		c.kickWriter()
	}
}

func (c *Conn) armTimer() {
	at, ok := c.s.NextDeadline()
	if !ok || c.s.Closed() {
		if !c.timerAt.IsZero() {
			c.timer.Stop()
			c.timerAt = time.Time{}
		}
		return
	}
	if at.Equal(c.timerAt) {
		return
	}
	c.timerAt = at
	d := time.Until(at)
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.onTimer)
		return
	}
	c.timer.Reset(d)
}

func (c *Conn) onTimer() {
	c.mu.Lock()
	c.timerAt = time.Time{}
	c.s.Tick(time.Now())
	c.after()
	c.unlock(false)
}

// Close ends the connection at once: calls in flight fail with CONNECTION_CLOSED and
// handlers are told to stop. It waits until the transport is closed.
func (c *Conn) Close() error {
	c.mu.Lock()
	c.s.Abort(nil)
	c.after()
	c.unlock(false)
	c.closeTransport()
	<-c.done
	return nil
}

// GoAway starts a graceful close (GOAWAY) and returns at once; Done is closed when it is over.
func (c *Conn) GoAway() {
	c.mu.Lock()
	c.s.GoAway(CodeOK, "", time.Now())
	c.after()
	c.unlock(false)
}

// Shutdown closes gracefully: GOAWAY, calls in flight in both directions finish, new calls
// fail with UNAVAILABLE; it returns once the connection is over. If ctx ends first, the
// connection is closed at once and ctx.Err() returned.
func (c *Conn) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.s.GoAway(CodeOK, "", time.Now())
	c.after()
	c.unlock(false)
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		c.Close()
		return ctx.Err()
	}
}

// Ping measures a round trip (PING/PONG).
func (c *Conn) Ping(ctx context.Context) (time.Duration, error) {
	ch := make(chan time.Duration, 1)
	c.mu.Lock()
	if c.s.Closed() {
		err := c.s.closedError()
		c.mu.Unlock()
		return 0, err
	}
	id := c.s.Ping(time.Now())
	if c.pings == nil {
		c.pings = make(map[uint32]chan time.Duration)
	}
	c.pings[id] = ch
	c.after()
	c.unlock(true)
	select {
	case rtt, ok := <-ch:
		if !ok {
			return 0, c.closedErr()
		}
		return rtt, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pings, id)
		c.mu.Unlock()
		return 0, ctx.Err()
	}
}

func (c *Conn) closedErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.s.closedError()
}
