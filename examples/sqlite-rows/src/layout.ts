/**
 * Byte layouts of the `readings` service's messages. Every message is a fixed-size record,
 * little-endian like pipit's own frame word (spec/PROTOCOL.md §2.1), with no header, no
 * padding between fields and no version byte: the method name says what the bytes are.
 * A server in another language produces identical bytes with plain little-endian stores,
 * e.g. in Go:
 *
 *   binary.LittleEndian.PutUint64(b[0:], uint64(id))
 *   binary.LittleEndian.PutUint64(b[8:], uint64(ts))
 *   binary.LittleEndian.PutUint64(b[16:], math.Float64bits(value))
 *   binary.LittleEndian.PutUint32(b[24:], uint32(sensor))
 *
 * Row (one stream message per table row), ROW_BYTES = 28:
 *   offset size type     field
 *   0      8    int64    id      rowid (INTEGER PRIMARY KEY), two's complement
 *   8      8    int64    ts      milliseconds since 1970-01-01T00:00:00Z, two's complement
 *   16     8    float64  value   IEEE 754 binary64, the bits SQLite returns for the REAL
 *   24     4    uint32   sensor  1 to 4294967295 (the schema's CHECK keeps it in range)
 * The 8-byte fields come first so each sits at a multiple of 8 within the message.
 *
 * Query (request of `bySensor`), QUERY_BYTES = 20: rows of one sensor with from <= ts < to.
 *   0      8    int64    from    inclusive, ms since the epoch
 *   8      8    int64    to      exclusive, ms since the epoch
 *   16     4    uint32   sensor
 *
 * Digest (response of `digest`), DIGEST_BYTES = 32: what SQLite says about a set of rows,
 * to check a stream against.
 *   0      8    int64    count       count(*)
 *   8      8    int64    idSum       sum(id)
 *   16     8    float64  valueTotal  total(value)
 *   24     4    uint32   fold        foldRow() over the rows' encodings, in stream order
 *   28     4    uint32   reserved    0
 *
 * Cursor (response of `cursor`), CURSOR_BYTES = 16: the server's view of one stream.
 *   0      8    int64    produced    rows the server's generator has yielded
 *   8      4    uint32   state       CursorState
 *   12     4    uint32   open        cursors open on the server right now (all streams)
 *
 * JavaScript numbers hold integers exactly up to 2^53 - 1: this implementation refuses to
 * encode or decode an int64 outside that range (RangeError) rather than round it silently.
 */

export const ROW_BYTES = 28;
export const QUERY_BYTES = 20;
export const DIGEST_BYTES = 32;
export const CURSOR_BYTES = 16;

/** One row of the `readings` table. */
export interface Reading {
  id: number;
  sensor: number;
  ts: number;
  value: number;
}

export interface Query {
  sensor: number;
  from: number;
  to: number;
}

export interface Digest {
  count: number;
  idSum: number;
  valueTotal: number;
  fold: number;
}

/** Where a server-side cursor is. */
export enum CursorState {
  /** No stream with that tag yet. */
  UNKNOWN = 0,
  /** The generator is running (or waiting for credit). */
  OPEN = 1,
  /** Every row was sent. */
  DONE = 2,
  /** The caller stopped early: the generator's finally ran and the statement is released. */
  CLOSED_EARLY = 3,
  /** The query failed. */
  FAILED = 4,
  /** The generator finished but the statement still reports busy: a leaked cursor. */
  LEAKED = 5,
}

export const CURSOR_STATE_NAMES = ['unknown', 'open', 'done', 'closed early', 'failed', 'leaked'] as const;

const TWO_32 = 4294967296;

function writeInt64(buf: Buffer, value: number, offset: number): void {
  if (!Number.isSafeInteger(value)) throw new RangeError(`int64 field at offset ${offset} holds ${value}, not a safe integer`);
  const hi = Math.floor(value / TWO_32);
  buf.writeUInt32LE(value - hi * TWO_32, offset);
  buf.writeInt32LE(hi, offset + 4);
}

