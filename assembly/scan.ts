/*
 * Batch frame scanner.
 *
 * Theory of operation
 * -------------------
 * TS owns linear memory. For each decoder it keeps an input region (the carried partial
 * frame followed by the new bytes) and a frame table; this module keeps no state between
 * calls. One `scan` call walks every complete frame in [base + start, base + len), validates
 * it exactly as bindings/codec-ts.ts does, and appends one row of STRIDE i32 per frame to
 * the table. Only integers cross the boundary: pointers, lengths, counts and E_* codes.
 *
 * Per frame, in this order (spec/PROTOCOL.md, validation):
 *   1. as soon as the 4-byte word is present: too large (4 + LENGTH > max), too short
 *      (LENGTH 0), reserved type, reserved flags. A partial frame whose word passes is
 *      reported through R_NEED so TS knows how much it must still buffer; a partial frame
 *      whose word fails is an error at once, before TS buffers anything more.
 *   2. once the whole frame is present: the id varint, then the body of its type.
 *   EXTENSION frames pass step 1 and are then skipped without parsing their id.
 *
 * Rows, offsets and the two buffers
 *   A frame starting at offset p >= split lies wholly in the bytes TS just copied from its
 *   chunk, so its row is tagged buffer 1 and its offsets are relative to base + split: TS
 *   then points payload views at the original JS chunk (zero copy). A frame starting before
 *   split began in the carried bytes; its row is tagged buffer 0 with offsets relative to
 *   base (TS reads it through a view of linear memory). split = 0xFFFFFFFF tags every row
 *   buffer 0 (the socket wrote straight into linear memory).
 *
 * Stopping
 *   The scan stops at the first of: fewer than 4 bytes left; a partial frame; an invalid
 *   frame (R_ERR = E_*, R_CONSUMED = its offset, rows before it stay valid); a full table
 *   (R_ERR = R_TABLE_FULL, TS grows the table and calls again with start = R_CONSUMED).
 *
 * Carried words
 *   `wordFrom` is 1 when the word of the frame at offset 0 was already checked on an
 *   earlier call (the carried partial frame), so it is not checked again against a
 *   maxFrameBytes that may have changed since: codec-ts.ts checks each word exactly once.
 *
 * Bounds: TS guarantees [base, base + len) and the table lie inside memory, and every
 * read below stays before the frame end `fend`, which is <= base + len.
 */
import {
  ALLOWED_FLAGS_PACKED, BUF_SHIFT, COL_AUX, COL_BODY_LEN, COL_BODY_OFF, COL_EXT_LEN, COL_EXT_OFF,
  COL_HEAD, COL_ID, COL_NAMES, EXT_CREDIT, EXT_DEADLINE, EXT_METADATA, F_END, F_EXT, F_FOLLOWS,
  LENGTH_MASK, R_CONSUMED, R_COUNT, R_ERR, R_NEED, ROW_BYTES, T_CANCEL, T_CREDIT, T_DATA, T_ERROR,
  T_EXTENSION, T_GOAWAY, T_HELLO, T_LAST, T_PING, T_PONG, T_REQUEST, T_RESPONSE, T_STATUS, WORD_BYTES,
} from './layout';
import {
  E_BAD_BODY, E_BAD_EXT, E_BAD_FLAGS, E_BAD_VARINT, E_EXT_OVERRUN, E_FRAME_TOO_LARGE,
  E_FRAME_TOO_SHORT, E_NAME_OVERRUN, E_TRUNCATED, E_UNKNOWN_TYPE, R_TABLE_FULL,
} from './errors';

// Scratch results of readVarint. Globals, not state: each is written before it is read.
let varValue: u32 = 0;
let varNext: usize = 0;

/**
 * Canonical u32 LEB128 at [p, end): 0 with varValue/varNext set, E_TRUNCATED when it runs
 * past `end`, E_BAD_VARINT when overlong (trailing zero group) or above u32.
 */
function readVarint(p: usize, end: usize): u32 {
  let value: u32 = 0;
  for (let i: u32 = 0; i < 5; i++) {
    if (p >= end) return E_TRUNCATED;
    const b = <u32>load<u8>(p++);
    // The fifth byte may only carry the top four bits (and no continuation).
    if (i == 4 && b > 0x0f) return E_BAD_VARINT;
    value |= (b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      if (b == 0 && i > 0) return E_BAD_VARINT;
      varValue = value;
      varNext = p;
      return 0;
    }
  }
  return E_BAD_VARINT;
}

/** Word checks, in the order spec/PROTOCOL.md gives. `max` is maxFrameBytes. */
// @ts-ignore: decorator
@inline
function checkWord(len: u32, tf: u32, max: u32): u32 {
  if (len + WORD_BYTES > max) return E_FRAME_TOO_LARGE;
  if (len == 0) return E_FRAME_TOO_SHORT;
  const type = tf & 0xf;
  if (type > T_LAST && type < T_EXTENSION) return E_UNKNOWN_TYPE;
  const flags = tf >> 4;
  if ((flags & ~<u32>(ALLOWED_FLAGS_PACKED >> (type << 2)) & 0xf) != 0) return E_BAD_FLAGS;
  if (type == T_RESPONSE && (flags & (F_END | F_FOLLOWS)) == (F_END | F_FOLLOWS)) return E_BAD_FLAGS;
  return 0;
}

/**
 * Ext entries in [p, end): u8 tag, varint len, value. DEADLINE and CREDIT values are
 * exactly one canonical varint; a METADATA value starts with a key length that fits.
 */
