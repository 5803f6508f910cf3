package pipit

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

type vExt struct {
	DeadlineMs *uint32     `json:"deadlineMs,omitempty"`
	Credit     *uint32     `json:"credit,omitempty"`
	Metadata   [][2]string `json:"metadata,omitempty"`
}

type vFrame struct {
	Type     string      `json:"type"`
	Flags    []string    `json:"flags"`
	ID       uint32      `json:"id"`
	Service  *string     `json:"service,omitempty"`
	Method   *string     `json:"method,omitempty"`
	Ext      *vExt       `json:"ext,omitempty"`
	Payload  *string     `json:"payload,omitempty"`
	Code     *uint32     `json:"code,omitempty"`
	Message  *string     `json:"message,omitempty"`
	Credit   *uint32     `json:"credit,omitempty"`
	Settings [][2]uint32 `json:"settings,omitempty"`
	// scenarios only
	PayloadText   *string `json:"payloadText,omitempty"`
	MessagePrefix *string `json:"messagePrefix,omitempty"`
	Fragmented    bool    `json:"fragmented,omitempty"`
}

type vError struct {
	Code   string `json:"code"`
	Offset int64  `json:"offset"`
}

type vCase struct {
	Name          string   `json:"name"`
	Hex           string   `json:"hex"`
	MaxFrameBytes int      `json:"maxFrameBytes"`
	Frames        []vFrame `json:"frames"`
	Error         *vError  `json:"error"`
	AtEnd         bool     `json:"atEnd"`
	RoundTrip     bool     `json:"roundTrip"`
}

func specDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("../spec")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func loadVectors(t testing.TB) []vCase {
	t.Helper()
	var all []vCase
	for _, f := range []string{"frames-valid.json", "frames-invalid.json"} {
		b, err := os.ReadFile(filepath.Join(specDir(t), "vectors", f))
		if err != nil {
			t.Fatal(err)
		}
		var file struct{ Cases []vCase }
		if err := json.Unmarshal(b, &file); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, file.Cases...)
	}
	if len(all) < 100 {
		t.Fatalf("only %d vectors", len(all))
	}
	return all
}

func flagNames(t FrameType, fl Flags) []string {
	out := []string{}
	if fl&0x1 != 0 {
		if t == TypeRequest {
			out = append(out, "STREAM")
		} else {
			out = append(out, "END")
		}
	}
	if fl&FlagText != 0 {
		out = append(out, "TEXT")
	}
	if fl&FlagFollows != 0 {
		out = append(out, "FOLLOWS")
	}
	if fl&FlagExt != 0 {
		out = append(out, "EXT")
	}
	return out
}

func ptr[T any](v T) *T { return &v }

// toV converts a decoded frame to the vector form (copying every byte field).
func toV(f *Frame) vFrame {
	v := vFrame{Type: f.Type.String(), Flags: flagNames(f.Type, f.Flags), ID: f.ID}
	switch f.Type {
	case TypeRequest:
		v.Service, v.Method = ptr(string(f.Service)), ptr(string(f.Method))
		if f.Flags&FlagExt != 0 {
			e := f.ParseExt()
			x := &vExt{}
			if e.HasDeadline {
				x.DeadlineMs = ptr(e.DeadlineMs)
			}
			if e.HasCredit {
				x.Credit = ptr(e.Credit)
			}
			f.Metadata(func(k, val []byte) { x.Metadata = append(x.Metadata, [2]string{string(k), string(val)}) })
			v.Ext = x
		}
		v.Payload = ptr(hex.EncodeToString(f.Body))
	case TypeResponse, TypeData:
		v.Payload = ptr(hex.EncodeToString(f.Body))
	case TypeStatus, TypeGoaway, TypeError:
		v.Code, v.Message = ptr(f.Code), ptr(string(f.Body))
	case TypeCredit:
		v.Credit = ptr(f.Code)
	case TypeHello:
		v.Settings = [][2]uint32{}
		f.Settings(func(k, val uint32) { v.Settings = append(v.Settings, [2]uint32{k, val}) })
	}
	return v
}

