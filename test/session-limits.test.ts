/**
 * Session: cancellation, deadlines, and the limits (maxInflight both ways, maxQueuedCalls,
 * maxMessageBytes both ways, fragmentation under maxFrameBytes).
 */
import { describe, expect, it } from 'vitest';
import { Pair } from './helpers/pair.js';
import { Tap, consume, deferred, deliverOnce, inject, lone, pattern, track, turn, type Deferred, parked } from './helpers/session-kit.js';
import { PipitError } from '../bindings/errors.js';
import type { HandlerContext } from '../bindings/routes.js';


describe('cancellation', () => {
  it('a signal aborted before the call is sent fails it with CANCELLED and sends nothing', async () => {
    const pair = new Pair({}, { services: { s: { m: () => 'x' } } });
    pair.flush();
    const before = pair.a.sentBytes;
    const ac = new AbortController();
    ac.abort();
    const o = track(pair.a.session.call('s', 'm', '', { signal: ac.signal }));
    const st = consume(pair.a.session.stream('s', 'm', '', { signal: ac.signal }));
    await Promise.all([o.promise, st.done]);
    pair.flush();
    expect([o.error?.code, o.error?.status, o.error?.message]).toEqual(['CANCELLED', 1, 'the call was cancelled']);
    expect(o.error?.cause).toBe(ac.signal.reason);
    expect([st.ends, st.error?.code]).toEqual([1, 'CANCELLED']);
    expect(pair.a.sentBytes).toBe(before);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('an abort reason that is a PipitError is the outcome as is', async () => {
    const { end } = lone();
    const ac = new AbortController();
    const reason = new PipitError('UNAVAILABLE', 'shutting down the worker');
    ac.abort(reason);
    const o = track(end.session.call('s', 'm', '', { signal: ac.signal }));
    await o.promise;
    expect(o.error).toBe(reason);
  });

  it('aborting in flight: CANCELLED on the caller, ctx.signal aborts, the responder answers STATUS CANCELLED', async () => {
    const { calls, service } = parked();
    const pair = new Pair({}, { services: { s: service } });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    const ac = new AbortController();
    const o = track(pair.a.session.call('s', 'wait', 'q', { signal: ac.signal }));
    await pair.settle();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.ctx.signal.aborted).toBe(false);
    ac.abort();
    await o.promise;
    // The caller's outcome is immediate, before anything crossed.
    expect([o.error?.code, o.error?.message]).toEqual(['CANCELLED', 'the call was cancelled']);
    expect(pair.a.session.outgoingCalls).toBe(1);
    await pair.settle();
    const sig = calls[0]!.ctx.signal;
    expect(sig.aborted).toBe(true);
    expect([(sig.reason as PipitError).code, (sig.reason as PipitError).message]).toEqual(['CANCELLED', 'the caller cancelled the call']);
    expect(tapA.ofType('CANCEL').map((f) => f.id)).toEqual([0]);
    expect(tapB.plain(1)).toEqual([{ type: 'STATUS', flags: [], id: 0, code: 1, message: 'the caller cancelled the call' }]);
    expect(o.settlements).toBe(1);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
    // Aborting again changes nothing.
    ac.abort();
    await pair.settle();
    expect(tapA.ofType('CANCEL')).toHaveLength(1);
  });

  it('aborting after the call completed sends nothing', async () => {
    const pair = new Pair({}, { services: { s: { m: () => 'done' } } });
    const tapA = new Tap(pair.a.session);
    const ac = new AbortController();
    const o = track(pair.a.session.call('s', 'm', '', { signal: ac.signal }));
    await pair.settle();
    await o.promise;
    ac.abort();
    await pair.settle();
    expect(o.value!.toString()).toBe('done');
    expect(tapA.ofType('CANCEL')).toHaveLength(0);
  });

  it('aborting a stream in flight fails the reader with CANCELLED and stops the producer', async () => {
    let signal: AbortSignal | undefined;
    const pair = new Pair({}, {
      services: {
        s: {
          async *g(_p: Buffer, ctx: HandlerContext) {
            signal = ctx.signal;
            yield 'first';
            await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const ac = new AbortController();
    const o = consume(pair.a.session.stream('s', 'g', '', { signal: ac.signal }));
    await pair.settle();
    expect(o.items).toEqual(['first']);
    ac.abort();
    await pair.settle();
    await o.done;
    expect([o.ends, o.error?.code]).toEqual([1, 'CANCELLED']);
    expect(signal?.aborted).toBe(true);
    expect(tapB.ofType('STATUS').map((f) => f.code)).toEqual([1]);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });
});

describe('deadlines', () => {
  it('the timeout travels, both sides give DEADLINE_EXCEEDED, and the responder signal aborts', async () => {
    const { calls, service } = parked();
    const pair = new Pair({}, { services: { s: service } });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    pair.now = 1000;
    const o = track(pair.a.session.call('s', 'wait', '', { timeout: 250 }, pair.now));
    await pair.settle();
    expect(tapA.ofType('REQUEST')[0]!.ext).toEqual({ deadlineMs: 250 });
    expect(calls[0]!.ctx.deadline).toBe(1250);
    expect(pair.a.session.nextDeadline()).toBe(1250);
    expect(pair.b.session.nextDeadline()).toBe(1250);
    pair.advance(249);
    await pair.settle();
    expect(o.pending).toBe(true);
    expect(calls[0]!.ctx.signal.aborted).toBe(false);
    pair.advance(1);
    await pair.settle();
    await o.promise;
    expect([o.error?.code, o.error?.status, o.error?.message]).toEqual(['DEADLINE_EXCEEDED', 6, 's.wait did not finish before its deadline']);
    const sig = calls[0]!.ctx.signal;
    expect(sig.aborted).toBe(true);
    expect((sig.reason as PipitError).code).toBe('DEADLINE_EXCEEDED');
    expect(tapB.ofType('STATUS').map((f) => [f.id, f.code, f.message])).toEqual([[0, 6, 'deadline exceeded']]);
    expect(o.settlements).toBe(1);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.session.nextDeadline()).toBe(Infinity);
    expect(pair.b.session.nextDeadline()).toBe(Infinity);
    expect(pair.a.closed).toBeUndefined();
    expect(pair.b.closed).toBeUndefined();
  });

  it('the responder enforces the deadline on its own clock, from when the request arrived', async () => {
    const { calls, service } = parked();
    const pair = new Pair({}, { services: { s: service } });
    const tapB = new Tap(pair.b.session);
    const o = track(pair.a.session.call('s', 'wait', '', { timeout: 100 }, 0));
    pair.now = 30; // the request reaches the responder 30 ms later
    await pair.settle();
    expect(calls[0]!.ctx.deadline).toBe(130);
    pair.now = 100;
    pair.b.session.tick(100);
    expect(calls[0]!.ctx.signal.aborted).toBe(false);
    pair.a.session.tick(100);
    await o.promise;
    expect(o.error?.code).toBe('DEADLINE_EXCEEDED');
    // The CANCEL from the caller ends the responder's call before its own deadline.
    await pair.settle();
    expect(calls[0]!.ctx.signal.aborted).toBe(true);
    expect(tapB.ofType('STATUS').map((f) => f.code)).toEqual([1]);
    expect(pair.b.session.nextDeadline()).toBe(Infinity);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('a call that completes in time leaves no deadline behind', async () => {
    const pair = new Pair({}, { services: { s: { m: () => 'ok' } } });
    const o = track(pair.a.session.call('s', 'm', '', { timeout: 50 }, 0));
    await pair.settle();
    await o.promise;
    expect(o.value!.toString()).toBe('ok');
    expect(pair.a.session.nextDeadline()).toBe(Infinity);
    expect(pair.b.session.nextDeadline()).toBe(Infinity);
    pair.advance(100);
    await pair.settle();
    expect(o.settlements).toBe(1);
  });

  it('a stream deadline fails the reader with DEADLINE_EXCEEDED after the items it got', async () => {
    let signal: AbortSignal | undefined;
    const pair = new Pair({}, {
      services: {
        s: {
          async *g(_p: Buffer, ctx: HandlerContext) {
            signal = ctx.signal;
            yield 'a';
            await new Promise((_, reject) => ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)));
          },
        },
      },
    });
    const o = consume(pair.a.session.stream('s', 'g', '', { timeout: 10 }, 0));
    await pair.settle();
    pair.advance(10);
    await pair.settle();
    await o.done;
    expect(o.items).toEqual(['a']);
    expect([o.ends, o.error?.code]).toEqual([1, 'DEADLINE_EXCEEDED']);
    expect(signal?.aborted).toBe(true);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('an invalid timeout is refused synchronously', async () => {
    const { end } = lone();
    await expect(end.session.call('s', 'm', '', { timeout: -1 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(end.session.call('s', 'm', '', { timeout: Number.NaN })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(end.session.outgoingCalls).toBe(0);
  });
});

describe('maxInflight', () => {
  it('the responder refuses requests beyond maxInflight with RESOURCE_EXHAUSTED and does not run them', async () => {
    let invoked = 0;
    const gates: Array<Deferred<string>> = [];
    const { end, tap } = lone({
      maxInflight: 2,
      services: {
        s: {
          m(p: Buffer) {
            invoked++;
            const g = deferred<string>();
            gates.push(g);
            return g.promise.then((v) => `${p.toString()}:${v}`);
          },
        },
      },
    });
    expect(tap.drain()[0]!.settings).toEqual([[1, 262144], [2, 16777216], [3, 2]]);
    const req = (id: number) => ({ type: 'REQUEST', flags: [], id, service: 's', method: 'm', payload: Buffer.from(`r${id}`).toString('hex') });
    inject(end, [req(0), req(1), req(2), req(3)]);
    expect(invoked).toBe(2);
    expect(end.session.incomingCalls).toBe(2);
    expect(tap.drain()).toEqual([
      expect.objectContaining({ type: 'STATUS', id: 2, code: 7, message: 'more than 2 calls in flight' }),
      expect.objectContaining({ type: 'STATUS', id: 3, code: 7, message: 'more than 2 calls in flight' }),
    ]);
    // The refused ids are not held: DATA and CANCEL for them are ignored, and they may be reused.
    gates[0]!.resolve('done');
    await turn();
    expect(tap.drain().map((f) => [f.type, f.id])).toEqual([['RESPONSE', 0]]);
    inject(end, [{ type: 'CANCEL', flags: [], id: 3 }, req(2)]);
    expect(invoked).toBe(3);
    expect(end.session.incomingCalls).toBe(2);
    expect(end.closed).toBeUndefined();
    expect(tap.drain()).toEqual([]);
  });

  it('the caller queues calls beyond the peer\'s announced maxInflight: they wait, then go, none fails', async () => {
    const { calls, service } = parked();
    const pair = new Pair({}, { maxInflight: 3, services: { s: service } });
    const tapA = new Tap(pair.a.session);
    pair.flush(); // HELLO: the caller learns maxInflight 3
    expect(pair.a.session.peerMaxInflight).toBe(3);
    const outs = Array.from({ length: 10 }, (_, i) => track(pair.a.session.call('s', 'wait', `c${i}`)));
    await pair.settle();
    expect(tapA.ofType('REQUEST')).toHaveLength(3);
    expect(pair.a.session.outgoingCalls).toBe(10);
    expect(pair.b.session.incomingCalls).toBe(3);
    expect(calls.map((c) => c.payload)).toEqual(['c0', 'c1', 'c2']);
    let maxServed = 0;
    for (let k = 0; k < 10; k++) {
      maxServed = Math.max(maxServed, pair.b.session.incomingCalls);
      calls[k]!.gate.resolve('ok');
      await pair.settle();
    }
    await Promise.all(outs.map((o) => o.promise));
    expect(outs.map((o) => o.error?.code)).toEqual(Array(10).fill(undefined));
    expect(outs.map((o) => o.value!.toString())).toEqual(Array(10).fill('ok'));
    expect(calls.map((c) => c.payload)).toEqual(Array.from({ length: 10 }, (_, i) => `c${i}`));
    expect(maxServed).toBe(3);
    expect(tapA.ofType('REQUEST').map((f) => f.id).every((id) => id < 3)).toBe(true);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('a call that waited in the queue sends the time it has left as its deadline', async () => {
    const { calls, service } = parked();
    const pair = new Pair({}, { maxInflight: 1, services: { s: service } });
    const tapA = new Tap(pair.a.session);
    pair.flush();
    const first = track(pair.a.session.call('s', 'wait', 'first'));
    const queued = track(pair.a.session.call('s', 'wait', 'queued', { timeout: 1000, metadata: { k: 'v' } }, pair.now));
    await pair.settle();
    pair.advance(300);
    calls[0]!.gate.resolve('ok');
    await pair.settle();
    const sent = tapA.ofType('REQUEST').find((f) => f.payload === Buffer.from('queued').toString('hex'))!;
    expect(sent.ext).toEqual({ deadlineMs: 700, metadata: [['k', 'v']] });
    expect(calls[1]!.ctx.deadline).toBe(1000);
    calls[1]!.gate.resolve('ok');
    await pair.settle();
    expect((await first.promise, await queued.promise, queued.value!.toString())).toBe('ok');
  });

  it('a queued call that is cancelled or times out never goes out', async () => {
    const { calls, service } = parked();
    const pair = new Pair({}, { maxInflight: 1, services: { s: service } });
    const tapA = new Tap(pair.a.session);
    pair.flush();
    const first = track(pair.a.session.call('s', 'wait', 'first'));
    const ac = new AbortController();
    const cancelled = track(pair.a.session.call('s', 'wait', 'cancelled', { signal: ac.signal }));
    const timed = track(pair.a.session.call('s', 'wait', 'timed', { timeout: 5 }, pair.now));
    const last = track(pair.a.session.call('s', 'wait', 'last'));
    await pair.settle();
    ac.abort();
    pair.advance(5);
    await Promise.all([cancelled.promise, timed.promise]);
    expect([cancelled.error?.code, timed.error?.code]).toEqual(['CANCELLED', 'DEADLINE_EXCEEDED']);
    calls[0]!.gate.resolve('1');
    await pair.settle();
    calls[1]!.gate.resolve('2');
    await pair.settle();
    await Promise.all([first.promise, last.promise]);
    expect([first.value?.toString(), last.value?.toString()]).toEqual(['1', '2']);
    expect(calls.map((c) => c.payload)).toEqual(['first', 'last']);
    expect(tapA.ofType('REQUEST')).toHaveLength(2);
    expect(tapA.ofType('CANCEL')).toHaveLength(0);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('maxQueuedCalls: a call beyond a full queue fails RESOURCE_EXHAUSTED at once', async () => {
    const { calls, service } = parked();
    const pair = new Pair({ maxQueuedCalls: 3 }, { maxInflight: 1, services: { s: service } });
    pair.flush();
    const outs = Array.from({ length: 4 }, (_, i) => track(pair.a.session.call('s', 'wait', `c${i}`)));
    const over = track(pair.a.session.call('s', 'wait', 'over'));
    const overStream = consume(pair.a.session.stream('s', 'wait', 'overStream'));
    await overStream.done;
    await over.promise;
    expect([over.error?.code, over.error?.status, over.error?.message]).toEqual(['RESOURCE_EXHAUSTED', 7, '3 calls already queued']);
    expect([overStream.ends, overStream.error?.code]).toEqual([1, 'RESOURCE_EXHAUSTED']);
    expect(pair.a.session.outgoingCalls).toBe(4);
    for (let k = 0; k < 4; k++) {
      await pair.settle();
      calls[k]!.gate.resolve('ok');
    }
    await pair.settle();
    await Promise.all(outs.map((o) => o.promise));
    expect(outs.map((o) => o.value?.toString())).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(calls.map((c) => c.payload)).toEqual(['c0', 'c1', 'c2', 'c3']);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });
});

describe('maxMessageBytes', () => {
  it('a request larger than the peer announced is refused locally and never sent', async () => {
    const pair = new Pair({}, { maxMessageBytes: 1000, services: { s: { m: () => 'x' } } });
    pair.flush();
    expect(pair.a.session.peerMaxMessageBytes).toBe(1000);
    const before = pair.a.sentBytes;
    const o = track(pair.a.session.call('s', 'm', pattern(1001)));
    const fits = track(pair.a.session.call('s', 'm', pattern(1000)));
    await pair.settle();
    await Promise.all([o.promise, fits.promise]);
    expect([o.error?.code, o.error?.message]).toEqual(['RESOURCE_EXHAUSTED', "request of 1001 bytes exceeds the peer's maxMessageBytes 1000; not sent"]);
    expect(fits.value?.toString()).toBe('x');
    // Only the call that fits went out.
    expect(pair.a.sentBytes - before).toBe(4 + 1 + 4 + 1000);
    // Strings count in UTF-8 bytes: 400 × 'é' is 800 bytes, 600 × 'é' 1200.
    const mark = pair.a.sentBytes;
    const text = track(pair.a.session.call('s', 'm', 'é'.repeat(600)));
    const textFits = track(pair.a.session.call('s', 'm', 'é'.repeat(400)));
    await pair.settle();
    await Promise.all([text.promise, textFits.promise]);
    expect([text.error?.code, text.error?.message]).toEqual(['RESOURCE_EXHAUSTED', "request of 1200 bytes exceeds the peer's maxMessageBytes 1000; not sent"]);
    expect(textFits.value?.toString()).toBe('x');
    expect(pair.a.sentBytes - mark).toBe(4 + 1 + 4 + 800);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('a request over the responder limit sent before its HELLO arrived is refused with RESOURCE_EXHAUSTED, not processed', async () => {
    let invoked = 0;
    const pair = new Pair(
      { maxFrameBytes: 65536 },
      { maxMessageBytes: 100_000, maxFrameBytes: 65536, services: { s: { m: () => void invoked++ } } },
    );
    const tapB = new Tap(pair.b.session);
    // Issued before any flush: the caller still assumes the 16 MiB default.
    const fragmented = track(pair.a.session.call('s', 'm', pattern(300_000)));
    await pair.settle();
    await fragmented.promise;
    expect([fragmented.error?.code, fragmented.error?.status]).toEqual(['RESOURCE_EXHAUSTED', 7]);
    expect(fragmented.error?.message).toBe('request exceeds maxMessageBytes 100000');
    expect(invoked).toBe(0);
    expect(tapB.ofType('STATUS').map((f) => f.code)).toEqual([7]);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.closed).toBeUndefined();
    expect(pair.b.closed).toBeUndefined();
  });

  it('a single-frame request over the responder limit (sent before HELLO) is refused too', async () => {
    let invoked = 0;
    const pair = new Pair({}, { maxMessageBytes: 1000, services: { s: { m: () => void invoked++ } } });
    const tapB = new Tap(pair.b.session);
    const o = track(pair.a.session.call('s', 'm', pattern(2000)));
    await pair.settle();
    await o.promise;
    expect([o.error?.code, o.error?.message]).toEqual(['RESOURCE_EXHAUSTED', 'request exceeds maxMessageBytes 1000']);
    expect(invoked).toBe(0);
    expect(tapB.ofType('STATUS').map((f) => f.code)).toEqual([7]);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('a fragmented response over the caller limit fails the call locally with RESOURCE_EXHAUSTED', async () => {
    // The caller sends no HELLO, so the responder cannot know the limit and sends it anyway.
    let signal: AbortSignal | undefined;
    const pair = new Pair(
      { hello: false, maxMessageBytes: 100_000 },
      { services: { s: { m: (_p: Buffer, ctx: HandlerContext) => { signal = ctx.signal; return pattern(300_000); } } } },
    );
    const tapA = new Tap(pair.a.session);
    const o = track(pair.a.session.call('s', 'm', ''));
    const after = track(pair.a.session.call('s', 'm', ''));
    await pair.settle();
    await Promise.all([o.promise, after.promise]);
    expect([o.error?.code, o.error?.message]).toEqual(['RESOURCE_EXHAUSTED', 'response exceeds maxMessageBytes 100000']);
    expect(o.settlements).toBe(1);
    // The caller cancels the call and absorbs what still arrives until the terminal frame.
    expect(tapA.ofType('CANCEL').map((f) => f.id)).toEqual([0, 1]);
    expect(signal?.aborted).toBe(true);
    expect(after.error?.code).toBe('RESOURCE_EXHAUSTED');
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.closed).toBeUndefined();
    expect(pair.b.closed).toBeUndefined();
  });

  it('a single-frame response over the caller limit fails the call locally with RESOURCE_EXHAUSTED', async () => {
    const { end, tap } = lone({ maxMessageBytes: 1000 });
    const o = track(end.session.call('s', 'm', ''));
    tap.drain();
    inject(end, [{ type: 'RESPONSE', flags: ['END'], id: 0, payload: pattern(1001).toString('hex') }]);
    await o.promise;
    expect([o.error?.code, o.error?.message]).toEqual(['RESOURCE_EXHAUSTED', 'response exceeds maxMessageBytes 1000']);
    expect(end.session.outgoingCalls).toBe(0);
    // RESPONSE|END was the terminal frame: no CANCEL needed.
    expect(tap.drain()).toEqual([]);
    // Without END the caller cancels, then absorbs the rest until the terminal frame.
    const o2 = track(end.session.call('s', 'm', ''));
    tap.drain();
    inject(end, [{ type: 'RESPONSE', flags: [], id: 0, payload: pattern(1001).toString('hex') }]);
    await o2.promise;
    expect(o2.error?.code).toBe('RESOURCE_EXHAUSTED');
    expect(tap.drain().map((f) => [f.type, f.id])).toEqual([['CANCEL', 0]]);
    expect(end.session.outgoingCalls).toBe(1);
    inject(end, [{ type: 'STATUS', flags: [], id: 0, code: 0, message: '' }]);
    expect(end.session.outgoingCalls).toBe(0);
    expect(o2.settlements).toBe(1);
    expect(end.closed).toBeUndefined();
  });

  it('a responder whose result exceeds the announced caller limit sends STATUS RESOURCE_EXHAUSTED instead', async () => {
    const pair = new Pair({ maxMessageBytes: 1000 }, {
      services: {
        s: {
          big: () => pattern(5000),
          bigText: () => 'é'.repeat(501),
          fine: () => pattern(1000),
          *items() {
            yield pattern(10);
            yield pattern(1001);
            yield pattern(10);
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    pair.flush();
    const big = track(pair.a.session.call('s', 'big', ''));
    const bigText = track(pair.a.session.call('s', 'bigText', ''));
    const fine = track(pair.a.session.call('s', 'fine', ''));
    const items = consume(pair.a.session.stream('s', 'items', ''));
    await pair.settle();
    await Promise.all([big.promise, bigText.promise, fine.promise, items.done]);
    expect([big.error?.code, big.error?.message]).toEqual(['RESOURCE_EXHAUSTED', "response of 5000 bytes exceeds the peer's maxMessageBytes 1000"]);
    expect([bigText.error?.code, bigText.error?.message]).toEqual(['RESOURCE_EXHAUSTED', "response of 1002 bytes exceeds the peer's maxMessageBytes 1000"]);
    expect(fine.value?.length).toBe(1000);
    expect(items.items).toHaveLength(1);
    expect(items.error?.code).toBe('RESOURCE_EXHAUSTED');
    // Nothing over the limit crossed the wire.
    expect(tapB.ofType('RESPONSE').map((f) => f.id)).toEqual([2, 3]);
    expect(tapB.ofType('STATUS').map((f) => [f.id, f.code])).toEqual([[0, 7], [1, 7], [3, 7]]);
    expect(pair.a.closed).toBeUndefined();
    expect(pair.b.session.incomingCalls).toBe(0);
  });
});

describe('fragmentation', () => {
  const MiB = 1024 * 1024;

  it('a 1 MiB request and a 1 MiB response cross intact in frames of at most 65536 bytes', async () => {
    const req = pattern(MiB, 11);
    const res = pattern(MiB, 12);
    let got: Buffer | undefined;
    const pair = new Pair({ maxFrameBytes: 65536 }, {
      maxFrameBytes: 65536,
      services: { s: { m: (p: Buffer) => { got = Buffer.from(p); return res; } } },
    });
    const tapA = new Tap(pair.a.session, 65536);
    const tapB = new Tap(pair.b.session, 65536);
    const o = track(pair.a.session.call('s', 'm', req));
    await pair.settle();
    await o.promise;
    expect(got?.equals(req)).toBe(true);
    expect(o.value?.equals(res)).toBe(true);
    const data = tapA.ofType('DATA');
    expect(data.length).toBeGreaterThanOrEqual(Math.ceil(MiB / 65536));
    expect(tapA.ofType('REQUEST')[0]!.flags).toEqual(['FOLLOWS']);
    expect(data.slice(0, -1).every((f) => f.flags.includes('FOLLOWS'))).toBe(true);
    expect(data.at(-1)!.flags).toEqual([]);
    const resp = tapB.ofType('RESPONSE');
    expect(resp.slice(0, -1).every((f) => f.flags.join() === 'FOLLOWS')).toBe(true);
    expect(resp.at(-1)!.flags).toEqual(['END']);
    expect(Math.max(...tapA.frames.map((f) => f.bytes), ...tapB.frames.map((f) => f.bytes))).toBeLessThanOrEqual(65536);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('small calls issued after a large request started complete before it (fragments interleave)', async () => {
    const big = pattern(MiB, 21);
    const pair = new Pair({ maxFrameBytes: 65536 }, { maxFrameBytes: 65536, services: { s: { size: (p: Buffer) => String(p.length) } } });
    const tapA = new Tap(pair.a.session, 65536);
    pair.flush();
    const order: string[] = [];
    const large = track(pair.a.session.call('s', 'size', big));
    void large.promise.then(() => order.push('large'));
    // The first part of the large request goes out; the rest is still to be written.
    const first = deliverOnce(pair.a, pair.b, pair.now);
    expect(first).toBeGreaterThan(65536);
    expect(first).toBeLessThan(MiB / 2);
    expect(pair.a.session.fragmentsPending).toBe(true);
    const small = [0, 1, 2].map((i) => {
      const o = track(pair.a.session.call('s', 'size', `small${i}`));
      void o.promise.then(() => order.push(`small${i}`));
      return o;
    });
    await pair.settle();
    await Promise.all([large.promise, ...small.map((o) => o.promise)]);
    expect(large.value?.toString()).toBe(String(MiB));
    expect(small.map((o) => o.value?.toString())).toEqual(['6', '6', '6']);
    expect(order).toEqual(['small0', 'small1', 'small2', 'large']);
    // On the wire the small requests sit between DATA fragments of the large one.
    const kinds = tapA.frames.map((f) => (f.type === 'REQUEST' ? `R${f.id}` : f.type));
    expect(kinds.indexOf('R1')).toBeGreaterThan(kinds.indexOf('DATA'));
    expect(kinds.lastIndexOf('DATA')).toBeGreaterThan(kinds.indexOf('R3'));
  });

  it('small calls issued after a large response started complete before it', async () => {
    const pair = new Pair({ maxFrameBytes: 65536 }, {
      maxFrameBytes: 65536,
      services: { s: { big: () => pattern(MiB, 31), small: (p: Buffer) => p } },
    });
    const tapB = new Tap(pair.b.session, 65536);
    pair.flush();
    const order: string[] = [];
    const large = track(pair.a.session.call('s', 'big', ''));
    void large.promise.then(() => order.push('large'));
    deliverOnce(pair.a, pair.b, pair.now); // the request; the handler answers at once
    const first = deliverOnce(pair.b, pair.a, pair.now); // the first part of the answer
    expect(first).toBeGreaterThan(65536);
    expect(first).toBeLessThan(MiB / 2);
    expect(pair.b.session.fragmentsPending).toBe(true);
    const small = [0, 1].map((i) => {
      const o = track(pair.a.session.call('s', 'small', `s${i}`));
      void o.promise.then(() => order.push(`small${i}`));
      return o;
    });
    await pair.settle();
    await Promise.all([large.promise, ...small.map((o) => o.promise)]);
    expect(large.value?.equals(pattern(MiB, 31))).toBe(true);
    expect(small.map((o) => o.value?.toString())).toEqual(['s0', 's1']);
    expect(order).toEqual(['small0', 'small1', 'large']);
    // On the wire the small answers sit between fragments of the big one.
    const ids = tapB.ofType('RESPONSE').map((f) => f.id);
    const firstSmall = ids.indexOf(1);
    expect(firstSmall).toBeGreaterThan(0);
    expect(ids.lastIndexOf(0)).toBeGreaterThan(firstSmall);
  });

  it('fragmented stream items each cost one credit and arrive whole', async () => {
    const items = [pattern(200_000, 1), pattern(70_000, 2), pattern(10, 3)];
    const pair = new Pair({ maxFrameBytes: 65536 }, { maxFrameBytes: 65536, services: { s: { *g() { yield* items; } } } });
    const stream = pair.a.session.stream('s', 'g', '', { credit: 2 });
    const got: Buffer[] = [];
    const reader = (async () => {
      for await (const item of stream) got.push(item);
    })();
    await pair.settle(100);
    await reader;
    expect(got.map((b) => b.length)).toEqual([200_000, 70_000, 10]);
    expect(got.every((b, i) => b.equals(items[i]!))).toBe(true);
    expect(pair.a.closed).toBeUndefined();
    expect(pair.b.closed).toBeUndefined();
  });

  it('a responder that refuses early stops a large request: its remaining DATA frames are dropped by the caller', async () => {
    const pair = new Pair({ maxFrameBytes: 65536 }, { maxFrameBytes: 65536 });
    const tapA = new Tap(pair.a.session);
    // The responder serves nothing: UNKNOWN_SERVICE comes back once the whole request has arrived.
    const o = track(pair.a.session.call('nope', 'm', pattern(MiB)));
    await pair.settle();
    await o.promise;
    expect(o.error?.code).toBe('UNKNOWN_SERVICE');
    expect(tapA.ofType('DATA').length).toBeGreaterThan(0);
    expect(pair.a.session.fragmentsPending).toBe(false);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });
});

describe('congested output without a transport backlog report', () => {
  it('requests held while more than maxWriteBufferBytes is pending run once the output is taken', async () => {
    const big = Buffer.alloc(300 * 1024, 1);
    const pair = new Pair({}, { maxWriteBufferBytes: 512 * 1024, services: { s: { big: () => big, small: () => 'ok' } } });
    pair.flush();
    const calls = [
      ...Array.from({ length: 4 }, () => pair.a.session.call('s', 'big', '')),
      ...Array.from({ length: 4 }, () => pair.a.session.call('s', 'small', '')),
    ];
    await pair.settle();
    const out = await Promise.all(calls);
    expect(out.slice(0, 4).every((b) => b.equals(big))).toBe(true);
    expect(out.slice(4).map((b) => b.toString())).toEqual(['ok', 'ok', 'ok', 'ok']);
    expect(pair.b.session.incomingCalls).toBe(0);
  });
});
