/**
 * The request payload of `call` and `stream`: from the DATA argument, a file (`@path`) or
 * stdin (`-`), in one of the input encodings.
 *
 *   text    the bytes as they are, sent with the TEXT flag (must be valid UTF-8)
 *   hex     hex digits, whitespace allowed, decoded to bytes (no TEXT)
 *   base64  base64 (or base64url), whitespace allowed, decoded to bytes (no TEXT)
 *   raw     the bytes as they are, without TEXT
 * Default: text for an argument, raw for a file or stdin. An argument starting with `@@`
 * stands for the literal text after the first `@`.
 */
import { readFile } from 'node:fs/promises';
import type { Payload } from '../bindings/index.js';
import { UsageError } from './args.js';
import { utf8OrNull } from './render.js';

export const INPUT_ENCODINGS = ['text', 'hex', 'base64', 'raw'] as const;
export type InputEncoding = (typeof INPUT_ENCODINGS)[number];

/** Read all of stdin. */
export async function readStdin(): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const chunk of process.stdin) parts.push(chunk as Buffer);
  return Buffer.concat(parts);
}

/** Where DATA comes from: the argument, a file or stdin; and the bytes it holds. */
async function source(data: string | undefined): Promise<{ bytes: Buffer; fromArgument: boolean; what: string }> {
  if (data === undefined) return { bytes: Buffer.alloc(0), fromArgument: true, what: 'DATA' };
  if (data === '-') return { bytes: await readStdin(), fromArgument: false, what: 'stdin' };
  if (data.startsWith('@@')) return { bytes: Buffer.from(data.slice(1), 'utf8'), fromArgument: true, what: 'DATA' };
  if (data.startsWith('@')) {
    const path = data.slice(1);
    try {
      return { bytes: await readFile(path), fromArgument: false, what: path };
    } catch (e) {
      throw new UsageError(`cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  return { bytes: Buffer.from(data, 'utf8'), fromArgument: true, what: 'DATA' };
}

/** The payload to send: a string (sent with TEXT) or bytes. */
export async function readPayload(data: string | undefined, encoding: InputEncoding | undefined): Promise<Payload> {
  const { bytes, fromArgument, what } = await source(data);
  const enc = encoding ?? (fromArgument && data !== undefined ? 'text' : 'raw');
  switch (enc) {
    case 'raw':
      return bytes;
    case 'text': {
      const s = utf8OrNull(bytes);
      if (s === null) throw new UsageError(`${what} is not valid UTF-8; send it with --in raw`);
      return s;
    }
    case 'hex': {
      const s = bytes.toString('latin1').replace(/\s+/g, '');
      if (!/^([0-9a-fA-F]{2})*$/.test(s)) throw new UsageError(`${what} is not hex (pairs of 0-9a-f, whitespace allowed)`);
      return Buffer.from(s, 'hex');
    }
    case 'base64': {
      const s = bytes.toString('latin1').replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(s)) throw new UsageError(`${what} is not base64`);
      return Buffer.from(s, 'base64');
    }
  }
}
