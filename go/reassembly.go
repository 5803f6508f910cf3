// Messages arriving (spec/PROTOCOL.md §8.7, §8.8): one reassembler for both directions,
// requests arriving as REQUEST|FOLLOWS then DATA, and responses as RESPONSE|FOLLOWS then
// RESPONSE; and the copies of whole messages handed out.
//
// Two caps, each checked before a fragment is copied: MaxMessageBytes for one message
// (what we announced in HELLO), and MaxReassemblyBytes for every partial message of the
// connection together, so many calls each just under the first cap cannot add up.

package pipit

// reasmAdd appends frag to the partial message *buf, both caps checked first. False when a
// cap would be passed: nothing was copied.
func (s *Session) reasmAdd(buf *[]byte, frag []byte) bool {
	if len(*buf)+len(frag) > s.opt.MaxMessageBytes || s.reasmBytes+len(frag) > s.opt.MaxReassemblyBytes {
		return false
	}
	if *buf == nil {
		*buf = make([]byte, 0, max(len(frag)*2, 64))
	}
	*buf = append(*buf, frag...)
	s.reasmBytes += len(frag)
	return true
}

// reasmTake hands out the whole message; its bytes leave the connection's count.
func (s *Session) reasmTake(buf *[]byte) []byte {
	b := *buf
	s.reasmBytes -= len(b)
	*buf = nil
	if b == nil {
		b = []byte{}
	}
	return b
}

// reasmDrop forgets a partial message.
func (s *Session) reasmDrop(buf *[]byte) {
	s.reasmBytes -= len(*buf)
	*buf = nil
}

// slabSize: small payloads handed out are copied into a shared slab of this size, so that
// a batch of small messages costs one allocation, not one each.
const (
	slabSize    = 16 << 10
	slabPayload = 512
)

// keep returns a frame's body for the user to keep: itself when the decoder handed it
// over (Frame.Owned), else a copy.
func (s *Session) keep(f *Frame) []byte {
	if f.Owned && len(f.Body) > 0 {
		return f.Body[:len(f.Body):len(f.Body)]
	}
	return s.clone(f.Body)
}

// clone copies a payload the session hands out (the decoder's buffer is reused).
func (s *Session) clone(b []byte) []byte {
	if len(b) == 0 {
		return []byte{}
	}
	if len(b) <= slabPayload {
		if cap(s.slab)-len(s.slab) < len(b) {
			s.slab = make([]byte, 0, slabSize)
		}
		n := len(s.slab)
		s.slab = append(s.slab, b...)
		return s.slab[n : n+len(b) : n+len(b)]
	}
	c := make([]byte, len(b))
	copy(c, b)
	return c
}
