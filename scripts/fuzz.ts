/**
 * Fuzzing the two decoders and the session with fast-check.
 *
 *   npm run fuzz                      1,000,000 inputs per codec + 50,000 session cases
 *   npm run fuzz -- --inputs 50000 --session 2000 --seed 42 --workers 2 --json
 *   npm run fuzz -- --replay codec-soup:<seed>:<path>
 *
 * Properties (each a fast-check property; the run loop lives in worker threads):
 *   codec-random   random bytes;
 *   codec-soup     frames with plausible words (type, flags, a length near the real one) and
 *                  bodies built from varints, name blocks and ext entries, valid or not;
 *   codec-mutated  valid streams (encodeFrames of random frames) with bits flipped, bytes set,
 *                  inserted, deleted, duplicated, cut, and words (length/type/flags) rewritten.
 *   Every codec input is decoded by the TS decoder (split as generated, and whole) and by the
 *   Wasm decoder (split as generated: one chunk, one byte at a time, or random sizes), each
 *   through the codec oracle of test/helpers/decode-checked.ts: the outcome must be frames
 *   and at most one ProtocolError (code PROTOCOL_ERROR) and nothing else; `pending` never
 *   exceeds maxFrameBytes; a dead decoder holds nothing and stays dead; Wasm memory grows
 *   with the bytes fed, never with a length a frame claims. All three decodes must agree
 *   exactly.
 *   session        random frame sequences (wrong ids, data after end, credit violations,
 *                  duplicate ids, responses to calls never made, odd HELLO/GOAWAY/ERROR, random
 *                  garbage) fed in random chunks to a Session that has calls of its own in
 *                  flight, with clock ticks, aborts, new calls and GOAWAY in between. receive()
 *                  never throws; the session oracle of test/helpers/output-model.ts checks
 *                  that its output always decodes and respects the peer's frame limit, nothing
 *                  follows its ERROR, no request gets more terminal frames or stream messages
 *                  than the protocol allows; a close is graceful or PROTOCOL_ERROR unless
 *                  the peer sent ERROR, and once the transport is gone every own call has
 *                  settled, every handler signal has fired and both call tables and the
 *                  deadline heap are empty.
 *
 * A hang is a failure too: each worker reports the run it is in through shared memory, and a
 * run that makes no progress for --stall-ms is killed and reported with its seed and path.
 * Every failure prints the command that replays it.
 */
import fc from 'fast-check';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { ALLOWED_FLAGS, MAX_FRAME_BYTES_LIMIT } from '../bindings/constants.js';
import { tsCodec } from '../bindings/codec-ts.js';
import { wasmCodec } from '../bindings/codec-wasm.js';
import { PipitError, ProtocolError } from '../bindings/errors.js';
import type { MessageStream } from '../bindings/message-stream.js';
import { Session, type SessionOptions } from '../bindings/session.js';
import type { Services } from '../bindings/routes.js';
import { arbFrame } from '../test/helpers/arbitraries.js';
import { decodeChecked, describeThrown } from '../test/helpers/decode-checked.js';
import { encodeFrames, type Decoded, type VFrame } from '../test/helpers/frames.js';
import { OutputModel } from '../test/helpers/output-model.js';
import { freshSeed } from '../test/helpers/prng.js';

export const PROPS = ['codec-random', 'codec-soup', 'codec-mutated', 'session'] as const;
export type Prop = (typeof PROPS)[number];
const CODEC_PROPS: Prop[] = ['codec-random', 'codec-soup', 'codec-mutated'];

// =====================================================================
// Statistics
// =====================================================================

export interface Stats {
  /** Inputs decoded, per codec. */
  inputs: { ts: number; wasm: number };
  bytes: number;
  frames: number;
  /** Codec outcomes: 'ok' or the E_* reason. */
  outcomes: Record<string, number>;
  /** Session cases: how the session ended up before the transport was cut. */
  sessions: Record<string, number>;
  /** Session cases: outcome codes of the session's own calls. */
  ownCalls: Record<string, number>;
  framesFed: number;
  handlerRuns: number;
}

export function newStats(): Stats {
  return { inputs: { ts: 0, wasm: 0 }, bytes: 0, frames: 0, outcomes: {}, sessions: {}, ownCalls: {}, framesFed: 0, handlerRuns: 0 };
}

export function addStats(into: Stats, s: Stats): void {
  into.inputs.ts += s.inputs.ts;
  into.inputs.wasm += s.inputs.wasm;
  into.bytes += s.bytes;
  into.frames += s.frames;
  into.framesFed += s.framesFed;
  into.handlerRuns += s.handlerRuns;
  for (const k of ['outcomes', 'sessions', 'ownCalls'] as const) {
    for (const [name, n] of Object.entries(s[k])) into[k][name] = (into[k][name] ?? 0) + n;
  }
}

const bump = (r: Record<string, number>, k: string): void => {
  r[k] = (r[k] ?? 0) + 1;
};

// =====================================================================
// Codec properties
// =====================================================================

const EMPTY = new Uint8Array(0);

interface Chunking {
  /** [0]: one chunk; otherwise chunk sizes, cycled. */
  sizes: number[];
  /** Push an empty chunk after every third one. */
  empties: boolean;
}

export function split(bytes: Uint8Array, c: Chunking): Uint8Array[] {
  if (c.sizes.length === 1 && c.sizes[0] === 0) return [bytes];
  const out: Uint8Array[] = [];
  let pos = 0;
  let k = 0;
  while (pos < bytes.length) {
    const n = Math.max(1, c.sizes[k++ % c.sizes.length]!);
    out.push(bytes.subarray(pos, pos + n));
    if (c.empties && k % 3 === 0) out.push(EMPTY);
    pos += n;
  }
  return out;
}

/** A decode in comparable form: each frame and the error as one string. */
interface Flat {
  frames: string[];
  error: string | null;
}

