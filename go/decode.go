package pipit

// Decoder turns a byte stream into frames, a batch at a time. It holds at most one
// partial frame. Use Buffer and Commit to read straight into its memory:
//
//	buf := d.Buffer()
//	n, err := r.Read(buf)
//	frames, cerr := d.Commit(n)
//
// Commit scans every complete frame and returns them in a table the decoder reuses; the
// frames' byte fields are subslices of the decoder's buffer, valid until the next call to
// Buffer, Commit or Write. A frame's size is checked against MaxFrameBytes from its 4-byte
// word, before anything is buffered for it (§2.2). EXTENSION frames are skipped, and
// discarded as they arrive (§7.11).
//
// After a codec error the decoder is dead: the frames before the bad one are returned with
// the error, and every later call returns the same error.
type Decoder struct {
	max    int
	buf    []byte
	r, w   int   // unconsumed bytes are buf[r:w]
	off    int64 // stream offset of buf[r]
	skip   int   // bytes of an EXTENSION frame still to discard
	skipAt int64 // stream offset of that frame
	small  int   // Buffer calls in a row that did not need an enlarged buffer
	// readSize is the size of the read buffer: readBufSize, or bigReadBufSize once reads
	// keep filling all the space they are given (a stream of small frames: fewer, larger
	// reads). last is the length of the space Buffer gave, fills the reads in a row that
	// filled it.
	readSize, last, fills int
	frames                []Frame
	err                   *CodecError
	// detached: buf holds exactly one large frame, read straight into memory of its own
	// that is handed out with the frame (Frame.Owned); shared is the regular buffer.
	detached bool
	shared   []byte
	pooled   *[]byte // the handle of buf while detached (bufpool.go)
}

const (
	readBufSize    = 64 << 10
	bigReadBufSize = 256 << 10
	minRead        = 4 << 10
	// keepBufSize: a buffer enlarged for big frames is kept up to this size; larger ones
	// are dropped once big frames stop coming, so a burst does not pin them.
	keepBufSize = 1 << 20
)

// NewDecoder returns a decoder that accepts frames up to maxFrameBytes (word included).
func NewDecoder(maxFrameBytes int) *Decoder {
	if maxFrameBytes > MaxFrameBytesLimit {
		maxFrameBytes = MaxFrameBytesLimit
	}
	return &Decoder{max: maxFrameBytes, frames: make([]Frame, 0, 64)}
}

// MaxFrameBytes is the largest frame the decoder accepts.
func (d *Decoder) MaxFrameBytes() int { return d.max }

// Pending is the number of bytes of a partial frame held (or being skipped).
func (d *Decoder) Pending() int { return d.w - d.r + d.skip }

// need is the size of the buffer the partial frame needs at buf[r:].
func (d *Decoder) need() int {
	if d.w-d.r < WordBytes {
		return WordBytes
	}
	b := d.buf[d.r:]
	return WordBytes + (int(b[0]) | int(b[1])<<8 | int(b[2])<<16)
}

// detachMin: a whole REQUEST or RESPONSE message at least this large is read into memory
// of its own, which the frame hands out (Frame.Owned), so it is never copied.
const detachMin = 32 << 10

// Buffer returns free space to read into; Commit(n) then scans the n bytes written there.
// It invalidates the frames of the previous batch.
func (d *Decoder) Buffer() []byte {
	if d.detached {
		return d.buf[d.w:]
	}
	if d.w-d.r >= WordBytes {
		b := d.buf[d.r:]
		t := FrameType(b[3] & 0xF)
		if frame := d.need(); frame >= detachMin && (t == TypeRequest || t == TypeResponse) && Flags(b[3]>>4)&FlagFollows == 0 {
			nb, p := getBuf(frame)
			held := copy(nb, d.buf[d.r:d.w])
			d.pooled = p
			d.shared = d.buf
			d.buf, d.r, d.w, d.detached = nb, 0, held, true
			return d.buf[d.w:]
		}
	}
	d.reserve(minRead)
	d.last = len(d.buf) - d.w
	return d.buf[d.w:]
}

