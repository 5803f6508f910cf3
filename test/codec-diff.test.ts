/**
 * Differential test: the Wasm codec against the pure-TS reference. The same byte streams
 * (random bytes; valid frames with random mutations), chunked at random, must give the same
 * frame table rows, frames, errors (code and stream offset) and carried bytes after every
 * push; and the in-place path (readBuffer/commit) must give the frames push gives.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { STRIDE } from '../bindings/frame-table.js';
import type { Codec, Decoder, FrameBatch } from '../bindings/codec.js';
import { tsCodec } from '../bindings/codec-ts.js';
import { createWasmCodec, wasmCodec } from '../bindings/codec-wasm.js';
import { type InPlaceDecoder, inPlaceCodec } from '../bindings/in-place-decoder.js';
import { arbFrame, arbSizes } from './helpers/arbitraries.js';
import { decodeChecked } from './helpers/decode-checked.js';
import { chunk, encodeFrames, rowToFrame, type VFrame } from './helpers/frames.js';

const NUM_RUNS = Number(process.env.PIPIT_FC_RUNS ?? 300);

interface Step {
  rows: number[][];
  frames: Array<VFrame | string>;
  error: { code: string; offset: number; message: string } | null;
  pending: number;
}

function record(batch: FrameBatch, pending: number, rows: boolean): Step {
  const frames: Array<VFrame | string> = [];
  const table: number[][] = [];
  for (let i = 0; i < batch.count; i++) {
    if (rows) table.push([...batch.table.subarray(i * STRIDE, (i + 1) * STRIDE)]);
    try {
      frames.push(rowToFrame(batch, i));
    } catch (e) {
      frames.push(`throws ${(e as Error).message}`);
    }
  }
  const e = batch.error;
  return { rows: table, frames, error: e && { code: e.reason, offset: e.offset, message: e.message }, pending };
}

/** Push every chunk (optionally changing maxFrameBytes first), recording each batch. */
function pushAll(codec: Codec, chunks: Uint8Array[], max: number | number[], atEnd: boolean): Step[] {
  const maxes = typeof max === 'number' ? [max] : max;
  const dec: Decoder = codec.createDecoder(maxes[0]!);
  const steps: Step[] = [];
  chunks.forEach((c, k) => {
    dec.maxFrameBytes = maxes[k % maxes.length]!;
    steps.push(record(dec.push(c), dec.pending, true));
  });
  if (atEnd) {
    const e = dec.end();
    steps.push({ rows: [], frames: [], error: e && { code: e.reason, offset: e.offset, message: e.message }, pending: dec.pending });
  }
  return steps;
}

/**
 * The same through readBuffer/commit: the "socket" writes each chunk into the read buffer,
 * in several reads when the buffer offered is smaller (the rest of a large frame). The
 * reads of one chunk are recorded as one step.
 */
function commitAll(dec: InPlaceDecoder, chunks: Uint8Array[], atEnd: boolean): Step[] {
  const steps: Step[] = [];
  for (const c of chunks) {
    const step: Step = { rows: [], frames: [], error: null, pending: 0 };
    for (let pos = 0; pos < c.length && step.error === null;) {
      const rb = dec.readBuffer();
      expect(rb.length).toBeGreaterThan(0);
      const n = Math.min(rb.length, c.length - pos);
      rb.set(c.subarray(pos, pos + n));
      pos += n;
      const s = record(dec.commit(n), 0, false);
      step.frames.push(...s.frames);
      step.error = s.error;
    }
    step.pending = dec.pending;
    steps.push(step);
  }
  if (atEnd) {
    const e = dec.end();
    steps.push({ rows: [], frames: [], error: e && { code: e.reason, offset: e.offset, message: e.message }, pending: dec.pending });
  }
  return steps;
}

const withoutRows = (steps: Step[]): Step[] => steps.map((s) => ({ ...s, rows: [] }));

/** Byte edits applied to an encoded stream. */
const arbMutations = fc.array(
  fc.record({
    at: fc.nat(),
    op: fc.constantFrom('flip', 'set', 'insert', 'delete'),
    byte: fc.integer({ min: 0, max: 255 }),
  }),
  { maxLength: 4 },
);

function mutate(bytes: Uint8Array, edits: Array<{ at: number; op: string; byte: number }>): Uint8Array {
  const b = [...bytes];
  for (const { at, op, byte } of edits) {
    const i = b.length === 0 ? 0 : at % b.length;
    if (op === 'flip') b[i] = (b[i] ?? 0) ^ (1 << (byte & 7));
    else if (op === 'set') b[i] = byte;
    else if (op === 'insert') b.splice(i, 0, byte);
    else b.splice(i, 1);
  }
  return Uint8Array.from(b);
}

