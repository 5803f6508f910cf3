package main

import (
	"encoding/hex"
	"math"
	"testing"
)

// The test vectors of the Node example's README and src/run.ts.
var rowVectors = []struct {
	r   row
	hex string
}{
	{row{id: 1, ts: 1767225601000, value: 239.75, sensor: 2}, "0100000000000000e8abda769b0100000000000000f86d4002000000"},
	{row{id: 9007199254740991, ts: -1, value: -0.125, sensor: 4294967295}, "ffffffffffff1f00ffffffffffffffff000000000000c0bfffffffff"},
}

func TestRowVectors(t *testing.T) {
	for _, v := range rowVectors {
		b := appendRow(nil, v.r)
		if got := hex.EncodeToString(b); got != v.hex {
			t.Errorf("%+v encodes to %s, want %s", v.r, got, v.hex)
		}
		back, err := decodeRow(b)
		if err != nil || back != v.r {
			t.Errorf("%s decodes to %+v (%v), want %+v", v.hex, back, err, v.r)
		}
	}
	// Row 1 of the generated table is the first vector.
	if r := (row{1, tsOf(1), valueOf(1), sensorOf(1)}); r != rowVectors[0].r {
		t.Errorf("generated row 1 is %+v, want %+v", r, rowVectors[0].r)
	}
	// Beyond 2^53, where the JavaScript side refuses to go, Go keeps every bit.
	big := row{id: math.MaxInt64, ts: math.MinInt64, value: math.Inf(-1), sensor: 1}
	if back, _ := decodeRow(appendRow(nil, big)); back != big {
		t.Errorf("%+v came back as %+v", big, back)
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := decodeQuery(make([]byte, 3)); err == nil || err.Error() != "query is 3 bytes, expected 20" {
		t.Errorf("3-byte query: %v", err)
	}
	if _, err := decodeRow(make([]byte, 29)); err == nil || err.Error() != "row is 29 bytes, expected 28" {
		t.Errorf("29-byte row: %v", err)
	}
}

func TestFold(t *testing.T) {
	// FNV-1a over u32 words: the fold of one row of zeros is the basis times the prime,
	// seven times, mod 2^32.
	h := foldStart
	for range 7 {
		h *= 16777619
	}
	if got := foldRow(foldStart, make([]byte, rowBytes)); got != h {
		t.Errorf("fold of a zero row = %08x, want %08x", got, h)
	}
	d := digest{count: 3, idSum: 6, valueTotal: -1.5, fold: 0xdeadbeef}
	if back, err := decodeDigest(encodeDigest(d)); err != nil || back != d {
		t.Errorf("digest round trip: %+v %v", back, err)
	}
}
