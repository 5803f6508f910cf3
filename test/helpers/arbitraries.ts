/** fast-check generators for valid frames of every type (plain objects, see frames.ts). */
import fc from 'fast-check';
import type { VFrame } from './frames.js';

const u32 = fc.oneof(
  fc.integer({ min: 0, max: 130 }),
  fc.integer({ min: 0, max: 0xffffffff }),
  fc.constantFrom(127, 128, 16383, 16384, 0x1fffff, 0x200000, 0xfffffff, 0x10000000, 0xffffffff),
);
const hexBytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b).toString('hex'));
const name = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }).filter((s) => Buffer.byteLength(s) <= 255),
  fc.constant('x'.repeat(255)),
);
const text = fc.string({ unit: 'grapheme', maxLength: 60 });
const sub = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });

const ext = fc
  .record({
    deadlineMs: sub(u32),
    credit: sub(u32),
    metadata: sub(
      fc.array(fc.tuple(fc.string({ maxLength: 10 }), fc.string({ unit: 'grapheme', maxLength: 20 })), {
        minLength: 1,
        maxLength: 3,
      }),
    ),
  })
  .map((e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)))
  .filter((e) => Object.keys(e).length > 0);

const flags = (...names: string[]) => fc.subarray(names);

export const arbFrame: fc.Arbitrary<VFrame> = fc.oneof(
  fc.record({ type: fc.constant('HELLO'), flags: fc.constant<string[]>([]), id: u32, settings: fc.array(fc.tuple(u32, u32), { maxLength: 4 }) }),
  fc
    .record({
      type: fc.constant('REQUEST'),
      flags: flags('STREAM', 'TEXT', 'FOLLOWS'),
      id: u32,
      service: name,
      method: name,
      ext: sub(ext),
      payload: hexBytes(300),
    })
    .map((f) => {
      const out: VFrame = { ...f, flags: [...f.flags] };
      if (f.ext === undefined) delete out.ext;
      else out.flags.push('EXT');
      return out;
    }),
  fc.record({ type: fc.constant('RESPONSE'), flags: flags('END', 'TEXT'), id: u32, payload: hexBytes(300) }),
  fc.record({ type: fc.constant('RESPONSE'), flags: flags('TEXT', 'FOLLOWS'), id: u32, payload: hexBytes(300) }),
  fc.record({ type: fc.constant('DATA'), flags: flags('FOLLOWS'), id: u32, payload: hexBytes(300) }),
  fc.record({ type: fc.constantFrom('STATUS', 'GOAWAY'), flags: fc.constant<string[]>([]), id: u32, code: u32, message: text }),
  fc.record({ type: fc.constant('ERROR'), flags: fc.constant<string[]>([]), id: fc.constant(0), code: u32, message: text }),
  fc.record({ type: fc.constant('CREDIT'), flags: fc.constant<string[]>([]), id: u32, credit: u32.filter((n) => n > 0) }),
  fc.record({ type: fc.constantFrom('CANCEL', 'PING', 'PONG'), flags: fc.constant<string[]>([]), id: u32 }),
);

/** Chunk sizes: mostly tiny, sometimes large. */
export const arbSizes = fc.array(fc.oneof(fc.integer({ min: 1, max: 8 }), fc.integer({ min: 1, max: 4096 })), {
  minLength: 1,
  maxLength: 12,
});
