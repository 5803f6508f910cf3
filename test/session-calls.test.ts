/**
 * Session, unary calls: results, failures, routing, concurrency, id reuse and wire cost.
 * Two sessions joined in memory (test/helpers/pair.ts); time is injected, nothing sleeps.
 */
import { describe, expect, it } from 'vitest';
import { Pair } from './helpers/pair.js';
import { Tap, deferred, inject, lone, pattern, track, turn, type Deferred } from './helpers/session-kit.js';
import { PipitError } from '../bindings/errors.js';
import type { HandlerContext } from '../bindings/routes.js';

describe('unary calls', () => {
  it('returns bytes and tells the handler the request was binary', async () => {
    const seen: Array<{ payload: string; text: boolean; service: string; method: string }> = [];
    const pair = new Pair({}, {
      services: {
        db: {
          query(p: Buffer, ctx: HandlerContext) {
            seen.push({ payload: p.toString('hex'), text: ctx.text, service: ctx.service, method: ctx.method });
            return Uint8Array.from([9, 8, 7]);
          },
        },
      },
    });
    const o = track(pair.a.session.call('db', 'query', Uint8Array.from([1, 2, 3])));
    await pair.settle();
    await o.promise;
    expect(o.error).toBeUndefined();
    expect(o.value).toBeInstanceOf(Buffer);
    expect([...o.value!]).toEqual([9, 8, 7]);
    expect(seen).toEqual([{ payload: '010203', text: false, service: 'db', method: 'query' }]);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('a string request carries TEXT, visible to the handler as ctx.text, and a string result comes back as UTF-8', async () => {
    const ta = new Pair({}, {
      services: { echo: { up: (p: Buffer, ctx: HandlerContext) => `${ctx.text}:${p.toString('utf8').toUpperCase()}` } },
    });
    const tapA = new Tap(ta.a.session);
    const tapB = new Tap(ta.b.session);
    const o = track(ta.a.session.call('echo', 'up', 'héllo'));
    await ta.settle();
    await o.promise;
    expect(o.value!.toString('utf8')).toBe('true:HÉLLO');
    const req = tapA.ofType('REQUEST');
    expect(req).toHaveLength(1);
    expect(req[0]!.flags).toEqual(['TEXT']);
    expect(req[0]!.payload).toBe(Buffer.from('héllo').toString('hex'));
    const res = tapB.ofType('RESPONSE');
    expect(res.map((f) => f.flags)).toEqual([['END', 'TEXT']]);
  });

  it('a handler returning nothing gives an empty message in one RESPONSE|END frame', async () => {
    const pair = new Pair({}, { services: { s: { v() {}, n: () => null } } });
    const tapB = new Tap(pair.b.session);
    const o1 = track(pair.a.session.call('s', 'v', 'x'));
    const o2 = track(pair.a.session.call('s', 'n', 'x'));
    await pair.settle();
    await Promise.all([o1.promise, o2.promise]);
    expect(o1.value!.length).toBe(0);
    expect(o2.value!.length).toBe(0);
    // RESPONSE|END id, empty payload: 01 00 00 12 <id>.
    expect(tapB.plain(1)).toEqual([
      { type: 'RESPONSE', flags: ['END'], id: 0, payload: '' },
      { type: 'RESPONSE', flags: ['END'], id: 1, payload: '' },
    ]);
    expect(tapB.frames.slice(1).map((f) => f.bytes)).toEqual([5, 5]);
  });

  it('a thrown Error becomes APPLICATION_ERROR with its message and no stack', async () => {
    const pair = new Pair({}, {
      services: {
        s: {
          fail() {
            throw new Error('disk is full');
          },
          failString() {
            throw 'plain string';
          },
          failOther() {
            throw 42;
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const o1 = track(pair.a.session.call('s', 'fail', ''));
    const o2 = track(pair.a.session.call('s', 'failString', ''));
    const o3 = track(pair.a.session.call('s', 'failOther', ''));
    await pair.settle();
    await Promise.all([o1.promise, o2.promise, o3.promise]);
    for (const o of [o1, o2, o3]) {
      expect(o.error).toBeInstanceOf(PipitError);
      expect(o.error!.code).toBe('APPLICATION_ERROR');
      expect(o.error!.status).toBe(5);
    }
    expect(o1.error!.message).toBe('disk is full');
    expect(o2.error!.message).toBe('plain string');
    expect(o3.error!.message).toBe('handler failed');
    // On the wire: the message only. A stack would mention "at " and the file name.
    expect(tapB.plain(1)).toEqual([
      { type: 'STATUS', flags: [], id: 0, code: 5, message: 'disk is full' },
      { type: 'STATUS', flags: [], id: 1, code: 5, message: 'plain string' },
      { type: 'STATUS', flags: [], id: 2, code: 5, message: 'handler failed' },
    ]);
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('a thrown PipitError keeps its status name or application code on the caller', async () => {
    const pair = new Pair({}, {
      services: {
        s: {
          bad() {
            throw new PipitError('INVALID_ARGUMENT', 'age must be positive');
          },
          app() {
            throw new PipitError(300, 'quota of the tenant reached');
          },
          big() {
            throw new PipitError(0xffffffff, 'largest code');
          },
          async later() {
            await Promise.resolve();
            throw new PipitError('UNAVAILABLE', 'try the replica');
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const bad = track(pair.a.session.call('s', 'bad', ''));
    const app = track(pair.a.session.call('s', 'app', ''));
    const big = track(pair.a.session.call('s', 'big', ''));
    const later = track(pair.a.session.call('s', 'later', ''));
    await pair.settle();
    await Promise.all([bad.promise, app.promise, big.promise, later.promise]);
    expect([bad.error!.code, bad.error!.status, bad.error!.message]).toEqual(['INVALID_ARGUMENT', 4, 'age must be positive']);
    expect([app.error!.code, app.error!.status, app.error!.message]).toEqual(['APPLICATION_ERROR', 300, 'quota of the tenant reached']);
    expect([big.error!.code, big.error!.status]).toEqual(['APPLICATION_ERROR', 0xffffffff]);
    // UNAVAILABLE promises "not processed": a handler that already runs may not send it (§13.2).
    expect([later.error!.code, later.error!.status, later.error!.message]).toEqual(['APPLICATION_ERROR', 5, 'try the replica']);
    expect(tapB.ofType('STATUS').map((f) => [f.id, f.code])).toEqual([[0, 4], [1, 300], [2, 0xffffffff], [3, 5]]);
  });

  it('a handler failing with a code it may not send is answered APPLICATION_ERROR with its message (spec §13.2)', async () => {
    const forbidden: Array<[string, PipitError]> = [
      ['ok', new PipitError(0, 'zero')],
      ['unknownService', new PipitError('UNKNOWN_SERVICE', 'no such thing downstream')],
      ['unknownMethod', new PipitError('UNKNOWN_METHOD', 'no such method downstream')],
      ['unavailable', new PipitError('UNAVAILABLE', 'replica going away')],
      ['protocol', new PipitError('PROTOCOL_ERROR', 'downstream broke the protocol')],
      ['closed', new PipitError('CONNECTION_CLOSED', 'downstream connection closed')],
      ['reserved11', new PipitError(11, 'eleven')],
      ['reserved200', new PipitError(200, 'two hundred')],
      ['reserved255', new PipitError(255, 'two five five')],
    ];
    const allowed: Array<[string, PipitError, number]> = [
      ['cancelled', new PipitError('CANCELLED', 'gave up'), 1],
      ['invalid', new PipitError('INVALID_ARGUMENT', 'bad'), 4],
      ['app', new PipitError('APPLICATION_ERROR', 'failed'), 5],
      ['deadline', new PipitError('DEADLINE_EXCEEDED', 'slow downstream'), 6],
      ['exhausted', new PipitError('RESOURCE_EXHAUSTED', 'full'), 7],
      ['internal', new PipitError('INTERNAL', 'bug'), 10],
      ['app256', new PipitError(256, 'first application code'), 256],
    ];
    const service: Record<string, () => never> = {};
    for (const [name, e] of [...forbidden, ...allowed]) {
      service[name] = () => {
        throw e;
      };
    }
    const pair = new Pair({}, { services: { s: service } });
    const tapB = new Tap(pair.b.session);
    const calls = [...forbidden, ...allowed].map(([name]) => track(pair.a.session.call('s', name, '')));
    await pair.settle();
    await Promise.all(calls.map((c) => c.promise));
    const sent = tapB.ofType('STATUS').map((f) => [f.code, f.message]);
    expect(sent).toEqual([
      ...forbidden.map(([, e]) => [5, e.message]),
      ...allowed.map(([, e, code]) => [code, e.message]),
    ]);
    expect(calls.map((c) => c.error!.code)).toEqual([
      ...forbidden.map(() => 'APPLICATION_ERROR'),
      ...allowed.map(([, e]) => e.code),
    ]);
  });

  it('CONNECTION_CLOSED has the local-only status 11; 11 from the wire reads as UNKNOWN (spec §13.1)', () => {
    expect(new PipitError('CONNECTION_CLOSED').status).toBe(11);
    expect([new PipitError(11).code, new PipitError(11).status]).toEqual(['UNKNOWN', 11]);
  });

  it('async handlers answer when their promise resolves, not before', async () => {
    const gate = deferred<string>();
    const pair = new Pair({}, { services: { s: { async slow(p: Buffer) { return `${p.toString()}:${await gate.promise}`; } } } });
    const o = track(pair.a.session.call('s', 'slow', 'req'));
    await pair.settle();
    expect(o.pending).toBe(true);
    expect(pair.b.session.incomingCalls).toBe(1);
    expect(pair.a.session.outgoingCalls).toBe(1);
    gate.resolve('done');
    await pair.settle();
    await o.promise;
    expect(o.value!.toString()).toBe('req:done');
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('an unknown service is UNKNOWN_SERVICE and an unknown method on a known service UNKNOWN_METHOD', async () => {
    const pair = new Pair({}, { services: { db: { query: () => 'ok' } } });
    const tapB = new Tap(pair.b.session);
    const svc = track(pair.a.session.call('nope', 'query', ''));
    const meth = track(pair.a.session.call('db', 'drop', ''));
    const inherited = track(pair.a.session.call('db', 'toString', ''));
    await pair.settle();
    await Promise.all([svc.promise, meth.promise, inherited.promise]);
    expect([svc.error!.code, svc.error!.status, svc.error!.message]).toEqual(['UNKNOWN_SERVICE', 2, 'unknown service "nope"']);
    expect([meth.error!.code, meth.error!.status, meth.error!.message]).toEqual(['UNKNOWN_METHOD', 3, 'unknown method "db.drop"']);
    // Object.prototype methods are not routes.
    expect(inherited.error!.code).toBe('UNKNOWN_METHOD');
    expect(tapB.ofType('STATUS').map((f) => f.code)).toEqual([2, 3, 3]);
  });

  it('a handler result that is not a payload is INTERNAL', async () => {
    const pair = new Pair({}, {
      services: { s: { obj: () => ({ a: 1 }), num: () => 42, asyncObj: async () => new Date(0), bool: () => true } },
    });
    const outs = ['obj', 'num', 'asyncObj', 'bool'].map((m) => track(pair.a.session.call('s', m, '')));
    await pair.settle();
    await Promise.all(outs.map((o) => o.promise));
    expect(outs.map((o) => [o.error?.code, o.error?.status])).toEqual([
      ['INTERNAL', 10], ['INTERNAL', 10], ['INTERNAL', 10], ['INTERNAL', 10],
    ]);
    expect(outs[0]!.error!.message).toBe('handler result must be a Uint8Array, a string, { payload, text } or nothing, got an object (Object)');
    expect(outs[1]!.error!.message).toBe('handler result must be a Uint8Array, a string, { payload, text } or nothing, got number');
    expect(outs[2]!.error!.message).toBe('handler result must be a Uint8Array, a string, { payload, text } or nothing, got an object (Date)');
    expect(outs[3]!.error!.message).toBe('handler result must be a Uint8Array, a string, { payload, text } or nothing, got boolean');
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('metadata travels to the handler', async () => {
    let got: Record<string, string> | undefined;
    const pair = new Pair({}, { services: { s: { m: (_p: Buffer, ctx: HandlerContext) => void (got = { ...ctx.metadata }) } } });
    const o = track(pair.a.session.call('s', 'm', '', { metadata: { tenant: 'acme', trace: 'ab12' } }));
    await pair.settle();
    await o.promise;
    expect(o.error).toBeUndefined();
    expect(got).toEqual({ tenant: 'acme', trace: 'ab12' });
  });
});

describe('concurrency', () => {
  it('both peers call each other at the same time on one connection, with independent id spaces', async () => {
    const pair = new Pair(
      { services: { a: { who: (p: Buffer) => `a got ${p.toString()}` } } },
      { services: { b: { who: (p: Buffer) => `b got ${p.toString()}` } } },
    );
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    const fromA = [0, 1, 2].map((i) => track(pair.a.session.call('b', 'who', `A${i}`)));
    const fromB = [0, 1, 2].map((i) => track(pair.b.session.call('a', 'who', `B${i}`)));
    await pair.settle();
    await Promise.all([...fromA, ...fromB].map((o) => o.promise));
    expect(fromA.map((o) => o.value!.toString())).toEqual(['b got A0', 'b got A1', 'b got A2']);
    expect(fromB.map((o) => o.value!.toString())).toEqual(['a got B0', 'a got B1', 'a got B2']);
    // Both sides used ids 0, 1, 2 for their own requests.
    expect(tapA.ofType('REQUEST').map((f) => f.id)).toEqual([0, 1, 2]);
    expect(tapB.ofType('REQUEST').map((f) => f.id)).toEqual([0, 1, 2]);
    for (const s of [pair.a.session, pair.b.session]) {
      expect(s.outgoingCalls).toBe(0);
      expect(s.incomingCalls).toBe(0);
    }
  });

  it('many calls in flight are answered out of order (reverse) and each gets its own answer', async () => {
    const gates: Array<Deferred<void>> = [];
    const pair = new Pair({}, {
      services: {
        s: {
          async m(p: Buffer) {
            const g = deferred();
            gates.push(g);
            await g.promise;
            return `re:${p.toString()}`;
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const n = 200;
    const outs = Array.from({ length: n }, (_, i) => track(pair.a.session.call('s', 'm', `q${i}`)));
    await pair.settle();
    expect(gates).toHaveLength(n);
    expect(pair.a.session.outgoingCalls).toBe(n);
    expect(pair.b.session.incomingCalls).toBe(n);
    const order: number[] = [];
    outs.forEach((o, i) => void o.promise.then(() => order.push(i)));
    for (let i = n - 1; i >= 0; i--) {
      gates[i]!.resolve();
      await pair.settle(2);
    }
    await pair.settle();
    await Promise.all(outs.map((o) => o.promise));
    expect(outs.map((o) => o.value?.toString())).toEqual(Array.from({ length: n }, (_, i) => `re:q${i}`));
    expect(order).toEqual(Array.from({ length: n }, (_, i) => n - 1 - i));
    expect(tapB.ofType('RESPONSE').map((f) => f.id)).toEqual(Array.from({ length: n }, (_, i) => n - 1 - i));
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('ids are reused and stay one byte: 10,000 sequential db/query calls cost exactly 83 bytes each', async () => {
    const payload = pattern(32, 7);
    const answer = pattern(32, 8);
    const pair = new Pair({}, { services: { db: { query: () => answer } } });
    pair.flush(); // HELLOs
    const a0 = pair.a.sentBytes;
    const b0 = pair.b.sentBytes;
    for (let i = 0; i < 10_000; i++) {
      const beforeA = pair.a.sentBytes;
      const beforeB = pair.b.sentBytes;
      const p = pair.a.session.call('db', 'query', payload);
      pair.flush();
      const v = await p;
      const req = pair.a.sentBytes - beforeA;
      const res = pair.b.sentBytes - beforeB;
      if (req !== 46 || res !== 37 || !v.equals(answer)) {
        expect({ call: i, req, res, same: v.equals(answer) }).toEqual({ call: i, req: 46, res: 37, same: true });
      }
    }
    expect(pair.a.sentBytes - a0 + (pair.b.sentBytes - b0)).toBe(83 * 10_000);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('the exact bytes of the reference call match spec/PROTOCOL.md §16', async () => {
    const payload = pattern(32, 3);
    const answer = pattern(32, 4);
    const pair = new Pair({}, { services: { db: { query: () => answer } } });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    pair.flush();
    const markA = tapA.frames.length;
    const markB = tapB.frames.length;
    const bytesA: Uint8Array[] = [];
    const bytesB: Uint8Array[] = [];
    const p = pair.a.session.call('db', 'query', payload);
    bytesA.push(...pair.a.session.takeOutput());
    const hexA = Buffer.concat(bytesA).toString('hex');
    expect(hexA).toBe('2a000001' + '00' + '026462' + '057175657279' + payload.toString('hex'));
    pair.b.session.receive(pair.b.decoder.push(Buffer.from(hexA, 'hex')), 0);
    bytesB.push(...pair.b.session.takeOutput());
    const hexB = Buffer.concat(bytesB).toString('hex');
    expect(hexB).toBe('21000012' + '00' + answer.toString('hex'));
    pair.a.session.receive(pair.a.decoder.push(Buffer.from(hexB, 'hex')), 0);
    expect((await p).equals(answer)).toBe(true);
    expect(tapA.since(markA).map((f) => f.bytes)).toEqual([46]);
    expect(tapB.since(markB).map((f) => f.bytes)).toEqual([37]);
  });

  it('128 concurrent calls use one-byte ids 0..127; the 129th gets id 128 (two bytes) and the ids come back', async () => {
    const gates: Array<Deferred<void>> = [];
    const pair = new Pair({}, {
      services: {
        s: {
          async m() {
            const g = deferred();
            gates.push(g);
            await g.promise;
          },
        },
      },
    });
    const tapA = new Tap(pair.a.session);
    pair.flush();
    const round = async (n: number): Promise<number[]> => {
      const mark = tapA.frames.length;
      const outs = Array.from({ length: n }, () => track(pair.a.session.call('s', 'm', '')));
      await pair.settle();
      expect(gates).toHaveLength(n);
      for (const g of gates.splice(0)) g.resolve();
      await pair.settle();
      await Promise.all(outs.map((o) => o.promise));
      expect(outs.every((o) => o.value !== undefined && o.value.length === 0)).toBe(true);
      expect(pair.a.session.outgoingCalls).toBe(0);
      return tapA.ofType('REQUEST', mark).map((f) => f.id);
    };
    const first = await round(128);
    expect([...first].sort((x, y) => x - y)).toEqual(Array.from({ length: 128 }, (_, i) => i));
    const second = await round(129);
    expect([...second].sort((x, y) => x - y)).toEqual(Array.from({ length: 129 }, (_, i) => i));
    // Everything freed again: the next call gets a small id.
    const third = await round(3);
    expect(Math.max(...third)).toBeLessThan(128);
  });
});

describe('exactly one outcome per call', () => {
  it('a late response after a local timeout is absorbed, and the id is reused only after that terminal frame', async () => {
    const gate = deferred<string>();
    const pair = new Pair({}, { services: { s: { slow: () => gate.promise, fast: () => 'fast' } } });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    pair.flush();
    const slow = track(pair.a.session.call('s', 'slow', 'x', { timeout: 50 }, pair.now));
    await pair.settle();
    // Only the caller's clock runs out (the responder was slower to see the request).
    pair.now += 50;
    pair.a.session.tick(pair.now);
    await slow.promise;
    expect(slow.error!.code).toBe('DEADLINE_EXCEEDED');
    expect(slow.error!.message).toBe('s.slow did not finish before its deadline');
    // The id is still held: the call waits for its terminal frame.
    expect(pair.a.session.outgoingCalls).toBe(1);
    // The responder answers before it sees the CANCEL.
    gate.resolve('too late');
    await turn();
    await turn();
    const lateMark = tapB.frames.length;
    const reqMark = tapA.frames.length;
    // A new call before the terminal frame arrives cannot take id 0.
    const mid = track(pair.a.session.call('s', 'fast', ''));
    expect(tapA.ofType('REQUEST', reqMark)).toHaveLength(0);
    pair.flush();
    expect(tapA.ofType('CANCEL').map((f) => f.id)).toEqual([0]);
    expect(tapA.ofType('REQUEST', reqMark).map((f) => f.id)).toEqual([1]);
    expect(tapB.plain(lateMark)[0]).toEqual({ type: 'RESPONSE', flags: ['END', 'TEXT'], id: 0, payload: Buffer.from('too late').toString('hex') });
    await mid.promise;
    expect(mid.value!.toString()).toBe('fast');
    expect(slow.settlements).toBe(1);
    expect(slow.value).toBeUndefined();
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.a.closed).toBeUndefined();
    expect(pair.b.closed).toBeUndefined();
    // Id 0 is free again.
    const after = tapA.frames.length;
    const again = track(pair.a.session.call('s', 'fast', ''));
    pair.flush();
    await again.promise;
    expect(tapA.ofType('REQUEST', after).map((f) => f.id)).toEqual([0]);
  });

  it('RESPONSE then STATUS(OK), STATUS(OK) alone, and a non-OK STATUS after a message settle once each', async () => {
    const { end, tap } = lone();
    const s = end.session;
    const c0 = track(s.call('x', 'y', ''));
    const c1 = track(s.call('x', 'y', ''));
    const c2 = track(s.call('x', 'y', ''));
    tap.drain();
    inject(end, [
      { type: 'RESPONSE', flags: [], id: 0, payload: 'aa' },
      { type: 'STATUS', flags: [], id: 0, code: 0, message: '' },
      { type: 'STATUS', flags: [], id: 1, code: 0, message: '' },
      { type: 'RESPONSE', flags: [], id: 2, payload: 'bb' },
      { type: 'STATUS', flags: [], id: 2, code: 7, message: 'too much' },
    ]);
    await Promise.all([c0.promise, c1.promise, c2.promise]);
    expect(c0.value!.toString('hex')).toBe('aa');
    expect(c1.value!.length).toBe(0);
    expect([c2.value, c2.error!.code, c2.error!.message]).toEqual([undefined, 'RESOURCE_EXHAUSTED', 'too much']);
    expect([c0.settlements, c1.settlements, c2.settlements]).toEqual([1, 1, 1]);
    expect(s.outgoingCalls).toBe(0);
    expect(end.closed).toBeUndefined();
    expect(tap.drain()).toEqual([]);
  });

  it('a reserved status number arrives as UNKNOWN with the number kept', async () => {
    const { end } = lone();
    const c = track(end.session.call('x', 'y', ''));
    inject(end, [{ type: 'STATUS', flags: [], id: 0, code: 42, message: 'from the future' }]);
    await c.promise;
    expect([c.error!.code, c.error!.status, c.error!.message]).toEqual(['UNKNOWN', 42, 'from the future']);
  });
});
