// Handler dispatch: the goroutines that serve the peer's calls (each also takes its turn
// at reading, reader.go), the StreamWriter of stream handlers, and the handler's context.

package pipit

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// dispatch gives a request to an idle goroutine, or a new one.
func (c *Conn) dispatch(in *InCall) {
	select {
	case c.workers <- in:
	default:
		go c.goroutine(in)
	}
}

// inUser is the connection's state of an incoming call.
type inUser struct {
	ctx  handlerCtx
	wake chan struct{}
}

// Conn is the connection the request came on (to call the caller back).
func (r *Request) Conn() *Conn { return r.conn }

// SetTextReply marks the handler's response messages as UTF-8 text (the TEXT flag).
func (r *Request) SetTextReply(text bool) { r.replyText = text }

// maxIdleWorkers is how many goroutines of a connection may wait for more work once they
// are done. Enough for the calls a busy peer keeps in flight (64 in the workloads), so
// that a burst of requests finds goroutines waiting instead of starting new ones (a go
// statement with arguments allocates); an idle goroutine holds a small stack.
const maxIdleWorkers = 64

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
	var p []byte
	var err error
	stream := false
	func() {
		defer func() {
			if r := recover(); r != nil {
				p, err = nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("handler panicked: %v", r)}
			}
		}()
		switch fn := in.route.Handler.(type) {
		case UnaryHandler:
			p, err = fn(ctx, &in.Req)
		case StreamHandler:
			stream = true
			err = fn(ctx, &in.Req, &StreamWriter{c: c, in: in})
		default:
			err = &Error{Code: CodeInternal, Message: "no handler"}
		}
	}()
	untouched := ctx.end()
	c.mu.Lock()
	if stream {
		c.s.Finish(in, err)
	} else {
		c.s.Respond(in, p, in.Req.replyText, err)
	}
	// A call whose context the handler never looked at is reused once it is over.
	c.s.Served(in, untouched)
	c.after()
	c.unlock(true)
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
// incoming call, so serving a call allocates no context; a call is reused after its
// handler returned only if the handler called none of its methods (Session.Served).
type handlerCtx struct {
	in      *InCall
	parent  context.Context
	mu      sync.Mutex
	done    chan struct{}
	err     error
	why     *Error
	touched atomic.Bool // a method was called: the handler may have kept it
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (h *handlerCtx) Deadline() (time.Time, bool) {
	h.touched.Store(true)
	d := h.in.Req.Deadline
	return d, !d.IsZero()
}

func (h *handlerCtx) Done() <-chan struct{} {
	h.touched.Store(true)
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
	h.touched.Store(true)
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}

func (h *handlerCtx) Value(key any) any {
	h.touched.Store(true)
	return h.parent.Value(key)
}

// end ends the context as its handler returns, and reports whether the handler never
// called a method of it.
func (h *handlerCtx) end() bool {
	h.cancel(nil)
	return !h.touched.Load()
}

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
