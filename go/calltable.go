// The table of the peer's calls, by the peer's id (responder.go).

package pipit

// inTable holds the peer's calls by id: a slice for the small ids peers use (smallest free
// first), a map beyond.
type inTable struct {
	small []*InCall
	big   map[uint32]*InCall
	n     int
}

const inTableSmall = 4096

func (t *inTable) get(id uint32) *InCall {
	if id < uint32(len(t.small)) {
		return t.small[id]
	}
	if id < inTableSmall {
		return nil
	}
	return t.big[id]
}

func (t *inTable) put(id uint32, in *InCall) {
	t.n++
	if id < inTableSmall {
		for int(id) >= len(t.small) {
			t.small = append(t.small, nil)
		}
		t.small[id] = in
		return
	}
	if t.big == nil {
		t.big = make(map[uint32]*InCall)
	}
	t.big[id] = in
}

func (t *inTable) del(id uint32) {
	if id < inTableSmall {
		if id < uint32(len(t.small)) && t.small[id] != nil {
			t.small[id] = nil
			t.n--
		}
		return
	}
	if _, ok := t.big[id]; ok {
		delete(t.big, id)
		t.n--
	}
}

// all iterates over the calls held (deleting the current one is allowed).
func (t *inTable) all() func(yield func(uint32, *InCall) bool) {
	return func(yield func(uint32, *InCall) bool) {
		for id, in := range t.small {
			if in != nil && !yield(uint32(id), in) {
				return
			}
		}
		for id, in := range t.big {
			if !yield(id, in) {
				return
			}
		}
	}
}
