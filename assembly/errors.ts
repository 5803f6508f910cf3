// Codec error codes returned to TS (never thrown). Mirrors E_* in bindings/constants.ts;
// spec/PROTOCOL.md lists what each one means and the order in which a frame is checked.

export const E_OK: u32 = 0;
export const E_FRAME_TOO_LARGE: u32 = 1;
export const E_FRAME_TOO_SHORT: u32 = 2;
export const E_UNKNOWN_TYPE: u32 = 3;
export const E_BAD_FLAGS: u32 = 4;
export const E_BAD_VARINT: u32 = 5;
export const E_TRUNCATED: u32 = 6;
export const E_NAME_OVERRUN: u32 = 7;
export const E_EXT_OVERRUN: u32 = 8;
export const E_BAD_EXT: u32 = 9;
export const E_BAD_BODY: u32 = 10;

/**
 * Not a wire error: the frame table given to `scan` is full. The scan stopped before the
 * frame at `consumed`; TS grows the table and calls again from there.
 */
export const R_TABLE_FULL: u32 = 255;
