/**
 * Frame encoder: appends frames to an output arena and hands them out as a list of byte
 * segments to write in order (one `writev`). Small payloads are copied next to their header
 * so many frames leave in one segment; payloads of `copyThreshold` bytes or more stay
 * where they are and become segments of their own (header and payload are never
 * concatenated). A segment handed out is never written again: the arena only moves forward
 * and another one is taken when it is full, so the socket may hold segments as long as it
 * likes. A full arena is reused only once the transport says, through `written(take)`, that
 * every segment of the take that handed out its last bytes has been written; a transport
 * that never says so gets fresh arenas every time. (Without reuse, a busy stream left a
 * trail of spent 64 KiB arenas that only a full GC gives back: tens of MiB of RSS.)
 */
import {
  EXT_CREDIT, EXT_DEADLINE, EXT_METADATA, F_EXT, MAX_NAME_BYTES, MAX_STATUS_MESSAGE_BYTES, T_CANCEL, T_CREDIT, T_DATA,
  T_ERROR, T_EXTENSION, T_GOAWAY, T_HELLO, T_PING, T_PONG, T_REQUEST, T_RESPONSE, T_STATUS, WORD_BYTES,
  MAX_LENGTH_FIELD,
} from './constants.js';
import { varintSize, type RequestExt } from './codec.js';
import { InvalidArgumentError } from './errors.js';

export type Payload = Uint8Array | string;

/**
 * What a call or a handler can send as one message: bytes, text (a string, sent with the TEXT
 * flag), or bytes with the TEXT flag said explicitly (`{ payload, text }`, the shape of a
 * received `Message`), which lets a proxy pass a message on exactly as it came.
 */
export type Sendable = Payload | { readonly payload: Uint8Array; readonly text: boolean };

/** Whether `v` can be sent as one message. (Three small functions: no object per message.) */
export function isSendable(v: unknown): v is Sendable {
  if (typeof v === 'string' || v instanceof Uint8Array) return true;
  if (typeof v !== 'object' || v === null) return false;
  const m = v as { payload?: unknown; text?: unknown };
  return m.payload instanceof Uint8Array && typeof m.text === 'boolean';
}

/** The bytes (or string) of a Sendable. */
export function payloadOf(v: Sendable): Payload {
  return typeof v === 'string' || v instanceof Uint8Array ? v : v.payload;
}

/** Whether a Sendable goes out with the TEXT flag. */
export function textOf(v: Sendable): boolean {
  return typeof v === 'string' || (!(v instanceof Uint8Array) && v.text);
}

/** Default size of a fresh output arena. */
const ARENA_BYTES = 64 * 1024;
/** Spent arenas kept for reuse at most (a write or two in flight, the one being filled). */
const SPARE_ARENAS = 4;

export class FrameWriter {
  private buf: Buffer = Buffer.allocUnsafe(0);
  private pos = 0;
  private start = 0;
  private segments: Uint8Array[] = [];
  private queued = 0;
  /** Takes handed out so far; `take()` returns segments of take number `takes`. */
  private takes = 0;
  /** Full arenas whose last segments leave with take `until`, oldest first. */
  private spent: Array<{ buf: Buffer; until: number }> = [];
  /** Arenas the transport has finished writing, ready for reuse. */
  private spare: Buffer[] = [];

  /** @param copyThreshold payloads this large or larger are not copied. Defaults to 2048. */
  constructor(private readonly copyThreshold = 2048) {}

  /** Bytes encoded and not yet taken. */
  get pendingBytes(): number {
    return this.queued + this.pos - this.start;
  }

  /** The encoded frames as segments to write in order; empties the writer. See `taken`. */
  take(): Uint8Array[] {
    this.cut();
    const out = this.segments;
    this.segments = [];
    this.queued = 0;
    this.takes++;
    return out;
  }

  /** The number of the last `take()`, to pass to `written` once its segments are written. */
  get taken(): number {
    return this.takes;
  }

  /**
   * Every segment handed out by takes up to `take` has been written (the transport's write
   * callback): the arenas they came from may be filled again.
   */
  written(take: number): void {
    const spent = this.spent;
    let k = 0;
    while (k < spent.length && spent[k]!.until <= take) {
      if (this.spare.length < SPARE_ARENAS) this.spare.push(spent[k]!.buf);
      k++;
    }
    if (k > 0) spent.splice(0, k);
  }

  hello(version: number, settings: ReadonlyArray<readonly [number, number]>): void {
    let body = 0;
    for (const [k, v] of settings) body += varintSize(k) + varintSize(v);
    this.head(T_HELLO, 0, version, body, body);
    for (const [k, v] of settings) {
      this.varint(k);
      this.varint(v);
    }
  }

