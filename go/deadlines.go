// The deadlines of one session, both directions: a binary min-heap of (time, call) with
// lazy deletion. A call that ends early is not searched for and removed: its entry is
// dropped when it reaches the top (NextDeadline) or popped and ignored (Tick checks
// settled).

package pipit

import "time"

type timer struct {
	at  time.Time
	out *OutCall
	in  *InCall
}

type timerHeap []timer

func (h *timerHeap) push(t timer) {
	*h = append(*h, t)
	a := *h
	for i := len(a) - 1; i > 0; {
		p := (i - 1) / 2
		if !a[i].at.Before(a[p].at) {
			break
		}
		a[i], a[p] = a[p], a[i]
		i = p
	}
}

func (h *timerHeap) pop() timer {
	a := *h
	top := a[0]
	n := len(a) - 1
	a[0] = a[n]
	a[n] = timer{}
	a = a[:n]
	for i := 0; ; {
		c := 2*i + 1
		if c >= n {
			break
		}
		if c+1 < n && a[c+1].at.Before(a[c].at) {
			c++
		}
		if !a[c].at.Before(a[i].at) {
			break
		}
		a[i], a[c] = a[c], a[i]
		i = c
	}
	*h = a
	return top
}
