package pipit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is one pipit connection over a byte stream. Both ends serve and call on it.
//
// One reader goroutine reads into the decoder's buffer and feeds the session; it never
// waits for a consumer. One writer goroutine takes the session's output (callers encode
// frames under a short lock and kick it), swaps buffers and writes with a vectored write
// outside the lock. Handlers run on goroutines of their own.
type Conn struct {
	rwc  io.ReadWriteCloser
	mux  *Mux
	base context.Context

	mu       sync.Mutex
	s        *Session
	events   []Event
	timer    *time.Timer
	timerAt  time.Time
	pings    map[uint32]chan time.Duration
	closeErr *Error
	sessDone chan struct{} // closed when the session closes
	writing  bool          // a goroutine is writing the session's output
	werr     error         // the transport failed to write

	dec      *Decoder
	kick     chan struct{}
	relieved chan struct{}
	wbufs    [][]byte
	nb       net.Buffers
	workers  chan *InCall // requests for idle goroutines; nil: the turn to read
	reading  bool         // the reader is handling events (under mu)
	inline   *InCall      // a request the reader will serve itself
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

func (c *Conn) kickWriter() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// after handles the session's events and arms the writer and the timer. Under c.mu.
func (c *Conn) after() {
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

// unlock releases c.mu. If output is waiting and no write is under way, the calling
// goroutine writes it itself when inline (a caller that waits anyway: one goroutine switch
// less per call), else the writer goroutine is kicked.
//
// Writing inline pays only while the connection is lightly loaded (one call in flight):
// under load the writer goroutine coalesces many callers' frames into one write while they
// go on, which inline writers, each blocked in its own write, cannot.
func (c *Conn) unlock(inline bool) {
	if !c.writing && c.s.HasOutput() && c.werr == nil {
		if inline && c.s.OutgoingCalls()+c.s.IncomingCalls() <= 1 {
			c.writing = true
			c.writeOut()
			return
		}
		c.kickWriter()
	}
	c.mu.Unlock()
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
	case EventCallMessage:
		cs := e.Out.Tag.(*clientStream)
		cs.msgs = append(cs.msgs, e.Payload)
		cs.signal()
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

// ---- reader and writer ------------------------------------------------------

// readTurn reads and feeds the session until reading ends (it returns nil) or a request
// arrives that this goroutine should serve itself (it returns it, having passed reading on
// to another goroutine). Serving the only call in flight on the goroutine that read it
// saves a goroutine switch on the critical path (leader/followers).
func (c *Conn) readTurn() (*InCall, uint64) {
	for {
		buf := c.dec.Buffer()
		n, err := c.rwc.Read(buf)
		if n > 0 {
			frames, cerr := c.dec.Commit(n)
			now := time.Now()
			c.mu.Lock()
			c.reading = true
			c.s.Receive(frames, cerr, now)
			c.after()
			c.reading = false
			in := c.inline
			c.inline = nil
			overloaded := c.s.Overloaded()
			c.unlock(false)
			for overloaded {
				select {
				case <-c.relieved:
				case <-c.sessDone:
				}
				c.mu.Lock()
				overloaded = c.s.Overloaded() && !c.s.Closed()
				c.mu.Unlock()
			}
			if cerr != nil {
				if in != nil {
					c.dispatch(in)
				}
				// The decoder is dead; drain until the transport is closed.
				c.drain()
				close(c.readerDone)
				return nil, 0
			}
			if in != nil {
				// Serve it here; if it takes long (or calls back over this connection),
				// the timer hands reading to another goroutine meanwhile.
				c.turn++
				turn := c.turn
				c.handoff.Store(turn<<2 | 1)
				c.handoffTimer.Reset(handoffAfter)
				return in, turn
			}
		}
		if err != nil {
			cause := err
			if errors.Is(err, io.EOF) {
				cause = c.dec.End()
			}
			c.mu.Lock()
			c.s.End(cause)
			c.after()
			c.unlock(false)
			close(c.readerDone)
			return nil, 0
		}
	}
}

// handoffAfter is how long a reader serves a request itself before it hands reading to
// another goroutine.
const handoffAfter = 50 * time.Microsecond

// onHandoff: the reader is still serving a request; let another goroutine read.
func (c *Conn) onHandoff() {
	if v := c.handoff.Load(); v&3 == 1 && c.handoff.CompareAndSwap(v, v&^3|2) {
		c.passReading()
	}
}

// passReading hands reading over to an idle goroutine, or a new one.
func (c *Conn) passReading() {
	select {
	case c.workers <- nil:
	default:
		go c.goroutine(nil)
	}
}

// dispatch gives a request to an idle goroutine, or a new one.
func (c *Conn) dispatch(in *InCall) {
	select {
	case c.workers <- in:
	default:
		go c.goroutine(in)
	}
}

func (c *Conn) drain() {
	var b [4096]byte
	for {
		if _, err := c.rwc.Read(b[:]); err != nil {
			return
		}
	}
}

func (c *Conn) writer() {
	defer close(c.writerDone)
	for range c.kick {
		c.mu.Lock()
		if c.writing {
			c.mu.Unlock()
			continue
		}
		if c.s.Closed() && (!c.s.HasOutput() || c.werr != nil) {
			// After a clean finish and after an ERROR alike, half-close and read until the
			// other side's end (§9.4, §10.1); a failed transport is closed at once.
			halfClose := c.werr == nil
			c.mu.Unlock()
			c.finish(halfClose)
			return
		}
		if !c.s.HasOutput() {
			c.mu.Unlock()
			continue
		}
		if c.s.Pending() < 16<<10 {
			// Let goroutines about to add frames (callers, producers) join this write.
			c.mu.Unlock()
			runtime.Gosched()
			c.mu.Lock()
			if c.writing {
				c.mu.Unlock()
				continue
			}
		}
		c.writing = true
		c.writeOut()
	}
}

// writeOut writes the session's output until there is none. Called with c.mu held and
// c.writing set by the caller; it releases c.mu around each write and returns unlocked.
func (c *Conn) writeOut() {
	for c.werr == nil {
		bufs, arena := c.s.TakeOutput(c.wbufs[:0])
		n := 0
		for _, b := range bufs {
			n += len(b)
		}
		if n == 0 {
			c.s.Recycle(arena)
			break
		}
		c.s.SetBacklog(n)
		c.after()
		c.mu.Unlock()
		c.nb = bufs
		_, werr := c.nb.WriteTo(c.rwc)
		c.nb = nil
		clear(bufs)
		c.wbufs = bufs[:0]
		c.mu.Lock()
		c.s.Recycle(arena)
		c.s.SetBacklog(0)
		if werr != nil {
			c.werr = werr
			c.s.End(werr)
		}
		c.after()
		select {
		case c.relieved <- struct{}{}:
		default:
		}
	}
	c.writing = false
	if c.s.Closed() {
		c.kickWriter() // the writer goroutine ends the transport
	}
	c.mu.Unlock()
}

// finish ends the transport once the session is closed and its output written.
func (c *Conn) finish(halfClose bool) {
	if halfClose {
		// Half-close and wait for the other side's end, so that neither side resets the
		// other before everything is read (§9.4).
		if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			t := time.AfterFunc(closeGrace, func() { c.closeTransport() })
			<-c.readerDone
			t.Stop()
		}
	}
	c.closeTransport()
}

func (c *Conn) closeTransport() {
	c.closeOnce.Do(func() { c.rwc.Close() })
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

// ---- calls --------------------------------------------------------------

// CallOption sets an option of one call.
type CallOption func(*callConfig)

type callConfig struct {
	o         CallOptions
	replyText *bool
}

// ReplyText makes Call store in *p whether the response carried the TEXT flag.
func ReplyText(p *bool) CallOption { return func(c *callConfig) { c.replyText = p } }

// Text marks the request payload as UTF-8 text (the TEXT flag).
func Text() CallOption { return func(c *callConfig) { c.o.Text = true } }

// Metadata adds key/value pairs (keys of at most 255 bytes) to the request.
func Metadata(kv ...string) CallOption {
	return func(c *callConfig) {
		for i := 0; i+1 < len(kv); i += 2 {
			c.o.Metadata = append(c.o.Metadata, MetadataEntry{kv[i], kv[i+1]})
		}
	}
}

// Credit sets the window of a stream call: messages the producer may send ahead of the
// consumer. Without it the window starts at the connection's InitialCredit and grows while
// the consumer keeps finding nothing queued.
func Credit(n int) CallOption { return func(c *callConfig) { c.o.Credit = n } }

// clientCalls reuses the state of unary calls that the session no longer refers to.
var clientCalls = sync.Pool{New: func() any { return &clientCall{done: make(chan struct{}, 1)} }}

type clientCall struct {
	out    OutCall
	cfg    callConfig
	done   chan struct{}
	result []byte
	err    *Error
	text   bool
}

func ctxError(ctx context.Context) *Error {
	err := ctx.Err()
	if errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeDeadlineExceeded, Message: "the context deadline passed", Cause: err}
	}
	return &Error{Code: CodeCancelled, Message: "the context was cancelled", Cause: context.Cause(ctx)}
}

// Call makes a unary call and returns the response message. ctx's deadline travels as the
// call's DEADLINE; cancelling ctx sends CANCEL. Errors are *Error: compare with errors.Is
// (pipit.ErrUnavailable...). payload is not copied when large: do not modify it until
// Call returns.
func (c *Conn) Call(ctx context.Context, service, method string, payload []byte, opts ...CallOption) ([]byte, error) {
	if ctx.Err() != nil {
		return nil, ctxError(ctx)
	}
	cc := clientCalls.Get().(*clientCall)
	cc.out.Tag = cc
	cfg := &cc.cfg
	for _, o := range opts {
		o(cfg)
	}
	cfg.o.Stream = false
	if dl, ok := ctx.Deadline(); ok {
		cfg.o.Deadline = dl
	}
	now := time.Now()
	c.mu.Lock()
	c.s.Call(&cc.out, service, method, payload, cfg.o, now)
	c.after()
	c.unlock(true)
	c.onHandoff() // a handler served by the reader calls back: its answer needs a reader
	if done := ctx.Done(); done != nil {
		select {
		case <-cc.done:
		case <-done:
			c.mu.Lock()
			c.s.Cancel(&cc.out, ctxError(ctx))
			c.after()
			c.unlock(false)
			<-cc.done
		}
	} else {
		<-cc.done
	}
	result, cerr, text, replyText := cc.result, cc.err, cc.text, cfg.replyText
	c.mu.Lock()
	if cc.out.Reusable() {
		done := cc.done
		*cc = clientCall{done: done}
		clientCalls.Put(cc)
	}
	c.mu.Unlock()
	if cerr != nil {
		if cerr.Cause == nil && cerr.Code == CodeDeadlineExceeded && ctx.Err() != nil {
			cerr.Cause = ctx.Err() // the session's timer and ctx's ran out together
		}
		return nil, cerr
	}
	if replyText != nil {
		*replyText = text
	}
	return result, nil
}

type clientStream struct {
	out    OutCall
	notify chan struct{}
	msgs   [][]byte
	done   bool
	err    *Error
}

func (cs *clientStream) signal() {
	select {
	case cs.notify <- struct{}{}:
	default:
	}
}

// Stream makes a stream call and returns a single-use iterator over its messages. The
// call starts when the iteration does. A non-OK end is yielded as the last error. Leaving
// the loop early (break) cancels the call (CANCEL); consuming messages returns credit to
// the producer. Ranging over it a second time yields an error.
func (c *Conn) Stream(ctx context.Context, service, method string, payload []byte, opts ...CallOption) iter.Seq2[[]byte, error] {
	var cfg callConfig
	for _, o := range opts {
		o(&cfg)
	}
	cfg.o.Stream = true
	used := false
	return func(yield func([]byte, error) bool) {
		if used {
			yield(nil, &Error{Code: CodeInvalidArgument, Message: "a stream can be iterated once"})
			return
		}
		used = true
		if dl, ok := ctx.Deadline(); ok {
			cfg.o.Deadline = dl
		}
		if ctx.Err() != nil {
			yield(nil, ctxError(ctx))
			return
		}
		cs := &clientStream{notify: make(chan struct{}, 1)}
		cs.out.Tag = cs
		c.mu.Lock()
		c.s.Call(&cs.out, service, method, payload, cfg.o, time.Now())
		c.after()
		c.unlock(true)
		c.onHandoff()
		finished := false
		defer func() {
			if !finished {
				c.mu.Lock()
				c.s.Cancel(&cs.out, &Error{Code: CodeCancelled, Message: "the consumer left the stream"})
				c.after()
				c.unlock(false)
			}
		}()
		var batch [][]byte
		local := 0 // messages consumed and not yet reported to the session
		for {
			c.mu.Lock()
			if local > 0 {
				c.s.Consumed(&cs.out, local)
				local = 0
			}
			if len(cs.msgs) == 0 && !cs.done {
				c.s.Starved(&cs.out)
				c.after()
				c.unlock(false)
				select {
				case <-cs.notify:
				case <-ctx.Done():
					c.mu.Lock()
					c.s.Cancel(&cs.out, ctxError(ctx))
					c.after()
					clear(cs.msgs)
					cs.msgs = cs.msgs[:0]
					c.unlock(false)
				}
				continue
			}
			if len(cs.msgs) == 0 {
				err := cs.err
				c.after()
				c.unlock(false)
				finished = true
				if err != nil {
					yield(nil, err)
				}
				return
			}
			batch, cs.msgs = cs.msgs, batch[:0]
			half := int(max(cs.out.window/2, 1))
			c.after()
			c.unlock(false)
			for i, m := range batch {
				batch[i] = nil
				local++
				if !yield(m, nil) {
					return
				}
				if local >= half {
					c.mu.Lock()
					c.s.Consumed(&cs.out, local)
					local = 0
					c.after()
					c.unlock(false)
				}
			}
		}
	}
}

// ---- serving ------------------------------------------------------------

// inUser is the connection's state of an incoming call.
type inUser struct {
	ctx  handlerCtx
	wake chan struct{}
}

// Conn is the connection the request came on (to call the caller back).
func (r *Request) Conn() *Conn { return r.conn }

// SetTextReply marks the handler's response messages as UTF-8 text (the TEXT flag).
func (r *Request) SetTextReply(text bool) { r.replyText = text }

// maxIdleWorkers is how many goroutines may wait for more work once they are done.
const maxIdleWorkers = 16

// goroutine is the life of a connection goroutine: it reads (in == nil) or serves in,
// then waits, while at most maxIdleWorkers others wait, for a request to serve or for
// its turn to read (nil), so that serving a call starts no goroutine.
func (c *Conn) goroutine(in *InCall) {
	for {
		if in == nil {
			var turn uint64
			if in, turn = c.readTurn(); in == nil {
				return
			}
			c.serve(in)
			if c.handoff.CompareAndSwap(turn<<2|1, turn<<2) {
				c.handoffTimer.Stop()
				in = nil // reading is still ours
				continue
			}
		} else {
			c.serve(in)
		}
		if c.idle.Add(1) > maxIdleWorkers {
			c.idle.Add(-1)
			return
		}
		select {
		case in = <-c.workers:
			c.idle.Add(-1)
			continue
		case <-c.sessDone:
			c.idle.Add(-1)
		}
		return
	}
}

func (c *Conn) serve(in *InCall) {
	ctx := &in.user.ctx
	var h any = in.route.Handler
	defer func() {
		if p := recover(); p != nil {
			err := &Error{Code: CodeInternal, Message: fmt.Sprintf("handler panicked: %v", p)}
			c.mu.Lock()
			if _, ok := h.(StreamHandler); ok {
				c.s.Finish(in, err)
			} else {
				c.s.Respond(in, nil, false, err)
			}
			c.after()
			c.unlock(true)
		}
		ctx.cancel(nil)
	}()
	switch fn := h.(type) {
	case UnaryHandler:
		p, err := fn(ctx, &in.Req)
		c.mu.Lock()
		c.s.Respond(in, p, in.Req.replyText, err)
		c.after()
		c.unlock(true)
	case StreamHandler:
		w := &StreamWriter{c: c, in: in}
		err := fn(ctx, &in.Req, w)
		c.mu.Lock()
		c.s.Finish(in, err)
		c.after()
		c.unlock(true)
	default:
		c.mu.Lock()
		c.s.Respond(in, nil, false, &Error{Code: CodeInternal, Message: "no handler"})
		c.after()
		c.unlock(false)
	}
}

// StreamWriter sends the messages of a stream call.
type StreamWriter struct {
	c  *Conn
	in *InCall
}

// Send sends one message, blocking while the caller's credit is 0 (or output is
// congested). It fails once the call is over (the caller cancelled, the deadline passed,
// the connection closed). msg is not copied when large: do not modify it afterwards.
func (w *StreamWriter) Send(msg []byte) error { return w.send(msg, w.in.Req.replyText) }

// SendText sends one message with the TEXT flag.
func (w *StreamWriter) SendText(msg []byte) error { return w.send(msg, true) }

func (w *StreamWriter) send(msg []byte, text bool) error {
	c, in := w.c, w.in
	for {
		c.mu.Lock()
		if in.user.wake == nil {
			in.user.wake = make(chan struct{}, 1)
		}
		r := c.s.Send(in, msg, text)
		c.after()
		c.unlock(false)
		switch r {
		case SendOK:
			return nil
		case SendEnded:
			return in.user.ctx.reason()
		}
		select {
		case <-in.user.wake:
		case <-in.user.ctx.Done():
			return in.user.ctx.reason()
		}
	}
}

// handlerCtx is the context of a handler: it ends when the call is cancelled, its
// deadline passes, the connection closes, or the handler returns. It is part of the
// incoming call, so serving a call allocates no context.
type handlerCtx struct {
	in     *InCall
	parent context.Context
	mu     sync.Mutex
	done   chan struct{}
	err    error
	why    *Error
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (h *handlerCtx) Deadline() (time.Time, bool) {
	d := h.in.Req.Deadline
	return d, !d.IsZero()
}

func (h *handlerCtx) Done() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done == nil {
		if h.err != nil {
			return closedChan
		}
		h.done = make(chan struct{})
	}
	return h.done
}

func (h *handlerCtx) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *handlerCtx) Value(key any) any { return h.parent.Value(key) }

func (h *handlerCtx) cancel(why *Error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return
	}
	h.why = why
	if why != nil && why.Code == CodeDeadlineExceeded {
		h.err = context.DeadlineExceeded
	} else {
		h.err = context.Canceled
	}
	if h.done != nil {
		close(h.done)
	}
}

// reason is the error a producer gets once its call is over.
func (h *handlerCtx) reason() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.why != nil {
		return h.why
	}
	return &Error{Code: CodeCancelled, Message: "the call is over"}
}

func (h *handlerCtx) String() string { return "pipit.handlerCtx" }
