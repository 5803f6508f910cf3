/**
 * Frames as plain objects (the shape used in test/vectors/*.json), rows of a decoded batch
 * turned into them, and a canonical encoder back. decode-checked.ts decodes a byte stream into
 * them through any Codec and any chunking.
 */
import {
  F_END, F_EXT, F_FOLLOWS, F_STREAM, F_TEXT, T_CREDIT, T_DATA, T_ERROR, T_GOAWAY, T_HELLO,
  T_REQUEST, T_RESPONSE, T_STATUS, TYPE_NAMES,
} from '../../bindings/constants.js';
import type { FrameBatch } from '../../bindings/codec.js';
import { FrameWriter, encodeExt, encodeRoute } from '../../bindings/frame-writer.js';

export interface VExt {
  deadlineMs?: number;
  credit?: number;
  metadata?: Array<[string, string]>;
}
export interface VFrame {
  type: string;
  flags: string[];
  id: number;
  settings?: Array<[number, number]>;
  service?: string;
  method?: string;
  ext?: VExt;
  payload?: string;
  code?: number;
  message?: string;
  credit?: number;
}
export interface VError {
  code: string;
  offset: number;
}
export interface Decoded {
  frames: VFrame[];
  error: VError | null;
}

export function flagNames(type: number, flags: number): string[] {
  const out: string[] = [];
  if (type === T_REQUEST && flags & F_STREAM) out.push('STREAM');
  if (type === T_RESPONSE && flags & F_END) out.push('END');
  if (flags & F_TEXT) out.push('TEXT');
  if (flags & F_FOLLOWS) out.push('FOLLOWS');
  if (type === T_REQUEST && flags & F_EXT) out.push('EXT');
  return out;
}

export function flagBits(type: string, names: string[]): number {
  let f = 0;
  for (const n of names) {
    if (n === 'STREAM' || n === 'END') f |= 0x1;
    else if (n === 'TEXT') f |= F_TEXT;
    else if (n === 'FOLLOWS') f |= F_FOLLOWS;
    else if (n === 'EXT') f |= F_EXT;
    else throw new Error(`unknown flag ${n} on ${type}`);
  }
  return f;
}

const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** One row of a batch as a plain frame object. */
export function rowToFrame(batch: FrameBatch, i: number): VFrame {
  const type = batch.type(i);
  const f: VFrame = { type: TYPE_NAMES[type]!, flags: flagNames(type, batch.flags(i)), id: batch.id(i) };
  switch (type) {
    case T_HELLO:
      f.settings = batch.settings(i);
      break;
    case T_REQUEST:
      f.service = batch.service(i);
      f.method = batch.method(i);
      if (batch.hasExt(i)) f.ext = batch.ext(i);
      f.payload = hex(batch.bodyView(i));
      break;
    case T_RESPONSE:
    case T_DATA:
      f.payload = hex(batch.bodyView(i));
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
  }
  return f;
}

/** Split `bytes` into chunks of the given sizes (cycled), or one chunk. */
export function chunk(bytes: Uint8Array, sizes: number[] = [bytes.length || 1]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  let k = 0;
  while (pos < bytes.length) {
    const n = Math.max(1, sizes[k++ % sizes.length]!);
    // Copy each chunk so a decoder that keeps views cannot see later chunks' bytes by accident.
    out.push(Uint8Array.from(bytes.subarray(pos, pos + n)));
    pos += n;
  }
  return out;
}

const unhex = (h: string | undefined): Buffer => Buffer.from(h ?? '', 'hex');

/** Canonical encoding of plain frames. */
export function encodeFrames(frames: VFrame[]): Buffer {
  const w = new FrameWriter(1 << 30);
  for (const f of frames) {
    const flags = flagBits(f.type, f.flags);
    switch (f.type) {
      case 'HELLO':
        w.hello(f.id, f.settings ?? []);
        break;
      case 'REQUEST': {
        const ext = f.ext ? encodeExt(f.ext) : null;
        w.request(f.id, flags & ~F_EXT, encodeRoute(f.service ?? '', f.method ?? ''), ext, unhex(f.payload));
        break;
      }
      case 'RESPONSE':
        w.response(f.id, flags, unhex(f.payload));
        break;
      case 'DATA':
        w.data(f.id, flags, unhex(f.payload));
        break;
      case 'STATUS':
        w.status(f.id, f.code!, f.message ?? '');
        break;
      case 'GOAWAY':
        w.goaway(f.id, f.code!, f.message ?? '');
        break;
      case 'ERROR':
        if (f.id !== 0) throw new Error('ERROR frames are encoded with id 0');
        w.error(f.code!, f.message ?? '');
        break;
      case 'CANCEL':
        w.cancel(f.id);
        break;
      case 'CREDIT':
        w.credit(f.id, f.credit!);
        break;
      case 'PING':
        w.ping(f.id);
        break;
      case 'PONG':
        w.pong(f.id);
        break;
      default:
        throw new Error(`cannot encode ${f.type}`);
    }
  }
  return Buffer.concat(w.take());
}