function readInt64(buf: Uint8Array, offset: number): number {
  const b = buf as Buffer;
  const hi = b.readInt32LE(offset + 4);
  // |hi| < 2^21 keeps hi * 2^32 + lo within ±(2^53 - 1).
  if (hi >= 0x200000 || hi < -0x200000) throw new RangeError(`int64 field at offset ${offset} does not fit a JavaScript number exactly`);
  return hi * TWO_32 + b.readUInt32LE(offset);
}

function checkLength(buf: Uint8Array, expected: number, what: string): Buffer {
  if (buf.length !== expected) throw new RangeError(`${what} is ${buf.length} bytes, expected ${expected}`);
  return Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
}

/** A row as SQLite returns it in raw mode: [id, ts, value, sensor] (the SELECT's column order). */
export type RawRow = [id: number, ts: number, value: number, sensor: number];

/** Encode one row. A new Buffer per row: pipit may hold a stream message until it is written. */
export function encodeRow(id: number, ts: number, value: number, sensor: number): Buffer {
  const b = Buffer.allocUnsafe(ROW_BYTES);
  writeInt64(b, id, 0);
  writeInt64(b, ts, 8);
  b.writeDoubleLE(value, 16);
  b.writeUInt32LE(sensor, 24);
  return b;
}

export function decodeRow(bytes: Uint8Array): Reading {
  const b = checkLength(bytes, ROW_BYTES, 'row');
  return { id: readInt64(b, 0), ts: readInt64(b, 8), value: b.readDoubleLE(16), sensor: b.readUInt32LE(24) };
}

export function encodeQuery(q: Query): Buffer {
  const b = Buffer.alloc(QUERY_BYTES);
  writeInt64(b, q.from, 0);
  writeInt64(b, q.to, 8);
  b.writeUInt32LE(q.sensor, 16);
  return b;
}

export function decodeQuery(bytes: Uint8Array): Query {
  const b = checkLength(bytes, QUERY_BYTES, 'query');
  return { from: readInt64(b, 0), to: readInt64(b, 8), sensor: b.readUInt32LE(16) };
}

export function encodeDigest(d: Digest): Buffer {
  const b = Buffer.alloc(DIGEST_BYTES);
  writeInt64(b, d.count, 0);
  writeInt64(b, d.idSum, 8);
  b.writeDoubleLE(d.valueTotal, 16);
  b.writeUInt32LE(d.fold, 24);
  return b;
}

export function decodeDigest(bytes: Uint8Array): Digest {
  const b = checkLength(bytes, DIGEST_BYTES, 'digest');
  return { count: readInt64(b, 0), idSum: readInt64(b, 8), valueTotal: b.readDoubleLE(16), fold: b.readUInt32LE(24) };
}

export function encodeCursor(produced: number, state: CursorState, open: number): Buffer {
  const b = Buffer.alloc(CURSOR_BYTES);
  writeInt64(b, produced, 0);
  b.writeUInt32LE(state, 8);
  b.writeUInt32LE(open, 12);
  return b;
}

export function decodeCursor(bytes: Uint8Array): { produced: number; state: CursorState; open: number } {
  const b = checkLength(bytes, CURSOR_BYTES, 'cursor');
  return { produced: readInt64(b, 0), state: b.readUInt32LE(8) as CursorState, open: b.readUInt32LE(12) };
}

/** FNV-1a offset basis: the fold of no rows. */
export const FOLD_START = 0x811c9dc5;

/**
 * Fold one encoded row into a running 32-bit checksum: FNV-1a over the row's seven
 * little-endian u32 words (not its bytes: seven steps instead of 28), each step
 * `h = (h ^ word) * 16777619 mod 2^32`. Order-sensitive, so it also checks row order.
 */
export function foldRow(h: number, row: Buffer): number {
  for (let off = 0; off < ROW_BYTES; off += 4) h = Math.imul(h ^ row.readUInt32LE(off), 16777619);
  return h >>> 0;
}