  /**
   * REQUEST. `route` is `encodeRoute(service, method)`; `ext` is `encodeExt(...)` or null
   * (the F_EXT flag is set from it).
   */
  request(id: number, flags: number, route: Uint8Array, ext: Uint8Array | null, payload: Payload): void {
    let fixed = route.length;
    if (ext !== null) {
      flags |= F_EXT;
      fixed += varintSize(ext.length) + ext.length;
    }
    this.payloadFrame(T_REQUEST, flags, id, fixed, route, ext, payload);
  }

  response(id: number, flags: number, payload: Payload): void {
    this.payloadFrame(T_RESPONSE, flags, id, 0, null, null, payload);
  }

  data(id: number, flags: number, payload: Uint8Array): void {
    this.payloadFrame(T_DATA, flags, id, 0, null, null, payload);
  }

  status(id: number, code: number, message = ''): void {
    this.coded(T_STATUS, id, code, message);
  }

  goaway(lastSeq: number, code: number, message = ''): void {
    this.coded(T_GOAWAY, lastSeq, code, message);
  }

  error(code: number, message = ''): void {
    this.coded(T_ERROR, 0, code, message);
  }

  cancel(id: number): void {
    this.head(T_CANCEL, 0, id, 0, 0);
  }

  credit(id: number, n: number): void {
    const s = varintSize(n);
    this.head(T_CREDIT, 0, id, s, s);
    this.varint(n);
  }

  ping(id: number): void {
    this.head(T_PING, 0, id, 0, 0);
  }

  pong(id: number): void {
    this.head(T_PONG, 0, id, 0, 0);
  }

  /** An EXTENSION frame (receivers that do not know it skip it). */
  extension(id: number, flags: number, body: Uint8Array): void {
    this.payloadFrame(T_EXTENSION, flags, id, 0, null, null, body);
  }

  // ---- internals ----

  /**
   * STATUS, GOAWAY, ERROR: the message is cut to MAX_STATUS_MESSAGE_BYTES. Buffer#write with a
   * length never writes part of a character, so the cut falls on a UTF-8 boundary (spec §7.4).
   */
  private coded(type: number, id: number, code: number, message: string): void {
    const maxMsg = Math.min(message.length * 3, MAX_STATUS_MESSAGE_BYTES);
    const fixed = varintSize(code);
    this.reserve(WORD_BYTES + 5 + fixed + maxMsg);
    const at = this.pos;
    this.pos += WORD_BYTES;
    this.varint(id);
    this.varint(code);
    const n = maxMsg === 0 ? 0 : this.buf.write(message, this.pos, maxMsg, 'utf8');
    this.pos += n;
    this.patchWord(at, this.pos - at - WORD_BYTES, type, 0);
  }

  /** Word + id, reserving room for `reserveBody` more bytes; `body` is the exact body length. */
  private head(type: number, flags: number, id: number, body: number, reserveBody: number): void {
    this.reserve(WORD_BYTES + 5 + reserveBody);
    const len = varintSize(id) + body;
    this.patchWord(this.pos, len, type, flags);
    this.pos += WORD_BYTES;
    this.varint(id);
  }

  private payloadFrame(
    type: number, flags: number, id: number, fixed: number,
    route: Uint8Array | null, ext: Uint8Array | null, payload: Payload,
  ): void {
    const idSize = varintSize(id);
    if (typeof payload === 'string') {
      // UTF-8 straight into the arena; the length word is patched afterwards.
      const maxBytes = payload.length * 3;
      this.reserve(WORD_BYTES + idSize + fixed + maxBytes);
      const at = this.pos;
      this.pos += WORD_BYTES;
      this.varint(id);
      this.prefix(route, ext);
      this.pos += maxBytes === 0 ? 0 : this.buf.write(payload, this.pos, 'utf8');
      const len = this.pos - at - WORD_BYTES;
      if (len > MAX_LENGTH_FIELD) throw new InvalidArgumentError(`frame body ${len} exceeds the u24 length field`);
      this.patchWord(at, len, type, flags);
      return;
    }
    const len = idSize + fixed + payload.length;
    if (len > MAX_LENGTH_FIELD) throw new InvalidArgumentError(`frame body ${len} exceeds the u24 length field`);
    const inline = payload.length < this.copyThreshold;
    this.reserve(WORD_BYTES + idSize + fixed + (inline ? payload.length : 0));
    this.patchWord(this.pos, len, type, flags);
    this.pos += WORD_BYTES;
    this.varint(id);
    this.prefix(route, ext);
    if (inline) {
      this.buf.set(payload, this.pos);
      this.pos += payload.length;
    } else {
      this.cut();
      this.segments.push(payload);
      this.queued += payload.length;
    }
  }