function validExt(p: usize, end: usize): bool {
  while (p < end) {
    const tag = <u32>load<u8>(p);
    if (readVarint(p + 1, end) != 0) return false;
    if (varValue > <u32>(end - varNext)) return false;
    const vend = varNext + varValue;
    if (tag == EXT_DEADLINE || tag == EXT_CREDIT) {
      if (readVarint(varNext, vend) != 0 || varNext != vend) return false;
    } else if (tag == EXT_METADATA) {
      if (varNext >= vend || varNext + 1 + <usize>load<u8>(varNext) > vend) return false;
    }
    p = vend;
  }
  return true;
}

/**
 * Validate the whole frame at `p` (its word already checked) and write its row at `row`.
 * `rel` is what offsets are relative to (base or base + split); `head` is the COL_HEAD value.
 * Returns 0 or an E_* code.
 */
function scanFrame(p: usize, fend: usize, tf: u32, head: u32, rel: usize, row: usize): u32 {
  let q = p + WORD_BYTES;
  let id: u32;
  const b0 = <u32>load<u8>(q);
  if (b0 < 0x80) {
    id = b0;
    q++;
  } else {
    const e = readVarint(q, fend);
    if (e != 0) return e;
    id = varValue;
    q = varNext;
  }
  let aux: u32 = 0;
  let names: u32 = 0;
  let extOff: u32 = 0;
  let extLen: u32 = 0;
  switch (tf & 0xf) {
    case T_REQUEST: {
      if (q >= fend) return E_NAME_OVERRUN;
      const svcLen = <u32>load<u8>(q);
      const n = q + 1;
      q = n + svcLen;
      if (q >= fend) return E_NAME_OVERRUN;
      const methLen = <u32>load<u8>(q);
      q += 1 + methLen;
      if (q > fend) return E_NAME_OVERRUN;
      aux = svcLen | (methLen << 8);
      names = <u32>(n - rel);
      if ((tf >> 4) & F_EXT) {
        const e = readVarint(q, fend);
        if (e != 0) return e;
        if (varValue == 0) return E_BAD_EXT;
        if (varValue > <u32>(fend - varNext)) return E_EXT_OVERRUN;
        const x = varNext;
        extLen = varValue;
        extOff = <u32>(x - rel);
        q = x + extLen;
        if (!validExt(x, q)) return E_BAD_EXT;
      }
      break;
    }
    case T_RESPONSE:
    case T_DATA:
      break;
    case T_STATUS:
    case T_GOAWAY:
    case T_ERROR: {
      const e = readVarint(q, fend);
      if (e != 0) return e;
      aux = varValue;
      q = varNext;
      break;
    }
    case T_CREDIT: {
      const e = readVarint(q, fend);
      if (e != 0) return e;
      if (varValue == 0 || varNext != fend) return E_BAD_BODY;
      aux = varValue;
      q = varNext;
      break;
    }
    case T_CANCEL:
    case T_PING:
    case T_PONG:
      if (q != fend) return E_BAD_BODY;
      break;
    case T_HELLO: {
      // Settings: (varint key, varint value)*. A key with no value at all is E_BAD_BODY.
      let s = q;
      while (s < fend) {
        let e = readVarint(s, fend);
        if (e != 0) return e;
        if (varNext == fend) return E_BAD_BODY;
        e = readVarint(varNext, fend);
        if (e != 0) return e;
        s = varNext;
      }
      break;
    }
    default:
      // Only reserved types reach here, and checkWord refused those.
      assert(false, 'reserved type passed the word check');
  }
  store<u32>(row, head, COL_HEAD << 2);
  store<u32>(row, id, COL_ID << 2);
  store<u32>(row, aux, COL_AUX << 2);
  store<u32>(row, names, COL_NAMES << 2);
  store<u32>(row, extOff, COL_EXT_OFF << 2);
  store<u32>(row, extLen, COL_EXT_LEN << 2);
  store<u32>(row, <u32>(q - rel), COL_BODY_OFF << 2);
  store<u32>(row, <u32>(fend - q), COL_BODY_LEN << 2);
  return 0;
}

/**
 * Scan [base + start, base + len). Frames at offset >= split get buffer 1 rows relative to
 * base + split, earlier ones buffer 0 rows relative to base. Words of frames at offset
 * >= wordFrom are checked against `max`. At most `rowCap` rows go to `table`. Writes
 * R_COUNT, R_CONSUMED, R_ERR, R_NEED at `res` and returns the row count.
 */
export function scan(
  base: usize, len: u32, start: u32, split: u32, wordFrom: u32, max: u32,
  table: usize, rowCap: u32, res: usize,
): u32 {
  assert(start <= len && (table & 3) == 0 && (res & 3) == 0);
  let p = start;
  let count: u32 = 0;
  let err: u32 = 0;
  let need: u32 = 0;
  let row = table;
  while (len - p >= WORD_BYTES) {
    const w = load<u32>(base + p);
    const flen = w & LENGTH_MASK;
    const tf = w >>> 24;
    if (p >= wordFrom) {
      err = checkWord(flen, tf, max);
      if (err != 0) break;
    }
    const total = flen + WORD_BYTES;
    if (len - p < total) {
      need = total;
      break;
    }
    if ((tf & 0xf) != T_EXTENSION) {
      if (count == rowCap) {
        err = R_TABLE_FULL;
        break;
      }
      const inChunk = p >= split;
      const rel = base + (inChunk ? <usize>split : 0);
      const head = tf | (<u32>inChunk << BUF_SHIFT);
      err = scanFrame(base + p, base + p + total, tf, head, rel, row);
      if (err != 0) break;
      row += ROW_BYTES;
      count++;
    }
    p += total;
  }
  store<u32>(res, count, R_COUNT << 2);
  store<u32>(res, p, R_CONSUMED << 2);
  store<u32>(res, err, R_ERR << 2);
  store<u32>(res, need, R_NEED << 2);
  return count;
}