/** Random bytes, or valid frames (sometimes with EXTENSION frames between) mutated. */
const arbStream = fc.oneof(
  fc.uint8Array({ maxLength: 700 }),
  fc
    .tuple(fc.array(arbFrame, { minLength: 1, maxLength: 6 }), arbMutations, fc.boolean())
    .map(([frames, edits, ext]) => {
      let bytes: Uint8Array = encodeFrames(frames);
      if (ext) {
        // An EXTENSION frame (type 0xF, flags 0xA, id 129) after the first frame: skipped.
        const first = 4 + (bytes[0]! | (bytes[1]! << 8) | (bytes[2]! << 16));
        bytes = Buffer.concat([bytes.subarray(0, first), Uint8Array.of(3, 0, 0, 0xaf, 0x81, 0x01, 7), bytes.subarray(first)]);
      }
      return mutate(bytes, edits);
    }),
);

const arbMax = fc.constantFrom(5, 6, 40, 300, 1024, 65536, 1 << 20);

/**
 * The default Wasm codec, and two that move the "large frame" threshold (partial frames
 * collected outside linear memory) to the extremes: almost every straddling frame, none.
 */
const variants = fc.constantFrom(
  wasmCodec,
  createWasmCodec({ largeFrameBytes: 8 }),
  createWasmCodec({ largeFrameBytes: 40 }),
  createWasmCodec({ largeFrameBytes: Infinity }),
);

describe('wasm codec vs TS codec', () => {
  it('same rows, frames, errors and carry after every push', () => {
    fc.assert(
      fc.property(variants, arbStream, arbSizes, arbMax, fc.boolean(), (wasm, bytes, sizes, max, atEnd) => {
        const chunks = chunk(bytes, sizes);
        expect(pushAll(wasm, chunks, max, atEnd)).toEqual(pushAll(tsCodec, chunks, max, atEnd));
        // Equal is not enough if both are wrong: each variant keeps the whole contract too.
        decodeChecked(wasm, chunks, max);
      }),
      { numRuns: NUM_RUNS * 3 },
    );
  });

  it('same results when maxFrameBytes changes between pushes', () => {
    fc.assert(
      fc.property(variants, arbStream, arbSizes, fc.array(arbMax, { minLength: 1, maxLength: 5 }), (wasm, bytes, sizes, maxes) => {
        const chunks = chunk(bytes, sizes);
        expect(pushAll(wasm, chunks, maxes, true)).toEqual(pushAll(tsCodec, chunks, maxes, true));
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('the in-place path (readBuffer/commit) gives what push gives, for both codecs', () => {
    const tsInPlace = inPlaceCodec(tsCodec);
    fc.assert(
      fc.property(variants, arbStream, arbSizes, arbMax, (wasm, bytes, sizes, max) => {
        const chunks = chunk(bytes, sizes);
        const want = withoutRows(pushAll(tsCodec, chunks, max, true));
        expect(commitAll(wasm.createDecoder(max), chunks, true)).toEqual(want);
        expect(commitAll(tsInPlace.createDecoder(max), chunks, true)).toEqual(want);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('mixing push and in-place reads on one decoder', () => {
    fc.assert(
      fc.property(variants, fc.array(arbFrame, { minLength: 1, maxLength: 8 }), arbSizes, fc.array(fc.boolean(), { minLength: 1 }), (wasm, frames, sizes, how) => {
        const chunks = chunk(encodeFrames(frames), sizes);
        const dec = wasm.createDecoder(1 << 20);
        const got: Array<VFrame | string> = [];
        chunks.forEach((c, k) => {
          if (how[k % how.length]) {
            for (let pos = 0; pos < c.length;) {
              const rb = dec.readBuffer();
              const n = Math.min(rb.length, c.length - pos);
              rb.set(c.subarray(pos, pos + n));
              pos += n;
              const batch = dec.commit(n);
              expect(batch.error).toBeNull();
              got.push(...record(batch, 0, false).frames);
            }
          } else {
            const batch = dec.push(c);
            expect(batch.error).toBeNull();
            got.push(...record(batch, 0, false).frames);
          }
        });
        expect(dec.end()).toBeNull();
        expect(got).toEqual(frames);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