// fromV encodes a vector frame canonically.
func fromV(t testing.TB, b []byte, v vFrame) []byte {
	var fl Flags
	for _, n := range v.Flags {
		fl |= map[string]Flags{"STREAM": 1, "END": 1, "TEXT": 2, "FOLLOWS": 4, "EXT": 8}[n]
	}
	payload := func() []byte {
		if v.PayloadText != nil {
			return []byte(*v.PayloadText)
		}
		if v.Payload == nil {
			return nil
		}
		p, err := hex.DecodeString(*v.Payload)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	switch v.Type {
	case "HELLO":
		var s []Setting
		for _, kv := range v.Settings {
			s = append(s, Setting{kv[0], kv[1]})
		}
		return AppendHello(b, v.ID, s)
	case "REQUEST":
		var ext []byte
		if v.Ext != nil {
			var md []MetadataEntry
			for _, kv := range v.Ext.Metadata {
				md = append(md, MetadataEntry{kv[0], kv[1]})
			}
			var d, c uint32
			if v.Ext.DeadlineMs != nil {
				d = *v.Ext.DeadlineMs
			}
			if v.Ext.Credit != nil {
				c = *v.Ext.Credit
			}
			ext = AppendExt(nil, d, v.Ext.DeadlineMs != nil, c, v.Ext.Credit != nil, md)
		}
		return AppendRequest(b, v.ID, fl, *v.Service, *v.Method, ext, payload())
	case "RESPONSE":
		return AppendResponse(b, v.ID, fl, payload())
	case "DATA":
		return AppendData(b, v.ID, fl, payload())
	case "STATUS":
		return AppendStatus(b, v.ID, *v.Code, msgOf(v))
	case "GOAWAY":
		return AppendGoaway(b, v.ID, *v.Code, msgOf(v))
	case "ERROR":
		return AppendError(b, *v.Code, msgOf(v))
	case "CANCEL":
		return AppendCancel(b, v.ID)
	case "CREDIT":
		return AppendCredit(b, v.ID, *v.Credit)
	case "PING":
		return AppendPing(b, v.ID)
	case "PONG":
		return AppendPong(b, v.ID)
	}
	t.Fatalf("unknown type %s", v.Type)
	return nil
}

type decodeResult struct {
	frames []vFrame
	err    error
}

// decodeChunks feeds input to a decoder in chunks of the sizes given by next (cycled),
// through Buffer/Commit when inPlace, else Write, then calls End.
func decodeChunks(input []byte, maxFrameBytes int, next func() int, inPlace bool) decodeResult {
	d := NewDecoder(maxFrameBytes)
	var res decodeResult
	collect := func(fs []Frame, err error) bool {
		for i := range fs {
			res.frames = append(res.frames, toV(&fs[i]))
		}
		if err != nil {
			res.err = err
			return false
		}
		return true
	}
	for len(input) > 0 {
		n := next()
		if n > len(input) {
			n = len(input)
		}
		chunk := input[:n]
		input = input[n:]
		if inPlace {
			for len(chunk) > 0 {
				buf := d.Buffer()
				k := copy(buf, chunk)
				chunk = chunk[k:]
				if !collect(d.Commit(k)) {
					return res
				}
			}
		} else if !collect(d.Write(chunk)) {
			return res
		}
	}
	res.err = d.End()
	return res
}

func checkResult(t *testing.T, c vCase, label string, res decodeResult) {
	t.Helper()
	if len(res.frames) == 0 && len(c.Frames) == 0 {
		res.frames = c.Frames
	}
	if !reflect.DeepEqual(res.frames, c.Frames) {
		got, _ := json.Marshal(res.frames)
		want, _ := json.Marshal(c.Frames)
		t.Fatalf("%s: frames\n got %s\nwant %s", label, got, want)
	}
	if c.Error == nil {
		if res.err != nil {
			t.Fatalf("%s: unexpected error %v", label, res.err)
		}
		return
	}
	var ce *CodecError
	if !errors.As(res.err, &ce) {
		t.Fatalf("%s: error %v, want %s at %d", label, res.err, c.Error.Code, c.Error.Offset)
	}
	if ce.Code.String() != c.Error.Code || ce.Offset != c.Error.Offset {
		t.Fatalf("%s: error %s at %d, want %s at %d", label, ce.Code, ce.Offset, c.Error.Code, c.Error.Offset)
	}
}

func TestVectors(t *testing.T) {
	for _, c := range loadVectors(t) {
		t.Run(c.Name, func(t *testing.T) {
			input, err := hex.DecodeString(c.Hex)
			if err != nil {
				t.Fatal(err)
			}
			max := c.MaxFrameBytes
			if max == 0 {
				max = DefaultMaxFrameBytes
			}
			fixed := func(n int) func() int { return func() int { return n } }
			sizes := []int{len(input) + 1, 1, 2, 3, 4, 5, 7, 13, 64, 4096}
			for _, inPlace := range []bool{false, true} {
				for _, n := range sizes {
					if n == 0 {
						continue
					}
					checkResult(t, c, fmt.Sprintf("chunks of %d inPlace=%v", n, inPlace), decodeChunks(input, max, fixed(n), inPlace))
				}
				rng := rand.New(rand.NewPCG(1, uint64(len(c.Name))))
				for i := 0; i < 5; i++ {
					checkResult(t, c, fmt.Sprintf("random split %d", i), decodeChunks(input, max, func() int { return 1 + rng.IntN(9) }, inPlace))
				}
			}
			if c.AtEnd {
				// Scanning alone reports no error: only End does.
				d := NewDecoder(max)
				if _, err := d.Write(input); err != nil {
					t.Fatalf("scan reported %v before the end", err)
				}
			}
			if c.RoundTrip {
				var out []byte
				for _, f := range c.Frames {
					out = fromV(t, out, f)
				}
				if !bytes.Equal(out, input) {
					t.Fatalf("re-encoding\n got %x\nwant %x", out, input)
				}
			}
		})
	}
}

func TestVarint(t *testing.T) {
	cases := []struct {
		in   string
		v    uint32
		n    int
		code ErrCode
	}{
		{"00", 0, 1, 0}, {"7f", 127, 1, 0}, {"8001", 128, 2, 0}, {"ac02", 300, 2, 0},
		{"808001", 16384, 3, 0}, {"808040", 1048576, 3, 0}, {"ffffffff0f", 0xFFFFFFFF, 5, 0},
		{"8000", 0, 0, ErrBadVarint}, {"ffffffff10", 0, 0, ErrBadVarint}, {"ff00", 0, 0, ErrBadVarint},
		{"8080808000", 0, 0, ErrBadVarint}, {"80", 0, 0, ErrTruncated}, {"", 0, 0, ErrTruncated},
		{"ffffffffff", 0, 0, ErrBadVarint},
	}
	for _, c := range cases {
		b, _ := hex.DecodeString(c.in)
		v, n, code := readVarint(b)
		if v != c.v || n != c.n || code != c.code {
			t.Errorf("%s: got %d,%d,%v want %d,%d,%v", c.in, v, n, code, c.v, c.n, c.code)
		}
		if code == 0 {
			if got := appendVarint(nil, v); !bytes.Equal(got, b) || varintSize(v) != len(b) {
				t.Errorf("%d encodes as %x", v, got)
			}
		}
	}
	for _, v := range []uint32{0, 1, 127, 128, 1<<14 - 1, 1 << 14, 1<<21 - 1, 1 << 21, 1<<28 - 1, 1 << 28, 0xFFFFFFFF} {
		b := appendVarint(nil, v)
		got, n, code := readVarint(b)
		if got != v || n != len(b) || code != 0 || varintSize(v) != len(b) {
			t.Errorf("%d: round trip %x -> %d,%d,%v", v, b, got, n, code)
		}
	}
}

// TestLargeFrameNotBuffered: a too-large word fails at once, with nothing allocated for it.
func TestLargeFrameNotBuffered(t *testing.T) {
	d := NewDecoder(DefaultMaxFrameBytes)
	_, err := d.Write([]byte{0xfd, 0xff, 0x00, 0x04})
	var ce *CodecError
	if !errors.As(err, &ce) || ce.Code != ErrFrameTooLarge {
		t.Fatalf("got %v", err)
	}
	d = NewDecoder(MaxFrameBytesLimit)
	d.Write([]byte{0xff, 0xff, 0xff, 0x02, 0x01})
	if len(d.Buffer())+d.Pending() < MaxFrameBytesLimit {
		t.Fatal("buffer not grown for a frame that passed the check")
	}
}

func TestDecodeAllocs(t *testing.T) {
	var stream []byte
	payload := bytes.Repeat([]byte{7}, 32)
	for i := 0; i < 100; i++ {
		stream = AppendRequest(stream, uint32(i), 0, "db", "query", nil, payload)
		stream = AppendResponse(stream, uint32(i), FlagEnd, payload)
		stream = AppendCredit(stream, uint32(i), 64)
	}
	d := NewDecoder(DefaultOptMaxFrameBytes)
	feed := func() {
		buf := d.Buffer()
		n := copy(buf, stream)
		fs, err := d.Commit(n)
		if err != nil || len(fs) != 300 {
			t.Fatalf("%d frames, %v", len(fs), err)
		}
	}
	feed()
	if a := testing.AllocsPerRun(100, feed); a != 0 {
		t.Fatalf("decoding a batch: %v allocs", a)
	}
}

func TestEncodeAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	payload := make([]byte, 32)
	ext := AppendExt(nil, 5000, true, 64, true, []MetadataEntry{{"k", "v"}})
	a := testing.AllocsPerRun(100, func() {
		b := buf[:0]
		b = AppendRequest(b, 1, FlagStream, "db", "query", ext, payload)
		b = AppendResponse(b, 1, FlagEnd, payload)
		b = AppendStatus(b, 1, 5, "failed")
		b = AppendCredit(b, 1, 200)
		b = AppendCancel(b, 1)
		_ = AppendGoaway(b, 3, 0, "bye")
	})
	if a != 0 {
		t.Fatalf("encoding: %v allocs", a)
	}
}

