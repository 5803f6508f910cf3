/**
 * Wasm decoder: the AssemblyScript scanner (assembly/scan.ts) behind the same Decoder interface
 * and frame table as the pure-TS reference (codec-ts.ts), with identical frames, errors and
 * error offsets (test/codec-diff.test.ts checks this on random streams).
 *
 * One instance per decoder (wasm-module.ts): each decoder owns its linear memory, so growing
 * it can never detach views that another decoder's batch handed out (two in-memory peers
 * push into each other synchronously), and nothing needs freeing: a dropped decoder is
 * garbage like any object. V8 reserves address space per Wasm memory (about 13,000 live
 * memories per process measured on x86-64); when instantiation throws, the codec
 * (codec-wasm.ts) hands out a pure-TS decoder with the same interface instead.
 *
 * Memory layout, owned by TS (the module keeps no state between calls):
 *
 *   [static data][res: 4 × i32][input region: `cap` bytes][frame table: rowCap × STRIDE i32]
 *
 * The input region holds the carried partial frame at its start followed by the new bytes.
 * push() copies each chunk in once, right after the carry, and makes one scan call (more only
 * when the table must grow). Rows for frames wholly inside the chunk use buffer 1 with
 * offsets into the JS chunk, so payload views are zero-copy; the one frame that began in the
 * carried bytes uses buffer 0, a view of linear memory (not retainable). The leftover partial
 * frame is moved to the region start lazily, at the next push/readBuffer, so buffer-0 rows
 * stay valid until then.
 *
 * Large frames: a partial frame bigger than `largeFrameBytes` (default 4 KiB) leaves linear
 * memory as soon as its word has passed the limit check: it is moved into a Buffer of its
 * exact size, the rest of it is copied (or read, in place) straight there, and when complete
 * it is validated by the reference scanner and reported as buffer 0 = that Buffer,
 * retainable. Payload bytes Wasm never looks at then cross into linear memory at most once,
 * and the memory stays at about one read no matter how large frames get.
 *
 * Memory grows only inside push, readBuffer and commit: the input region when carry + chunk
 * (or carry + READ_BYTES) does not fit, the table when a scan fills it. The carry is a
 * partial frame whose word already passed the maxFrameBytes check (or is under 4 bytes), so
 * a peer cannot make the codec hold more than maxFrameBytes + one chunk. Every view is
 * rebuilt after a growth; a growth moves the table (transient), never the carry.
 *
 * In-place reads (net.Socket `onread` with a function-form buffer): readBuffer() returns a
 * view of linear memory right after the carry (or of the large frame being collected); the
 * socket writes into it and commit(n) scans those bytes where they are, with no copy-in.
 * Rows then use buffer 0.
 */
import { CODEC_ERROR_NAMES, E_INCOMPLETE, MAX_FRAME_BYTES_LIMIT } from './constants.js';
import { type Decoder, EMPTY, FrameBatch } from './codec.js';
import { tsCodec } from './codec-ts.js';
import { InvalidArgumentError, codecError, type ProtocolError } from './errors.js';
import { COL_HEAD, STRIDE } from './frame-table.js';
import { type InPlaceDecoder, READ_BYTES } from './in-place-decoder.js';
import { type Exports, PAGE, type WasmMemory } from './wasm-module.js';

// ---- the result area and layout constants (assembly/layout.ts, assembly/errors.ts) ----
const R_CONSUMED = 1;
const R_ERR = 2;
const R_NEED = 3;
const RES_BYTES = 16;
/** assembly/errors.ts: the table is full; grow it and scan on from R_CONSUMED. */
const R_TABLE_FULL = 255;
/** split value that tags every row buffer 0 (in-place reads). */
const SPLIT_NONE = -1;
const ROW_BYTES = STRIDE * 4;
const INITIAL_INPUT = 64 * 1024;
const INITIAL_ROWS = 1024;
/** Default for `largeFrameBytes`, see WasmCodecOptions (codec-wasm.ts). */
export const LARGE_FRAME_BYTES = 4096;

const align16 = (n: number): number => (n + 15) & ~15;

export class WasmDecoder implements InPlaceDecoder {
  /** Which scanner this decoder runs (a wasm codec may hand out TS decoders, see createWasmCodec). */
  readonly kind = 'wasm';
  maxFrameBytes: number;
  private readonly ex: Exports;
  private readonly mem: WasmMemory;
  private readonly batch = new FrameBatch(0);
  private readonly resPtr: number;
  private readonly inPtr: number;
  private readonly largeFrameBytes: number;
  /** Input region bytes; the table starts right after it. */
  private cap = INITIAL_INPUT;
  private rowCap = INITIAL_ROWS;
  private tablePtr = 0;
  private ab: ArrayBuffer = new ArrayBuffer(0);
  private u8: Uint8Array = EMPTY;
  private res: Int32Array = new Int32Array(0);
  /** View of the input region: batch.buffers[0] unless a large frame just completed. */
  private region: Uint8Array = EMPTY;
  /** The view readBuffer() returned last. */
  private readView: Uint8Array = EMPTY;
  /** The carried partial frame: `carry` bytes at region offset `head`. */
  private head = 0;
  private carry = 0;
  /** Total size of the partial frame once its word is known (and checked), else 0. */
  private need = 0;
  /** A large partial frame collected outside linear memory: `largeLen` of `need` bytes. */
  private large: Buffer | null = null;
  private largeLen = 0;
  /** Validates completed large frames (the reference scanner, so the outcome is identical). */
  private largeCheck: Decoder | null = null;
  /** Stream offset of the first byte not consumed (error offsets). */
  private offset = 0;
  private dead: ProtocolError | null = null;

