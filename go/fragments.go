// Outgoing messages larger than a frame (spec/PROTOCOL.md §8.7, §8.8).
//
// A message leaves in one frame when it fits the peer's MAX_FRAME_BYTES. A larger one leaves
// as its first fragment at once (REQUEST|FOLLOWS by send, RESPONSE|FOLLOWS by sendResponse)
// and the rest is queued in s.frags. writeFragments, called as output is taken, then writes
// one piece per queued message in turn, round robin, up to fragmentBudget bytes per
// TakeOutput, so the small frames of other calls interleave with a large message instead
// of waiting behind it.
//
// A call that ends while its message is still queued has its pieces dropped (dropFrag)
// before its id can be reused: written after a REQUEST that reuses the id, they would be
// read as the new call's (§8.7).

package pipit

// fragmentBudget: bytes of large-message fragments written per TakeOutput, so that small
// frames interleave with them.
const fragmentBudget = 256 << 10

type fragment struct {
	out  *OutCall
	in   *InCall
	id   uint32
	data []byte
	pos  int
	end  Flags // RESPONSE: END on the last fragment
}

// writeFragments writes one fragment per message, round robin, until the budget is spent.
func (s *Session) writeFragments() {
	budget := fragmentBudget
	room := s.peerMaxFrame - WordBytes - MaxVarintBytes
	for budget > 0 && len(s.frags) > 0 {
		f := s.frags[0]
		copy(s.frags, s.frags[1:])
		s.frags[len(s.frags)-1] = nil
		s.frags = s.frags[:len(s.frags)-1]
		n := len(f.data) - f.pos
		if n > room {
			n = room
		}
		last := f.pos+n == len(f.data)
		part := f.data[f.pos : f.pos+n]
		var fl Flags = FlagFollows
		if last {
			fl = f.end
		}
		if f.out != nil {
			s.obuf = AppendHeader(s.obuf, TypeData, fl, f.id, n)
		} else {
			s.obuf = AppendHeader(s.obuf, TypeResponse, fl, f.id, n)
		}
		s.appendPayload(part)
		f.pos += n
		budget -= n
		if !last {
			s.frags = append(s.frags, f)
			continue
		}
		if f.out != nil {
			f.out.frag = nil
			f.out.payload = nil
			continue
		}
		in := f.in
		in.frag = nil
		if f.end&FlagEnd != 0 {
			s.endIn(in)
		} else if in.finishOK {
			s.finishIn(in, CodeOK, "")
		} else {
			s.afterFragment(in)
		}
	}
}

func (s *Session) dropFrag(f *fragment) {
	for i, g := range s.frags {
		if g == f {
			copy(s.frags[i:], s.frags[i+1:])
			s.frags[len(s.frags)-1] = nil
			s.frags = s.frags[:len(s.frags)-1]
			return
		}
	}
}