function flat(d: Decoded): Flat {
  return { frames: d.frames.map((f) => JSON.stringify(f)), error: d.error === null ? null : `${d.error.code}@${d.error.offset}` };
}

function sameDecoded(a: Flat, b: Flat, what: string): void {
  if (a.error !== b.error) throw new Error(`${what}: errors differ: ${a.error} vs ${b.error}`);
  if (a.frames.length !== b.frames.length) throw new Error(`${what}: ${a.frames.length} frames vs ${b.frames.length}`);
  for (let i = 0; i < a.frames.length; i++) {
    if (a.frames[i] !== b.frames[i]) throw new Error(`${what}: frame ${i} differs:\n  ${a.frames[i]}\n  ${b.frames[i]}`);
  }
}

/** The codec oracle (test/helpers/decode-checked.ts): TS whole, TS split, Wasm split, all checked and all equal. */
export function checkCodecs(bytes: Uint8Array, max: number, chunking: Chunking, stats: Stats): void {
  const chunks = split(bytes, chunking);
  const whole = flat(decodeChecked(tsCodec, bytes.length === 0 ? [] : [bytes], max));
  const decoded = decodeChecked(tsCodec, chunks, max);
  const ts = flat(decoded);
  sameDecoded(whole, ts, 'ts: one chunk vs split');
  const wasm = flat(decodeChecked(wasmCodec, chunks, max));
  sameDecoded(ts, wasm, 'ts vs wasm');
  stats.inputs.ts++;
  stats.inputs.wasm++;
  stats.bytes += bytes.length;
  stats.frames += ts.frames.length;
  bump(stats.outcomes, decoded.error === null ? 'ok' : decoded.error.code);
}

// ---- generators ----

const arbMax = fc.oneof(
  { weight: 12, arbitrary: fc.constant(65536) },
  { weight: 6, arbitrary: fc.integer({ min: 5, max: 400 }) },
  { weight: 1, arbitrary: fc.integer({ min: 65537, max: 1 << 20 }) },
  { weight: 1, arbitrary: fc.constant(MAX_FRAME_BYTES_LIMIT) },
);

const arbChunking: fc.Arbitrary<Chunking> = fc.record({
  sizes: fc.oneof(
    fc.constant<number[]>([0]),
    fc.constant<number[]>([1]),
    fc.array(fc.integer({ min: 1, max: 8 }), { minLength: 1, maxLength: 6 }),
    fc.array(fc.integer({ min: 1, max: 4096 }), { minLength: 1, maxLength: 4 }),
  ),
  empties: fc.boolean(),
});

function varint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

const arbU32 = fc.oneof(fc.integer({ min: 0, max: 130 }), fc.integer({ min: 0, max: 0xffffffff }), fc.constantFrom(0x7fffffff, 0x80000000, 0xffffffff));
const arbVarint: fc.Arbitrary<number[]> = fc.oneof(
  { weight: 8, arbitrary: arbU32.map(varint) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 127 }).map((v) => [v | 0x80, 0x00]) }, // overlong
  { weight: 1, arbitrary: fc.constantFrom<number[]>([0xff, 0xff, 0xff, 0xff, 0x1f], [0x80, 0x80, 0x80, 0x80, 0x80, 0x01]) }, // too long
  { weight: 1, arbitrary: fc.constantFrom<number[]>([0x80], [0xff, 0xff]) }, // cut off
);
const arbBytes = (max: number): fc.Arbitrary<number[]> => fc.uint8Array({ maxLength: max }).map((b) => [...b]);
const arbName = fc.oneof(
  { weight: 4, arbitrary: arbBytes(6).map((b) => [b.length, ...b]) },
  { weight: 1, arbitrary: fc.tuple(fc.integer({ min: 0, max: 255 }), arbBytes(6)).map(([n, b]) => [n, ...b]) },
);
const arbExtEntry = fc.oneof(
  fc.tuple(fc.constantFrom(1, 2), arbVarint).map(([tag, v]) => [tag, v.length, ...v]),
  fc.tuple(fc.constantFrom(1, 2, 3, 4, 0x80, 0xff), arbVarint, arbBytes(6)).map(([tag, len, v]) => [tag, ...len, ...v]),
  fc.tuple(fc.integer({ min: 0, max: 8 }), arbBytes(6)).map(([k, v]) => [3, v.length + 1, k, ...v]),
);
const arbToken = fc.oneof(
  fc.integer({ min: 0, max: 255 }).map((b) => [b]),
  arbVarint,
  arbName,
  arbExtEntry,
);

interface SoupFrame {
  type: number;
  /** -1: a random subset of the allowed flags; else the nibble as is. */
  flags: number;
  flagBits: number;
  id: number[];
  structured: boolean;
  names: [number[], number[]];
  ext: number[][];
  extDelta: number;
  body: number[][];
  delta: number;
}

const arbSoupFrame: fc.Arbitrary<SoupFrame> = fc.record({
  type: fc.oneof({ weight: 12, arbitrary: fc.integer({ min: 0, max: 10 }) }, { weight: 1, arbitrary: fc.integer({ min: 11, max: 15 }) }),
  flags: fc.oneof({ weight: 4, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) }),
  flagBits: fc.integer({ min: 0, max: 15 }),
  id: arbVarint,
  structured: fc.boolean(),
  names: fc.tuple(arbName, arbName),
  ext: fc.array(arbExtEntry, { maxLength: 3 }),
  extDelta: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -2, max: 2 }) }),
  body: fc.array(arbToken, { maxLength: 6 }),
  delta: fc.oneof(
    { weight: 10, arbitrary: fc.constant(0) },
    { weight: 2, arbitrary: fc.integer({ min: -3, max: 3 }) },
    { weight: 1, arbitrary: fc.integer({ min: 0x10000, max: 0xffffff }) },
  ),
});