  private prefix(route: Uint8Array | null, ext: Uint8Array | null): void {
    if (route !== null) {
      this.buf.set(route, this.pos);
      this.pos += route.length;
    }
    if (ext !== null) {
      this.varint(ext.length);
      this.buf.set(ext, this.pos);
      this.pos += ext.length;
    }
  }

  private patchWord(at: number, len: number, type: number, flags: number): void {
    const b = this.buf;
    b[at] = len & 0xff;
    b[at + 1] = (len >> 8) & 0xff;
    b[at + 2] = (len >> 16) & 0xff;
    b[at + 3] = type | (flags << 4);
  }

  private varint(v: number): void {
    const b = this.buf;
    while (v >= 0x80) {
      b[this.pos++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    b[this.pos++] = v;
  }

  /** Close the current segment (bytes encoded since the last cut). */
  private cut(): void {
    if (this.pos > this.start) {
      this.segments.push(this.buf.subarray(this.start, this.pos));
      this.queued += this.pos - this.start;
      this.start = this.pos;
    }
  }

  private reserve(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.cut();
    // The full arena's last bytes leave with the next take.
    if (this.buf.length === ARENA_BYTES) this.spent.push({ buf: this.buf, until: this.takes + 1 });
    this.buf = n <= ARENA_BYTES && this.spare.length > 0 ? this.spare.pop()! : Buffer.allocUnsafe(Math.max(ARENA_BYTES, n));
    this.pos = 0;
    this.start = 0;
  }
}

/** `[svcLen][service][methLen][method]`, the REQUEST name block. Cache it per route. */
export function encodeRoute(service: string, method: string): Uint8Array {
  const s = Buffer.from(service, 'utf8');
  const m = Buffer.from(method, 'utf8');
  if (s.length > MAX_NAME_BYTES) throw new InvalidArgumentError(`service name is ${s.length} bytes, the limit is ${MAX_NAME_BYTES}`);
  if (m.length > MAX_NAME_BYTES) throw new InvalidArgumentError(`method name is ${m.length} bytes, the limit is ${MAX_NAME_BYTES}`);
  const out = Buffer.allocUnsafe(2 + s.length + m.length);
  out[0] = s.length;
  s.copy(out, 1);
  out[1 + s.length] = m.length;
  m.copy(out, 2 + s.length);
  return out;
}

/** Ext entries in canonical order (deadline, credit, metadata), or null when empty. */
export function encodeExt(ext: RequestExt): Uint8Array | null {
  const parts: number[] = [];
  const push = (v: number): void => {
    while (v >= 0x80) {
      parts.push((v & 0x7f) | 0x80);
      v = Math.floor(v / 128);
    }
    parts.push(v);
  };
  if (ext.deadlineMs !== undefined) {
    parts.push(EXT_DEADLINE);
    push(varintSize(ext.deadlineMs));
    push(ext.deadlineMs);
  }
  if (ext.credit !== undefined) {
    parts.push(EXT_CREDIT);
    push(varintSize(ext.credit));
    push(ext.credit);
  }
  for (const [k, v] of ext.metadata ?? []) {
    const kb = Buffer.from(k, 'utf8');
    const vb = Buffer.from(v, 'utf8');
    if (kb.length > MAX_NAME_BYTES) throw new InvalidArgumentError(`metadata key is ${kb.length} bytes, the limit is ${MAX_NAME_BYTES}`);
    parts.push(EXT_METADATA);
    push(1 + kb.length + vb.length);
    parts.push(kb.length);
    for (const x of kb) parts.push(x);
    for (const x of vb) parts.push(x);
  }
  return parts.length === 0 ? null : Uint8Array.from(parts);
}


/**
 * `ext` (from encodeExt, with a deadline entry) with the deadline changed to `deadlineMs`:
 * byte for byte what encodeExt gives for the new value, since the deadline entry comes first
 * in canonical order. A call that waited in the queue sends the time it has left (§8.5).
 */
export function withDeadline(ext: Uint8Array, deadlineMs: number): Uint8Array {
  if (ext[0] !== EXT_DEADLINE) throw new InvalidArgumentError('ext block has no deadline entry to replace');
  // Old entry: tag, length (a one-byte varint: the value is at most 5 bytes), value.
  const rest = ext.subarray(2 + ext[1]!);
  const head = encodeExt({ deadlineMs })!;
  const out = new Uint8Array(head.length + rest.length);
  out.set(head, 0);
  out.set(rest, head.length);
  return out;
}
