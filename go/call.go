// The call API: Call (unary) and Stream (an iterator over a stream call's messages), and
// their options.

package pipit

import (
	"context"
	"errors"
	"iter"
	"sync"
	"time"
)

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
