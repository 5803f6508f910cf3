/**
 * The Codec interface, decoding only: bytes in, a frame table out. (Encoding has one
 * implementation, frame-writer.ts: frames in, bytes out.)
 *
 * Decoding is a batch: `push(chunk)` scans every complete frame in the chunk (plus bytes
 * carried over from earlier chunks) and fills one row of STRIDE int32 per frame into
 * `batch.table` (columns in frame-table.ts). Both codecs fill the same table, so everything
 * above it (session, tests) is shared. A Wasm scanner fills it from linear memory with one
 * call per chunk.
 *
 * Payload lifetime: a row's bytes live in `batch.buffers[b]`, b = (head >> 8) & 1:
 *   b = 1: the chunk passed to `push`, at the same offsets (zero copy);
 *   b = 0: codec-owned bytes: a frame that straddled two chunks (in a buffer of its own,
 *          retainable), or Wasm / in-place read memory (reused: not retainable).
 * Views returned by `bodyView` are valid until the next `push`. `body` returns bytes the
 * caller may keep forever: a view when the backing buffer is retainable
 * (`batch.retainable[b]`), else a copy.
 */
import { EXT_CREDIT, EXT_DEADLINE, EXT_METADATA } from './constants.js';
import {
  COL_AUX, COL_BODY_LEN, COL_BODY_OFF, COL_EXT_LEN, COL_EXT_OFF, COL_HEAD, COL_ID, COL_NAMES, STRIDE,
} from './frame-table.js';
import type { ProtocolError } from './errors.js';

/** Node's internal Buffer subclass: the cheapest way to make a Buffer view (no checks). */
export const FastBuffer = (Buffer as unknown as Record<symbol, unknown>)[Symbol.species] as new (
  buffer: ArrayBufferLike,
  byteOffset: number,
  length: number,
) => Buffer;

export const EMPTY = Buffer.alloc(0);

/** Bodies up to this size from a reused buffer are served from one copy of the batch's span. */
const SPAN_BODY_MAX = 2048;
/** Largest span copied at once. */
const SPAN_MAX = 256 * 1024;

export class FrameBatch {
  private n = 0;
  /** Copy of the small bodies' span of a non-retainable buffer, made once per batch (see body). */
  private span: Buffer | null = null;
  private spanOf = -1;
  private spanStart = 0;
  /** count * STRIDE int32, see frame-table.ts. May be replaced when it grows. */
  table: Int32Array;
  /** Backing bytes of rows: [codec-owned, chunk]. */
  readonly buffers: Uint8Array[] = [EMPTY, EMPTY];
  /** Whether a view onto buffers[b] may outlive the next push. */
  readonly retainable: boolean[] = [true, true];
  /** Set when the input broke the protocol after `count` good frames; the decoder is then dead. */
  error: ProtocolError | null = null;

  constructor(capacity = 64) {
    this.table = new Int32Array(capacity * STRIDE);
  }

  /** Complete frames in this batch. Decoders reset it at every push, which drops the span copy. */
  get count(): number {
    return this.n;
  }
  set count(v: number) {
    this.n = v;
    this.spanOf = -1;
    this.span = null;
  }

  type(i: number): number {
    return this.table[i * STRIDE + COL_HEAD]! & 0xf;
  }
  flags(i: number): number {
    return (this.table[i * STRIDE + COL_HEAD]! >> 4) & 0xf;
  }
  id(i: number): number {
    return this.table[i * STRIDE + COL_ID]! >>> 0;
  }
  /** STATUS/GOAWAY/ERROR code, CREDIT n. */
  aux(i: number): number {
    return this.table[i * STRIDE + COL_AUX]! >>> 0;
  }
  bytes(i: number): Uint8Array {
    return this.buffers[(this.table[i * STRIDE + COL_HEAD]! >> 8) & 1]!;
  }
  bodyLength(i: number): number {
    return this.table[i * STRIDE + COL_BODY_LEN]!;
  }
  /** Borrowed view of the body: valid until the next push. */
  bodyView(i: number): Buffer {
    const r = i * STRIDE;
    const b = this.bytes(i);
    return new FastBuffer(b.buffer, b.byteOffset + this.table[r + COL_BODY_OFF]!, this.table[r + COL_BODY_LEN]!);
  }
  /**
   * Body bytes the caller may keep: a view when the backing buffer allows it, else a copy.
   * From a reused buffer (in-place reads, Wasm memory) the small bodies of the whole batch
   * are copied out together on the first call, and each is a view into that one copy: one
   * allocation per read instead of one per message (like the views 'data' chunks give).
   */
  body(i: number): Buffer {
    const r = i * STRIDE;
    const bi = (this.table[r + COL_HEAD]! >> 8) & 1;
    const b = this.buffers[bi]!;
    const rel = this.table[r + COL_BODY_OFF]!;
    const len = this.table[r + COL_BODY_LEN]!;
    if (this.retainable[bi]) return new FastBuffer(b.buffer, b.byteOffset + rel, len);
    if (len <= SPAN_BODY_MAX) {
      if (this.spanOf !== bi) this.copySpan(bi);
      const span = this.span;
      if (span !== null && rel >= this.spanStart && rel + len <= this.spanStart + span.length) {
        return new FastBuffer(span.buffer, span.byteOffset + rel - this.spanStart, len);
      }
    }
    const copy = Buffer.allocUnsafe(len);
    copy.set(new Uint8Array(b.buffer, b.byteOffset + rel, len));
    return copy;
  }

