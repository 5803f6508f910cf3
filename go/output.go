// The session's output: frames are appended to s.obuf, and payloads of bigPayload bytes or
// more are referenced where they are (segments), not copied. TakeOutput hands out the
// segments in order for one vectored write.

package pipit

// bigPayload: payloads this large or larger are written from where they are, not copied.
const bigPayload = 2048

type outSeg struct {
	off, end int
	big      []byte
}

// Pending is the number of output bytes not yet taken.
func (s *Session) Pending() int { return len(s.obuf) + s.bigBytes }

// HasOutput reports whether TakeOutput has something to give.
func (s *Session) HasOutput() bool { return len(s.obuf) > 0 || len(s.segs) > 0 || len(s.frags) > 0 }

// TakeOutput appends the frames to write, in order, to bufs (which the caller writes as
// one vectored write) and returns them with the arena that holds the small frames. Give
// the arena back with Recycle once written. At most a budget of large-message fragments
// is written per call; HasOutput says whether more is waiting.
func (s *Session) TakeOutput(bufs [][]byte) ([][]byte, []byte) {
	if len(s.frags) > 0 {
		s.writeFragments()
	}
	s.cut()
	for _, g := range s.segs {
		if g.big != nil {
			bufs = append(bufs, g.big)
		} else {
			bufs = append(bufs, s.obuf[g.off:g.end])
		}
	}
	// Pooled memory retired until now may be referenced by what is taken: it goes back to
	// the pool once that is written (Recycle).
	s.afterWrite, s.written = s.written[:0], s.afterWrite
	arena := s.obuf
	s.obuf = s.spare[:0]
	s.spare = nil
	clear(s.segs)
	s.segs = s.segs[:0]
	s.segStart = 0
	s.bigBytes = 0
	if !s.congested() && (len(s.held) > 0 || len(s.waiters) > 0 || s.queueHead < len(s.queue)) {
		s.relieve()
	}
	return bufs, arena
}

// Recycle gives back an arena returned by TakeOutput once its bytes are written.
func (s *Session) Recycle(arena []byte) {
	for i, p := range s.written {
		putBuf(p)
		s.written[i] = nil
	}
	s.written = s.written[:0]
	if s.spare == nil && cap(arena) <= 1<<20 {
		s.spare = arena[:0]
	}
}

func (s *Session) cut() {
	if len(s.obuf) > s.segStart {
		s.segs = append(s.segs, outSeg{off: s.segStart, end: len(s.obuf)})
		s.segStart = len(s.obuf)
	}
}

// appendPayload adds a payload after a header just written: copied when small, else
// referenced.
func (s *Session) appendPayload(p []byte) {
	if len(p) < bigPayload {
		s.obuf = append(s.obuf, p...)
		return
	}
	s.cut()
	s.segs = append(s.segs, outSeg{big: p})
	s.bigBytes += len(p)
}
