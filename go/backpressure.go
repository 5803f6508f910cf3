// Backpressure on our output (spec/PROTOCOL.md §15).
//
// Output is congested when what we have encoded and not handed out (Pending) plus what the
// transport has taken and not written (its backlog, SetBacklog) passes MaxWriteBufferBytes.
// While it is:
//   - new requests are held in s.held, in order, instead of running (at most MaxInflight of
//     them: the responder refuses more, §8.9);
//   - stream producers wait in s.waiters for output to drain;
//   - our own calls stay queued (caller.go).
//
// We keep reading all the while, so two congested peers still receive each other's
// responses and credits and cannot deadlock. Only a peer that keeps making us write beyond
// its allowance while we are congested (a full set of held requests, or a run of answers
// it asked for unasked: refusals, PONGs, its strikes) is Overloaded, and only then may the
// transport stop reading from it.

package pipit

// producerBatch: a stream producer waits while this much output is not yet taken by the
// writer, so that a fast producer fills one write's worth and no more (the write buffer
// limit, MaxWriteBufferBytes, is for everything else).
const producerBatch = 64 << 10

func (s *Session) congested() bool {
	return len(s.obuf)+s.bigBytes+s.backlog > s.opt.MaxWriteBufferBytes
}

// Congested reports whether unsent output is over MaxWriteBufferBytes (§15).
func (s *Session) Congested() bool { return s.congested() }

// Overloaded reports whether the peer keeps sending work beyond its allowance while we
// are congested: the transport may stop reading from it until output drains.
func (s *Session) Overloaded() bool {
	return s.congested() && (len(s.held) >= s.opt.MaxInflight || s.strikes >= 1024)
}

// SetBacklog tells the session how many bytes the transport took and has not written
// yet. Held work resumes once output is no longer congested.
func (s *Session) SetBacklog(n int) {
	s.backlog = n
	if !s.congested() {
		s.relieve()
	}
}

// relieve resumes held work while output is not congested.
func (s *Session) relieve() {
	s.strikes = 0
	for len(s.held) > 0 && !s.congested() && s.state != stateClosed {
		in := s.held[0]
		copy(s.held, s.held[1:])
		s.held[len(s.held)-1] = nil
		s.held = s.held[:len(s.held)-1]
		s.run(in)
	}
	if len(s.waiters) > 0 && !s.congested() && s.Pending() < producerBatch {
		w := s.waiters
		s.waiters = nil
		for _, in := range w {
			s.wake(in)
		}
	}
	// Queued calls go out with the time left as of the last time the session was given.
	if s.queueHead < len(s.queue) {
		s.pump(s.clock)
	}
}
