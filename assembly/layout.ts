// Wire layout and frame-table layout. Mirrors bindings/constants.ts (the wire values, which
// are normative, see spec/PROTOCOL.md) and bindings/frame-table.ts (the frame table, which is
// this implementation's own); test/wasm.test.ts checks that they agree.

// ---- Frame word --------------------------------------------------------------
/** Bytes of the leading little-endian word: u24 length + type nibble + flags nibble. */
export const WORD_BYTES: u32 = 4;
/** Mask of the LENGTH field (bytes after the word) inside the word. */
export const LENGTH_MASK: u32 = 0xffffff;
/** Largest value of the LENGTH field. */
export const MAX_LENGTH_FIELD: u32 = 0xffffff;

// ---- Frame types (low nibble of byte 3) -------------------------------------------
export const T_HELLO: u32 = 0x0;
export const T_REQUEST: u32 = 0x1;
export const T_RESPONSE: u32 = 0x2;
export const T_STATUS: u32 = 0x3;
export const T_CANCEL: u32 = 0x4;
export const T_CREDIT: u32 = 0x5;
export const T_DATA: u32 = 0x6;
export const T_PING: u32 = 0x7;
export const T_PONG: u32 = 0x8;
export const T_GOAWAY: u32 = 0x9;
export const T_ERROR: u32 = 0xa;
/** Highest assigned type below EXTENSION; 0xB..0xE are reserved. */
export const T_LAST: u32 = T_ERROR;
export const T_EXTENSION: u32 = 0xf;

// ---- Flags (high nibble of byte 3) ----------------------------------------------
export const F_STREAM: u32 = 0x1;
export const F_END: u32 = 0x1;
export const F_TEXT: u32 = 0x2;
export const F_FOLLOWS: u32 = 0x4;
export const F_EXT: u32 = 0x8;

/**
 * ALLOWED_FLAGS of constants.ts packed four bits per type (type t at bits 4t..4t+3), so the
 * check is a shift instead of a table in linear memory: REQUEST 0xF, RESPONSE 0x7 (END, TEXT,
 * FOLLOWS), DATA 0x4 (FOLLOWS), EXTENSION 0xF, every other type 0.
 */
export const ALLOWED_FLAGS_PACKED: u64 =
  (<u64>(F_STREAM | F_TEXT | F_FOLLOWS | F_EXT) << (4 * T_REQUEST)) |
  (<u64>(F_END | F_TEXT | F_FOLLOWS) << (4 * T_RESPONSE)) |
  (<u64>F_FOLLOWS << (4 * T_DATA)) |
  (<u64>0xf << (4 * T_EXTENSION));

// ---- Ext entry tags (REQUEST with F_EXT) -----------------------------------------------
export const EXT_DEADLINE: u32 = 0x01;
export const EXT_CREDIT: u32 = 0x02;
export const EXT_METADATA: u32 = 0x03;

// ---- Frame table: one row of STRIDE i32 per frame (see bindings/frame-table.ts) ----------
/** type | flags << 4 | buffer index << 8. */
export const COL_HEAD: u32 = 0;
export const COL_ID: u32 = 1;
export const COL_AUX: u32 = 2;
export const COL_NAMES: u32 = 3;
export const COL_EXT_OFF: u32 = 4;
export const COL_EXT_LEN: u32 = 5;
export const COL_BODY_OFF: u32 = 6;
export const COL_BODY_LEN: u32 = 7;
export const STRIDE: u32 = 8;
export const ROW_BYTES: u32 = STRIDE * 4;
/** Buffer index in COL_HEAD: 0 = codec-owned bytes (linear memory), 1 = the chunk given to push. */
export const BUF_SHIFT: u32 = 8;

// ---- Result area written by scan (i32 words) ------------------------------------------
/** Rows written by this call. */
export const R_COUNT: u32 = 0;
/** Offset (from base) of the first byte not consumed: the partial frame, or the bad frame. */
export const R_CONSUMED: u32 = 1;
/** E_* code, R_TABLE_FULL, or 0. */
export const R_ERR: u32 = 2;
/** Total size of the partial frame at R_CONSUMED once its word is known and checked, else 0. */
export const R_NEED: u32 = 3;
export const RESULT_WORDS: u32 = 4;