function soupBytes(frames: SoupFrame[]): Uint8Array {
  const out: number[] = [];
  for (const f of frames) {
    const flags = f.flags === -1 ? f.flagBits & ALLOWED_FLAGS[f.type]! : f.flags;
    const body: number[] = [...f.id];
    if (f.structured && f.type === 1) {
      body.push(...f.names[0], ...f.names[1]);
      if (flags & 0x8) {
        const entries = f.ext.flat();
        body.push(...varint(Math.max(0, entries.length + f.extDelta)), ...entries);
      }
    }
    for (const t of f.body) body.push(...t);
    const len = f.delta >= 0x10000 ? f.delta : Math.max(0, Math.min(0xffffff, body.length + f.delta));
    out.push(len & 0xff, (len >> 8) & 0xff, (len >> 16) & 0xff, f.type | (flags << 4), ...body);
  }
  return Uint8Array.from(out);
}

interface Mutation {
  kind: number;
  at: number;
  v: number;
  n: number;
}

const arbMutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.integer({ min: 0, max: 9 }),
  at: fc.nat(),
  v: fc.integer({ min: 0, max: 255 }),
  n: fc.integer({ min: 1, max: 8 }),
});

export function mutate(frames: VFrame[], muts: Mutation[]): Uint8Array {
  const parts = frames.map((f) => encodeFrames([f]));
  const starts: number[] = [];
  let off = 0;
  for (const p of parts) {
    starts.push(off);
    off += p.length;
  }
  let b: number[] = [...Buffer.concat(parts)];
  for (const m of muts) {
    const pos = b.length === 0 ? 0 : m.at % b.length;
    const fstart = starts[m.at % starts.length]!;
    switch (m.kind) {
      case 0:
        if (b.length > 0) b[pos] = b[pos]! ^ (1 << (m.v & 7));
        break;
      case 1:
        if (b.length > 0) b[pos] = m.v;
        break;
      case 2:
        b.splice(pos, 0, ...Array.from({ length: m.n }, (_, i) => (m.v * (i + 1) * 31) & 0xff));
        break;
      case 3:
        b.splice(pos, m.n);
        break;
      case 4:
        b.splice(pos, 0, ...b.slice(pos, pos + m.n * 4));
        break;
      case 5:
        b = b.slice(0, pos);
        break;
      case 6: // rewrite a frame's length field by a small amount, or to the maximum
        if (fstart + 3 <= b.length) {
          const len = b[fstart]! | (b[fstart + 1]! << 8) | (b[fstart + 2]! << 16);
          const nl = m.v === 255 ? 0xffffff : Math.max(0, Math.min(0xffffff, len + (m.v % 9) - 4));
          b[fstart] = nl & 0xff;
          b[fstart + 1] = (nl >> 8) & 0xff;
          b[fstart + 2] = (nl >> 16) & 0xff;
        }
        break;
      case 7: // another type
        if (fstart + 3 < b.length) b[fstart + 3] = (b[fstart + 3]! & 0xf0) | (m.v & 0xf);
        break;
      case 8: // other flags
        if (fstart + 3 < b.length) b[fstart + 3] = (b[fstart + 3]! & 0x0f) | (m.v & 0xf0);
        break;
      case 9: // a foreign word at a frame boundary
        b.splice(fstart, 0, m.v, m.n, 0, (m.v * 7) & 0xff);
        break;
    }
  }
  return Uint8Array.from(b);
}

// =====================================================================
// Session property
// =====================================================================

const METHODS = ['echo', 'aecho', 'empty', 'fail', 'reject', 'throw42', 'bad', 'hang', 'forever', 'big', 'rows', 'arows', 'badrow', 'late'];

interface HandlerLog {
  runs: number;
  signals: AbortSignal[];
}

function makeServices(log: HandlerLog): Services {
  const seen = <T>(f: (p: Buffer, ctx: { signal: AbortSignal }) => T) => (p: Buffer, ctx: { signal: AbortSignal }): T => {
    log.runs++;
    return f(p, ctx);
  };
  return {
    svc: {
      echo: seen((p) => p),
      aecho: seen(async (p) => {
        await null;
        return p;
      }),
      empty: seen(() => undefined),
      fail: seen(() => {
        throw new Error('boom');
      }),
      reject: seen(async () => {
        await null;
        throw new PipitError(300, 'application status');
      }),
      throw42: seen(() => {
        throw 42;
      }),
      bad: seen(() => ({ not: 'a payload' })),
      hang: seen((_p, ctx) => {
        log.signals.push(ctx.signal);
        return new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true }));
      }),
      forever: seen(() => new Promise(() => {})),
      big: seen(() => Buffer.alloc(70_000, 7)),
      rows: seen(function* (p) {
        const n = Math.min(p[0] ?? 3, 40);
        for (let i = 0; i < n; i++) yield String(i);
      }),
      arows: seen(async function* (p) {
        const n = Math.min(p[0] ?? 3, 40);
        for (let i = 0; i < n; i++) {
          await null;
          yield Buffer.alloc(i * 100, i);
        }
      }),
      badrow: seen(function* () {
        yield 'one';
        yield 42 as unknown as string;
      }),
      late: seen(async (p) => {
        await new Promise((r) => setImmediate(r));
        return p;
      }),
    },
  };
}

interface OwnCallSpec {
  stream: boolean;
  size: number;
  timeout: number | undefined;
  abortable: boolean;
  credit: number | undefined;
  /** Stream consumer: items read before breaking off (undefined: read everything; 0: never read). */
  readLimit: number | undefined;
}

type Step =
  | { k: 'frames'; frames: Array<VFrame | Uint8Array> }
  | { k: 'raw'; bytes: Uint8Array }
  | { k: 'tick'; ms: number }
  | { k: 'turn' }
  | { k: 'abort'; which: number }
  | { k: 'call'; call: OwnCallSpec }
  | { k: 'goaway' }
  | { k: 'ping' };

