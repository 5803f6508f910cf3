/**
 * Bad and awkward input at the codec boundary, for both codecs:
 *  - a frame that claims a huge length is refused from its word alone: nothing is allocated
 *    for it, `pending` stays 0 and Wasm memory does not grow, however many bytes follow;
 *  - a long real conversation delivered one byte at a time (and in random pieces) gives the
 *    same frames and the same session outcomes as the same conversation delivered whole.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { codecs } from '../helpers/codecs.js';
import { decodeChecked } from '../helpers/decode-checked.js';
import { encodeFrames } from '../helpers/frames.js';
import type { Codec } from '../../bindings/codec.js';
import { MAX_FRAME_BYTES_LIMIT } from '../../bindings/constants.js';
import { ProtocolError } from '../../bindings/errors.js';
import { byteAtATime, converse, randomPieces, whole, type Recording } from '../helpers/conversation.js';
import { seeded } from '../helpers/seed.js';
import { scaled } from '../helpers/slow.js';

// The real functions, captured before any spy wraps them.
const originalAlloc = { allocUnsafe: Buffer.allocUnsafe, allocUnsafeSlow: Buffer.allocUnsafeSlow, alloc: Buffer.alloc };
const originalGrow = (globalThis as unknown as { WebAssembly: { Memory: { prototype: { grow(n: number): number } } } }).WebAssembly.Memory.prototype.grow;

afterEach(() => {
  vi.restoreAllMocks();
});

/** Arm allocation tracking: Buffer.alloc* and WebAssembly.Memory#grow calls are recorded. */
function track(min = 1024): { sizes: number[]; grows: number[]; stop(): void } {
  const sizes: number[] = [];
  const grows: number[] = [];
  const wrap = (name: 'allocUnsafe' | 'allocUnsafeSlow' | 'alloc'): void => {
    const orig = originalAlloc[name] as (n: number, ...rest: unknown[]) => Buffer;
    vi.spyOn(Buffer, name).mockImplementation(((n: number, ...rest: unknown[]) => {
      if (n >= min) sizes.push(n);
      return orig.call(Buffer, n, ...rest);
    }) as never);
  };
  wrap('allocUnsafe');
  wrap('allocUnsafeSlow');
  wrap('alloc');
  const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: { prototype: { grow(n: number): number } } } }).WebAssembly.Memory;
  vi.spyOn(WasmMemory.prototype, 'grow').mockImplementation(function (this: unknown, pages: number) {
    grows.push(pages);
    return originalGrow.call(this, pages);
  });
  return { sizes, grows, stop: () => vi.restoreAllMocks() };
}

const FILLER = Buffer.alloc(64 * 1024, 0x5a);
const PING = encodeFrames([{ type: 'PING', flags: [], id: 7 }]);

/** Words whose LENGTH is too large for `max`: one past the limit up to the u24 maximum. */
function hugeLengths(max: number): number[] {
  return [max - 3, max - 2, max + 1000, 0x100000, 0x7fffff, 0xfffffe, 0xffffff].filter((len) => len <= 0xffffff && 4 + len > max);
}

function word(len: number, byte3: number): Uint8Array {
  return Uint8Array.of(len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, byte3);
}

/**
 * Feed [prefix][word][filler x n], the word whole or one byte at a time, and check the refusal.
 * Returns the allocations and growths seen after the decoder existed.
 */
function refuse(codec: Codec, max: number, w: Uint8Array, bytewise: boolean, prefix: Uint8Array): { sizes: number[]; grows: number[] } {
  const dec = codec.createDecoder(max);
  if (prefix.length > 0) expect(dec.push(prefix).error).toBeNull();
  const t = track();
  try {
    let error: ProtocolError | null = null;
    const pieces = bytewise ? [...w].map((b) => Uint8Array.of(b)) : [w];
    pieces.forEach((piece, k) => {
      const batch = dec.push(piece);
      expect(dec.pending, 'pending while the word arrives').toBeLessThanOrEqual(3);
      if (k < pieces.length - 1) expect(batch.error).toBeNull();
      else error = batch.error;
    });
    expect(error, 'refused as soon as the word is complete').not.toBeNull();
    expect(error!.code).toBe('PROTOCOL_ERROR');
    expect(error!.reason).toBe('E_FRAME_TOO_LARGE');
    expect(error!.offset).toBe(prefix.length);
    expect(dec.pending).toBe(0);
    // Whatever the peer sends after it is not buffered either.
    for (let i = 0; i < 16; i++) {
      const batch = dec.push(FILLER);
      expect(batch.count).toBe(0);
      expect(batch.error).toBe(error);
      expect(dec.pending).toBe(0);
    }
    expect(dec.end()).toBe(error);
    return { sizes: [...t.sizes], grows: [...t.grows] };
  } finally {
    t.stop();
  }
}

