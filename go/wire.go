// Package pipit implements the pipit wire protocol, version 1: framed calls and
// credit-paced streams between two peers over one ordered, reliable byte stream.
//
// The package is layered. The codec (wire.go, varint.go, decode.go, encode.go) turns
// bytes into frames and frames into bytes. The Session (session.go) is a sans-IO state
// machine: frames and the current time go in, frames to write, events and the next timer
// deadline come out. Conn (conn.go) binds a Session to an io.ReadWriteCloser with one
// reader goroutine and one coalescing writer. Listen and Dial (unix.go) add Unix sockets.
package pipit

// ProtocolVersion is the highest protocol version this package speaks (HELLO id).
const ProtocolVersion = 1

// Frame word (§2).
const (
	// WordBytes is the size of the little-endian word that starts every frame.
	WordBytes = 4
	// MaxLength is the largest LENGTH field (bytes after the word).
	MaxLength = 0xFFFFFF
	// MaxFrameBytesLimit is the largest frame the format can express.
	MaxFrameBytesLimit = WordBytes + MaxLength
	// MinMaxFrameBytes is the default and the smallest maxFrameBytes a peer may have.
	MinMaxFrameBytes = 65536
	// MaxVarintBytes is the longest varint (§3).
	MaxVarintBytes = 5
	// maxVarintLastByte is the largest allowed fifth varint byte.
	maxVarintLastByte = 0x0F
)

// FrameType is the low nibble of byte 3 of the word (§5).
type FrameType uint8

// Frame types.
const (
	TypeHello     FrameType = 0x0
	TypeRequest   FrameType = 0x1
	TypeResponse  FrameType = 0x2
	TypeStatus    FrameType = 0x3
	TypeCancel    FrameType = 0x4
	TypeCredit    FrameType = 0x5
	TypeData      FrameType = 0x6
	TypePing      FrameType = 0x7
	TypePong      FrameType = 0x8
	TypeGoaway    FrameType = 0x9
	TypeError     FrameType = 0xA
	TypeExtension FrameType = 0xF
)

var typeNames = [16]string{
	"HELLO", "REQUEST", "RESPONSE", "STATUS", "CANCEL", "CREDIT", "DATA", "PING", "PONG",
	"GOAWAY", "ERROR", "RESERVED_B", "RESERVED_C", "RESERVED_D", "RESERVED_E", "EXTENSION",
}

func (t FrameType) String() string { return typeNames[t&0xF] }

// Flags is the high nibble of byte 3 of the word (§6). Its meaning depends on the type.
type Flags uint8

// Flag bits.
const (
	FlagStream  Flags = 0x1 // REQUEST: a stream call
	FlagEnd     Flags = 0x1 // RESPONSE: last message, the call ends OK
	FlagText    Flags = 0x2 // REQUEST, RESPONSE: the payload is UTF-8
	FlagFollows Flags = 0x4 // REQUEST, RESPONSE, DATA: more fragments follow
	FlagExt     Flags = 0x8 // REQUEST: an ext block follows the names
)

// allowedFlags lists the flags each type may carry; any other bit is E_BAD_FLAGS.
var allowedFlags = [16]Flags{
	TypeRequest:   FlagStream | FlagText | FlagFollows | FlagExt,
	TypeResponse:  FlagEnd | FlagText | FlagFollows,
	TypeData:      FlagFollows,
	TypeExtension: 0xF,
}

// Ext block tags (§7.2.1).
const (
	ExtDeadline = 0x01
	ExtCredit   = 0x02
	ExtMetadata = 0x03
)

// HELLO setting keys (§11.3) and their defaults.
const (
	SettingMaxFrameBytes   = 1
	SettingMaxMessageBytes = 2
	SettingMaxInflight     = 3

	DefaultMaxFrameBytes   = 65536
	DefaultMaxMessageBytes = 16777216
	DefaultMaxInflight     = 1024
)

// Credits (§8.6).
const (
	// DefaultCredit is the initial credit of a stream call whose REQUEST has no ext CREDIT.
	DefaultCredit = 128
	// MaxCredit is the largest outstanding credit of one call.
	MaxCredit = 0x7FFFFFFF
)

// Other limits.
const (
	// MaxNameBytes is the longest service name, method name or metadata key.
	MaxNameBytes = 255
	// MaxStatusMessageBytes is the longest status message this package sends.
	MaxStatusMessageBytes = 1024
)