interface SessionCase {
  opts: SessionOptions;
  calls: OwnCallSpec[];
  steps: Step[];
  chunking: Chunking;
}

const arbId = fc.oneof({ weight: 10, arbitrary: fc.integer({ min: 0, max: 6 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) });
/** Ids for RESPONSE and STATUS: mostly those the session's own calls are likely to hold. */
const arbOwnId = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 0, max: 2 }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 6 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0xffffffff }) },
);
const arbCode = fc.oneof(fc.integer({ min: 0, max: 11 }), fc.constantFrom(255, 256, 300, 0xffffffff));
const arbSize = fc.oneof(
  { weight: 8, arbitrary: fc.integer({ min: 0, max: 40 }) },
  { weight: 2, arbitrary: fc.integer({ min: 41, max: 3000 }) },
  { weight: 1, arbitrary: fc.integer({ min: 60_000, max: 70_000 }) },
);
const payloadHex = (first: number, size: number): string => (size === 0 ? '' : first.toString(16).padStart(2, '0') + 'ab'.repeat(size - 1));
const arbMessage = fc.constantFrom('', 'x', 'é', 'a longer status message');

const arbSFrame: fc.Arbitrary<VFrame | Uint8Array> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc
      .record({
        id: arbId,
        flags: fc.subarray(['STREAM', 'TEXT', 'FOLLOWS']),
        service: fc.constantFrom('svc', 'svc', 'svc', 'svc', 'other'),
        method: fc.constantFrom(...METHODS, 'nope'),
        deadlineMs: fc.option(fc.oneof(fc.integer({ min: 0, max: 300 }), fc.constant(0xffffffff)), { nil: undefined }),
        credit: fc.option(fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0, max: 20 }) }, { weight: 1, arbitrary: fc.constantFrom(0x7fffffff, 0x80000000) }), { nil: undefined }),
        first: fc.integer({ min: 0, max: 45 }),
        size: arbSize,
      })
      .map((r): VFrame => {
        const ext: VFrame['ext'] = {};
        if (r.deadlineMs !== undefined) ext.deadlineMs = r.deadlineMs;
        if (r.credit !== undefined) ext.credit = r.credit;
        const hasExt = Object.keys(ext).length > 0;
        const f: VFrame = {
          type: 'REQUEST', flags: hasExt ? [...r.flags, 'EXT'] : [...r.flags], id: r.id,
          service: r.service, method: r.method, payload: payloadHex(r.first, Math.max(r.size, 1)),
        };
        if (hasExt) f.ext = ext;
        return f;
      }),
  },
  {
    weight: 6,
    arbitrary: fc
      .record({ id: arbOwnId, flags: fc.constantFrom<string[]>([], ['END'], ['FOLLOWS'], ['TEXT'], ['END', 'TEXT'], ['TEXT', 'FOLLOWS']), size: arbSize })
      .map((r): VFrame => ({ type: 'RESPONSE', flags: r.flags, id: r.id, payload: payloadHex(0x61, r.size) })),
  },
  { weight: 4, arbitrary: fc.record({ id: arbOwnId, code: arbCode, message: arbMessage }).map((r): VFrame => ({ type: 'STATUS', flags: [], ...r })) },
  { weight: 2, arbitrary: arbId.map((id): VFrame => ({ type: 'CANCEL', flags: [], id })) },
  {
    weight: 2,
    arbitrary: fc
      .record({ id: arbId, credit: fc.oneof(fc.integer({ min: 1, max: 20 }), fc.constantFrom(0x7fffffff, 0x80000000, 0xffffffff)) })
      .map((r): VFrame => ({ type: 'CREDIT', flags: [], ...r })),
  },
  {
    weight: 3,
    arbitrary: fc.record({ id: arbId, follows: fc.boolean(), size: arbSize }).map(
      (r): VFrame => ({ type: 'DATA', flags: r.follows ? ['FOLLOWS'] : [], id: r.id, payload: payloadHex(0x64, r.size) }),
    ),
  },
  { weight: 1, arbitrary: fc.record({ type: fc.constantFrom('PING', 'PONG'), id: arbId }).map((r): VFrame => ({ ...r, flags: [] })) },
  {
    weight: 1,
    arbitrary: fc
      .record({ id: fc.oneof(fc.integer({ min: 0, max: 12 }), fc.constantFrom(0x7fffffff, 0x80000000, 0xffffffff)), code: arbCode, message: arbMessage })
      .map((r): VFrame => ({ type: 'GOAWAY', flags: [], ...r })),
  },
  {
    weight: 1,
    arbitrary: fc
      .record({
        id: fc.constantFrom(0, 1, 2, 0xffffffff),
        settings: fc.array(fc.tuple(fc.integer({ min: 0, max: 4 }), fc.oneof(fc.integer({ min: 0, max: 70_000 }), fc.constantFrom(0, 1, 16_777_219, 0xffffffff))), { maxLength: 4 }),
      })
      .map((r): VFrame => ({ type: 'HELLO', flags: [], ...r })),
  },
  { weight: 1, arbitrary: fc.record({ code: arbCode, message: arbMessage }).map((r): VFrame => ({ type: 'ERROR', flags: [], id: 0, ...r })) },
  {
    weight: 1,
    arbitrary: fc.record({ flags: fc.integer({ min: 0, max: 15 }), body: fc.uint8Array({ minLength: 1, maxLength: 12 }) }).map(
      (r) => Uint8Array.from([r.body.length, 0, 0, 0xf | (r.flags << 4), ...r.body]),
    ),
  },
);

const arbOwnCall: fc.Arbitrary<OwnCallSpec> = fc.record({
  stream: fc.boolean(),
  size: arbSize,
  timeout: fc.option(fc.integer({ min: 1, max: 400 }), { nil: undefined }),
  abortable: fc.boolean(),
  credit: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
  readLimit: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
});

const arbStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 14, arbitrary: fc.array(arbSFrame, { minLength: 1, maxLength: 5 }).map((frames): Step => ({ k: 'frames', frames })) },
  { weight: 1, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 12 }).map((bytes): Step => ({ k: 'raw', bytes })) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 400 }).map((ms): Step => ({ k: 'tick', ms })) },
  { weight: 6, arbitrary: fc.constant<Step>({ k: 'turn' }) },
  { weight: 2, arbitrary: fc.nat().map((which): Step => ({ k: 'abort', which })) },
  { weight: 2, arbitrary: arbOwnCall.map((call): Step => ({ k: 'call', call })) },
  { weight: 1, arbitrary: fc.constant<Step>({ k: 'goaway' }) },
  { weight: 1, arbitrary: fc.constant<Step>({ k: 'ping' }) },
);

const arbSessionCase: fc.Arbitrary<SessionCase> = fc.record({
  opts: fc.record({
    maxInflight: fc.integer({ min: 1, max: 6 }),
    maxMessageBytes: fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.constant(16 * 1024 * 1024)),
    maxReassemblyBytes: fc.oneof(fc.integer({ min: 1, max: 20_000 }), fc.constant(64 * 1024 * 1024)),
    maxQueuedCalls: fc.integer({ min: 1, max: 4 }),
    initialCredit: fc.integer({ min: 1, max: 8 }),
    hello: fc.boolean(),
  }),
  calls: fc.array(arbOwnCall, { minLength: 1, maxLength: 6 }),
  steps: fc.array(arbStep, { minLength: 1, maxLength: 24 }),
  chunking: arbChunking,
});

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

interface OwnCall {
  spec: OwnCallSpec;
  controller: AbortController | null;
  settled: number;
  code: string | null;
  /** Streams: the consumer is done (ended, failed or broke off). */
  stream: MessageStream | null;
  consumerDone: boolean;
}

/** One session case; throws on any violation. */
export async function runSessionCase(c: SessionCase, stats: Stats): Promise<void> {
  let now = 0;
  const log: HandlerLog = { runs: 0, signals: [] };
  const s = new Session({ ...c.opts, services: makeServices(log) });
  let closes = 0;
  let closeError: PipitError | null | undefined;
  s.host = {
    onOutput: () => {},
    onClose: (e) => {
      closes++;
      closeError = e;
    },
  };
  const input = tsCodec.createDecoder(s.maxFrameBytes);
  const model = new OutputModel();
  const own: OwnCall[] = [];
  /** Settlements of each ping() promise. */
  const pings: number[] = [];

  /** The session was closed when its output was last taken: it may write nothing more. */
  let closedAtLastTake = false;
  const act = (what: string, f: () => void): void => {
    try {
      f();
    } catch (e) {
      throw new Error(`${what} threw: ${describeThrown(e)}`);
    }
    const out = s.takeOutput();
    if (closedAtLastTake && out.length > 0) throw new Error(`the closed session wrote output (by ${what})`);
    closedAtLastTake = s.closed;
    model.output(out);
  };

  const start = (spec: OwnCallSpec): void => {
    const controller = spec.abortable ? new AbortController() : null;
    const call: OwnCall = { spec, controller, settled: 0, code: null, stream: null, consumerDone: false };
    own.push(call);
    const options = { timeout: spec.timeout, signal: controller?.signal, credit: spec.credit };
    const payload = Buffer.alloc(spec.size, 0x2a);
    if (!spec.stream) {
      s.call('svc', 'echo', payload, options, now).then(
        () => {
          call.settled++;
          call.code = 'OK';
        },
        (e: unknown) => {
          call.settled++;
          call.code = e instanceof PipitError ? e.code : `not a PipitError: ${String(e)}`;
        },
      );
      return;
    }
    const stream = s.stream('svc', 'rows', payload, options, now);
    call.stream = stream;
    if (spec.readLimit === 0) return; // never read (until the end)
    void (async () => {
      let n = 0;
      try {
        for await (const _ of stream) {
          if (spec.readLimit !== undefined && ++n >= spec.readLimit) break;
        }
        call.code ??= 'OK';
      } catch (e) {
        call.code = e instanceof PipitError ? e.code : `not a PipitError: ${String(e)}`;
      }
      call.settled++;
      call.consumerDone = true;
    })();
  };

  // Tiny pieces of a large message cost time and find nothing new: scale them up there.
  const coarse: Chunking = { sizes: c.chunking.sizes.map((n) => (n === 0 ? 0 : n * 997)), empties: c.chunking.empties };
  const feed = (bytes: Uint8Array): void => {
    for (const piece of split(bytes, bytes.length > 4096 ? coarse : c.chunking)) {
      act('receive()', () => {
        const batch = input.push(piece);
        model.input(batch);
        s.receive(batch, now);
      });
    }
  };

  act('call()', () => {
    for (const spec of c.calls) start(spec);
  });
  for (const step of c.steps) {
    switch (step.k) {
      case 'frames': {
        const parts = step.frames.map((f) => (f instanceof Uint8Array ? f : encodeFrames([f])));
        feed(Buffer.concat(parts));
        break;
      }
      case 'raw':
        feed(step.bytes);
        break;
      case 'tick':
        now += step.ms;
        act('tick()', () => s.tick(now));
        break;
      case 'turn':
        await turn();
        act('turn', () => {});
        break;
      case 'abort': {
        const abortable = own.filter((o) => o.controller !== null && !o.controller.signal.aborted);
        if (abortable.length > 0) act('abort', () => abortable[step.which % abortable.length]!.controller!.abort());
        break;
      }
      case 'call':
        act('call()', () => start(step.call));
        break;
      case 'goaway':
        act('goAway()', () => s.goAway());
        break;
      case 'ping':
        act('ping()', () => {
          pings.push(0);
          const k = pings.length - 1;
          s.ping(now).then(
            () => pings[k]!++,
            (e: unknown) => {
              pings[k]! += e instanceof PipitError ? 1 : 1000;
            },
          );
        });
        break;
    }
  }
  for (let i = 0; i < 3; i++) {
    await turn();
    act('turn', () => {});
  }

  // Before the transport goes: open, draining, closed gracefully, or closed by the protocol.
  let state: string;
  if (!s.closed) state = s.draining ? 'draining' : 'open';
  else if (closeError === null) state = 'graceful';
  else if (closeError instanceof ProtocolError) state = closeError.reason === 'E_PEER' ? 'peer ERROR' : `PROTOCOL_ERROR ${closeError.reason === 'E_SESSION' ? closeError.message.replace(/[0-9]+/g, 'N').slice(0, 40) : closeError.reason}`;
  else if (closeError !== undefined && model.errorCodesFed.size > 0) state = 'peer ERROR';
  else throw new Error(`the session closed with ${closeError?.code}: ${closeError?.message}`);
  bump(stats.sessions, state);

  act('transportClosed()', () => s.transportClosed());
  for (let i = 0; i < 3; i++) await turn();
  // Streams nobody read: they must end now, never hang.
  for (const o of own) {
    if (o.stream === null || o.consumerDone || o.spec.readLimit !== 0) continue;
    try {
      for (let k = 0; k < 1000; k++) {
        const r = await Promise.race([o.stream.next(), turn().then(() => turn()).then(() => 'hung' as const)]);
        if (r === 'hung') throw new Error('a stream nobody read did not end after the transport closed');
        if (r.done) break;
      }
      o.code ??= 'OK';
    } catch (e) {
      if (e instanceof Error && e.message.startsWith('a stream nobody read')) throw e;
      o.code = e instanceof PipitError ? e.code : `not a PipitError: ${String(e)}`;
    }
    o.settled++;
  }
  await turn();

  if (closes !== 1) throw new Error(`onClose was called ${closes} times`);
  if (!s.closed) throw new Error('the session is not closed after the transport closed');
  if (s.outgoingCalls !== 0) throw new Error(`${s.outgoingCalls} own calls left in the table`);
  if (s.incomingCalls !== 0) throw new Error(`${s.incomingCalls} incoming calls left in the table`);
  if (s.nextDeadline() !== Infinity) throw new Error(`a deadline is still armed: ${s.nextDeadline()}`);
  if (s.takeOutput().length !== 0) throw new Error('output after close');
  own.forEach((o, i) => {
    if (o.settled !== 1) throw new Error(`own call ${i} (${o.spec.stream ? 'stream' : 'unary'}) settled ${o.settled} times`);
    if (o.code?.startsWith('not a')) throw new Error(`own call ${i} failed with ${o.code}`);
    bump(stats.ownCalls, o.code ?? '?');
  });
  pings.forEach((n, i) => {
    if (n !== 1) throw new Error(`ping ${i} settled ${n === 1000 ? 'with a non-PipitError' : `${n} times`}`);
  });
  for (const sig of log.signals) if (!sig.aborted) throw new Error('a handler signal did not fire although its call is over');
  stats.framesFed += model.framesFed;
  stats.handlerRuns += log.runs;
}

