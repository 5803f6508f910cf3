// The writer: one goroutine takes the session's output and writes it with one vectored
// write (net.Buffers, writev on Unix) outside the lock, coalescing the frames of every
// caller and producer that appended meanwhile. A caller that waits anyway writes its own
// frames when it is the only call in flight (Conn.unlock). Once the session is closed
// and its output written, the writer ends the transport.

package pipit

import (
	"runtime"
	"time"
)

func (c *Conn) kickWriter() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
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
