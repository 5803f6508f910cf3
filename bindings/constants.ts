/**
 * Wire constants of pipit v1. Every value here is normative: see spec/PROTOCOL.md (and
 * spec/constants.json, which test/constants.test.ts checks them against). A change to any of
 * them changes the wire format and the shared test vectors. The layout of the decoded frame
 * table is this implementation's own, not the wire's: frame-table.ts.
 */

/** Protocol version this implementation speaks (HELLO id). */
export const PROTOCOL_VERSION = 1;

// ---- Frame word (spec/PROTOCOL.md §2) ----------------------------------------
/** Bytes of the leading little-endian word: u24 length + type nibble + flags nibble. */
export const WORD_BYTES = 4;
/** Largest value of the u24 LENGTH field (bytes after the word). */
export const MAX_LENGTH_FIELD = 0xffffff;
/** Largest frame the format can express at all. */
export const MAX_FRAME_BYTES_LIMIT = WORD_BYTES + MAX_LENGTH_FIELD;
/** Largest varint the format uses (u32) takes five bytes. */
export const MAX_VARINT_BYTES = 5;

// ---- Frame types (low nibble of byte 3) ----------------------------------
export const T_HELLO = 0x0; // connection: version + settings
export const T_REQUEST = 0x1; // caller -> responder: opens a call
export const T_RESPONSE = 0x2; // responder -> caller: one message or a fragment of one
export const T_STATUS = 0x3; // responder -> caller: terminal status code + message
export const T_CANCEL = 0x4; // caller -> responder: stop this call
export const T_CREDIT = 0x5; // caller -> responder: n more stream messages may be sent
export const T_DATA = 0x6; // caller -> responder: continuation fragment of a request
export const T_PING = 0x7; // either: liveness probe, id is opaque
export const T_PONG = 0x8; // either: answer to PING with its id
export const T_GOAWAY = 0x9; // either: no requests after sequence number `id` are processed
export const T_ERROR = 0xa; // either: fatal connection error, sender closes
export const T_EXTENSION = 0xf; // either: skipped by receivers that do not know it

export const TYPE_NAMES: readonly string[] = [
  'HELLO', 'REQUEST', 'RESPONSE', 'STATUS', 'CANCEL', 'CREDIT', 'DATA', 'PING', 'PONG',
  'GOAWAY', 'ERROR', 'RESERVED_B', 'RESERVED_C', 'RESERVED_D', 'RESERVED_E', 'EXTENSION',
];

// ---- Flags (high nibble of byte 3; values are the nibble's bits) --------------
/** REQUEST: many responses are expected (a stream). */
export const F_STREAM = 0x1;
/** RESPONSE: this message ends the call with OK. */
export const F_END = 0x1;
/** REQUEST, RESPONSE (first fragment): payload is UTF-8 text. */
export const F_TEXT = 0x2;
/** REQUEST, RESPONSE, DATA: more fragments of this message follow. */
export const F_FOLLOWS = 0x4;
/** REQUEST: an ext block (deadline, credit, metadata) follows the names. */
export const F_EXT = 0x8;

/** Flags each type may carry; any other bit set is E_BAD_FLAGS. Indexed by type. */
export const ALLOWED_FLAGS: readonly number[] = [
  0, // HELLO
  F_STREAM | F_TEXT | F_FOLLOWS | F_EXT, // REQUEST
  F_END | F_TEXT | F_FOLLOWS, // RESPONSE
  0, 0, 0, // STATUS, CANCEL, CREDIT
  F_FOLLOWS, // DATA
  0, 0, 0, 0, // PING, PONG, GOAWAY, ERROR
  0, 0, 0, 0, // reserved
  0xf, // EXTENSION: flags are free
];

// ---- Ext block tags (REQUEST with F_EXT) -----------------------------------
export const EXT_DEADLINE = 0x01; // varint: milliseconds the caller waits, from sending
export const EXT_CREDIT = 0x02; // varint: initial stream credit
export const EXT_METADATA = 0x03; // u8 keyLen, key, value bytes

/** Initial credit of a stream whose REQUEST carries no EXT_CREDIT entry (spec §8.6). */
export const DEFAULT_WIRE_CREDIT = 128;
/** Largest credit a responder may hold for one call. */
export const MAX_CREDIT = 0x7fffffff;

// ---- HELLO settings keys --------------------------------------------------
export const S_MAX_FRAME_BYTES = 1;
export const S_MAX_MESSAGE_BYTES = 2;
export const S_MAX_INFLIGHT = 3;