// =====================================================================
// Properties and jobs
// =====================================================================

export function makeProperty(prop: Prop, stats: Stats, onRun: () => void): fc.IRawProperty<unknown, boolean> {
  switch (prop) {
    case 'codec-random':
      return fc.property(fc.uint8Array({ maxLength: 256 }), arbMax, arbChunking, (bytes, max, ch) => {
        onRun();
        checkCodecs(bytes, max, ch, stats);
      }) as fc.IRawProperty<unknown, boolean>;
    case 'codec-soup':
      return fc.property(fc.array(arbSoupFrame, { minLength: 1, maxLength: 6 }), arbMax, arbChunking, (frames, max, ch) => {
        onRun();
        checkCodecs(soupBytes(frames), max, ch, stats);
      }) as fc.IRawProperty<unknown, boolean>;
    case 'codec-mutated':
      return fc.property(
        fc.array(arbFrame, { minLength: 1, maxLength: 6 }),
        fc.array(arbMutation, { minLength: 1, maxLength: 4 }),
        fc.oneof({ weight: 4, arbitrary: fc.constant(65536) }, { weight: 1, arbitrary: fc.integer({ min: 5, max: 400 }) }),
        arbChunking,
        (frames, muts, max, ch) => {
          onRun();
          checkCodecs(mutate(frames, muts), max, ch, stats);
        },
      ) as fc.IRawProperty<unknown, boolean>;
    case 'session':
      return fc.asyncProperty(arbSessionCase, async (c) => {
        onRun();
        await runSessionCase(c, stats);
      }) as fc.IRawProperty<unknown, boolean>;
  }
}

export interface Job {
  id: number;
  prop: Prop;
  seed: number;
  runs: number;
  path?: string;
}

export interface Failure {
  prop: Prop;
  seed: number;
  path: string;
  error: string;
  counterexample: string;
  replay: string;
  kind: 'property' | 'hang' | 'crash';
}

export interface JobResult {
  id: number;
  prop: Prop;
  seed: number;
  runs: number;
  ms: number;
  stats: Stats;
  failure: Failure | null;
}

const replayCommand = (prop: Prop, seed: number, path: string): string => `npm run fuzz -- --replay ${prop}:${seed}:${path}`;

