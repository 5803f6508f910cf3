/**
 * `pipit decode [FILE|-]`: dissect a captured byte stream (hex or raw) frame by frame, every
 * field named, and report the first codec error with its E_* name and offset.
 */
import { readFile } from 'node:fs/promises';
import { tsCodec } from '../bindings/codec-ts.js';
import { wasmCodec } from '../bindings/codec-wasm.js';
import { wasmUnavailable } from '../bindings/codec-select.js';
import {
  DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT, T_ERROR, T_GOAWAY, T_HELLO, T_PING, T_PONG, TYPE_NAMES, WORD_BYTES,
} from '../bindings/constants.js';
import { UsageError, choiceOption, intOption, oneOf, parseArgs, positionalsOf } from './args.js';
import type { Command } from './command.js';
import { SETTING_NAMES, dissect, statusLabel, vectorFrame, type DissectedFrame, type Dissection } from './dissect.js';
import { readStdin } from './payload.js';
import { Output, preview, quote } from './render.js';

const HELP = `Usage: pipit decode [FILE | -] [options]

Dissect a captured pipit byte stream: every frame with its offset, size, word, type,
flags, id and the fields of its type (service, method, ext entries, payload preview,
status code and name, HELLO settings by name), then the first codec error with its
E_* name and offset (spec/PROTOCOL.md §14), E_INCOMPLETE when the stream ends inside
a frame. Reads FILE, or stdin when FILE is - or absent.

The input is hex (whitespace allowed) or raw bytes, detected: input made only of hex
digits and whitespace is hex.
  --hex               the input is hex
  --raw               the input is raw bytes
  --max-frame-bytes N the receiver's frame limit for the size check (default 65536,
                      the limit every peer starts with; up to 16777219)
  --codec ts|wasm     which scanner validates (default ts, the reference; compare the
                      two when they disagree)
  --preview N         payload bytes shown per frame (default 64)
  --json              the frames in the form of spec/vectors/*.json, each with its
                      offset and size, EXTENSION frames under "skipped", and "error"
  -h, --help          this help

Exit status: 0 when every byte formed a valid frame, 1 when there is an error
(E_INCOMPLETE included), 2 for bad arguments.

Examples:
  pipit decode capture.bin
  echo '0e 00 00 21 01 02 64 62 05 71 75 65 72 79 70 69 6e 67' | pipit decode
`;

