// The stream window of a stream call we opened (spec/PROTOCOL.md §8.6, the caller's side):
// the credit granted to the producer, and when to grant more.
//
// Credit is counted as the responder counts it: the initial window plus every grant, less
// every message started. A message beyond it is the peer's violation (E_NO_CREDIT, in
// onResponse). Grants go out in batches, once half the window has been consumed, so a
// steady stream costs one CREDIT frame per half window, not one per message.
//
// Adaptive windows (the call set no Credit): the window starts at InitialCredit and grows
// fourfold each time the consumer finds no message waiting (the window is then too small
// for the round trip), up to what MaxStreamWindowBytes allows for messages of the average
// size seen. A slow consumer always finds messages waiting, so its window never grows.

package pipit

// streamWindow is the credit of one stream call, as the caller counts it.
type streamWindow struct {
	credit  int64 // messages the producer may still start
	window  int64 // the window, in messages
	unacked int64 // messages consumed since the last grant
	// adaptive: the call set no credit, so the window may grow.
	adaptive bool
	// Messages received and their bytes: an adaptive window sizes itself by the average.
	itemsIn, bytesIn int64
}

// Consumed tells the session the user took n messages of stream call c: credit is granted
// back once half the window is consumed (§8.6).
func (s *Session) Consumed(c *OutCall, n int) {
	if c.settled || !c.sent || s.out[c.id] != c {
		return
	}
	c.unacked += int64(n)
	if c.unacked*2 >= c.window {
		s.grant(c, c.unacked)
		c.unacked = 0
	}
}

func (s *Session) grant(c *OutCall, n int64) {
	if n <= 0 || c.credit+n > MaxCredit {
		return
	}
	c.credit += n
	s.obuf = AppendCredit(s.obuf, c.id, uint32(n))
}

// Starved tells the session the consumer of stream call c found no message waiting: an
// adaptive window (no explicit credit) quadruples, up to MaxStreamWindowBytes of messages
// of the average size seen.
func (s *Session) Starved(c *OutCall) {
	if !c.adaptive || c.settled || !c.sent || s.out[c.id] != c || c.itemsIn == 0 {
		return
	}
	avg := c.bytesIn / c.itemsIn
	if avg < 1 {
		avg = 1
	}
	limit := int64(s.opt.MaxStreamWindowBytes) / avg
	if limit > 65536 {
		limit = 65536
	}
	next := c.window * 4
	if next > limit {
		next = limit
	}
	if next <= c.window {
		return
	}
	g := next - c.window + c.unacked
	c.window = next
	c.unacked = 0
	s.grant(c, g)
}
