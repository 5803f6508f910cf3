package pipit

import (
	"encoding/hex"
	"reflect"
	"testing"
)

// FuzzDecode: any chunking gives the same frames and error as the whole input, and every
// frame decoded re-encodes to a frame that decodes the same.
func FuzzDecode(f *testing.F) {
	for _, c := range loadVectors(f) {
		b, _ := hex.DecodeString(c.Hex)
		if len(b) > 4096 {
			continue
		}
		f.Add(b, uint16(3))
	}
	f.Fuzz(func(t *testing.T, input []byte, seed uint16) {
		whole := decodeChunks(input, DefaultMaxFrameBytes, func() int { return len(input) + 1 }, false)
		s := uint32(seed) | 1
		next := func() int {
			s = s*1103515245 + 12345
			return 1 + int(s>>16)%17
		}
		for _, inPlace := range []bool{false, true} {
			split := decodeChunks(input, DefaultMaxFrameBytes, next, inPlace)
			if !reflect.DeepEqual(split.frames, whole.frames) {
				t.Fatalf("frames differ when split (inPlace=%v)", inPlace)
			}
			if !sameErr(split.err, whole.err) {
				t.Fatalf("error differs when split: %v vs %v", split.err, whole.err)
			}
		}
		one := decodeChunks(input, DefaultMaxFrameBytes, func() int { return 1 }, false)
		if !reflect.DeepEqual(one.frames, whole.frames) || !sameErr(one.err, whole.err) {
			t.Fatalf("byte-at-a-time differs")
		}
		// Canonical re-encoding decodes to the same frames (names, codes, payloads).
		var out []byte
		for _, v := range whole.frames {
			out = fromV(t, out, v)
		}
		again := decodeChunks(out, MaxFrameBytesLimit, func() int { return len(out) + 1 }, false)
		want := append([]vFrame(nil), whole.frames...)
		for i := range want {
			if want[i].Type == "ERROR" {
				want[i].ID = 0 // the encoder writes id 0; receivers ignore it
			}
			// An ext block of unknown tags only re-encodes as no ext block.
			if x := want[i].Ext; x != nil && x.DeadlineMs == nil && x.Credit == nil && x.Metadata == nil {
				want[i].Ext = nil
				want[i].Flags = flagNames(TypeRequest, flagsOf(want[i].Flags)&^FlagExt)
			}
		}
		if again.err != nil || !reflect.DeepEqual(again.frames, want) {
			t.Fatalf("re-encoded frames differ: %v", again.err)
		}
	})
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	ca, oka := a.(*CodecError)
	cb, okb := b.(*CodecError)
	return oka && okb && ca.Code == cb.Code && ca.Offset == cb.Offset
}

func flagsOf(names []string) Flags {
	var fl Flags
	for _, n := range names {
		fl |= map[string]Flags{"STREAM": 1, "END": 1, "TEXT": 2, "FOLLOWS": 4, "EXT": 8}[n]
	}
	return fl
}
