/**
 * The frame table: how a decoder reports the frames of one chunk (codec.ts `FrameBatch`).
 * One row of STRIDE int32 per complete frame, filled by the TS scanner (codec-ts.ts) or the
 * Wasm scanner (assembly/scan.ts, whose assembly/layout.ts mirrors these values; a test
 * checks that they agree). This layout is an implementation choice, not part of the wire
 * format: nothing here is in spec/PROTOCOL.md, and another implementation need not have it.
 */

/** type | flags << 4 | buffer index << 8 (0: codec-owned bytes, 1: the chunk given to push). */
export const COL_HEAD = 0;
/** id (u32, read with >>> 0). */
export const COL_ID = 1;
/** REQUEST: svcLen | methLen << 8. STATUS/GOAWAY/ERROR: code. CREDIT: n. Others: 0. */
export const COL_AUX = 2;
/** REQUEST: offset of the service name bytes (method bytes start at +svcLen+1). */
export const COL_NAMES = 3;
/** REQUEST with F_EXT: offset of the ext entries (validated by the scanner). */
export const COL_EXT_OFF = 4;
/** REQUEST with F_EXT: byte length of the ext entries; 0 without an ext block. */
export const COL_EXT_LEN = 5;
/** Offset of the payload (REQUEST/RESPONSE/DATA), message (STATUS/GOAWAY/ERROR) or settings (HELLO). */
export const COL_BODY_OFF = 6;
/** Byte length of that body. */
export const COL_BODY_LEN = 7;
/** Int32 columns per row. */
export const STRIDE = 8;
