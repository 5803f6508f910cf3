/**
 * Pure-TypeScript codec: the reference scanner. Frames wholly inside a chunk are scanned in
 * place (rows point into the chunk, buffer 1). Only a frame that straddles chunks is copied,
 * into a buffer allocated for exactly that frame once its length has passed the limit check
 * (buffer 0, retainable because nothing reuses it).
 *
 * Validation order per frame (spec/PROTOCOL.md §14): from the 4-byte word alone
 * too-large, too-short, reserved type, reserved flags; then, with the whole frame present,
 * the id varint and the type's body.
 */
import {
  ALLOWED_FLAGS, E_BAD_BODY, E_BAD_EXT, E_BAD_FLAGS, E_EXT_OVERRUN, E_FRAME_TOO_LARGE, E_FRAME_TOO_SHORT,
  E_INCOMPLETE, E_NAME_OVERRUN, EXT_CREDIT, EXT_DEADLINE, EXT_METADATA, E_UNKNOWN_TYPE, F_END, F_EXT,
  F_FOLLOWS, T_CANCEL, T_CREDIT, T_DATA, T_ERROR, T_EXTENSION, T_GOAWAY, T_HELLO, T_PING, T_PONG,
  T_REQUEST, T_RESPONSE, T_STATUS, WORD_BYTES,
} from './constants.js';
import {
  COL_AUX, COL_BODY_LEN, COL_BODY_OFF, COL_EXT_LEN, COL_EXT_OFF, COL_HEAD, COL_ID, COL_NAMES, STRIDE,
} from './frame-table.js';
import { type Codec, type Decoder, EMPTY, FrameBatch, readVarint, type VarintResult } from './codec.js';
import { codecError, type ProtocolError } from './errors.js';

/** Check the 4-byte word; returns 0 or an E_* code. */
export function checkWord(len: number, tf: number, maxFrameBytes: number): number {
  if (WORD_BYTES + len > maxFrameBytes) return E_FRAME_TOO_LARGE;
  if (len === 0) return E_FRAME_TOO_SHORT;
  const type = tf & 0xf;
  if (type > 0xa && type < 0xf) return E_UNKNOWN_TYPE;
  const flags = tf >> 4;
  if ((flags & ~ALLOWED_FLAGS[type]!) !== 0) return E_BAD_FLAGS;
  if (type === T_RESPONSE && (flags & (F_END | F_FOLLOWS)) === (F_END | F_FOLLOWS)) return E_BAD_FLAGS;
  return 0;
}

/**
 * Ext entries in [p, end): u8 tag, varint len, value; DEADLINE and CREDIT values are exactly
 * one canonical varint; a METADATA value starts with a key length that fits.
 */
function validExt(b: Uint8Array, p: number, end: number, v: VarintResult): boolean {
  while (p < end) {
    const tag = b[p]!;
    if (readVarint(b, p + 1, end, v) !== 0) return false;
    const vend = v.next + v.value;
    if (vend > end) return false;
    if (tag === EXT_DEADLINE || tag === EXT_CREDIT) {
      if (readVarint(b, v.next, vend, v) !== 0 || v.next !== vend) return false;
    } else if (tag === EXT_METADATA) {
      if (v.next >= vend || v.next + 1 + b[v.next]! > vend) return false;
    }
    p = vend;
  }
  return true;
}

class TsDecoder implements Decoder {
  maxFrameBytes: number;
  private readonly batch = new FrameBatch();
  private readonly v: VarintResult = { value: 0, next: 0 };
  /** Partial frame: `carry` holds `carryLen` bytes; `carryNeed` is its total size once known. */
  private carry: Uint8Array = EMPTY;
  private readonly word = new Uint8Array(WORD_BYTES);
  private carryLen = 0;
  private carryNeed = 0;
  /** Stream offset of the first byte not yet consumed (error offsets). */
  private offset = 0;
  private dead: ProtocolError | null = null;

  constructor(maxFrameBytes: number) {
    this.maxFrameBytes = maxFrameBytes;
  }

  get pending(): number {
    return this.carryLen;
  }

  push(chunk: Uint8Array, retainable = true): FrameBatch {
    const batch = this.batch;
    batch.count = 0;
    batch.buffers[1] = chunk;
    batch.retainable[1] = retainable;
    batch.error = this.dead;
    if (this.dead !== null) return batch;
    let pos = 0;
    if (this.carryLen > 0) {
      pos = this.fillCarry(chunk);
      if (batch.error !== null) return batch;
      // carryLen is 0 again when the carried frame was a skipped EXTENSION.
      if (this.carryLen > 0) {
        if (this.carryNeed === 0 || this.carryLen < this.carryNeed) return batch;
        batch.buffers[0] = this.carry;
        const err = this.scanFrame(this.carry, 0, 0);
        if (err !== 0) return this.fail(err, this.offset);
        this.offset += this.carryNeed;
        this.carryLen = 0;
        this.carryNeed = 0;
        this.carry = EMPTY;
      }
    }
    const end = chunk.length;
    const max = this.maxFrameBytes;
    while (end - pos >= WORD_BYTES) {
      const len = chunk[pos]! | (chunk[pos + 1]! << 8) | (chunk[pos + 2]! << 16);
      const tf = chunk[pos + 3]!;
      const werr = checkWord(len, tf, max);
      if (werr !== 0) return this.fail(werr, this.offset);
      const total = WORD_BYTES + len;
      if (end - pos < total) break;
      if ((tf & 0xf) !== T_EXTENSION) {
        const err = this.scanFrame(chunk, pos, 1);
        if (err !== 0) return this.fail(err, this.offset);
      }
      pos += total;
      this.offset += total;
    }
    if (pos < end) this.fillCarry(chunk.subarray(pos));
    return batch;
  }

