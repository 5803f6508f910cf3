/**
 * The dissector behind `pipit decode`: a captured byte stream → every frame with its fields
 * named, and the first codec error (spec/PROTOCOL.md §14) with its name and offset.
 *
 * Validation is the implementation's own codec (the TS reference scanner, or the Wasm one):
 * the dissector never judges a frame differently from what this implementation would do on a
 * connection. It adds what a connection does not need: the stream offset and size of every
 * frame (a walk over the frame words, in step with the codec's frames), the skipped EXTENSION
 * frames, and the raw entries of ext blocks, unknown tags included.
 */
import type { Codec, FrameBatch } from '../bindings/codec.js';
import { readVarint, type VarintResult } from '../bindings/codec.js';
import {
  EXT_CREDIT, EXT_DEADLINE, EXT_METADATA, STATUS_NAMES, T_CANCEL,
  T_CREDIT, T_DATA, T_ERROR, T_EXTENSION, T_GOAWAY, T_HELLO, T_PING, T_PONG, T_REQUEST, T_RESPONSE,
  T_STATUS, TYPE_NAMES, WORD_BYTES, S_MAX_FRAME_BYTES, S_MAX_INFLIGHT, S_MAX_MESSAGE_BYTES,
} from '../bindings/constants.js';
import { COL_EXT_LEN, COL_EXT_OFF, STRIDE } from '../bindings/frame-table.js';
import type { ProtocolError } from '../bindings/errors.js';

/** Flag names per type, by bit (spec/PROTOCOL.md §6), in the order the vectors list them. */
const FLAG_NAMES: Record<number, readonly [number, string][]> = {
  [T_REQUEST]: [[1, 'STREAM'], [2, 'TEXT'], [4, 'FOLLOWS'], [8, 'EXT']],
  [T_RESPONSE]: [[1, 'END'], [2, 'TEXT'], [4, 'FOLLOWS']],
  [T_DATA]: [[4, 'FOLLOWS']],
};

export const SETTING_NAMES: Record<number, string> = {
  [S_MAX_FRAME_BYTES]: 'MAX_FRAME_BYTES',
  [S_MAX_MESSAGE_BYTES]: 'MAX_MESSAGE_BYTES',
  [S_MAX_INFLIGHT]: 'MAX_INFLIGHT',
};

const EXT_NAMES: Record<number, string> = {
  [EXT_DEADLINE]: 'DEADLINE',
  [EXT_CREDIT]: 'CREDIT',
  [EXT_METADATA]: 'METADATA',
};

export interface ExtEntry {
  tag: number;
  /** DEADLINE, CREDIT, METADATA, or null for a tag this version does not know (skipped). */
  name: string | null;
  /** Bytes of the value. */
  value: Buffer;
  /** DEADLINE, CREDIT: the number. */
  number?: number;
  /** METADATA: key and value. */
  key?: string;
  text?: string;
}

/** One frame as the codec decoded it, plus where it sits in the stream. */
export interface DissectedFrame {
  offset: number;
  /** Whole frame: 4 + LENGTH. */
  size: number;
  /** The 4-byte word as it is on the wire. */
  word: Buffer;
  type: number;
  typeName: string;
  /** The flags nibble and the names of its bits for this type (EXTENSION: free bits, no names). */
  flags: number;
  flagNames: string[];
  /** EXTENSION frames are skipped without parsing (§7.11): no id, no body fields. */
  skipped: boolean;
  id?: number;
  service?: string;
  serviceBytes?: number;
  method?: string;
  methodBytes?: number;
  /** REQUEST with EXT: the ext block's length and entries in wire order. */
  extLength?: number;
  ext?: ExtEntry[];
  /** REQUEST, RESPONSE, DATA: the payload; EXTENSION: the bytes after the word. */
  payload?: Buffer;
  /** STATUS, GOAWAY, ERROR. */
  code?: number;
  message?: string;
  /** CREDIT. */
  credit?: number;
  /** HELLO, in wire order. */
  settings?: Array<[number, number]>;
}

