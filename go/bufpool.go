// Memory for large messages whose lifetime the connection controls: a request read whole
// into memory of its own (decode.go, detachMin) is handed to its handler, and goes back
// here once the handler has returned and whatever it answered is written (responder.go,
// Session.Served). Without it every large request is a fresh allocation, zeroed under the
// heap's lock, that the garbage collector then sweeps.
//
// Sizes come in classes of four steps per power of two (2^k, 1.25, 1.5, 1.75 × 2^k), so a
// buffer is at most 25% larger than asked; each class is a sync.Pool, shared by every
// connection of the process.

package pipit

import (
	"math/bits"
	"sync"
)

const (
	poolMinShift = 15 // the smallest class: 32 KiB (detachMin)
	poolMaxShift = 24 // classes stop below 2^25 bytes, above the largest frame
	poolClasses  = (poolMaxShift - poolMinShift + 1) * 4
)

var bufPools [poolClasses]sync.Pool

// poolClass is the class of a buffer of n bytes and its size, or -1 when n is outside
// the pooled range.
func poolClass(n int) (int, int) {
	if n <= 1<<poolMinShift {
		if n <= 0 {
			return -1, 0
		}
		return 0, 1 << poolMinShift
	}
	k := bits.Len(uint(n-1)) - 1 // 2^k < n <= 2^(k+1)
	if k > poolMaxShift {
		return -1, 0
	}
	step := 1 << (k - 2)
	q := (n - 1 - 1<<k) / step // 0..3: n <= 2^k + (q+1)·step
	if q == 3 {
		return (k+1-poolMinShift)*4 + 0, 1 << (k + 1)
	}
	return (k-poolMinShift)*4 + q + 1, 1<<k + (q+1)*step
}

// getBuf returns a buffer of length n (its contents are not zeroed) and the handle to
// give back with putBuf; the handle is nil when n is outside the pooled range.
func getBuf(n int) ([]byte, *[]byte) {
	c, size := poolClass(n)
	if c < 0 || c >= poolClasses {
		return make([]byte, n), nil
	}
	if p, ok := bufPools[c].Get().(*[]byte); ok {
		return (*p)[:n], p
	}
	b := make([]byte, size)
	return b[:n], &b
}

// putBuf gives back a buffer from getBuf. Nothing may use it afterwards.
func putBuf(p *[]byte) {
	if p == nil {
		return
	}
	c, size := poolClass(cap(*p))
	if c < 0 || c >= poolClasses || size != cap(*p) {
		return
	}
	bufPools[c].Put(p)
}
