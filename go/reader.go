// The reader: one goroutine at a time reads the transport into the decoder's buffer and
// feeds the session (Conn.readTurn). It never waits for a consumer: events go to channels
// that never block and requests to goroutines of their own (serve.go), except the only
// call in flight, which the reader may serve itself (leader/followers): it then hands
// reading to another goroutine when serving takes longer than handoffAfter, or at once
// when the handler calls over this connection. While the peer overloads us (§15) the
// reader waits for output to drain before it reads on.

package pipit

import (
	"errors"
	"io"
	"time"
)

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

func (c *Conn) drain() {
	var b [4096]byte
	for {
		if _, err := c.rwc.Read(b[:]); err != nil {
			return
		}
	}
}