  private copySpan(bi: number): void {
    this.spanOf = bi;
    this.span = null;
    const t = this.table;
    let lo = Infinity;
    let hi = 0;
    for (let r = 0; r < this.n * STRIDE; r += STRIDE) {
      const len = t[r + COL_BODY_LEN]!;
      if (((t[r + COL_HEAD]! >> 8) & 1) !== bi || len > SPAN_BODY_MAX || len === 0) continue;
      const off = t[r + COL_BODY_OFF]!;
      if (off < lo) lo = off;
      if (off + len > hi) hi = off + len;
    }
    if (hi <= lo || hi - lo > SPAN_MAX) return;
    const b = this.buffers[bi]!;
    const span = Buffer.allocUnsafe(hi - lo);
    span.set(new Uint8Array(b.buffer, b.byteOffset + lo, hi - lo));
    this.span = span;
    this.spanStart = lo;
  }
  /** Body decoded as UTF-8 (STATUS/GOAWAY/ERROR messages). */
  bodyText(i: number): string {
    const r = i * STRIDE;
    const off = this.table[r + COL_BODY_OFF]!;
    return utf8(this.bytes(i), off, off + this.table[r + COL_BODY_LEN]!);
  }
  /** REQUEST: service name byte length, offset of its first byte. */
  serviceLength(i: number): number {
    return this.table[i * STRIDE + COL_AUX]! & 0xff;
  }
  methodLength(i: number): number {
    return (this.table[i * STRIDE + COL_AUX]! >> 8) & 0xff;
  }
  namesOffset(i: number): number {
    return this.table[i * STRIDE + COL_NAMES]!;
  }
  service(i: number): string {
    const off = this.namesOffset(i);
    return utf8(this.bytes(i), off, off + this.serviceLength(i));
  }
  method(i: number): string {
    const off = this.namesOffset(i) + this.serviceLength(i) + 1;
    return utf8(this.bytes(i), off, off + this.methodLength(i));
  }
  hasExt(i: number): boolean {
    return this.table[i * STRIDE + COL_EXT_LEN]! > 0;
  }
  /** REQUEST ext entries (validated by the scanner), read. */
  ext(i: number): RequestExt {
    const r = i * STRIDE;
    const off = this.table[r + COL_EXT_OFF]!;
    return readExt(this.bytes(i), off, off + this.table[r + COL_EXT_LEN]!);
  }
  /** HELLO settings as [key, value] pairs (validated by the scanner, so read without checks). */
  settings(i: number): Array<[number, number]> {
    const r = i * STRIDE;
    const b = this.bytes(i);
    const end = this.table[r + COL_BODY_OFF]! + this.table[r + COL_BODY_LEN]!;
    const out: Array<[number, number]> = [];
    const v: VarintResult = { value: 0, next: this.table[r + COL_BODY_OFF]! };
    while (v.next < end) {
      if (readVarint(b, v.next, end, v) !== 0) break; // (cannot happen after the scan; never loop)
      const key = v.value;
      if (readVarint(b, v.next, end, v) !== 0) break;
      out.push([key, v.value]);
    }
    return out;
  }
}

