/**
 * Session, stream calls: producers of every shape, the credit window, batching of grants,
 * early exit by the consumer, and unary/stream mismatches.
 */
import { describe, expect, it } from 'vitest';
import { Pair } from './helpers/pair.js';
import { Tap, consume, inject, lone, track, turn } from './helpers/session-kit.js';
import { PipitError } from '../bindings/errors.js';
import type { HandlerContext } from '../bindings/routes.js';

describe('stream producers', () => {
  it('a sync generator, an async generator and an array each deliver their items in order, then end OK', async () => {
    const pair = new Pair({}, {
      services: {
        s: {
          *sync(p: Buffer) {
            for (let i = 0; i < 5; i++) yield `${p.toString()}${i}`;
          },
          async *async(p: Buffer) {
            for (let i = 0; i < 5; i++) {
              await Promise.resolve();
              yield Buffer.from(`${p.toString()}${i}`);
            }
          },
          array: () => ['x', Uint8Array.from([0x79]), 'z'],
          empty: function* () {},
          asyncReturnsGen: async () => (function* () { yield 'late'; })(),
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const sync = consume(pair.a.session.stream('s', 'sync', 'a'));
    const asy = consume(pair.a.session.stream('s', 'async', 'b'));
    const arr = consume(pair.a.session.stream('s', 'array', ''));
    const empty = consume(pair.a.session.stream('s', 'empty', ''));
    const viaPromise = consume(pair.a.session.stream('s', 'asyncReturnsGen', ''));
    await pair.settle();
    await Promise.all([sync.done, asy.done, arr.done, empty.done, viaPromise.done]);
    expect(sync).toMatchObject({ items: ['a0', 'a1', 'a2', 'a3', 'a4'], ends: 1, error: undefined });
    expect(asy).toMatchObject({ items: ['b0', 'b1', 'b2', 'b3', 'b4'], ends: 1, error: undefined });
    expect(arr).toMatchObject({ items: ['x', 'y', 'z'], ends: 1, error: undefined });
    expect(empty).toMatchObject({ items: [], ends: 1, error: undefined });
    expect(viaPromise).toMatchObject({ items: ['late'], ends: 1, error: undefined });
    // Stream calls end with STATUS OK, empty message: 6 bytes.
    const oks = tapB.ofType('STATUS');
    expect(oks.map((f) => [f.id, f.code, f.message, f.bytes])).toEqual([
      [0, 0, '', 6], [2, 0, '', 6], [3, 0, '', 6], [4, 0, '', 6], [1, 0, '', 6],
    ]);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('a stream request sends REQUEST|STREAM; items are RESPONSE without END', async () => {
    const pair = new Pair({}, { services: { s: { *g() { yield 'one'; yield Uint8Array.of(2); } } } });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    const o = consume(pair.a.session.stream('s', 'g', 'p'));
    await pair.settle();
    await o.done;
    expect(tapA.plain(1)).toEqual([
      // The default window is the wire default (spec §8.6): no ext block.
      { type: 'REQUEST', flags: ['STREAM', 'TEXT'], id: 0, service: 's', method: 'g', payload: Buffer.from('p').toString('hex') },
    ]);
    expect(tapB.plain(1)).toEqual([
      { type: 'RESPONSE', flags: ['TEXT'], id: 0, payload: Buffer.from('one').toString('hex') },
      { type: 'RESPONSE', flags: [], id: 0, payload: '02' },
      { type: 'STATUS', flags: [], id: 0, code: 0, message: '' },
    ]);
  });

  it('a producer that throws ends the stream with APPLICATION_ERROR after the items already sent', async () => {
    const pair = new Pair({}, {
      services: {
        s: {
          async *g() {
            yield 'a';
            yield 'b';
            throw new Error('cursor lost');
          },
          *bad() {
            yield 'ok';
            yield 7 as unknown as string;
          },
        },
      },
    });
    const o = consume(pair.a.session.stream('s', 'g', ''));
    const bad = consume(pair.a.session.stream('s', 'bad', ''));
    await pair.settle();
    await Promise.all([o.done, bad.done]);
    expect(o.items).toEqual(['a', 'b']);
    expect([o.ends, o.error?.code, o.error?.message]).toEqual([1, 'APPLICATION_ERROR', 'cursor lost']);
    expect(bad.items).toEqual(['ok']);
    expect([bad.error?.code, bad.error?.message]).toEqual(['INTERNAL', 'handler result must be a Uint8Array, a string, { payload, text } or nothing, got number']);
  });

  it('a stream request served by a unary handler yields exactly one item, folded with END (spec §8.10)', async () => {
    const pair = new Pair({}, { services: { s: { one: (p: Buffer) => `only ${p.toString()}`, none: () => undefined, async later() { return 'later'; } } } });
    const tapB = new Tap(pair.b.session);
    const one = consume(pair.a.session.stream('s', 'one', 'x'));
    const none = consume(pair.a.session.stream('s', 'none', ''));
    const later = consume(pair.a.session.stream('s', 'later', ''));
    await pair.settle();
    await Promise.all([one.done, none.done, later.done]);
    expect(one).toMatchObject({ items: ['only x'], ends: 1, error: undefined });
    expect(none).toMatchObject({ items: [''], ends: 1, error: undefined });
    expect(later).toMatchObject({ items: ['later'], ends: 1, error: undefined });
    expect(tapB.plain(1).filter((f) => f.id === 0 || f.id === 1)).toEqual([
      { type: 'RESPONSE', flags: ['END', 'TEXT'], id: 0, payload: Buffer.from('only x').toString('hex') },
      { type: 'RESPONSE', flags: ['END'], id: 1, payload: '' },
    ]);
  });

  it('a stream request with credit 0 served by a unary handler waits for a credit before its one message', async () => {
    // The API never asks for a window of 0: the peer's REQUEST is injected.
    const { end, tap } = lone({ hello: false, services: { s: { one: () => 'only' } } });
    inject(end, [{ type: 'REQUEST', flags: ['STREAM', 'EXT'], id: 5, service: 's', method: 'one', ext: { credit: 0 }, payload: '' }]);
    await turn();
    expect(tap.drain()).toEqual([]);
    inject(end, [{ type: 'CREDIT', flags: [], id: 5, credit: 1 }]);
    await turn();
    expect(tap.drain().map(({ bytes: _b, ...f }) => f)).toEqual([{ type: 'RESPONSE', flags: ['END', 'TEXT'], id: 5, payload: Buffer.from('only').toString('hex') }]);
    expect(end.session.incomingCalls).toBe(0);
  });

  it('a unary request served by a generator is INVALID_ARGUMENT and the generator never runs', async () => {
    let ran = 0;
    const pair = new Pair({}, {
      services: {
        s: {
          async *feed() {
            ran++;
            yield 'x';
          },
          *syncFeed() {
            ran++;
            yield 'x';
          },
          list: () => ['a', 'b'],
        },
      },
    });
    const outs = ['feed', 'syncFeed', 'list'].map((m) => track(pair.a.session.call('s', m, '')));
    await pair.settle();
    await Promise.all(outs.map((o) => o.promise));
    expect(outs.map((o) => [o.error?.code, o.error?.status, o.error?.message])).toEqual([
      ['INVALID_ARGUMENT', 4, 's.feed produces a stream; call it as a stream'],
      ['INVALID_ARGUMENT', 4, 's.syncFeed produces a stream; call it as a stream'],
      ['INVALID_ARGUMENT', 4, 's.list produces a stream; call it as a stream'],
    ]);
    expect(ran).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('stream(): an unknown route fails the stream with UNKNOWN_SERVICE / UNKNOWN_METHOD', async () => {
    const pair = new Pair({}, { services: { s: { *g() {} } } });
    const a = consume(pair.a.session.stream('nope', 'g', ''));
    const b = consume(pair.a.session.stream('s', 'nope', ''));
    await pair.settle();
    await Promise.all([a.done, b.done]);
    expect([a.ends, a.error?.code, b.ends, b.error?.code]).toEqual([1, 'UNKNOWN_SERVICE', 1, 'UNKNOWN_METHOD']);
  });
});

describe('credit', () => {
  it('the producer never runs ahead of the window while the consumer reads nothing', async () => {
    let advanced = 0;
    const pair = new Pair({}, {
      services: {
        s: {
          *sync() {
            for (let i = 0; i < 1000; i++) {
              advanced++;
              yield `s${i}`;
            }
          },
        },
      },
    });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    const stream = pair.a.session.stream('s', 'sync', '', { credit: 5 });
    await pair.settle();
    expect(advanced).toBe(5);
    expect(stream.buffered).toBe(5);
    expect(tapB.ofType('RESPONSE')).toHaveLength(5);
    // The window travels as the ext CREDIT entry.
    expect(tapA.ofType('REQUEST')[0]!.ext).toEqual({ credit: 5 });
    expect(tapA.ofType('CREDIT')).toHaveLength(0);
    // Reading one item is below half the window: no grant, no progress.
    expect((await stream.next()).value.toString()).toBe('s0');
    await pair.settle();
    expect(advanced).toBe(5);
    expect(tapA.ofType('CREDIT')).toHaveLength(0);
    // The third read crosses half the window (3 * 2 >= 5): a grant of 3.
    await stream.next();
    await stream.next();
    await pair.settle();
    expect(tapA.ofType('CREDIT').map((f) => [f.id, f.credit])).toEqual([[0, 3]]);
    expect(advanced).toBe(8);
    expect(stream.buffered).toBe(5);
    await stream.return();
    await pair.settle();
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('an async generator also stops at the window (the default 128 is the wire default, not announced)', async () => {
    let advanced = 0;
    const pair = new Pair({}, {
      services: {
        s: {
          async *g() {
            for (;;) {
              advanced++;
              await Promise.resolve();
              yield 'x';
            }
          },
        },
      },
    });
    const tapA = new Tap(pair.a.session);
    const stream = pair.a.session.stream('s', 'g', '');
    await pair.settle(300);
    expect(advanced).toBe(128);
    expect(stream.buffered).toBe(128);
    expect(tapA.ofType('REQUEST')[0]!.ext).toBeUndefined();
    await stream.return();
    await pair.settle();
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('a window other than the wire default is announced in an ext CREDIT entry', async () => {
    let advanced = 0;
    const pair = new Pair({}, { services: { s: { *g() { for (;;) { advanced++; yield 'x'; } } } } });
    const tapA = new Tap(pair.a.session);
    const stream = pair.a.session.stream('s', 'g', '', { credit: 16 });
    await pair.settle();
    expect(tapA.ofType('REQUEST')[0]!.flags).toEqual(['STREAM', 'TEXT', 'EXT']);
    expect(tapA.ofType('REQUEST')[0]!.ext).toEqual({ credit: 16 });
    expect(advanced).toBe(16);
    await stream.return();
    await pair.settle();
  });

  it('credit is granted in batches of half the window: about items / (window / 2) CREDIT frames', async () => {
    const items = 1000;
    const window = 20;
    const pair = new Pair({}, { services: { s: { *g() { for (let i = 0; i < items; i++) yield `${i}`; } } } });
    const tapA = new Tap(pair.a.session);
    const o = consume(pair.a.session.stream('s', 'g', '', { credit: window }));
    await pair.settle(500);
    await o.done;
    expect(o.items).toHaveLength(items);
    expect(o.items[items - 1]).toBe(String(items - 1));
    expect(o.error).toBeUndefined();
    const credits = tapA.ofType('CREDIT');
    // Each grant is exactly half the window, and the grants plus the window cover the items.
    expect(new Set(credits.map((f) => f.credit))).toEqual(new Set([window / 2]));
    const granted = credits.reduce((n, f) => n + f.credit!, 0);
    expect(granted + window).toBeGreaterThanOrEqual(items);
    expect(credits.length).toBeGreaterThanOrEqual((items - window) / (window / 2));
    expect(credits.length).toBeLessThanOrEqual(items / (window / 2));
  });

  it('a slow consumer reading one item per turn still receives everything, never more than the window ahead', async () => {
    let produced = 0;
    let maxAhead = 0;
    let consumed = 0;
    const pair = new Pair({}, {
      services: {
        s: {
          async *g() {
            for (let i = 0; i < 60; i++) {
              produced++;
              maxAhead = Math.max(maxAhead, produced - consumed);
              yield `${i}`;
            }
          },
        },
      },
    });
    const stream = pair.a.session.stream('s', 'g', '', { credit: 4 });
    const got: string[] = [];
    const reader = (async () => {
      for await (const item of stream) {
        consumed++;
        got.push(item.toString());
        await turn();
      }
    })();
    for (let i = 0; i < 200 && got.length < 60; i++) await pair.settle(2);
    await reader;
    expect(got).toEqual(Array.from({ length: 60 }, (_, i) => `${i}`));
    expect(maxAhead).toBeLessThanOrEqual(4);
    expect(maxAhead).toBe(4);
  });
});

describe('consumer leaves early', () => {
  it('breaking out of for-await sends CANCEL, aborts ctx.signal and runs the generator finally', async () => {
    let finallyRan = 0;
    let signal: AbortSignal | undefined;
    const pair = new Pair({}, {
      services: {
        s: {
          async *g(_p: Buffer, ctx: HandlerContext) {
            signal = ctx.signal;
            try {
              for (let i = 0; ; i++) yield `${i}`;
            } finally {
              finallyRan++;
            }
          },
        },
      },
    });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    const stream = pair.a.session.stream('s', 'g', '', { credit: 8 });
    const got: string[] = [];
    const reader = (async () => {
      for await (const item of stream) {
        got.push(item.toString());
        if (got.length === 3) break;
      }
    })();
    await pair.settle();
    await reader;
    await pair.settle();
    expect(got).toEqual(['0', '1', '2']);
    expect(tapA.ofType('CANCEL').map((f) => f.id)).toEqual([0]);
    expect(signal?.aborted).toBe(true);
    expect(signal?.reason).toBeInstanceOf(PipitError);
    expect((signal?.reason as PipitError).code).toBe('CANCELLED');
    expect(finallyRan).toBe(1);
    expect(tapB.ofType('STATUS').map((f) => [f.id, f.code, f.message])).toEqual([[0, 1, 'the caller cancelled the call']]);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
    // The stream stays finished.
    expect(await stream.next()).toEqual({ done: true, value: undefined });
  });

  it('a producer waiting for credit is woken by the CANCEL and its finally runs', async () => {
    let finallyRan = 0;
    let advanced = 0;
    const pair = new Pair({}, {
      services: {
        s: {
          *g() {
            try {
              for (;;) {
                advanced++;
                yield 'x';
              }
            } finally {
              finallyRan++;
            }
          },
        },
      },
    });
    const stream = pair.a.session.stream('s', 'g', '', { credit: 2 });
    await pair.settle();
    expect(advanced).toBe(2);
    expect(finallyRan).toBe(0);
    await stream.return();
    await pair.settle();
    expect(finallyRan).toBe(1);
    expect(advanced).toBe(2);
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('items already delivered stay readable after a failure, then the error comes', async () => {
    const { end } = lone();
    const stream = end.session.stream('x', 'y', '', { credit: 4 });
    inject(end, [
      { type: 'RESPONSE', flags: [], id: 0, payload: '01' },
      { type: 'RESPONSE', flags: [], id: 0, payload: '02' },
      { type: 'STATUS', flags: [], id: 0, code: 10, message: 'broke' },
    ]);
    const o = consume(stream);
    await o.done;
    expect(o.items).toEqual(['\u0001', '\u0002']);
    expect([o.ends, o.error?.code, o.error?.message]).toEqual([1, 'INTERNAL', 'broke']);
    expect(end.session.outgoingCalls).toBe(0);
  });

  it('a last RESPONSE with END ends a stream OK and costs a credit', async () => {
    const { end } = lone();
    const stream = end.session.stream('x', 'y', '', { credit: 2 });
    inject(end, [
      { type: 'RESPONSE', flags: [], id: 0, payload: '61' },
      { type: 'RESPONSE', flags: ['END'], id: 0, payload: '62' },
    ]);
    const o = consume(stream);
    await o.done;
    expect(o).toMatchObject({ items: ['a', 'b'], ends: 1, error: undefined });
    expect(end.closed).toBeUndefined();
    expect(end.session.outgoingCalls).toBe(0);
  });

  it('an invalid credit option is refused synchronously', () => {
    const { end } = lone();
    for (const credit of [0, -1, 1.5, 2 ** 31]) {
      expect(() => end.session.stream('x', 'y', '', { credit })).toThrow(/credit must be an integer from 1 to 2147483647/);
    }
    expect(end.session.outgoingCalls).toBe(0);
  });
});

describe('adaptive stream window', () => {
  async function lead(options: { credit?: number }, session: { initialCredit?: number; maxStreamWindowBytes?: number }) {
    let produced = 0;
    const pair = new Pair(session, {
      services: {
        s: {
          *rows() {
            for (let i = 0; i < 4000; i++) {
              produced++;
              yield Buffer.alloc(100, i & 0xff);
            }
          },
        },
      },
    });
    let read = 0;
    let maxLead = 0;
    const reading = (async () => {
      for await (const item of pair.a.session.stream('s', 'rows', '', options)) {
        if (item.length !== 100) throw new Error('bad item');
        read++;
        maxLead = Math.max(maxLead, produced - read);
      }
    })();
    await pair.settle(2000);
    await reading;
    expect(read).toBe(4000);
    return maxLead;
  }

  it('grows while the consumer is starved, up to maxStreamWindowBytes of average-size items', async () => {
    const maxLead = await lead({}, { initialCredit: 16, maxStreamWindowBytes: 64 * 1024 });
    expect(maxLead).toBeGreaterThan(16); // it grew
    expect(maxLead).toBeLessThanOrEqual(655); // 64 KiB / 100 B
  });

  it('stays fixed when the call sets credit', async () => {
    expect(await lead({ credit: 16 }, { maxStreamWindowBytes: 64 * 1024 })).toBeLessThanOrEqual(16);
  });
});
