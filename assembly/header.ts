/*
 * Header encoding: the word, the id and the fixed fields of one frame, written at `out`.
 * The caller appends the body (payload, message or HELLO settings) itself and passes its
 * length so the word's LENGTH can be filled in. Encoding is canonical, byte for byte what
 * bindings/frame-writer.ts produces.
 */
import {
  F_END, F_EXT, F_FOLLOWS, MAX_LENGTH_FIELD, T_CANCEL, T_CREDIT, T_ERROR, T_EXTENSION, T_GOAWAY,
  T_LAST, T_PING, T_PONG, T_REQUEST, T_RESPONSE, T_STATUS, WORD_BYTES, ALLOWED_FLAGS_PACKED,
} from './layout';

/** Write `v` as a canonical LEB128 varint at `p`; returns the next position. */
// @ts-ignore: decorator
@inline
function writeVarint(p: usize, v: u32): usize {
  while (v >= 0x80) {
    store<u8>(p++, <u8>(v | 0x80));
    v >>>= 7;
  }
  store<u8>(p++, <u8>v);
  return p;
}

/**
 * Encode one header at `out`; returns its size in bytes, or 0 when LENGTH would not fit
 * in 24 bits. Per type:
 *   REQUEST: `pre` holds the route block ([svcLen][svc][methLen][meth], `preLen` bytes)
 *            directly followed by `aux` ext entry bytes; aux > 0 sets F_EXT and writes
 *            varint aux + the entries. Body = payload.
 *   STATUS, GOAWAY, ERROR: varint code `aux`; body = UTF-8 message.
 *   CREDIT: varint n `aux`; no body.
 *   HELLO: id = version; body = settings. RESPONSE, DATA, EXTENSION: body = payload.
 *   CANCEL, PING, PONG: no body.
 */
export function encodeHeader(
  out: usize, type: u32, flags: u32, id: u32, aux: u32, pre: usize, preLen: u32, bodyLen: u32,
): u32 {
  assert(type <= T_LAST || type == T_EXTENSION, 'reserved frame type');
  let q = writeVarint(out + WORD_BYTES, id);
  switch (type) {
    case T_REQUEST: {
      memory.copy(q, pre, preLen);
      q += preLen;
      if (aux > 0) {
        flags |= F_EXT;
        q = writeVarint(q, aux);
        memory.copy(q, pre + preLen, aux);
        q += aux;
      }
      break;
    }
    case T_STATUS:
    case T_GOAWAY:
    case T_ERROR:
      q = writeVarint(q, aux);
      break;
    case T_CREDIT:
      assert(aux > 0 && bodyLen == 0, 'CREDIT carries n >= 1 and no body');
      q = writeVarint(q, aux);
      break;
    case T_CANCEL:
    case T_PING:
    case T_PONG:
      assert(bodyLen == 0, 'CANCEL/PING/PONG have no body');
      break;
  }
  assert((flags & ~<u32>(ALLOWED_FLAGS_PACKED >> (type << 2)) & 0xf) == 0, 'reserved flag');
  assert(!(type == T_RESPONSE && (flags & (F_END | F_FOLLOWS)) == (F_END | F_FOLLOWS)), 'END with FOLLOWS');
  const head = <u32>(q - out);
  const length = <u64>(head - WORD_BYTES) + bodyLen;
  if (length > MAX_LENGTH_FIELD) return 0;
  store<u32>(out, <u32>length | ((type | (flags << 4)) << 24));
  return head;
}