/** A frame decoder: one per connection, holds at most one partial frame. */
export interface Decoder {
  /** Which codec this decoder belongs to. */
  readonly kind?: 'ts' | 'wasm';
  /**
   * Scan `chunk` after any carried bytes. Returns the decoder's reused batch. After a batch
   * with `error`, the decoder is dead: further pushes return the same error.
   * @param retainable false when `chunk` is a buffer the caller will overwrite (onread).
   */
  push(chunk: Uint8Array, retainable?: boolean): FrameBatch;
  /** The stream ended: a partial frame left over is E_INCOMPLETE, else null. */
  end(): ProtocolError | null;
  /** Bytes of a partial frame carried over. */
  readonly pending: number;
  /** Largest frame accepted (the limit announced to the peer). */
  maxFrameBytes: number;
  /**
   * Optional in-place reading (net.Socket `onread`): a buffer for the next read, placed right
   * after the carried bytes, then `commit(n)` scans the n bytes the socket wrote into it.
   * Rows then point into reused memory: `body()` copies.
   */
  readBuffer?(): Uint8Array;
  commit?(n: number): FrameBatch;
}

export interface Codec {
  readonly kind: 'ts' | 'wasm';
  createDecoder(maxFrameBytes: number): Decoder;
}

// ---- shared field parsing ---------------------------------------------------

export interface VarintResult {
  value: number;
  next: number;
}

/**
 * Read a canonical u32 LEB128 varint at `pos` in [pos, end). Writes value/next into `out`.
 * Returns 0, or E_TRUNCATED (6) when it runs past `end`, or E_BAD_VARINT (5) when overlong
 * or above u32.
 */
export function readVarint(b: Uint8Array, pos: number, end: number, out: VarintResult): number {
  let value = 0;
  // A multiplier, not `2 ** shift` (V8 takes a slow path for it: ~45 ns more per byte) nor
  // `<<` (32-bit signed: the fifth byte would overflow).
  let scale = 1;
  for (let i = 0; i < 5; i++) {
    if (pos >= end) return 6;
    const byte = b[pos++]!;
    if (i === 4 && byte > 0x0f) return 5;
    value += (byte & 0x7f) * scale;
    if ((byte & 0x80) === 0) {
      if (byte === 0 && i > 0) return 5; // overlong: a trailing zero group
      out.value = value;
      out.next = pos;
      return 0;
    }
    scale *= 128;
  }
  return 5;
}

export function varintSize(v: number): number {
  return v < 0x80 ? 1 : v < 0x4000 ? 2 : v < 0x200000 ? 3 : v < 0x10000000 ? 4 : 5;
}

export interface RequestExt {
  deadlineMs?: number;
  credit?: number;
  metadata?: Array<[string, string]>;
}

/**
 * The values of REQUEST ext entries in [start, end). Unknown tags are skipped (spec §12).
 *
 * The scanner validated the block before it wrote the row (codec-ts.ts `validExt`,
 * assembly/scan.ts), with the error and offset a bad block must get; this walk only reads
 * the values and checks nothing again. The walk itself stays: the table has no room for the
 * values (two more columns would widen the row of every frame), and it costs about 15 ns
 * for a deadline, and nothing for the many requests that carry no ext block.
 */
export function readExt(b: Uint8Array, start: number, end: number): RequestExt {
  const ext: RequestExt = {};
  const v: VarintResult = { value: 0, next: start };
  let pos = start;
  while (pos < end) {
    const tag = b[pos]!;
    if (readVarint(b, pos + 1, end, v) !== 0) break; // (cannot happen after the scan; never loop)
    const vstart = v.next;
    const vend = vstart + v.value;
    if (tag === EXT_DEADLINE) {
      readVarint(b, vstart, vend, v);
      ext.deadlineMs = v.value;
    } else if (tag === EXT_CREDIT) {
      readVarint(b, vstart, vend, v);
      ext.credit = v.value;
    } else if (tag === EXT_METADATA) {
      const kend = vstart + 1 + b[vstart]!;
      (ext.metadata ??= []).push([utf8(b, vstart + 1, kend), utf8(b, kend, vend)]);
    }
    pos = vend;
  }
  return ext;
}

const decoder = new TextDecoder();
export function utf8(b: Uint8Array, start: number, end: number): string {
  if (end - start < 16) {
    // Short ASCII (names, short messages): a loop beats TextDecoder's call overhead.
    let s = '';
    for (let i = start; i < end; i++) {
      const c = b[i]!;
      if (c > 0x7f) return decoder.decode(b.subarray(start, end));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decoder.decode(b.subarray(start, end));
}