async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    hex: { type: 'boolean' },
    raw: { type: 'boolean' },
    'max-frame-bytes': { type: 'string' },
    codec: { type: 'string' },
    preview: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [file] = positionalsOf(args, ['FILE'], 0);
  const form = oneOf(args.options, ['hex', 'raw']);
  const maxFrameBytes = intOption(args.options, 'max-frame-bytes', DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT, DEFAULT_MAX_FRAME_BYTES);
  const previewBytes = intOption(args.options, 'preview', 0, 1 << 24, 64);
  const codecName = choiceOption(args.options, 'codec', ['ts', 'wasm'] as const) ?? 'ts';
  if (codecName === 'wasm' && wasmUnavailable() !== null) throw new UsageError(`the Wasm codec is unavailable here: ${wasmUnavailable()}`);
  let input: Buffer;
  if (file === undefined || file === '-') input = await readStdin();
  else {
    try {
      input = await readFile(file);
    } catch (e) {
      throw new UsageError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  const bytes = toBytes(input, form as 'hex' | 'raw' | undefined);
  const d = dissect(bytes, codecName === 'wasm' ? wasmCodec : tsCodec, maxFrameBytes);
  const out = new Output(process.stdout);
  if (args.options.json === true) await out.write(`${JSON.stringify(asJson(d), null, 2)}\n`);
  else await out.write(render(d, previewBytes, maxFrameBytes));
  await out.flushed().catch(() => {});
  return d.error === null ? 0 : 1;
}

/** Hex (detected, or forced) to bytes; raw as it is. */
function toBytes(input: Buffer, form: 'hex' | 'raw' | undefined): Buffer {
  const looksHex = /^[0-9a-fA-F\s]*$/.test(input.toString('latin1'));
  if (form === 'raw' || (form === undefined && !looksHex)) return input;
  const digits = input.toString('latin1').replace(/\s+/g, '');
  if (!/^[0-9a-fA-F]*$/.test(digits)) throw new UsageError('--hex: the input holds characters other than hex digits and whitespace');
  if (digits.length % 2 !== 0) throw new UsageError(`the hex input has an odd number of digits (${digits.length})`);
  return Buffer.from(digits, 'hex');
}

function asJson(d: Dissection): Record<string, unknown> {
  return {
    bytes: d.bytes,
    frames: d.frames.filter((f) => !f.skipped).map((f) => ({ offset: f.offset, size: f.size, ...vectorFrame(f) })),
    skipped: d.frames.filter((f) => f.skipped).map((f) => ({ offset: f.offset, size: f.size, type: f.typeName, flags: f.flags })),
    error: d.error,
  };
}

const LABEL = 10;

function render(d: Dissection, previewBytes: number, maxFrameBytes: number): string {
  const lines: string[] = [];
  const field = (name: string, value: string): void => {
    lines.push(`    ${name.padEnd(LABEL)}${value}`);
  };
  for (const f of d.frames) {
    const word = [...f.word].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    const flags = f.skipped
      ? `flags 0x${f.flags.toString(16)}`
      : `flags 0x${f.flags.toString(16)}${f.flagNames.length > 0 ? ` ${f.flagNames.join('|')}` : ''}`;
    lines.push(`@${f.offset} ${f.typeName} (type 0x${f.type.toString(16)}), ${f.size} bytes: word ${word} = length ${f.size - 4}, ${flags}`);
    if (f.skipped) {
      field('skipped', `${f.size - 4} bytes not parsed (an extension this version does not define, §7.11)`);
      continue;
    }
    field('id', idLabel(f));
    if (f.service !== undefined) {
      field('service', `${quote(f.service)} (${f.serviceBytes} bytes)`);
      field('method', `${quote(f.method!)} (${f.methodBytes} bytes)`);
    }
    if (f.ext !== undefined) {
      field('ext', `${f.extLength} bytes, ${f.ext.length} ${f.ext.length === 1 ? 'entry' : 'entries'}`);
      for (const e of f.ext) {
        const tag = `0x${e.tag.toString(16).padStart(2, '0')}`;
        if (e.name === 'DEADLINE') field('', `DEADLINE (${tag}) ${e.number} ms${e.number === 0 ? ' (already expired)' : ''}`);
        else if (e.name === 'CREDIT') field('', `CREDIT (${tag}) ${e.number}`);
        else if (e.name === 'METADATA') field('', `METADATA (${tag}) ${quote(e.key!)} = ${quote(e.text!)}`);
        else field('', `unknown tag ${tag}, ${plural(e.value.length, 'byte')}${e.value.length > 0 ? ` ${e.value.toString('hex')}` : ''} (skipped)`);
      }
    }
    if (f.payload !== undefined) field('payload', `${plural(f.payload.length, 'byte')}, ${preview(f.payload, previewBytes, f.flagNames.includes('TEXT'))}`);
    if (f.code !== undefined) {
      field('code', `${f.code} ${statusLabel(f.code)}`);
      field('message', f.message === '' ? '(empty)' : quote(f.message!));
    }
    if (f.credit !== undefined) field('credit', `${f.credit} more messages`);
    if (f.settings !== undefined) {
      if (f.settings.length === 0) field('settings', '(none: every default)');
      for (const [k, v] of f.settings) field('setting', `${SETTING_NAMES[k] ?? 'unknown key'} (${k}) = ${v}`);
    }
  }
  const frames = d.frames.filter((f) => !f.skipped).length;
  const skipped = d.frames.length - frames;
  const summary = `${d.bytes} bytes, ${frames} ${frames === 1 ? 'frame' : 'frames'}${skipped > 0 ? `, ${skipped} skipped` : ''}`;
  if (d.error === null) {
    lines.push(`${summary}, no error`);
  } else {
    const e = d.error;
    const hint = e.code === 'E_FRAME_TOO_LARGE' ? ` (checked against maxFrameBytes ${maxFrameBytes}; see --max-frame-bytes)` : '';
    lines.push(`error ${e.code} at offset ${e.offset}: ${e.message}${hint}`);
    if (e.bytes !== undefined) lines.push(`    ${'bytes'.padEnd(LABEL)}${describeBad(e.bytes, previewBytes)}`);
    lines.push(`${summary} before the error`);
  }
  return `${lines.join('\n')}\n`;
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? '' : 's'}`;
}

/** The bad frame's bytes, and its word decoded when all four bytes are there. */
function describeBad(b: Buffer, max: number): string {
  const shown = b.subarray(0, Math.max(max, WORD_BYTES));
  const hex = [...shown].map((x) => x.toString(16).padStart(2, '0')).join(' ') + (b.length > shown.length ? ' …' : '');
  if (b.length < WORD_BYTES) return `${hex} (${plural(b.length, 'byte')}: the word is cut off)`;
  const length = b[0]! | (b[1]! << 8) | (b[2]! << 16);
  const type = b[3]! & 0xf;
  return `${hex} (length ${length}, type 0x${type.toString(16)} ${TYPE_NAMES[type]}, flags 0x${(b[3]! >> 4).toString(16)}; ${plural(b.length, 'byte')} present)`;
}

/** The id, with what it means for frame types whose id is not a call id (§5). */
function idLabel(f: DissectedFrame): string {
  switch (f.type) {
    case T_HELLO:
      return `${f.id} (protocol version)`;
    case T_PING:
    case T_PONG:
      return `${f.id} (opaque)`;
    case T_GOAWAY:
      return `${f.id} (last accepted request sequence number)`;
    case T_ERROR:
      return `${f.id} (ignored)`;
    default:
      return `${f.id}`;
  }
}

export const decode: Command = { name: 'decode', help: HELP, run };
