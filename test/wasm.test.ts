/**
 * Wasm-specific checks the contract suite cannot make: the module's size budget and
 * boundary, memory growth (no stale views, limit checked before growing), the debug build
 * (asserts on), and the TS fallback when instantiation fails.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import * as constants from '../bindings/constants.js';
import * as frameTable from '../bindings/frame-table.js';
import { TYPE_NAMES } from '../bindings/constants.js';
import { createWasmCodec, wasmCodec } from '../bindings/codec-wasm.js';
import { READ_BYTES, TsInPlaceDecoder } from '../bindings/in-place-decoder.js';
import { WASM_BASE64, WASM_BYTE_LENGTH } from '../bindings/wasm-bytes.js';
import { arbFrame } from './helpers/arbitraries.js';
import { decodeChecked } from './helpers/decode-checked.js';
import { chunk, encodeFrames, type VError, type VFrame } from './helpers/frames.js';

const ROOT = join(import.meta.dirname, '..');
/** Release module budget: the module ships inline as base64 in every install. */
const SIZE_BUDGET = 2048;

// lib.dom is not in the tsconfig: the two reflection calls used here, typed by hand.
const WA = (globalThis as unknown as {
  WebAssembly: {
    Module: {
      new (b: Uint8Array): object;
      imports(m: object): Array<{ module: string; name: string; kind: string }>;
      exports(m: object): Array<{ name: string; kind: string }>;
    };
  };
}).WebAssembly;

const release = Buffer.from(WASM_BASE64, 'base64');

describe('release module', () => {
  it(`fits the size budget (${SIZE_BUDGET} bytes)`, () => {
    expect(release.length).toBe(WASM_BYTE_LENGTH);
    expect(release.length).toBeLessThanOrEqual(SIZE_BUDGET);
    expect([...release.subarray(0, 4)]).toEqual([0, 0x61, 0x73, 0x6d]);
  });

  it('has no imports and exports only stateless functions and its memory', () => {
    const m = WA.Module.imports(new WA.Module(release));
    expect(m).toEqual([]);
    const ex = WA.Module.exports(new WA.Module(release)).map((e) => `${e.kind}:${e.name}`).sort();
    expect(ex).toEqual(['function:heapBase', 'function:nop', 'function:scan', 'memory:memory']);
  });

  it('instantiates lazily and decodes', () => {
    expect(wasmCodec.wasmModule()).toBeTruthy();
    const got = decodeChecked(wasmCodec, [encodeFrames([{ type: 'PING', flags: [], id: 42 }])]);
    expect(got).toEqual({ frames: [{ type: 'PING', flags: [], id: 42 }], error: null });
  });
});

describe('assembly constants', () => {
  it('layout.ts and errors.ts mirror bindings/constants.ts and bindings/frame-table.ts', () => {
    const table = { ...constants, ...frameTable } as unknown as Record<string, unknown>;
    let shared = 0;
    for (const file of ['assembly/layout.ts', 'assembly/errors.ts']) {
      const src = readFileSync(join(ROOT, file), 'utf8');
      for (const [, name, value] of src.matchAll(/^export const (\w+): \w+ = (0x[0-9a-f]+|\d+);/gim)) {
        if (name! in table) {
          expect(Number(value), `${file} ${name}`).toBe(table[name!]);
          shared++;
        }
      }
    }
    expect(shared).toBeGreaterThanOrEqual(40);
  });
});

describe('debug module (asserts on)', () => {
  const debugCodec = createWasmCodec({ bytes: () => readFileSync(join(ROOT, 'build/pipit.debug.wasm')) });
  const cases = readdirSync(join(ROOT, 'spec/vectors'))
    .filter((f) => f.endsWith('.json'))
    .flatMap((f) => (JSON.parse(readFileSync(join(ROOT, 'spec/vectors', f), 'utf8')) as {
      cases: Array<{ name: string; hex: string; maxFrameBytes?: number; frames: VFrame[]; error: VError | null }>;
    }).cases);

  it('imports nothing but abort', () => {
    const imports = WA.Module.imports(debugCodec.wasmModule());
    expect(imports.map((i) => `${i.module}.${i.name}`)).toEqual(['env.abort']);
  });

  it('passes every shared vector, whole and byte by byte', () => {
    for (const c of cases) {
      const bytes = Buffer.from(c.hex, 'hex');
      for (const sizes of [[bytes.length || 1], [1]]) {
        expect(decodeChecked(debugCodec, chunk(bytes, sizes), c.maxFrameBytes ?? 65536), c.name).toEqual({ frames: c.frames, error: c.error });
      }
    }
  });

  it('random streams decode as with the release module', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.array(arbFrame, { maxLength: 4 }), (noise, frames) => {
        const bytes = Buffer.concat([encodeFrames(frames), noise]);
        expect(decodeChecked(debugCodec, chunk(bytes, [7]), 1024)).toEqual(decodeChecked(wasmCodec, chunk(bytes, [7]), 1024));
      }),
      { numRuns: 200 },
    );
  });
});