// reserve makes room for at least min more bytes after buf[w:], and for the partial frame.
func (d *Decoder) reserve(min int) {
	if d.r == d.w {
		d.r, d.w = 0, 0
	}
	held := d.w - d.r
	need := d.need()
	if need < held+min {
		need = held + min
	}
	size := max(d.readSize, readBufSize)
	if need > size {
		size = need
		d.small = 0
	} else if cap(d.buf) > keepBufSize {
		// Drop an enlarged buffer once big frames stop coming, so a burst does not pin it.
		if d.small++; d.small > 16 {
			nb := make([]byte, size)
			copy(nb, d.buf[d.r:d.w])
			d.buf, d.r, d.w, d.small = nb, 0, held, 0
		}
	}
	if d.r+need <= len(d.buf) && len(d.buf)-d.w >= min && len(d.buf) >= size {
		return
	}
	if size <= len(d.buf) {
		copy(d.buf, d.buf[d.r:d.w])
	} else {
		nb := make([]byte, size)
		copy(nb, d.buf[d.r:d.w])
		d.buf = nb
	}
	d.r, d.w = 0, held
}

// Commit scans the n bytes just read into the slice Buffer returned.
func (d *Decoder) Commit(n int) ([]Frame, error) {
	d.frames = d.frames[:0]
	if d.err != nil {
		return nil, d.err
	}
	if n == d.last && !d.detached {
		if d.fills++; d.fills >= 4 {
			d.readSize = bigReadBufSize
		}
	} else {
		d.fills = 0
	}
	d.w += n
	return d.scan()
}

// Write copies p into the decoder and scans it, like a Buffer/Commit pair that reads all
// of p at once.
func (d *Decoder) Write(p []byte) ([]Frame, error) {
	d.frames = d.frames[:0]
	if d.err != nil {
		return nil, d.err
	}
	d.reserve(len(p))
	d.w += copy(d.buf[d.w:], p)
	return d.scan()
}

// End reports how the stream ended: nil, the decoder's codec error, or E_INCOMPLETE when
// it ended inside a frame (a partial word included).
func (d *Decoder) End() error {
	if d.err != nil {
		return d.err
	}
	if d.skip > 0 {
		return &CodecError{Code: ErrIncomplete, Offset: d.skipAt}
	}
	if d.w > d.r {
		return &CodecError{Code: ErrIncomplete, Offset: d.off}
	}
	return nil
}

func (d *Decoder) scan() ([]Frame, error) {
	if d.skip > 0 {
		k := d.w - d.r
		if k > d.skip {
			k = d.skip
		}
		d.r += k
		d.off += int64(k)
		d.skip -= k
	}
	for d.w-d.r >= WordBytes {
		b := d.buf[d.r:d.w]
		length := int(b[0]) | int(b[1])<<8 | int(b[2])<<16
		tf := b[3]
		if code := checkWord(length, tf, d.max); code != 0 {
			return d.frames, d.fail(code)
		}
		total := WordBytes + length
		if FrameType(tf&0xF) == TypeExtension {
			if len(b) < total {
				d.skip, d.skipAt = total-len(b), d.off
				d.off += int64(len(b))
				d.r = d.w
				break
			}
			d.r += total
			d.off += int64(total)
			continue
		}
		if len(b) < total {
			break
		}
		d.frames = append(d.frames, Frame{})
		f := &d.frames[len(d.frames)-1]
		if code := parseFrame(b[:total], f); code != 0 {
			d.frames = d.frames[:len(d.frames)-1]
			return d.frames, d.fail(code)
		}
		f.Offset = d.off
		f.Owned = d.detached
		f.pooled = d.pooled
		d.r += total
		d.off += int64(total)
	}
	if d.detached && d.r == d.w {
		d.buf, d.r, d.w, d.detached = d.shared, 0, 0, false
		d.shared, d.pooled = nil, nil
	}
	return d.frames, nil
}

