package main

// Byte layouts of the readings service's messages: the same fixed little-endian records as
// the Node example's src/layout.ts, which holds the normative comment. In short:
//
//	Row     28 bytes: id int64 @0, ts int64 @8, value float64 @16, sensor uint32 @24
//	Query   20 bytes: from int64 @0 (inclusive, ms), to int64 @8 (exclusive), sensor uint32 @16
//	Digest  32 bytes: count int64 @0, idSum int64 @8, valueTotal float64 @16, fold uint32 @24, 0 @28
//	Cursor  16 bytes: produced int64 @0, state uint32 @8, open uint32 @12
//
// Go's int64 holds every value of the fields, so unlike the JavaScript side nothing here
// refuses an id or a timestamp beyond 2^53.

import (
	"encoding/binary"
	"fmt"
	"math"
)

const (
	rowBytes    = 28
	queryBytes  = 20
	digestBytes = 32
	cursorBytes = 16
)

type row struct {
	id, ts int64
	value  float64
	sensor uint32
}

type query struct {
	from, to int64
	sensor   uint32
}

type digest struct {
	count, idSum int64
	valueTotal   float64
	fold         uint32
}

// cursorState is where a stream's cursor is, as the cursor method reports it.
type cursorState uint32

const (
	stateUnknown     cursorState = iota // no stream with that tag yet
	stateOpen                           // rows are being read (or the producer waits for credit)
	stateDone                           // every row was sent
	stateClosedEarly                    // the caller stopped early; rows.Close() finalized the statement
	stateFailed                         // the query failed
	stateLeaked                         // closing the statement failed: a leaked cursor
)

var cursorStateNames = [...]string{"unknown", "open", "done", "closed early", "failed", "leaked"}

func (s cursorState) String() string {
	if int(s) < len(cursorStateNames) {
		return cursorStateNames[s]
	}
	return fmt.Sprintf("state %d", uint32(s))
}

// appendRow appends the 28-byte encoding of r to b.
func appendRow(b []byte, r row) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(r.id))
	b = binary.LittleEndian.AppendUint64(b, uint64(r.ts))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.value))
	return binary.LittleEndian.AppendUint32(b, r.sensor)
}

// The decoders' messages are the JavaScript side's ("query is 3 bytes, expected 20"): a
// client may match on them.
func checkLength(b []byte, want int, what string) error {
	if len(b) != want {
		return fmt.Errorf("%s is %d bytes, expected %d", what, len(b), want)
	}
	return nil
}

func decodeRow(b []byte) (row, error) {
	if err := checkLength(b, rowBytes, "row"); err != nil {
		return row{}, err
	}
	return row{
		id:     int64(binary.LittleEndian.Uint64(b[0:])),
		ts:     int64(binary.LittleEndian.Uint64(b[8:])),
		value:  math.Float64frombits(binary.LittleEndian.Uint64(b[16:])),
		sensor: binary.LittleEndian.Uint32(b[24:]),
	}, nil
}

func encodeQuery(q query) []byte {
	b := make([]byte, 0, queryBytes)
	b = binary.LittleEndian.AppendUint64(b, uint64(q.from))
	b = binary.LittleEndian.AppendUint64(b, uint64(q.to))
	return binary.LittleEndian.AppendUint32(b, q.sensor)
}

func decodeQuery(b []byte) (query, error) {
	if err := checkLength(b, queryBytes, "query"); err != nil {
		return query{}, err
	}
	return query{
		from:   int64(binary.LittleEndian.Uint64(b[0:])),
		to:     int64(binary.LittleEndian.Uint64(b[8:])),
		sensor: binary.LittleEndian.Uint32(b[16:]),
	}, nil
}

func encodeDigest(d digest) []byte {
	b := make([]byte, 0, digestBytes)
	b = binary.LittleEndian.AppendUint64(b, uint64(d.count))
	b = binary.LittleEndian.AppendUint64(b, uint64(d.idSum))
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(d.valueTotal))
	b = binary.LittleEndian.AppendUint32(b, d.fold)
	return binary.LittleEndian.AppendUint32(b, 0)
}

func decodeDigest(b []byte) (digest, error) {
	if err := checkLength(b, digestBytes, "digest"); err != nil {
		return digest{}, err
	}
	return digest{
		count:      int64(binary.LittleEndian.Uint64(b[0:])),
		idSum:      int64(binary.LittleEndian.Uint64(b[8:])),
		valueTotal: math.Float64frombits(binary.LittleEndian.Uint64(b[16:])),
		fold:       binary.LittleEndian.Uint32(b[24:]),
	}, nil
}

func encodeCursor(produced int64, state cursorState, open int) []byte {
	b := make([]byte, 0, cursorBytes)
	b = binary.LittleEndian.AppendUint64(b, uint64(produced))
	b = binary.LittleEndian.AppendUint32(b, uint32(state))
	return binary.LittleEndian.AppendUint32(b, uint32(open))
}

// foldStart is the FNV-1a offset basis: the fold of no rows.
const foldStart uint32 = 0x811c9dc5

// foldRow folds one encoded row into a running checksum: FNV-1a over the row's seven
// little-endian u32 words, h = (h ^ word) * 16777619 mod 2^32.
func foldRow(h uint32, encoded []byte) uint32 {
	for off := 0; off < rowBytes; off += 4 {
		h = (h ^ binary.LittleEndian.Uint32(encoded[off:])) * 16777619
	}
	return h
}