describe('memory growth (large frames kept in linear memory)', () => {
  // largeFrameBytes: Infinity keeps every partial frame in the input region, which then
  // grows up to maxFrameBytes; the default codec moves large frames out (next describe).
  const grower = createWasmCodec({ largeFrameBytes: Infinity });
  const big = Buffer.alloc(300_000);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
  const frames: VFrame[] = [
    { type: 'RESPONSE', flags: ['END'], id: 2, payload: big.toString('hex') },
    { type: 'PING', flags: [], id: 3 },
  ];
  const bytes = encodeFrames(frames);

  it('a frame bigger than the initial region, in 64 KiB chunks: no stale views', () => {
    const dec = grower.createDecoder(1 << 20);
    const first = dec.push(encodeFrames([{ type: 'PONG', flags: [], id: 1 }]));
    const before = first.buffers[0]!.buffer;
    const sizeBefore = before.byteLength;
    const got: Array<{ type: number; body: Buffer }> = [];
    for (const c of chunk(bytes, [65536])) {
      const batch = dec.push(c);
      expect(batch.error).toBeNull();
      for (let i = 0; i < batch.count; i++) {
        // Every view the batch hands out is attached to the current memory.
        expect(batch.table.length).toBeGreaterThan(0);
        expect(batch.bytes(i).byteLength).toBeGreaterThan(0);
        got.push({ type: batch.type(i), body: batch.body(i) });
        expect(batch.bodyView(i).equals(got.at(-1)!.body)).toBe(true);
      }
    }
    expect(before.byteLength).toBe(0); // the memory grew: the old buffer is detached
    expect(got.map((g) => g.type)).toEqual([2, 7]);
    expect(got[0]!.body.equals(big)).toBe(true);
    expect(dec.pending).toBe(0);
    expect(sizeBefore).toBeLessThan(300_000);
  });

  it('the same frame as one chunk (region grows to the chunk)', () => {
    expect(decodeChecked(grower, [bytes], 1 << 20)).toEqual({ frames, error: null });
  });

  it('the same frame through readBuffer/commit', () => {
    const dec = grower.createDecoder(1 << 20);
    const got: VFrame[] = [];
    let pos = 0;
    let reads = 0;
    while (pos < bytes.length) {
      const rb = dec.readBuffer();
      expect(rb.byteLength).toBeGreaterThanOrEqual(READ_BYTES);
      const n = Math.min(rb.length, bytes.length - pos, 50_000);
      rb.set(bytes.subarray(pos, pos + n));
      pos += n;
      reads++;
      const batch = dec.commit(n);
      expect(batch.error).toBeNull();
      expect(batch.buffers[0]!.buffer).toBe(rb.buffer);
      for (let i = 0; i < batch.count; i++) got.push({ type: TYPE_NAMES[batch.type(i)]!, flags: [], id: batch.id(i), ...(batch.type(i) === 2 ? { payload: batch.body(i).toString('hex') } : {}) });
    }
    expect(reads).toBeGreaterThan(5);
    expect(got).toEqual([{ ...frames[0]!, flags: [] }, frames[1]]);
  });

  it('a frame table bigger than the initial one (20,000 frames in one chunk)', () => {
    const many = Buffer.concat(Array.from({ length: 20_000 }, (_, i) => Uint8Array.of(1, 0, 0, 7, i & 0x7f)));
    const batch = wasmCodec.createDecoder(65536).push(many);
    expect(batch.count).toBe(20_000);
    expect(batch.id(19_999)).toBe(19_999 & 0x7f);
  });

  it('checks maxFrameBytes before growing: a huge length word costs no memory', () => {
    const dec = wasmCodec.createDecoder(65536);
    const size = dec.push(Uint8Array.of(1, 0, 0, 7, 1)).buffers[0]!.buffer.byteLength;
    const batch = dec.push(Uint8Array.of(0xff, 0xff, 0x7f, 0x02));
    expect(batch.error?.reason).toBe('E_FRAME_TOO_LARGE');
    expect(batch.error?.offset).toBe(5);
    expect(batch.buffers[0]!.buffer.byteLength).toBe(size);
  });

  it('grows with the bytes received, not with the length a frame announces', () => {
    const dec = wasmCodec.createDecoder(1 << 24);
    const word = Uint8Array.of(0x00, 0x00, 0xf0, 0x02, 1); // RESPONSE of 15 MiB, id 1
    const batch = dec.push(word);
    expect(batch.error).toBeNull();
    expect(dec.pending).toBe(5);
    expect(batch.buffers[0]!.buffer.byteLength).toBeLessThan(1 << 20);
  });
});