describe.each(codecs.map((c) => [c.kind, c] as const))('codec %s: a huge LENGTH', (_, codec) => {
  it('is refused from the word alone for every type/flags byte, before anything is allocated (maxFrameBytes 65536)', () => {
    let cases = 0;
    for (let byte3 = 0; byte3 < 256; byte3++) {
      for (const len of [65533, 0xffffff]) {
        const r = refuse(codec, 65536, word(len, byte3), byte3 % 17 === 0, byte3 % 2 === 0 ? PING : new Uint8Array(0));
        expect(r.sizes, `allocations for word ${Buffer.from(word(len, byte3)).toString('hex')}`).toEqual([]);
        expect(r.grows).toEqual([]);
        cases++;
      }
    }
    // The word ff ff ff ff itself.
    const r = refuse(codec, 65536, Uint8Array.of(0xff, 0xff, 0xff, 0xff), true, PING);
    expect(r.sizes).toEqual([]);
    expect(r.grows).toEqual([]);
    expect(cases).toBe(512);
  });

  it('is refused before allocation at larger limits too, up to one byte under the format maximum', () => {
    for (const max of [262144, 1 << 20, 8 << 20, MAX_FRAME_BYTES_LIMIT - 1]) {
      for (const len of hugeLengths(max)) {
        for (const byte3 of [0x01, 0x12, 0x06, 0x0f, 0xff]) {
          for (const bytewise of [false, true]) {
            const r = refuse(codec, max, word(len, byte3), bytewise, PING);
            expect(r.sizes, `max ${max}, LENGTH ${len}`).toEqual([]);
            expect(r.grows, `max ${max}, LENGTH ${len}`).toEqual([]);
          }
        }
      }
    }
  });

  it('control: a frame of exactly maxFrameBytes is accepted and buffered, so the watch above does see allocations', () => {
    const max = 1 << 20;
    const frame = Buffer.alloc(max, 0x61);
    frame.set(word(max - 4, 0x02), 0); // RESPONSE
    frame[4] = 1; // id 1
    const dec = codec.createDecoder(max);
    const t = track();
    try {
      const batch = dec.push(frame.subarray(0, 64 * 1024));
      expect(batch.error).toBeNull();
      expect(dec.pending).toBe(64 * 1024);
      // The partial frame is held in a Buffer of its exact size, allocated once its word passed.
      expect(t.sizes).toContain(max);
    } finally {
      t.stop();
    }
    let got = 0;
    for (let p = 64 * 1024; p < max; p += 64 * 1024) got += dec.push(frame.subarray(p, p + 64 * 1024)).count;
    expect(got).toBe(1);
    expect(dec.pending).toBe(0);
  });

  it('never grows process memory by the claimed size', () => {
    const max = MAX_FRAME_BYTES_LIMIT - 1;
    const before = process.memoryUsage().arrayBuffers;
    const decoders = Array.from({ length: 64 }, () => codec.createDecoder(max));
    for (const dec of decoders) {
      expect(dec.push(Uint8Array.of(0xff, 0xff, 0xff, 0x02)).error?.reason).toBe('E_FRAME_TOO_LARGE');
      for (let i = 0; i < 4; i++) dec.push(FILLER);
    }
    const grown = process.memoryUsage().arrayBuffers - before;
    // 64 claims of 16 MiB each would be 1 GiB; what is held is the decoders' own small memory.
    expect(grown).toBeLessThan(64 * 1024 * 1024);
    expect(decoders.every((d) => d.pending === 0)).toBe(true);
  });
});

describe('a long conversation delivered one byte at a time', () => {
  let reference: Recording;

  it.each(codecs.map((c) => [c.kind, c] as const))('codec %s: same frames, same outcomes as whole delivery, and as random pieces', async (_, codec) => {
    reference ??= await converse(codecs[0]!, whole);
    const r = reference;
    // The conversation is what it claims to be: long, both directions, fragments, credits, cancels.
    expect(r.framesAB.length + r.framesBA.length).toBeGreaterThan(2000);
    const all = [...r.framesAB, ...r.framesBA].join('\n');
    for (const needle of ['"DATA"', '"FOLLOWS"', '"CREDIT"', '"CANCEL"', '"STATUS"', '"GOAWAY"', '"HELLO"']) expect(all).toContain(needle);
    expect(r.events.filter((e) => e.includes(' ok ')).length).toBeGreaterThan(300);
    expect(r.events.some((e) => e.includes('DEADLINE_EXCEEDED'))).toBe(true);
    expect(r.events.some((e) => e.includes('CANCELLED'))).toBe(true);
    expect(r.events.at(-1)).toBe('A tables 0/0, B tables 0/0, closed true/true');

    // Random pieces differ from run to run (the run's seed, test/helpers/seed.ts).
    for (const chunker of [whole, byteAtATime, randomPieces(seeded('small pieces'), 9), randomPieces(seeded('large pieces'), 3000)]) {
      const got = await converse(codec, chunker);
      expect(got.events).toEqual(r.events);
      expect(got.framesAB).toEqual(r.framesAB);
      expect(got.framesBA).toEqual(r.framesBA);
      if (chunker === byteAtATime) expect(got.receives).toBe(got.bytesAB.length + got.bytesBA.length);
    }

    // The recorded byte streams decode identically in one chunk and one byte at a time.
    for (const [bytes, frames] of [[r.bytesAB, r.framesAB], [r.bytesBA, r.framesBA]] as const) {
      const one = decodeChecked(codec, [bytes], 262144);
      const bytewise = decodeChecked(codec, [...bytes].map((b) => Uint8Array.of(b)), 262144);
      expect(one.error).toBeNull();
      expect(bytewise).toEqual(one);
      expect(one.frames.length).toBe(frames.length);
    }
  }, scaled(60_000));
});