// Implementation defaults (spec/constants.json implementationDefaults): not wire values,
// the defaults of the options, the same as in the TypeScript implementation.
const (
	DefaultOptMaxFrameBytes        = 262144
	DefaultOptMaxMessageBytes      = 16777216
	DefaultOptMaxInflight          = 1024
	DefaultOptMaxQueuedCalls       = 65536
	DefaultOptMaxReassemblyBytes   = 67108864
	DefaultOptInitialCredit        = 128
	DefaultOptMaxStreamWindowBytes = 1048576
	DefaultOptMaxWriteBufferBytes  = 4194304
)

// Frame is one decoded frame. Byte fields are subslices of the decoder's buffer: they are
// valid until the next call to the decoder (see Decoder).
type Frame struct {
	Type  FrameType
	Flags Flags
	// ID is the call id, the HELLO version, the PING/PONG id or the GOAWAY sequence number.
	ID uint32
	// Code is the STATUS, GOAWAY or ERROR code, or the CREDIT n.
	Code uint32
	// Service and Method are the REQUEST names.
	Service, Method []byte
	// Ext is the REQUEST ext block (entries only, without extLen), validated.
	Ext []byte
	// Body is the payload (REQUEST, RESPONSE, DATA), the message (STATUS, GOAWAY, ERROR)
	// or the settings (HELLO).
	Body []byte
	// Offset is the stream offset of the frame's first byte.
	Offset int64
	// Owned: the frame's bytes are in memory of their own that the decoder will not reuse,
	// so Body may be kept without a copy.
	Owned bool
	// pooled is the handle of that memory when it came from the buffer pool: the session
	// may give it back once the message is no longer used (bufpool.go).
	pooled *[]byte
}

// Setting is one HELLO key/value pair.
type Setting struct{ Key, Value uint32 }

// Settings iterates over the settings of a HELLO frame body (already validated).
func (f *Frame) Settings(fn func(key, value uint32)) {
	b := f.Body
	for len(b) > 0 {
		k, n, _ := readVarint(b)
		b = b[n:]
		v, m, _ := readVarint(b)
		b = b[m:]
		fn(k, v)
	}
}

// Ext is the parsed ext block of a REQUEST.
type Ext struct {
	DeadlineMs  uint32
	HasDeadline bool
	Credit      uint32
	HasCredit   bool
	// Metadata is the raw ext block; use Frame.Metadata to read entries without allocating.
	HasMetadata bool
}

// ParseExt reads the ext block of a REQUEST frame (validated by the decoder).
// Repeated DEADLINE or CREDIT entries: the last wins.
func (f *Frame) ParseExt() Ext {
	var e Ext
	forExt(f.Ext, func(tag byte, val []byte) {
		switch tag {
		case ExtDeadline:
			e.DeadlineMs, _, _ = readVarint(val)
			e.HasDeadline = true
		case ExtCredit:
			e.Credit, _, _ = readVarint(val)
			e.HasCredit = true
		case ExtMetadata:
			e.HasMetadata = true
		}
	})
	return e
}

// Metadata calls fn for each METADATA entry of a REQUEST's ext block, in wire order.
func (f *Frame) Metadata(fn func(key, value []byte)) {
	forExt(f.Ext, func(tag byte, val []byte) {
		if tag == ExtMetadata {
			k := int(val[0])
			fn(val[1:1+k], val[1+k:])
		}
	})
}

// forExt walks a validated ext block.
func forExt(b []byte, fn func(tag byte, val []byte)) {
	for len(b) > 0 {
		tag := b[0]
		l, n, _ := readVarint(b[1:])
		v := b[1+n : 1+n+int(l)]
		fn(tag, v)
		b = b[1+n+int(l):]
	}
}

// helloSetting describes one HELLO setting: received values are clamped to [min, max].
type helloSetting struct {
	name          string
	key           uint32
	def, min, max uint64
}

var helloSettings = []helloSetting{
	{"MAX_FRAME_BYTES", SettingMaxFrameBytes, DefaultMaxFrameBytes, MinMaxFrameBytes, MaxFrameBytesLimit},
	{"MAX_MESSAGE_BYTES", SettingMaxMessageBytes, DefaultMaxMessageBytes, 0, 0xFFFFFFFF},
	{"MAX_INFLIGHT", SettingMaxInflight, DefaultMaxInflight, 1, 0xFFFFFFFF},
}

// clampSetting applies the bounds of a received setting.
func clampSetting(key, v uint32) uint32 {
	for _, s := range helloSettings {
		if s.key == key {
			x := uint64(v)
			if x < s.min {
				x = s.min
			}
			if x > s.max {
				x = s.max
			}
			return uint32(x)
		}
	}
	return v
}