  constructor(ex: Exports, maxFrameBytes: number, largeFrameBytes: number) {
    this.ex = ex;
    this.mem = ex.memory;
    this.maxFrameBytes = maxFrameBytes;
    this.largeFrameBytes = largeFrameBytes;
    this.resPtr = align16(ex.heapBase() >>> 0);
    this.inPtr = this.resPtr + RES_BYTES;
    this.batch.retainable[0] = false;
    this.layout();
  }

  get pending(): number {
    return this.large !== null ? this.largeLen : this.carry;
  }

  push(chunk: Uint8Array, retainable = true): FrameBatch {
    const batch = this.begin(chunk, retainable);
    const n = chunk.length;
    if (this.dead !== null || n === 0) return batch;
    let from = 0;
    if (this.large !== null) {
      from = Math.min(this.need - this.largeLen, n);
      this.large.set(from === n ? chunk : chunk.subarray(0, from), this.largeLen);
      this.largeLen += from;
      if (this.largeLen < this.need) return batch;
      this.finishLarge();
      if (this.dead !== null || from === n) return batch;
    }
    if (this.head !== 0) this.compact();
    // The chunk goes right after the carry: chunk offset c is region offset carry + c. After
    // a large frame (from > 0, no carry) only its rest is copied, and scanned from `from`.
    const carry = this.carry;
    const len = carry + n;
    if (len > this.cap) this.growInput(len);
    else if (this.u8.length === 0) this.layout();
    // One copy in. (A JS byte loop is ~3x slower than set() even for a 46-byte chunk.)
    this.u8.set(from === 0 ? chunk : chunk.subarray(from), this.inPtr + carry + from);
    if (this.need > len) {
      // Still inside a frame whose word passed: nothing to scan yet.
      this.carry = len;
      return batch;
    }
    return this.scan(len, carry, from);
  }

  readBuffer(): Uint8Array {
    const large = this.large;
    if (large !== null) {
      // The socket writes the rest of the large frame straight into its own buffer.
      return new Uint8Array(large.buffer, large.byteOffset + this.largeLen, this.need - this.largeLen);
    }
    if (this.head !== 0) this.compact();
    const want = this.carry + READ_BYTES;
    if (want > this.cap) this.growInput(want);
    else if (this.u8.length === 0) this.layout();
    // A view costs ~40 ns; reuse the last one while it still starts after the carry
    // (always, when every read ends on a frame boundary).
    let v = this.readView;
    if (v.byteOffset !== this.inPtr + this.carry || v.length === 0) {
      v = new Uint8Array(this.ab, this.inPtr + this.carry, this.cap - this.carry);
      this.readView = v;
    }
    return v;
  }

  commit(n: number): FrameBatch {
    const batch = this.begin(EMPTY, true);
    if (this.dead !== null || n <= 0) return batch;
    if (this.large !== null) {
      if (n > this.need - this.largeLen) throw new InvalidArgumentError(`commit(${n}) does not match the last readBuffer()`);
      this.largeLen += n;
      if (this.largeLen === this.need) this.finishLarge();
      return batch;
    }
    if (this.head !== 0 || n > this.cap - this.carry) {
      throw new InvalidArgumentError(`commit(${n}) does not match the last readBuffer()`);
    }
    const len = this.carry + n;
    if (this.need > len) {
      this.carry = len;
      return batch;
    }
    return this.scan(len, SPLIT_NONE, 0);
  }

  end(): ProtocolError | null {
    if (this.dead !== null) return this.dead;
    const pending = this.pending;
    if (pending > 0) {
      this.dead = codecError(E_INCOMPLETE, this.offset, `stream ended inside a frame (${pending} bytes)`);
      return this.dead;
    }
    return null;
  }

  private begin(chunk: Uint8Array, retainable: boolean): FrameBatch {
    const batch = this.batch;
    batch.count = 0;
    batch.buffers[1] = chunk;
    batch.retainable[1] = retainable;
    batch.error = this.dead;
    if (batch.buffers[0] !== this.region) {
      batch.buffers[0] = this.region;
      batch.retainable[0] = false;
    }
    return batch;
  }

  private fail(code: number, offset: number): void {
    this.dead = codecError(code, offset);
    this.batch.error = this.dead;
    this.head = this.carry = this.need = this.largeLen = 0;
    this.large = null;
  }