  end(): ProtocolError | null {
    if (this.dead !== null) return this.dead;
    if (this.carryLen > 0) {
      this.dead = codecError(E_INCOMPLETE, this.offset, `stream ended inside a frame (${this.carryLen} bytes)`);
      return this.dead;
    }
    return null;
  }

  private fail(code: number, offset: number): FrameBatch {
    this.dead = codecError(code, offset);
    this.batch.error = this.dead;
    this.carryLen = 0;
    this.carry = EMPTY;
    return this.batch;
  }

  /** Append bytes of `src` to the partial frame; returns how many were taken. */
  private fillCarry(src: Uint8Array): number {
    let taken = 0;
    if (this.carryNeed === 0) {
      // The word is not complete yet: collect it in `word`.
      taken = Math.min(WORD_BYTES - this.carryLen, src.length);
      this.word.set(src.subarray(0, taken), this.carryLen);
      this.carryLen += taken;
      if (this.carryLen < WORD_BYTES) return taken;
      const w = this.word;
      const len = w[0]! | (w[1]! << 8) | (w[2]! << 16);
      const werr = checkWord(len, w[3]!, this.maxFrameBytes);
      if (werr !== 0) {
        this.fail(werr, this.offset);
        return taken;
      }
      // The limit check passed: now it is safe to allocate the frame's buffer.
      this.carryNeed = WORD_BYTES + len;
      this.carry = Buffer.allocUnsafe(this.carryNeed);
      this.carry.set(w, 0);
    }
    const n = Math.min(this.carryNeed - this.carryLen, src.length - taken);
    this.carry.set(src.subarray(taken, taken + n), this.carryLen);
    this.carryLen += n;
    if ((this.carry[3]! & 0xf) === T_EXTENSION && this.carryLen === this.carryNeed) {
      // Skipped frame: drop it here so push never reports it.
      this.offset += this.carryNeed;
      this.carryLen = 0;
      this.carryNeed = 0;
      this.carry = EMPTY;
    }
    return taken + n;
  }

  /** Validate the frame at `p` (whole frame present) and append its row. Returns 0 or E_*. */
  private scanFrame(b: Uint8Array, p: number, bufIndex: number): number {
    const len = b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16);
    const tf = b[p + 3]!;
    const type = tf & 0xf;
    const fend = p + WORD_BYTES + len;
    const v = this.v;
    let q = p + WORD_BYTES;
    let id: number;
    // Fast path: one-byte id.
    const b0 = b[q]!;
    if (b0 < 0x80) {
      id = b0;
      q++;
    } else {
      const e = readVarint(b, q, fend, v);
      if (e !== 0) return e;
      id = v.value;
      q = v.next;
    }
    let aux = 0;
    let names = 0;
    let extOff = 0;
    let extLen = 0;
    switch (type) {
      case T_REQUEST: {
        if (q >= fend) return E_NAME_OVERRUN;
        const svcLen = b[q]!;
        names = q + 1;
        q = names + svcLen;
        if (q >= fend) return E_NAME_OVERRUN;
        const methLen = b[q]!;
        q += 1 + methLen;
        if (q > fend) return E_NAME_OVERRUN;
        aux = svcLen | (methLen << 8);
        if ((tf >> 4) & F_EXT) {
          const e = readVarint(b, q, fend, v);
          if (e !== 0) return e;
          if (v.value === 0) return E_BAD_EXT;
          if (v.value > fend - v.next) return E_EXT_OVERRUN;
          extOff = v.next;
          extLen = v.value;
          q = extOff + extLen;
          if (!validExt(b, extOff, q, v)) return E_BAD_EXT;
        }
        break;
      }
      case T_RESPONSE:
      case T_DATA:
        break;
      case T_STATUS:
      case T_GOAWAY:
      case T_ERROR: {
        const e = readVarint(b, q, fend, v);
        if (e !== 0) return e;
        aux = v.value;
        q = v.next;
        break;
      }
      case T_CREDIT: {
        const e = readVarint(b, q, fend, v);
        if (e !== 0) return e;
        if (v.value === 0 || v.next !== fend) return E_BAD_BODY;
        aux = v.value;
        q = v.next;
        break;
      }
      case T_CANCEL:
      case T_PING:
      case T_PONG:
        if (q !== fend) return E_BAD_BODY;
        break;
      case T_HELLO: {
        // Settings: (varint key, varint value)*. A key with no value at all is E_BAD_BODY;
        // a malformed varint is reported as such.
        let s = q;
        while (s < fend) {
          let e = readVarint(b, s, fend, v);
          if (e !== 0) return e;
          if (v.next === fend) return E_BAD_BODY;
          e = readVarint(b, v.next, fend, v);
          if (e !== 0) return e;
          s = v.next;
        }
        break;
      }
    }
    const batch = this.batch;
    let r = batch.count * STRIDE;
    if (r + STRIDE > batch.table.length) {
      const t = new Int32Array(batch.table.length * 2);
      t.set(batch.table);
      batch.table = t;
    }
    const t = batch.table;
    t[r + COL_HEAD] = tf | (bufIndex << 8);
    t[r + COL_ID] = id;
    t[r + COL_AUX] = aux;
    t[r + COL_NAMES] = names;
    t[r + COL_EXT_OFF] = extOff;
    t[r + COL_EXT_LEN] = extLen;
    t[r + COL_BODY_OFF] = q;
    t[r + COL_BODY_LEN] = fend - q;
    batch.count++;
    return 0;
  }
}

export const tsCodec: Codec = {
  kind: 'ts',
  createDecoder(maxFrameBytes: number): Decoder {
    return new TsDecoder(maxFrameBytes);
  },
};