/** Run one job in this thread. `progress[0]` is set to the number of runs started. */
export async function runJob(job: Job, progress: Int32Array | null = null): Promise<JobResult> {
  const stats = newStats();
  let started = 0;
  const onRun = (): void => {
    started++;
    if (progress !== null) Atomics.store(progress, 0, started);
  };
  const property = makeProperty(job.prop, stats, onRun);
  const t0 = performance.now();
  const params: fc.Parameters<unknown> = { seed: job.seed, numRuns: job.runs };
  if (job.path !== undefined) params.path = job.path;
  const details = await fc.check(property, params);
  const ms = performance.now() - t0;
  let failure: Failure | null = null;
  if (details.failed) {
    const path = details.counterexamplePath ?? '';
    failure = {
      prop: job.prop,
      seed: details.seed,
      path,
      error: details.errorInstance instanceof Error ? describeThrown(details.errorInstance) : String(details.errorInstance),
      counterexample: fc.stringify(details.counterexample).slice(0, 4000),
      replay: replayCommand(job.prop, details.seed, path),
      kind: 'property',
    };
  }
  return { id: job.id, prop: job.prop, seed: job.seed, runs: details.numRuns, ms, stats, failure };
}

// =====================================================================
// Worker pool with a watchdog
// =====================================================================

const SELF = new URL(import.meta.url);

interface Slot {
  worker: Worker;
  progress: Int32Array;
  job: Job | null;
  lastSeen: number;
  lastChange: number;
}

async function runPool(jobs: Job[], workers: number, stallMs: number, onResult: (r: JobResult) => void): Promise<void> {
  const queue = [...jobs];
  let active = 0;
  await new Promise<void>((resolveAll) => {
    const slots = new Set<Slot>();
    const startSlot = (): void => {
      const sab = new SharedArrayBuffer(8);
      const worker = new Worker(SELF, { workerData: { pipitFuzz: true, progress: sab } });
      const slot: Slot = { worker, progress: new Int32Array(sab), job: null, lastSeen: 0, lastChange: performance.now() };
      slots.add(slot);
      worker.on('message', (r: JobResult) => {
        slot.job = null;
        active--;
        onResult(r);
        next(slot);
      });
      worker.on('error', (e) => crashed(slot, 'crash', `worker crashed: ${describeThrown(e)}`));
      worker.on('exit', (code) => {
        if (slot.job !== null) crashed(slot, 'crash', `worker exited with code ${code}`);
      });
      next(slot);
    };
    const crashed = (slot: Slot, kind: 'hang' | 'crash', error: string): void => {
      const job = slot.job;
      if (job === null) return;
      slot.job = null;
      slots.delete(slot);
      active--;
      void slot.worker.terminate();
      const run = Atomics.load(slot.progress, 0);
      const path = String(Math.max(0, run - 1));
      onResult({
        id: job.id, prop: job.prop, seed: job.seed, runs: run, ms: 0, stats: newStats(),
        failure: {
          prop: job.prop, seed: job.seed, path, error, kind,
          counterexample: `(run ${run} of job seed ${job.seed}${kind === 'hang' ? '; the replay hangs too: run it under `timeout`' : ''})`,
          replay: replayCommand(job.prop, job.seed, path),
        },
      });
      startSlot();
    };
    const next = (slot: Slot): void => {
      const job = queue.shift();
      if (job === undefined) {
        slots.delete(slot);
        void slot.worker.terminate();
        if (active === 0 && queue.length === 0 && [...slots].every((s) => s.job === null)) {
          clearInterval(watchdog);
          for (const s of slots) void s.worker.terminate();
          resolveAll();
        }
        return;
      }
      slot.job = job;
      active++;
      Atomics.store(slot.progress, 0, 0);
      slot.lastSeen = 0;
      slot.lastChange = performance.now();
      slot.worker.postMessage(job);
    };
    const watchdog = setInterval(() => {
      const t = performance.now();
      for (const slot of [...slots]) {
        if (slot.job === null) continue;
        const seen = Atomics.load(slot.progress, 0);
        if (seen !== slot.lastSeen) {
          slot.lastSeen = seen;
          slot.lastChange = t;
        } else if (t - slot.lastChange > stallMs) {
          crashed(slot, 'hang', `no progress for ${stallMs} ms: the run hangs`);
        }
      }
    }, 250);
    for (let i = 0; i < Math.max(1, Math.min(workers, jobs.length)); i++) startSlot();
    if (jobs.length === 0) {
      clearInterval(watchdog);
      resolveAll();
    }
  });
}

// =====================================================================
// Command line
// =====================================================================

interface Options {
  inputs: number;
  session: number;
  seed: number;
  workers: number;
  stallMs: number;
  json: boolean;
  props: Prop[];
  replay: string | null;
}

function parseOptions(argv: string[]): Options {
  const o: Options = {
    inputs: 1_000_000,
    session: 50_000,
    seed: freshSeed(),
    workers: Math.max(1, Math.min(2, availableParallelism())),
    stallMs: 20_000,
    json: false,
    props: [...PROPS],
    replay: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): string => {
      const x = argv[++i];
      if (x === undefined) throw new Error(`${a} needs a value`);
      return x;
    };
    if (a === '--inputs') o.inputs = Number(v());
    else if (a === '--session') o.session = Number(v());
    else if (a === '--seed') o.seed = Number(v()) | 0;
    else if (a === '--workers') o.workers = Number(v());
    else if (a === '--stall-ms') o.stallMs = Number(v());
    else if (a === '--json') o.json = true;
    else if (a === '--props') o.props = v().split(',') as Prop[];
    else if (a === '--replay') o.replay = v();
    else throw new Error(`unknown option ${a}`);
  }
  for (const p of o.props) if (!PROPS.includes(p)) throw new Error(`unknown property ${p}; known: ${PROPS.join(', ')}`);
  return o;
}