func (d *Decoder) fail(code ErrCode) error {
	d.err = &CodecError{Code: code, Offset: d.off}
	d.r, d.w, d.skip = 0, 0, 0
	return d.err
}

// checkWord applies the checks of §14.1 steps 1-2 to a frame word.
func checkWord(length int, tf byte, max int) ErrCode {
	if WordBytes+length > max {
		return ErrFrameTooLarge
	}
	if length == 0 {
		return ErrFrameTooShort
	}
	t := tf & 0xF
	if t > 0xA && t < 0xF {
		return ErrUnknownType
	}
	fl := Flags(tf >> 4)
	if fl&^allowedFlags[t] != 0 {
		return ErrBadFlags
	}
	if FrameType(t) == TypeResponse && fl&(FlagEnd|FlagFollows) == FlagEnd|FlagFollows {
		return ErrBadFlags
	}
	return 0
}

// ParseFrame decodes one whole frame b (word included, LENGTH = len(b)-4, the word already
// checked) into f. Byte fields of f are subslices of b.
func parseFrame(b []byte, f *Frame) ErrCode {
	tf := b[3]
	t := FrameType(tf & 0xF)
	fl := Flags(tf >> 4)
	*f = Frame{Type: t, Flags: fl}
	p := b[WordBytes:]
	id, n, e := readVarint(p)
	if e != 0 {
		return e
	}
	f.ID = id
	p = p[n:]
	switch t {
	case TypeRequest:
		if len(p) < 1 {
			return ErrNameOverrun
		}
		sl := int(p[0])
		if 1+sl >= len(p) { // the service, then at least the methLen byte
			return ErrNameOverrun
		}
		f.Service = p[1 : 1+sl]
		p = p[1+sl:]
		ml := int(p[0])
		if 1+ml > len(p) {
			return ErrNameOverrun
		}
		f.Method = p[1 : 1+ml]
		p = p[1+ml:]
		if fl&FlagExt != 0 {
			el, n, e := readVarint(p)
			if e != 0 {
				return e
			}
			if el == 0 {
				return ErrBadExt
			}
			p = p[n:]
			if uint64(el) > uint64(len(p)) {
				return ErrExtOverrun
			}
			f.Ext = p[:el]
			if !validExt(f.Ext) {
				return ErrBadExt
			}
			p = p[el:]
		}
		f.Body = p
	case TypeResponse, TypeData:
		f.Body = p
	case TypeStatus, TypeGoaway, TypeError:
		c, n, e := readVarint(p)
		if e != 0 {
			return e
		}
		f.Code = c
		f.Body = p[n:]
	case TypeCredit:
		c, n, e := readVarint(p)
		if e != 0 {
			return e
		}
		if c == 0 || n != len(p) {
			return ErrBadBody
		}
		f.Code = c
	case TypeCancel, TypePing, TypePong:
		if len(p) != 0 {
			return ErrBadBody
		}
	case TypeHello:
		f.Body = p
		for len(p) > 0 {
			_, n, e := readVarint(p)
			if e != 0 {
				return e
			}
			p = p[n:]
			if len(p) == 0 {
				return ErrBadBody
			}
			_, n, e = readVarint(p)
			if e != 0 {
				return e
			}
			p = p[n:]
		}
	}
	return 0
}

// validExt checks ext entries (§7.2.1): u8 tag, varint len, value; a DEADLINE or CREDIT
// value is exactly one canonical varint; a METADATA value holds at least its key.
func validExt(b []byte) bool {
	for len(b) > 0 {
		tag := b[0]
		l, n, e := readVarint(b[1:])
		if e != 0 {
			return false
		}
		rest := b[1+n:]
		if uint64(l) > uint64(len(rest)) {
			return false
		}
		v := rest[:l]
		switch tag {
		case ExtDeadline, ExtCredit:
			_, m, e := readVarint(v)
			if e != 0 || m != len(v) {
				return false
			}
		case ExtMetadata:
			if len(v) == 0 || 1+int(v[0]) > len(v) {
				return false
			}
		}
		b = rest[l:]
	}
	return true
}
