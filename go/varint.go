package pipit

// readVarint reads a canonical u32 LEB128 varint (§3) from the start of b, which is the
// bounded region (frame or ext entry). It returns the value, the bytes read and 0, or
// ErrTruncated when b ends first, or ErrBadVarint for an overlong form or a value above
// 2^32-1. encoding/binary.Uvarint accepts overlong forms, which §3 forbids.
func readVarint(b []byte) (uint32, int, ErrCode) {
	if len(b) > 0 && b[0] < 0x80 {
		return uint32(b[0]), 1, 0
	}
	var v uint32
	for i := 0; i < MaxVarintBytes; i++ {
		if i >= len(b) {
			return 0, 0, ErrTruncated
		}
		c := b[i]
		if i == MaxVarintBytes-1 && c > maxVarintLastByte {
			return 0, 0, ErrBadVarint
		}
		v |= uint32(c&0x7F) << (7 * i)
		if c < 0x80 {
			if i > 0 && c == 0 {
				return 0, 0, ErrBadVarint
			}
			return v, i + 1, 0
		}
	}
	return 0, 0, ErrBadVarint // unreachable: the fifth byte is <= 0x0F
}

// varintSize is the length of the canonical varint of v.
func varintSize(v uint32) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	case v < 1<<28:
		return 4
	}
	return 5
}

// appendVarint appends the canonical varint of v.
func appendVarint(b []byte, v uint32) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}