describe('large frames (collected outside linear memory)', () => {
  const big = Buffer.alloc(200_000, 0x5c);
  const bytes = encodeFrames([
    { type: 'PING', flags: [], id: 1 },
    { type: 'RESPONSE', flags: ['END'], id: 2, payload: big.toString('hex') },
    { type: 'PONG', flags: [], id: 3 },
  ]);

  it('push: memory does not grow, the payload is one retainable Buffer', () => {
    const dec = wasmCodec.createDecoder(1 << 20);
    const mem = dec.push(Uint8Array.of(1, 0, 0, 7, 9)).buffers[0]!.buffer;
    const size = mem.byteLength;
    const types: number[] = [];
    let body: Buffer | null = null;
    for (const c of chunk(bytes, [65536])) {
      const batch = dec.push(c);
      expect(batch.error).toBeNull();
      for (let i = 0; i < batch.count; i++) {
        types.push(batch.type(i));
        if (batch.type(i) === 2) {
          expect(batch.retainable[0]).toBe(true);
          body = batch.body(i);
          // A view of the frame's own buffer, not a copy.
          expect(body.buffer).toBe(batch.buffers[0]!.buffer);
        }
      }
      expect(dec.pending).toBeLessThan(200_010);
    }
    expect(types).toEqual([7, 2, 8]);
    expect(body!.equals(big)).toBe(true);
    expect(mem.byteLength).toBe(size);
  });

  it('in place: the socket writes the rest of the frame straight into its buffer', () => {
    const dec = wasmCodec.createDecoder(1 << 20);
    const types: number[] = [];
    let body: Buffer | null = null;
    let direct = 0;
    for (let pos = 0; pos < bytes.length;) {
      const rb = dec.readBuffer();
      if (rb.length < READ_BYTES) direct++;
      const n = Math.min(rb.length, bytes.length - pos, 65536);
      rb.set(bytes.subarray(pos, pos + n));
      pos += n;
      const batch = dec.commit(n);
      expect(batch.error).toBeNull();
      for (let i = 0; i < batch.count; i++) {
        types.push(batch.type(i));
        if (batch.type(i) === 2) body = batch.body(i);
      }
    }
    expect(direct).toBeGreaterThan(0);
    expect(types).toEqual([7, 2, 8]);
    expect(body!.equals(big)).toBe(true);
  });

  it('end of stream inside a large frame is E_INCOMPLETE at its first byte', () => {
    const dec = wasmCodec.createDecoder(1 << 20);
    expect(dec.push(bytes.subarray(0, 100_000)).count).toBe(1);
    expect(dec.pending).toBe(100_000 - 5);
    expect(dec.end()).toMatchObject({ reason: 'E_INCOMPLETE', offset: 5 });
  });
});

describe('fallback', () => {
  it('createDecoder falls back to a TS decoder when an instance cannot be created', () => {
    // A valid module that imports x.y, which the codec does not provide: instantiation throws.
    const needsImport = Uint8Array.of(
      0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
      1, 4, 1, 0x60, 0, 0, // type section: () -> ()
      2, 7, 1, 1, 0x78, 1, 0x79, 0, 0, // import section: x.y, func type 0
    );
    const codec = createWasmCodec({ bytes: () => needsImport });
    const dec = codec.createDecoder(65536);
    expect(dec).toBeInstanceOf(TsInPlaceDecoder);
    const rb = dec.readBuffer();
    rb.set([1, 0, 0, 7, 9]);
    const batch = dec.commit(5);
    expect(batch.count).toBe(1);
    expect(batch.id(0)).toBe(9);
  });

  it('a module that does not compile throws from createDecoder (selectCodec then uses TS)', () => {
    const codec = createWasmCodec({ bytes: () => Uint8Array.of(1, 2, 3) });
    expect(() => codec.createDecoder(65536)).toThrow();
    expect(() => codec.wasmModule()).toThrow();
  });
});
