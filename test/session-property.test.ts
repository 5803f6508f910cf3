/**
 * Session property: random interleavings of unary and stream calls in both directions, with
 * random cancellations, deadlines, handler behaviours, windows, inflight limits and chunk
 * sizes. Every call settles exactly once with an outcome its scenario allows, and both
 * sessions end with empty tables, no deadline, and a clean GOAWAY close. All along, each
 * session writes only what the frames it received allow (the session oracle,
 * test/helpers/output-model.ts, wired in by Pair): outcomes alone would miss what the other
 * session never reads, such as a frame written after it closed.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Pair } from './helpers/pair.js';
import { consume, track, turn, type Outcome, type StreamOutcome } from './helpers/session-kit.js';
import type { HandlerContext } from '../bindings/routes.js';

const NUM_RUNS = Number(process.env.PIPIT_FC_RUNS ?? 200);

const BEHAVIOURS = ['sync', 'async', 'throw', 'hang'] as const;
type Behaviour = (typeof BEHAVIOURS)[number];

interface CallSpec {
  from: 'a' | 'b';
  stream: boolean;
  behaviour: Behaviour;
  /** Stream: items the producer yields (before throwing or hanging, for those). */
  items: number;
  /** Stream producer shape: an array, a sync generator or an async generator. */
  shape: 'array' | 'sync' | 'async';
  /** Filler bytes after the 3-byte plan. */
  filler: number;
  timeout: number | undefined;
  credit: number | undefined;
  /** Stream: the consumer breaks after this many items. */
  readLimit: number | undefined;
}

type Op =
  | { op: 'call'; spec: CallSpec }
  | { op: 'abort'; pick: number }
  | { op: 'advance'; ms: number }
  | { op: 'flush' }
  | { op: 'settle'; rounds: number };

const arbSpec: fc.Arbitrary<CallSpec> = fc.record({
  from: fc.constantFrom('a' as const, 'b' as const),
  stream: fc.boolean(),
  behaviour: fc.constantFrom(...BEHAVIOURS),
  items: fc.integer({ min: 0, max: 6 }),
  shape: fc.constantFrom('array' as const, 'sync' as const, 'async' as const),
  filler: fc.oneof(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 300 })),
  timeout: fc.option(fc.integer({ min: 0, max: 40 }), { nil: undefined }),
  credit: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
  readLimit: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }),
});

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: arbSpec.map((spec) => ({ op: 'call' as const, spec })) },
  { weight: 1, arbitrary: fc.nat().map((pick) => ({ op: 'abort' as const, pick })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 30 }).map((ms) => ({ op: 'advance' as const, ms })) },
  { weight: 1, arbitrary: fc.constant({ op: 'flush' as const }) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 3 }).map((rounds) => ({ op: 'settle' as const, rounds })) },
);

const arbScenario = fc.record({
  ops: fc.array(arbOp, { minLength: 1, maxLength: 40, size: "+1" }),
  chunkSize: fc.constantFrom(0, 0, 1, 2, 3, 7, 64),
  maxInflightA: fc.constantFrom(1, 2, 1024),
  maxInflightB: fc.constantFrom(1, 2, 1024),
  initialCredit: fc.integer({ min: 1, max: 8 }),
});

const SHAPES = ['array', 'sync', 'async'] as const;

/** The request payload carries its plan: behaviour, item count, producer shape. */
function encodePlan(spec: CallSpec): Buffer {
  const b = Buffer.alloc(3 + spec.filler, 0x61);
  b[0] = BEHAVIOURS.indexOf(spec.behaviour);
  b[1] = spec.items;
  b[2] = SHAPES.indexOf(spec.shape);
  return b;
}

function unaryAnswer(p: Buffer): Buffer {
  const out = Buffer.allocUnsafe(p.length);
  for (let i = 0; i < p.length; i++) out[i] = p[i]! ^ 0x5a;
  return out;
}

const itemsFor = (p: Buffer, n: number): string[] => Array.from({ length: n }, (_, i) => `${p.length}:${i}`);

function untilAborted(ctx: HandlerContext): Promise<never> {
  return new Promise((_, reject) => {
    if (ctx.signal.aborted) reject(ctx.signal.reason);
    else ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason), { once: true });
  });
}

/** Handlers and generators started and not yet finished (their `finally` has not run). */
const live = { n: 0 };

/** The same service on both ends: it does what the request's plan says. */
const planned = {
  async unary(p: Buffer, ctx: HandlerContext) {
    live.n++;
    try {
      const behaviour = BEHAVIOURS[p[0]!]!;
      if (behaviour === 'sync') return unaryAnswer(p);
      await turn();
      if (behaviour === 'async') return unaryAnswer(p);
      if (behaviour === 'throw') throw new Error(`boom ${p.length}`);
      return await untilAborted(ctx);
    } finally {
      live.n--;
    }
  },
  stream(p: Buffer, ctx: HandlerContext) {
    const behaviour = BEHAVIOURS[p[0]!]!;
    const shape = SHAPES[p[2]!]!;
    const items = itemsFor(p, p[1]!);
    if (shape === 'array' && behaviour === 'sync') return items;
    if (shape !== 'async' && behaviour === 'sync') {
      return (function* () {
        live.n++;
        try {
          yield* items;
        } finally {
          live.n--;
        }
      })();
    }
    // Async behaviours, and every async shape.
    return (async function* () {
      live.n++;
      try {
        for (const item of items) {
          if (behaviour === 'async') await turn();
          yield item;
        }
        if (behaviour === 'throw') throw new Error(`boom ${p.length}`);
        if (behaviour === 'hang') await untilAborted(ctx);
      } finally {
        live.n--;
      }
    })();
  },
};