/** Jobs: codec inputs split evenly over the codec properties, in slices, interleaved. */
function planJobs(o: Options): Job[] {
  const jobs: Job[] = [];
  const codecProps = o.props.filter((p) => CODEC_PROPS.includes(p));
  const perProp = codecProps.length === 0 ? 0 : Math.ceil(o.inputs / codecProps.length);
  const slices: Array<{ prop: Prop; total: number; size: number }> = codecProps.map((prop) => ({ prop, total: perProp, size: 20_000 }));
  if (o.props.includes('session') && o.session > 0) slices.push({ prop: 'session', total: o.session, size: 2_000 });
  const left = new Map(slices.map((s) => [s.prop, s.total]));
  let id = 0;
  for (;;) {
    let added = false;
    for (const s of slices) {
      const rest = left.get(s.prop)!;
      if (rest <= 0) continue;
      const runs = Math.min(s.size, rest);
      left.set(s.prop, rest - runs);
      jobs.push({ id, prop: s.prop, seed: (o.seed + id * 7919) | 0, runs });
      id++;
      added = true;
    }
    if (!added) return jobs;
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ')).join('\n');
}

const fmt = (n: number): string => n.toLocaleString('en-US');
const top = (r: Record<string, number>): string =>
  Object.entries(r)
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k} ${fmt(n)}`)
    .join(', ');

async function main(argv: string[]): Promise<number> {
  const o = parseOptions(argv);
  if (o.replay !== null) {
    const [prop, seed, ...path] = o.replay.split(':');
    if (!PROPS.includes(prop as Prop) || seed === undefined) throw new Error('--replay takes <property>:<seed>:<path>');
    const r = await runJob({ id: 0, prop: prop as Prop, seed: Number(seed), runs: 1, path: path.join(':') });
    if (r.failure === null) {
      console.log(`replay ${o.replay}: passes`);
      return 0;
    }
    console.log(`replay ${o.replay}: FAILS\n${r.failure.error}\ncounterexample: ${r.failure.counterexample}`);
    return 1;
  }

  const jobs = planJobs(o);
  const byProp = new Map<Prop, { runs: number; ms: number; stats: Stats }>();
  const failures: Failure[] = [];
  const t0 = performance.now();
  let lastPrint = t0;
  if (!o.json) console.log(`pipit fuzz: base seed ${o.seed}, ${o.workers} workers, ${jobs.length} jobs`);
  await runPool(jobs, o.workers, o.stallMs, (r) => {
    const agg = byProp.get(r.prop) ?? { runs: 0, ms: 0, stats: newStats() };
    agg.runs += r.runs;
    agg.ms += r.ms;
    addStats(agg.stats, r.stats);
    byProp.set(r.prop, agg);
    if (r.failure !== null) {
      failures.push(r.failure);
      if (!o.json) console.log(`\nFAILURE in ${r.prop} (${r.failure.kind}), seed ${r.failure.seed}, path ${r.failure.path}\n${r.failure.error}\ncounterexample: ${r.failure.counterexample}\nreplay: ${r.failure.replay}\n`);
    }
    const t = performance.now();
    if (!o.json && t - lastPrint > 5000) {
      lastPrint = t;
      const done = [...byProp.entries()].map(([p, a]) => `${p} ${fmt(a.runs)}`).join(', ');
      console.log(`  ${((t - t0) / 1000).toFixed(0)} s: ${done}`);
    }
  });
  const seconds = (performance.now() - t0) / 1000;
  const total = newStats();
  for (const a of byProp.values()) addStats(total, a.stats);

  const summary = {
    seed: o.seed,
    workers: o.workers,
    seconds,
    props: Object.fromEntries([...byProp.entries()].map(([p, a]) => [p, { runs: a.runs, cpuSeconds: a.ms / 1000, ...a.stats }])),
    inputsPerCodec: total.inputs,
    sessionCases: byProp.get('session')?.runs ?? 0,
    failures,
  };
  if (o.json) {
    console.log(JSON.stringify(summary));
  } else {
    const rows = [['property', 'runs', 'ts inputs', 'wasm inputs', 'bytes', 'frames out', 'cpu s', 'runs/s']];
    for (const p of PROPS) {
      const a = byProp.get(p);
      if (a === undefined) continue;
      rows.push([p, fmt(a.runs), fmt(a.stats.inputs.ts), fmt(a.stats.inputs.wasm), fmt(a.stats.bytes), fmt(a.stats.frames || a.stats.framesFed), (a.ms / 1000).toFixed(1), fmt(Math.round(a.runs / (a.ms / 1000 || 1)))]);
    }
    console.log('\n' + table(rows));
    for (const p of CODEC_PROPS) {
      const a = byProp.get(p);
      if (a !== undefined) console.log(`${p} outcomes: ${top(a.stats.outcomes)}`);
    }
    const sess = byProp.get('session');
    if (sess !== undefined) {
      console.log(`session: frames fed ${fmt(sess.stats.framesFed)}, handler runs ${fmt(sess.stats.handlerRuns)}`);
      console.log(`session state before the transport closed: ${top(sess.stats.sessions)}`);
      console.log(`session own calls settled: ${top(sess.stats.ownCalls)}`);
    }
    console.log(`\ninputs per codec: ts ${fmt(total.inputs.ts)}, wasm ${fmt(total.inputs.wasm)}; session cases ${fmt(sess?.runs ?? 0)}`);
    console.log(`${failures.length} failures, ${seconds.toFixed(1)} s wall on ${o.workers} workers (base seed ${o.seed})`);
    for (const f of failures) console.log(`  ${f.kind} in ${f.prop}: ${f.replay}`);
  }
  return failures.length === 0 ? 0 : 1;
}

if (!isMainThread && (workerData as { pipitFuzz?: boolean } | null)?.pipitFuzz === true) {
  // Every decode error builds a ProtocolError: without stack traces that costs a tenth. A
  // failure is replayed (--replay) in the main thread, with stacks.
  Error.stackTraceLimit = 0;
  const progress = new Int32Array((workerData as { progress: SharedArrayBuffer }).progress);
  parentPort!.on('message', (job: Job) => {
    runJob(job, progress).then(
      (r) => parentPort!.postMessage(r),
      (e: unknown) => {
        throw e; // reported by the pool as a crash, with the job's seed
      },
    );
  });
} else if (isMainThread && process.argv[1] !== undefined && pathToFileURL(process.argv[1]).href === SELF.href) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(describeThrown(e));
      process.exit(2);
    },
  );
}