func TestDBQueryPairIs83Bytes(t *testing.T) {
	p := make([]byte, 32)
	b := AppendRequest(nil, 1, 0, "db", "query", nil, p)
	b = AppendResponse(b, 1, FlagEnd, p)
	if len(b) != 83 {
		t.Fatalf("%d bytes", len(b))
	}
}

func msgOf(v vFrame) string {
	if v.Message == nil {
		return ""
	}
	return *v.Message
}

// TestDecoderReadBufferGrows: reads that keep filling the buffer they are given (a stream
// of small frames) enlarge it to bigReadBufSize, and frames split across the change stay
// whole.
func TestDecoderReadBufferGrows(t *testing.T) {
	var stream []byte
	for i := 0; i < 20000; i++ {
		stream = AppendResponse(stream, uint32(i%100), 0, []byte(fmt.Sprintf("item %05d of the stream...", i)))
	}
	d := NewDecoder(DefaultMaxFrameBytes)
	got := 0
	for len(stream) > 0 {
		buf := d.Buffer()
		n := copy(buf, stream)
		stream = stream[n:]
		frames, err := d.Commit(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range frames {
			if want := fmt.Sprintf("item %05d of the stream...", got); string(f.Body) != want {
				t.Fatalf("frame %d: %q", got, f.Body)
			}
			got++
		}
	}
	if got != 20000 {
		t.Fatalf("%d frames", got)
	}
	if cap(d.buf) != bigReadBufSize {
		t.Fatalf("read buffer of %d bytes, want %d", cap(d.buf), bigReadBufSize)
	}
}