export interface Dissection {
  bytes: number;
  frames: DissectedFrame[];
  /** The first codec error, or null when every byte formed a valid frame. */
  error: DissectionError | null;
}

export interface DissectionError {
  /** E_* name (spec/PROTOCOL.md §14.2). */
  code: string;
  /** Stream offset of the first byte of the bad frame (§14.1). */
  offset: number;
  message: string;
  /** The bytes of the bad frame that are present (its word first), when any are. */
  bytes?: Buffer;
}

/**
 * Decode `bytes` as one whole stream with `codec`, checking frame sizes against
 * `maxFrameBytes`. Frames before an error are all reported.
 */
export function dissect(bytes: Uint8Array, codec: Codec, maxFrameBytes: number): Dissection {
  const decoder = codec.createDecoder(maxFrameBytes);
  const batch = decoder.push(bytes);
  const rows: DissectedFrame[] = [];
  for (let i = 0; i < batch.count; i++) rows.push(row(batch, i));
  const error: ProtocolError | null = batch.error ?? decoder.end();
  const frames: DissectedFrame[] = [];
  // Walk the words to place each frame; the codec reports every frame but EXTENSION ones.
  let pos = 0;
  let k = 0;
  const stopAt = error === null ? bytes.length : error.offset;
  while (pos + WORD_BYTES <= bytes.length && pos < stopAt) {
    const length = bytes[pos]! | (bytes[pos + 1]! << 8) | (bytes[pos + 2]! << 16);
    const size = WORD_BYTES + length;
    if (pos + size > bytes.length) break;
    const tf = bytes[pos + 3]!;
    const word = Buffer.from(bytes.subarray(pos, pos + WORD_BYTES));
    if ((tf & 0xf) === T_EXTENSION) {
      frames.push({
        offset: pos, size, word, type: T_EXTENSION, typeName: 'EXTENSION', flags: tf >> 4, flagNames: [], skipped: true,
        payload: Buffer.from(bytes.subarray(pos + WORD_BYTES, pos + size)),
      });
    } else {
      const f = rows[k++];
      if (f === undefined) throw new Error(`dissector out of step with the codec at offset ${pos}`);
      f.offset = pos;
      f.size = size;
      f.word = word;
      frames.push(f);
    }
    pos += size;
  }
  if (k !== rows.length) throw new Error(`dissector placed ${k} of the codec's ${rows.length} frames`);
  let bad: DissectionError | null = null;
  if (error !== null) {
    bad = { code: error.reason, offset: error.offset, message: detail(error) };
    if (error.offset >= 0 && error.offset < bytes.length) {
      const length = error.offset + WORD_BYTES <= bytes.length
        ? bytes[error.offset]! | (bytes[error.offset + 1]! << 8) | (bytes[error.offset + 2]! << 16)
        : 0;
      bad.bytes = Buffer.from(bytes.subarray(error.offset, Math.min(bytes.length, error.offset + WORD_BYTES + length)));
    }
  }
  return { bytes: bytes.length, frames, error: bad };
}

/** The error's message without the name and offset it starts with (spec/PROTOCOL.md §10.1). */
function detail(e: ProtocolError): string {
  const prefix = `${e.reason}${e.offset >= 0 ? ` at offset ${e.offset}` : ''}: `;
  return e.message.startsWith(prefix) ? e.message.slice(prefix.length) : e.message;
}