  /**
   * Scan region [start, len); frames at offset >= split lie in the JS chunk at the same
   * offsets minus split. Rows are appended after the batch's current rows.
   */
  private scan(len: number, split: number, start: number): FrameBatch {
    const batch = this.batch;
    const ex = this.ex;
    // The carried frame's word was checked when it arrived: do not check it again.
    const wordFrom = this.carry >= 4 ? 1 : 0;
    const max = this.limit();
    const first = start;
    let count = batch.count;
    let err: number;
    for (;;) {
      count += ex.scan(this.inPtr, len, start, split, wordFrom, max,
        this.tablePtr + count * ROW_BYTES, this.rowCap - count, this.resPtr);
      err = this.res[R_ERR]!;
      if (err !== R_TABLE_FULL) break;
      start = this.res[R_CONSUMED]!;
      this.growTable();
    }
    batch.count = count;
    const consumed = this.res[R_CONSUMED]!;
    if (err !== 0) {
      this.fail(err, this.offset + consumed - first);
      return batch;
    }
    this.offset += consumed - first;
    this.head = consumed;
    this.carry = len - consumed;
    this.need = this.res[R_NEED]!;
    if (this.need > this.largeFrameBytes) this.startLarge();
    return batch;
  }

  /**
   * The partial frame is large: move it out of linear memory into a Buffer of its exact size
   * (its length already passed the limit check) and collect the rest there. Its payload then
   * never goes through linear memory, and the memory does not grow to the largest frame seen.
   */
  private startLarge(): void {
    const large = Buffer.allocUnsafe(this.need);
    const from = this.inPtr + this.head;
    large.set(this.u8.subarray(from, from + this.carry));
    this.large = large;
    this.largeLen = this.carry;
    this.head = this.carry = 0;
  }

  /** The large frame is complete: validate it and add its row (buffer 0 = its own Buffer). */
  private finishLarge(): void {
    const large = this.large!;
    const total = this.need;
    this.large = null;
    this.largeLen = this.need = 0;
    // The word was checked when it arrived; do not check it again against today's limit.
    const check = (this.largeCheck ??= tsCodec.createDecoder(MAX_FRAME_BYTES_LIMIT));
    const got = check.push(large);
    if (got.error !== null) {
      this.fail(CODEC_ERROR_NAMES.indexOf(got.error.reason), this.offset);
      return;
    }
    this.offset += total;
    if (got.count === 0) return; // EXTENSION
    const batch = this.batch;
    const t = batch.table;
    t.set(got.table.subarray(0, STRIDE), 0);
    t[COL_HEAD] = t[COL_HEAD]! & ~(1 << 8);
    batch.count = 1;
    batch.buffers[0] = large;
    batch.retainable[0] = true;
  }

  /** maxFrameBytes as the u32 the scanner compares with, same outcome as codec-ts.ts. */
  private limit(): number {
    const m = this.maxFrameBytes;
    // NaN compares false in codec-ts.ts (nothing is too large): same as the format's limit.
    if (!(m < MAX_FRAME_BYTES_LIMIT)) return MAX_FRAME_BYTES_LIMIT;
    return m > 0 ? Math.floor(m) : 0;
  }

  /** Move the carried partial frame to the region start. */
  private compact(): void {
    if (this.u8.length === 0) this.layout();
    const from = this.inPtr + this.head;
    if (this.carry > 0) this.u8.copyWithin(this.inPtr, from, from + this.carry);
    this.head = 0;
  }

  private growInput(min: number): void {
    this.layout(align16(Math.max(min, this.cap * 2)), this.rowCap);
  }

  private growTable(): void {
    this.layout(this.cap, this.rowCap * 2);
  }

  /**
   * Grow memory to fit an input region of `cap` bytes and a table of `rowCap` rows, then
   * rebuild every view. The new sizes are kept only once the memory has them (grow throws
   * a RangeError when it cannot: the push then throws with the decoder unchanged).
   */
  private layout(cap = this.cap, rowCap = this.rowCap): void {
    const tablePtr = this.inPtr + cap;
    const bytes = tablePtr + rowCap * ROW_BYTES;
    const have = this.mem.buffer.byteLength;
    if (bytes > have) this.mem.grow(Math.ceil((bytes - have) / PAGE));
    this.cap = cap;
    this.rowCap = rowCap;
    this.tablePtr = tablePtr;
    const ab = this.mem.buffer as ArrayBuffer;
    this.ab = ab;
    this.u8 = new Uint8Array(ab);
    this.res = new Int32Array(ab, this.resPtr, RES_BYTES / 4);
    this.batch.table = new Int32Array(ab, this.tablePtr, this.rowCap * STRIDE);
    this.region = new Uint8Array(ab, this.inPtr, this.cap);
    if (this.batch.retainable[0] === false) this.batch.buffers[0] = this.region;
    this.readView = EMPTY;
  }
}

