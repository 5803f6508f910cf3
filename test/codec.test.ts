/**
 * The codec contract: every codec in `codecs` must pass all of it. No sockets: bytes in,
 * frames out.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { codecs } from './helpers/codecs.js';
import { decodeChecked } from './helpers/decode-checked.js';
import { chunk, encodeFrames, type VError, type VFrame } from './helpers/frames.js';
import { arbFrame, arbSizes } from './helpers/arbitraries.js';
import { ProtocolError, PipitError } from '../bindings/errors.js';
import { FrameWriter } from '../bindings/frame-writer.js';

interface VCase {
  name: string;
  hex: string;
  maxFrameBytes?: number;
  frames: VFrame[];
  error: VError | null;
  roundTrip: boolean;
  atEnd?: boolean;
}

const VECTOR_DIR = join(import.meta.dirname, '..', 'spec', 'vectors');
const cases: VCase[] = readdirSync(VECTOR_DIR)
  .filter((f) => f.endsWith('.json'))
  .flatMap((f) => (JSON.parse(readFileSync(join(VECTOR_DIR, f), 'utf8')) as { cases: VCase[] }).cases);

const NUM_RUNS = Number(process.env.PIPIT_FC_RUNS ?? 300);

describe('shared vectors', () => {
  it('are plentiful and named uniquely', () => {
    expect(cases.filter((c) => c.error === null).length).toBeGreaterThanOrEqual(40);
    expect(cases.filter((c) => c.error !== null).length).toBeGreaterThanOrEqual(15);
    expect(new Set(cases.map((c) => c.name)).size).toBe(cases.length);
  });

  it.each(cases.filter((c) => c.roundTrip).map((c) => [c.name, c] as const))('%s re-encodes to its bytes', (_, c) => {
    expect(encodeFrames(c.frames).toString('hex')).toBe(c.hex);
  });
});

describe.each(codecs.map((c) => [c.kind, c] as const))('codec %s', (_, codec) => {
  describe('vectors', () => {
    it.each(cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
      const bytes = Buffer.from(c.hex, 'hex');
      const max = c.maxFrameBytes ?? 65536;
      const expected = { frames: c.frames, error: c.error };
      // One chunk, one byte at a time, and a few fixed irregular splits must all agree.
      for (const sizes of [[bytes.length || 1], [1], [3], [7, 1, 2], [4, 5]]) {
        const got = decodeChecked(codec, chunk(bytes, sizes), max);
        expect(got, `chunk sizes ${sizes}`).toEqual(expected);
      }
    });
  });

  it('every split point of a multi-frame buffer gives the same frames', () => {
    const frames: VFrame[] = [
      { type: 'HELLO', flags: [], id: 1, settings: [[1, 262144]] },
      { type: 'REQUEST', flags: ['TEXT'], id: 1, service: 'db', method: 'query', payload: '70696e67' },
      { type: 'REQUEST', flags: ['STREAM', 'EXT'], id: 300, service: 'db', method: 'rows', ext: { deadlineMs: 500, credit: 256, metadata: [['trace', 'abc']] }, payload: '' },
      { type: 'RESPONSE', flags: ['END'], id: 1, payload: 'ab'.repeat(40) },
      { type: 'STATUS', flags: [], id: 7, code: 5, message: 'boom' },
      { type: 'CREDIT', flags: [], id: 300, credit: 128 },
      { type: 'CANCEL', flags: [], id: 300 },
    ];
    const bytes = encodeFrames(frames);
    for (let a = 0; a <= bytes.length; a++) {
      const got = decodeChecked(codec, [bytes.subarray(0, a), bytes.subarray(a)].filter((c) => c.length > 0));
      expect(got.error).toBeNull();
      expect(got.frames).toEqual(frames);
    }
    for (let a = 1; a < bytes.length; a += 3) {
      for (let b = a + 1; b < bytes.length; b += 5) {
        const got = decodeChecked(codec, [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)]);
        expect(got.frames).toEqual(frames);
      }
    }
  });

  it('property: any frames, any chunking, round trip', () => {
    fc.assert(
      fc.property(fc.array(arbFrame, { minLength: 1, maxLength: 8 }), arbSizes, (frames, sizes) => {
        const bytes = encodeFrames(frames);
        const got = decodeChecked(codec, chunk(bytes, sizes), 1 << 20);
        expect(got.error).toBeNull();
        expect(got.frames).toEqual(frames);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('property: random bytes give frames or a ProtocolError, never another throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), arbSizes, (bytes, sizes) => {
        // decodeChecked holds the decoder to the whole contract (push never throws, the
        // error's code and offset, pending, a dead decoder stays dead, end()).
        const result = decodeChecked(codec, chunk(bytes, sizes), 1024);
        // Chunking must not change the outcome.
        expect(decodeChecked(codec, [bytes], 1024)).toEqual(result);
      }),
      { numRuns: NUM_RUNS },
    );
  });

  it('refuses a huge length from the word alone, before buffering the frame', () => {
    const dec = codec.createDecoder(65536);
    const batch = dec.push(Uint8Array.of(0xff, 0xff, 0xff, 0xff));
    expect(batch.error).toBeInstanceOf(ProtocolError);
    expect(batch.error).toBeInstanceOf(PipitError);
    expect(batch.error!.code).toBe('PROTOCOL_ERROR');
    expect(batch.error!.reason).toBe('E_FRAME_TOO_LARGE');
    expect(batch.error!.offset).toBe(0);
    expect(dec.pending).toBe(0);
    // The word split over two pushes is refused as soon as it is complete.
    const dec2 = codec.createDecoder(65536);
    expect(dec2.push(Uint8Array.of(0xfd, 0xff)).error).toBeNull();
    expect(dec2.push(Uint8Array.of(0x00, 0x02)).error?.reason).toBe('E_FRAME_TOO_LARGE');
  });

  it('a dead decoder stays dead', () => {
    const dec = codec.createDecoder(65536);
    expect(dec.push(Uint8Array.of(1, 0, 0, 0xb, 0)).error?.reason).toBe('E_UNKNOWN_TYPE');
    const again = dec.push(encodeFrames([{ type: 'PING', flags: [], id: 1 }]));
    expect(again.count).toBe(0);
    expect(again.error?.reason).toBe('E_UNKNOWN_TYPE');
  });

  it('reports the stream offset of a bad frame after good ones across chunks', () => {
    const good = encodeFrames([{ type: 'PING', flags: [], id: 1 }, { type: 'PONG', flags: [], id: 2 }]);
    const bad = Uint8Array.of(2, 0, 0, 0x04, 1, 9); // CANCEL with a body byte
    const got = decodeChecked(codec, chunk(Buffer.concat([good, bad]), [3]));
    expect(got.frames.map((f) => f.type)).toEqual(['PING', 'PONG']);
    expect(got.error).toEqual({ code: 'E_BAD_BODY', offset: good.length });
  });

  it('payload views of a frame inside the chunk alias the chunk; body() of a reused buffer is a copy', () => {
    const bytes = encodeFrames([{ type: 'RESPONSE', flags: ['END'], id: 3, payload: '0102030405' }]);
    const dec = codec.createDecoder(65536);
    const reused = Buffer.from(bytes);
    const batch = dec.push(reused, false);
    const kept = batch.body(0);
    reused.fill(0);
    expect([...kept]).toEqual([1, 2, 3, 4, 5]);
  });

  it('bodies of many frames from a reused buffer survive its reuse and later pushes', () => {
    const mk = (k: number) =>
      encodeFrames(Array.from({ length: 300 }, (_, i) => ({ type: 'RESPONSE', flags: [], id: i, payload: Buffer.from(`${k}:${i}`.padEnd(20 + (i % 7), '.')).toString('hex') })));
    const dec = codec.createDecoder(65536);
    const reused = Buffer.alloc(mk(1).length + 64);
    const kept: Buffer[] = [];
    for (const k of [1, 2, 3]) {
      const bytes = mk(k);
      reused.fill(0);
      bytes.copy(reused);
      const batch = dec.push(reused.subarray(0, bytes.length), false);
      expect(batch.count).toBe(300);
      // Not every body is taken: the span copy must still serve the ones that are.
      for (let i = 0; i < batch.count; i += 1 + (k % 2)) kept.push(batch.body(i));
      reused.fill(0xee);
    }
    const expected: string[] = [];
    for (const k of [1, 2, 3]) for (let i = 0; i < 300; i += 1 + (k % 2)) expected.push(`${k}:${i}`.padEnd(20 + (i % 7), '.'));
    expect(kept.map((b) => b.toString())).toEqual(expected);
  });

  it('many frames in one chunk (more than the initial table holds)', () => {
    const frames: VFrame[] = Array.from({ length: 5000 }, (_, i) => ({ type: 'RESPONSE', flags: ['END'], id: i, payload: '00ff' }));
    const got = decodeChecked(codec, [encodeFrames(frames)]);
    expect(got.frames).toEqual(frames);
  });
});

describe('FrameWriter', () => {
  it('keeps large payloads as their own segments and never rewrites handed-out bytes', () => {
    const w = new FrameWriter(16);
    const big = Buffer.alloc(100, 7);
    w.response(1, 1, big);
    w.response(2, 1, 'hi');
    const segs = w.take();
    expect(segs.length).toBe(3);
    expect(segs[1]).toBe(big);
    const first = Buffer.from(segs[0]!);
    w.response(3, 1, 'again');
    w.take();
    expect(Buffer.from(segs[0]!)).toEqual(first);
  });

  it('writes text payloads as UTF-8 with the right length', () => {
    const w = new FrameWriter();
    w.response(1, 0x2, 'héllo ✓');
    const bytes = Buffer.concat(w.take());
    const got = decodeChecked(codecs[0]!, [bytes]);
    expect(Buffer.from(got.frames[0]!.payload!, 'hex').toString()).toBe('héllo ✓');
  });
});