function row(batch: FrameBatch, i: number): DissectedFrame {
  const type = batch.type(i);
  const flags = batch.flags(i);
  const f: DissectedFrame = {
    offset: -1, size: 0, word: Buffer.alloc(0), type, typeName: TYPE_NAMES[type]!, flags,
    flagNames: (FLAG_NAMES[type] ?? []).filter(([bit]) => (flags & bit) !== 0).map(([, name]) => name),
    skipped: false, id: batch.id(i),
  };
  switch (type) {
    case T_REQUEST: {
      f.service = batch.service(i);
      f.serviceBytes = batch.serviceLength(i);
      f.method = batch.method(i);
      f.methodBytes = batch.methodLength(i);
      if (flags & 8) {
        const off = batch.table[i * STRIDE + COL_EXT_OFF]!;
        const len = batch.table[i * STRIDE + COL_EXT_LEN]!;
        f.extLength = len;
        f.ext = extEntries(batch.bytes(i), off, off + len);
      }
      f.payload = Buffer.from(batch.bodyView(i));
      break;
    }
    case T_RESPONSE:
    case T_DATA:
      f.payload = Buffer.from(batch.bodyView(i));
      break;
    case T_STATUS:
    case T_GOAWAY:
    case T_ERROR:
      f.code = batch.aux(i);
      f.message = batch.bodyText(i);
      break;
    case T_CREDIT:
      f.credit = batch.aux(i);
      break;
    case T_HELLO:
      f.settings = batch.settings(i);
      break;
    case T_CANCEL:
    case T_PING:
    case T_PONG:
      break;
  }
  return f;
}

/** Ext entries in [start, end), already validated by the codec (§7.2.1). */
function extEntries(b: Uint8Array, start: number, end: number): ExtEntry[] {
  const out: ExtEntry[] = [];
  const v: VarintResult = { value: 0, next: 0 };
  let p = start;
  while (p < end) {
    const tag = b[p]!;
    if (readVarint(b, p + 1, end, v) !== 0) break;
    const vs = v.next;
    const ve = vs + v.value;
    const value = Buffer.from(b.subarray(vs, ve));
    const e: ExtEntry = { tag, name: EXT_NAMES[tag] ?? null, value };
    if (tag === EXT_DEADLINE || tag === EXT_CREDIT) {
      if (readVarint(b, vs, ve, v) === 0) e.number = v.value;
    } else if (tag === EXT_METADATA && value.length > 0) {
      e.key = value.toString('utf8', 1, 1 + value[0]!);
      e.text = value.toString('utf8', 1 + value[0]!);
    }
    out.push(e);
    p = ve;
  }
  return out;
}

/** Status name of a code as received (§13): reserved and application codes named as such. */
export function statusLabel(code: number): string {
  if (code === 11) return 'reserved (CONNECTION_CLOSED is local only, never on the wire)';
  if (code < STATUS_NAMES.length) return STATUS_NAMES[code]!;
  if (code < 256) return 'reserved';
  return 'application-defined';
}

/**
 * A frame in the form of spec/vectors/*.json (§17.1): type, flag names, id and the fields
 * for its type. EXTENSION frames have no such form (the vectors leave them out).
 */
export function vectorFrame(f: DissectedFrame): Record<string, unknown> {
  const v: Record<string, unknown> = { type: f.typeName, flags: f.flagNames, id: f.id };
  switch (f.type) {
    case T_REQUEST: {
      v.service = f.service;
      v.method = f.method;
      if (f.ext !== undefined) {
        const ext: Record<string, unknown> = {};
        for (const e of f.ext) {
          // Repeated DEADLINE or CREDIT: the last one wins (§7.2.1).
          if (e.tag === EXT_DEADLINE) ext.deadlineMs = e.number;
          else if (e.tag === EXT_CREDIT) ext.credit = e.number;
          else if (e.tag === EXT_METADATA) ((ext.metadata ??= []) as Array<[string, string]>).push([e.key!, e.text!]);
        }
        v.ext = ext;
      }
      v.payload = f.payload!.toString('hex');
      break;
    }
    case T_RESPONSE:
    case T_DATA:
      v.payload = f.payload!.toString('hex');
      break;
    case T_STATUS:
    case T_GOAWAY:
    case T_ERROR:
      v.code = f.code;
      v.message = f.message;
      break;
    case T_CREDIT:
      v.credit = f.credit;
      break;
    case T_HELLO:
      v.settings = f.settings;
      break;
  }
  return v;
}