// ---- Default limits (what a peer assumes until it sees the other's HELLO) -------
/** Every peer accepts frames up to this size; also the smallest limit one may announce. */
export const DEFAULT_MAX_FRAME_BYTES = 65536;
export const DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
export const DEFAULT_MAX_INFLIGHT = 1024;
/** Names are length-prefixed by one byte. */
export const MAX_NAME_BYTES = 255;
/** Longest message a STATUS, GOAWAY or ERROR frame may carry, cut on a UTF-8 boundary (spec §7.4). */
export const MAX_STATUS_MESSAGE_BYTES = 1024;

// ---- Status codes (spec/PROTOCOL.md, status table) ------------------------------
export const Status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN_SERVICE: 2,
  UNKNOWN_METHOD: 3,
  INVALID_ARGUMENT: 4,
  APPLICATION_ERROR: 5,
  DEADLINE_EXCEEDED: 6,
  RESOURCE_EXHAUSTED: 7,
  UNAVAILABLE: 8,
  PROTOCOL_ERROR: 9,
  INTERNAL: 10,
  /** Local only (spec §13.1): never sent, and read as UNKNOWN when received. */
  CONNECTION_CLOSED: 11,
} as const;
export type StatusName = keyof typeof Status;
/** First application-defined status code. */
export const APP_STATUS_MIN = 256;

/**
 * Number → name of the codes a frame may carry, an explicit table (never a reverse lookup
 * that can silently miss). CONNECTION_CLOSED (11) is not here: it never comes off the wire.
 */
export const STATUS_NAMES: readonly StatusName[] = [
  'OK', 'CANCELLED', 'UNKNOWN_SERVICE', 'UNKNOWN_METHOD', 'INVALID_ARGUMENT', 'APPLICATION_ERROR',
  'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'PROTOCOL_ERROR', 'INTERNAL',
];

/**
 * Codes a handler may fail with as they are (spec §13, last column). Any other code a handler
 * fails with is sent as APPLICATION_ERROR (§13.2): OK, the "not processed" codes, the
 * connection codes and reserved numbers would each tell the caller something untrue.
 */
export function handlerMaySend(status: number): boolean {
  return status >= APP_STATUS_MIN || HANDLER_CODES.has(status);
}
const HANDLER_CODES: ReadonlySet<number> = new Set([
  Status.CANCELLED, Status.INVALID_ARGUMENT, Status.APPLICATION_ERROR, Status.DEADLINE_EXCEEDED,
  Status.RESOURCE_EXHAUSTED, Status.INTERNAL,
]);

/** Session violations (spec §14.3): the name an ERROR message starts with (§10.1). */
export type SessionViolation =
  | 'E_BAD_HELLO' | 'E_ID_IN_USE' | 'E_NO_SUCH_CALL' | 'E_SECOND_MESSAGE' | 'E_NO_CREDIT'
  | 'E_CREDIT_OVERFLOW' | 'E_TEXT_CONTINUATION' | 'E_DATA_COMPLETE' | 'E_OK_MID_MESSAGE'
  | 'E_SECOND_GOAWAY' | 'E_BAD_GOAWAY';
export const SESSION_VIOLATIONS: readonly SessionViolation[] = [
  'E_BAD_HELLO', 'E_ID_IN_USE', 'E_NO_SUCH_CALL', 'E_SECOND_MESSAGE', 'E_NO_CREDIT',
  'E_CREDIT_OVERFLOW', 'E_TEXT_CONTINUATION', 'E_DATA_COMPLETE', 'E_OK_MID_MESSAGE',
  'E_SECOND_GOAWAY', 'E_BAD_GOAWAY',
];

// ---- Codec error codes (scanner → TS), spec/PROTOCOL.md validation table ------------
export const E_OK = 0;
export const E_FRAME_TOO_LARGE = 1;
export const E_FRAME_TOO_SHORT = 2;
export const E_UNKNOWN_TYPE = 3;
export const E_BAD_FLAGS = 4;
export const E_BAD_VARINT = 5;
export const E_TRUNCATED = 6;
export const E_NAME_OVERRUN = 7;
export const E_EXT_OVERRUN = 8;
export const E_BAD_EXT = 9;
export const E_BAD_BODY = 10;
/** Not found while scanning: the byte stream ended inside a frame (reported by `end()`). */
export const E_INCOMPLETE = 11;

export const CODEC_ERROR_NAMES: readonly string[] = [
  'E_OK', 'E_FRAME_TOO_LARGE', 'E_FRAME_TOO_SHORT', 'E_UNKNOWN_TYPE', 'E_BAD_FLAGS',
  'E_BAD_VARINT', 'E_TRUNCATED', 'E_NAME_OVERRUN', 'E_EXT_OVERRUN', 'E_BAD_EXT', 'E_BAD_BODY',
  'E_INCOMPLETE',
];