interface Issued {
  spec: CallSpec;
  payload: Buffer;
  controller: AbortController;
  aborted: boolean;
  unary?: Outcome;
  stream?: StreamOutcome;
}

/** Why an outcome is not allowed for its scenario, or null when it is. */
function judge(c: Issued): string | null {
  const { spec, payload } = c;
  const interrupted = (code: string | undefined): boolean =>
    (code === 'CANCELLED' && c.aborted) || (code === 'DEADLINE_EXCEEDED' && spec.timeout !== undefined);
  if (c.unary) {
    const o = c.unary;
    if (o.settlements !== 1) return `settled ${o.settlements} times`;
    if (o.error !== undefined) {
      if (interrupted(o.error.code)) return null;
      if (spec.behaviour === 'throw' && o.error.code === 'APPLICATION_ERROR' && o.error.message === `boom ${payload.length}`) return null;
      return `unexpected ${o.error.code}: ${o.error.message}`;
    }
    if (spec.behaviour === 'sync' || spec.behaviour === 'async') {
      return o.value!.equals(unaryAnswer(payload)) ? null : 'wrong answer';
    }
    return `resolved although the handler ${spec.behaviour}s`;
  }
  const o = c.stream!;
  if (o.ends !== 1) return `stream ended ${o.ends} times`;
  const all = itemsFor(payload, spec.items);
  if (JSON.stringify(o.items) !== JSON.stringify(all.slice(0, o.items.length))) return `items ${JSON.stringify(o.items)} are not a prefix of ${JSON.stringify(all)}`;
  if (o.broke) return o.items.length === spec.readLimit ? null : `broke after ${o.items.length} items`;
  if (o.error !== undefined) {
    if (interrupted(o.error.code)) return null;
    if (spec.behaviour === 'throw' && o.error.code === 'APPLICATION_ERROR' && o.items.length === all.length) return null;
    return `unexpected ${o.error.code}: ${o.error.message} after ${o.items.length} items`;
  }
  if (spec.behaviour === 'sync' || spec.behaviour === 'async') {
    return o.items.length === all.length ? null : `ended OK after ${o.items.length} of ${all.length} items`;
  }
  return `ended OK although the producer ${spec.behaviour}s`;
}

describe('session property', () => {
  it('random interleavings: every call settles exactly once, as allowed; tables end empty', async () => {
    await fc.assert(
      fc.asyncProperty(arbScenario, async (sc) => {
        const pair = new Pair(
          { maxInflight: sc.maxInflightA, initialCredit: sc.initialCredit, services: { p: planned } },
          { maxInflight: sc.maxInflightB, initialCredit: sc.initialCredit, services: { p: planned } },
        );
        pair.chunkSize = sc.chunkSize;
        live.n = 0;
        pair.flush(); // HELLOs: each side learns the other's maxInflight and queues beyond it
        const issued: Issued[] = [];
        for (const step of sc.ops) {
          switch (step.op) {
            case 'call': {
              const { spec } = step;
              const session = (spec.from === 'a' ? pair.a : pair.b).session;
              const payload = encodePlan(spec);
              const controller = new AbortController();
              const c: Issued = { spec, payload, controller, aborted: false };
              const options = { signal: controller.signal, timeout: spec.timeout };
              if (spec.stream) {
                c.stream = consume(session.stream('p', 'stream', payload, { ...options, credit: spec.credit }, pair.now), spec.readLimit);
              } else {
                c.unary = track(session.call('p', 'unary', payload, options, pair.now));
              }
              issued.push(c);
              break;
            }
            case 'abort': {
              if (issued.length === 0) break;
              const c = issued[step.pick % issued.length]!;
              c.aborted = true;
              c.controller.abort();
              break;
            }
            case 'advance':
              pair.advance(step.ms);
              break;
            case 'flush':
              pair.flush();
              break;
            case 'settle':
              await pair.settle(step.rounds);
              break;
          }
        }
        // Finish: let everything run, then stop what still hangs.
        await pair.settle();
        for (const c of issued) {
          const open = c.unary ? c.unary.pending : c.stream!.ends === 0;
          if (open && c.spec.behaviour === 'hang') {
            c.aborted = true;
            c.controller.abort();
          }
        }
        for (let i = 0; i < 20; i++) {
          await pair.settle();
          if (issued.every((c) => (c.unary ? !c.unary.pending : c.stream!.ends > 0))) break;
        }
        await Promise.all(issued.map((c) => (c.unary ? c.unary.promise : c.stream!.done)));
        await pair.settle();

        const bad = issued.map((c, i) => [i, judge(c)] as const).filter(([, why]) => why !== null);
        expect(bad).toEqual([]);
        // No handler or producer is left running.
        expect(live.n).toBe(0);
        for (const end of [pair.a, pair.b]) {
          expect(end.closed).toBeUndefined();
          const s = end.session;
          expect([s.outgoingCalls, s.incomingCalls, s.nextDeadline(), s.hasOutput()]).toEqual([0, 0, Infinity, false]);
        }
        // And the connection still closes cleanly.
        pair.a.session.goAway();
        await pair.settle();
        expect([pair.a.closed, pair.b.closed]).toEqual([null, null]);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});
