/**
 * Session lifecycle: GOAWAY and drain, protocol violations (ERROR sent, everything fails
 * with PROTOCOL_ERROR), ERROR received, transport loss, and PING.
 */
import { describe, expect, it } from 'vitest';
import { Pair } from './helpers/pair.js';
import { encodeFrames, type VFrame } from './helpers/frames.js';
import { Tap, consume, deferred, inject, lone, track, turn, type Outcome, type StreamOutcome, parked } from './helpers/session-kit.js';
import { PipitError, ProtocolError } from '../bindings/errors.js';
import { CODEC_ERROR_NAMES, Status } from '../bindings/constants.js';

const codecNames = Object.fromEntries(CODEC_ERROR_NAMES.map((n) => [n, true]));


async function microtasks(n = 10): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

describe('GOAWAY', () => {
  it('drains: calls issued before complete, calls crossing it fail UNAVAILABLE unrun, new calls fail, both close with null', async () => {
    const onB = parked();
    const onA = parked();
    let ranAfter = 0;
    const pair = new Pair(
      { services: { back: onA.service } },
      { services: { s: onB.service, after: { m: () => void ranAfter++, *g() { ranAfter++; yield 'x'; } } } },
    );
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    pair.flush();
    const c1 = track(pair.a.session.call('s', 'wait', 'one')); // seq 1
    const c2 = consume(pair.a.session.stream('s', 'feed', '')); // seq 2
    const back = track(pair.b.session.call('back', 'wait', 'from b')); // the other direction
    await pair.settle();
    expect(onB.calls).toHaveLength(2);
    expect(onA.calls).toHaveLength(1);

    // B goes away; A, not knowing yet, sends two more calls that cross the GOAWAY.
    pair.b.session.goAway(Status.UNAVAILABLE, 'maintenance');
    const c3 = track(pair.a.session.call('after', 'm', ''));
    const c4 = consume(pair.a.session.stream('after', 'g', ''));
    await pair.settle();
    await Promise.all([c3.promise, c4.done]);
    expect(ranAfter).toBe(0);
    expect([c3.error?.code, c3.error?.status, c3.error?.message]).toEqual([
      'UNAVAILABLE', 8, 'the peer is going away: maintenance; the call was not processed',
    ]);
    expect([c4.ends, c4.error?.code]).toEqual([1, 'UNAVAILABLE']);
    // GOAWAY(N): B had received A's requests 1 and 2; A had received one request from B.
    expect(tapB.plain().filter((f) => f.type === 'GOAWAY')).toEqual([{ type: 'GOAWAY', flags: [], id: 2, code: 8, message: 'maintenance' }]);
    expect(tapA.plain().filter((f) => f.type === 'GOAWAY')).toEqual([{ type: 'GOAWAY', flags: [], id: 1, code: 0, message: '' }]);
    // B answered nothing for the discarded calls.
    expect(tapB.frames.filter((f) => f.type === 'STATUS' || f.type === 'RESPONSE')).toEqual([]);
    expect(pair.a.session.outgoingCalls).toBe(2);

    // New calls, either way, fail at once and are not sent.
    const requestsBefore = tapA.ofType('REQUEST').length + tapB.ofType('REQUEST').length;
    const n1 = track(pair.a.session.call('s', 'wait', ''));
    const n2 = track(pair.b.session.call('back', 'wait', ''));
    const n3 = consume(pair.a.session.stream('s', 'feed', ''));
    await Promise.all([n1.promise, n2.promise, n3.done]);
    expect([n1.error?.code, n2.error?.code, n3.error?.code]).toEqual(['UNAVAILABLE', 'UNAVAILABLE', 'UNAVAILABLE']);
    await pair.settle();
    expect(tapA.ofType('REQUEST').length + tapB.ofType('REQUEST').length).toBe(requestsBefore);
    expect(pair.a.session.draining).toBe(true);
    expect(pair.b.session.draining).toBe(true);
    expect([pair.a.closed, pair.b.closed]).toEqual([undefined, undefined]);

    // The calls in flight finish normally, in both directions.
    onB.calls[0]!.gate.resolve('r1');
    onB.calls[1]!.gate.resolve('r2');
    await pair.settle();
    expect([pair.a.closed, pair.b.closed]).toEqual([undefined, undefined]); // B still waits for A's answer
    onA.calls[0]!.gate.resolve('r-back');
    await pair.settle();
    await Promise.all([c1.promise, c2.done, back.promise]);
    expect(c1.value?.toString()).toBe('r1');
    expect(c2).toMatchObject({ items: ['r2'], ends: 1, error: undefined });
    expect(back.value?.toString()).toBe('r-back');
    expect(pair.a.closed).toBeNull();
    expect(pair.b.closed).toBeNull();
    expect(pair.a.session.closed && pair.b.session.closed).toBe(true);
    for (const s of [pair.a.session, pair.b.session]) {
      expect([s.outgoingCalls, s.incomingCalls, s.nextDeadline()]).toEqual([0, 0, Infinity]);
    }
    // A transport end after a clean drain changes nothing.
    pair.cut();
    expect([pair.a.closed, pair.b.closed]).toEqual([null, null]);
  });

  it('with nothing open, GOAWAY closes both sides at once, cleanly', async () => {
    const pair = new Pair();
    const tapA = new Tap(pair.a.session);
    pair.flush();
    pair.a.session.goAway();
    pair.flush();
    expect(tapA.plain(1)).toEqual([{ type: 'GOAWAY', flags: [], id: 0, code: 0, message: '' }]);
    expect([pair.a.closed, pair.b.closed]).toEqual([null, null]);
    const late = track(pair.a.session.call('s', 'm', ''));
    await late.promise;
    expect(late.error?.code).toBe('UNAVAILABLE');
  });

  it('queued calls fail UNAVAILABLE when GOAWAY arrives; they were never sent', async () => {
    const onB = parked();
    const pair = new Pair({}, { maxInflight: 1, services: { s: onB.service } });
    const tapA = new Tap(pair.a.session);
    pair.flush();
    const first = track(pair.a.session.call('s', 'wait', '1'));
    const queued = [track(pair.a.session.call('s', 'wait', '2')), track(pair.a.session.call('s', 'wait', '3'))];
    await pair.settle();
    pair.b.session.goAway();
    await pair.settle();
    await Promise.all(queued.map((o) => o.promise));
    expect(queued.map((o) => [o.error?.code, o.error?.message])).toEqual([
      ['UNAVAILABLE', 'the peer is going away; the call was not sent'],
      ['UNAVAILABLE', 'the peer is going away; the call was not sent'],
    ]);
    expect(tapA.ofType('REQUEST')).toHaveLength(1);
    onB.calls[0]!.gate.resolve('ok');
    await pair.settle();
    await first.promise;
    expect(first.value?.toString()).toBe('ok');
    expect([pair.a.closed, pair.b.closed]).toEqual([null, null]);
  });

  it('a large request crossing the GOAWAY stops sending its fragments', async () => {
    let ran = 0;
    const pair = new Pair({ maxFrameBytes: 65536 }, { maxFrameBytes: 65536, services: { s: { m: () => void ran++ } } });
    const tapA = new Tap(pair.a.session);
    pair.flush();
    pair.b.session.goAway();
    const big = track(pair.a.session.call('s', 'm', Buffer.alloc(4 * 1024 * 1024)));
    await pair.settle();
    await big.promise;
    expect(big.error?.code).toBe('UNAVAILABLE');
    expect(ran).toBe(0);
    // At most the first batch of fragments went out before the GOAWAY arrived.
    expect(tapA.ofType('DATA').length).toBeLessThan(8);
    expect(pair.a.session.fragmentsPending).toBe(false);
    expect([pair.a.closed, pair.b.closed]).toEqual([null, null]);
  });
});

// ---------------------------------------------------------------------------------------

/**
 * A connection with work in every direction, then a violation injected into A as if B had
 * sent it: A's calls to B (unary id 0 with a deadline, stream id 1 with window 2) and B's
 * calls to A (unary id 0, stream id 1) are all open.
 */
async function busyPair(bHello = true) {
  const onA = parked();
  const onB = parked();
  const pair = new Pair({ services: { a: onA.service } }, { hello: bHello, services: { b: onB.service } });
  const tapA = new Tap(pair.a.session);
  const tapB = new Tap(pair.b.session);
  const aUnary = track(pair.a.session.call('b', 'wait', 'x', { timeout: 5000 }, 0));
  // Not read yet: its window of 2 stays used up by what arrives.
  const aStreamRaw = pair.a.session.stream('b', 'feed', '', { credit: 2 });
  const bUnary = track(pair.b.session.call('a', 'wait', 'y', { timeout: 5000 }, 0));
  const bStream = consume(pair.b.session.stream('a', 'feed', ''));
  await pair.settle();
  expect([pair.a.session.outgoingCalls, pair.a.session.incomingCalls]).toEqual([2, 2]);
  expect([onA.calls.length, onB.calls.length]).toEqual([2, 2]);
  const aStream = (): StreamOutcome => consume(aStreamRaw);
  return { pair, tapA, tapB, onA, onB, aUnary, aStream, bUnary, bStream };
}

const HELD_REQUEST: VFrame = { type: 'REQUEST', flags: [], id: 0, service: 'a', method: 'wait', payload: '' };

const violations: Array<{ name: string; frames: VFrame[] | Uint8Array; message: string; reason: string; bHello?: boolean }> = [
  { name: 'RESPONSE for an id with no open call', reason: 'E_NO_SUCH_CALL', frames: [{ type: 'RESPONSE', flags: ['END'], id: 9, payload: '' }], message: 'RESPONSE for call 9, which is not open' },
  { name: 'STATUS for an id with no open call', reason: 'E_NO_SUCH_CALL', frames: [{ type: 'STATUS', flags: [], id: 9, code: 0, message: '' }], message: 'STATUS for call 9, which is not open' },
  { name: 'REQUEST reusing an id still held', reason: 'E_ID_IN_USE', frames: [HELD_REQUEST], message: 'REQUEST reuses id 0 of a call still in progress' },
  {
    name: 'stream message beyond the credit granted', reason: 'E_NO_CREDIT',
    frames: [0, 1, 2].map((k) => ({ type: 'RESPONSE', flags: [], id: 1, payload: `0${k}` })),
    message: 'stream message on call 1 beyond the credit granted',
  },
  {
    name: 'second message on a unary call', reason: 'E_SECOND_MESSAGE',
    frames: [{ type: 'RESPONSE', flags: [], id: 0, payload: '01' }, { type: 'RESPONSE', flags: [], id: 0, payload: '02' }],
    message: 'second response message on unary call 0',
  },
  {
    name: 'TEXT on a RESPONSE continuation', reason: 'E_TEXT_CONTINUATION',
    frames: [{ type: 'RESPONSE', flags: ['FOLLOWS'], id: 0, payload: '01' }, { type: 'RESPONSE', flags: ['TEXT'], id: 0, payload: '02' }],
    message: 'TEXT flag on a continuation fragment of call 0',
  },
  {
    name: 'STATUS OK in the middle of a fragmented message', reason: 'E_OK_MID_MESSAGE',
    frames: [{ type: 'RESPONSE', flags: ['FOLLOWS'], id: 0, payload: '01' }, { type: 'STATUS', flags: [], id: 0, code: 0, message: '' }],
    message: 'STATUS OK on call 0 in the middle of a fragmented message',
  },
  { name: 'DATA for a held call that is not fragmented', reason: 'E_DATA_COMPLETE', frames: [{ type: 'DATA', flags: [], id: 0, payload: '01' }], message: 'DATA for call 0, whose request is already complete' },
  { name: 'a second HELLO', reason: 'E_BAD_HELLO', frames: [{ type: 'HELLO', flags: [], id: 1, settings: [] }], message: 'HELLO must be the first frame and sent once' },
  { name: 'HELLO not first', reason: 'E_BAD_HELLO', bHello: false, frames: [{ type: 'HELLO', flags: [], id: 1, settings: [] }], message: 'HELLO must be the first frame and sent once' },
  { name: 'HELLO with version 0', reason: 'E_BAD_HELLO', frames: [{ type: 'HELLO', flags: [], id: 0, settings: [] }], message: 'HELLO with version 0' },
  {
    name: 'a second GOAWAY', reason: 'E_SECOND_GOAWAY',
    frames: [{ type: 'GOAWAY', flags: [], id: 2, code: 0, message: '' }, { type: 'GOAWAY', flags: [], id: 2, code: 0, message: '' }],
    message: 'second GOAWAY',
  },
  { name: 'outstanding credit above 2^31-1', reason: 'E_CREDIT_OVERFLOW', frames: [{ type: 'CREDIT', flags: [], id: 1, credit: 2 ** 31 - 1 }], message: 'credit for call 1 exceeds 2147483647' },
  {
    name: 'initial credit above 2^31-1', reason: 'E_CREDIT_OVERFLOW',
    frames: [{ type: 'REQUEST', flags: ['STREAM', 'EXT'], id: 7, service: 'a', method: 'feed', ext: { credit: 2 ** 31 }, payload: '' }],
    message: 'initial credit 2147483648 of call 7 exceeds 2147483647',
  },
  { name: 'a codec error (reserved frame type)', frames: Uint8Array.from([0x01, 0, 0, 0x0b, 0x00]), message: 'reserved frame type', reason: 'E_UNKNOWN_TYPE' },
  { name: 'a codec error (reserved flag on CANCEL)', frames: Uint8Array.from([0x01, 0, 0, 0x14, 0x01]), message: 'reserved flag set', reason: 'E_BAD_FLAGS' },
];

describe('protocol violations by the peer', () => {
  it.each(violations.map((v) => [v.name, v] as const))('%s: ERROR sent, connection closed, every call fails PROTOCOL_ERROR', async (_, v) => {
    const { pair, tapA, tapB, onA, onB, aUnary, aStream: readAStream, bUnary, bStream } = await busyPair(v.bHello ?? true);
    const a = pair.a.session;
    const offset = pair.b.sentBytes; // where an injected codec error starts in A's input
    pair.flush();
    const frameMark = tapA.frames.length;
    const byteMark = tapA.raw().length;
    const bFramesBefore = tapB.frames.length;

    expect(() => inject(pair.a, v.frames, pair.now)).not.toThrow();

    // The message names the rule broken, and for a codec error where (spec §10.1).
    const message = v.reason in codecNames ? `${v.reason} at offset ${offset}: ${v.message}` : `${v.reason}: ${v.message}`;
    expect(pair.a.closed).toBeInstanceOf(ProtocolError);
    expect((pair.a.closed as ProtocolError).reason).toBe(v.reason);
    expect(pair.a.closed!.message).toBe(message);
    expect(a.closed).toBe(true);

    // Every call of A fails with PROTOCOL_ERROR at once; A's handlers are stopped.
    await microtasks();
    const aStream = readAStream();
    await aStream.done;
    expect([aUnary.settlements, aUnary.error?.code, aUnary.error?.message]).toEqual([1, 'PROTOCOL_ERROR', message]);
    expect([aStream.ends, aStream.error?.code]).toEqual([1, 'PROTOCOL_ERROR']);
    for (const c of onA.calls) {
      expect(c.ctx.signal.aborted).toBe(true);
      expect((c.ctx.signal.reason as PipitError).code).toBe('PROTOCOL_ERROR');
    }
    expect([a.outgoingCalls, a.incomingCalls, a.nextDeadline()]).toEqual([0, 0, Infinity]);

    // On the wire, A's last frame is ERROR(PROTOCOL_ERROR, message).
    pair.flush();
    const error = encodeFrames([{ type: 'ERROR', flags: [], id: 0, code: 9, message }]);
    const written = tapA.raw(byteMark);
    expect(written.subarray(written.length - error.length).toString('hex')).toBe(error.toString('hex'));
    expect(tapA.plain(frameMark).at(-1)).toEqual({ type: 'ERROR', flags: [], id: 0, code: 9, message });
    expect(tapA.plain(frameMark).filter((f) => f.type === 'ERROR')).toHaveLength(1);

    // Later calls fail fast, with nothing written.
    const later = track(a.call('b', 'wait', ''));
    const laterStream = consume(a.stream('b', 'feed', ''));
    await microtasks();
    expect([later.settlements, laterStream.ends]).toEqual([1, 1]);
    expect([later.error?.code, later.error?.message]).toEqual(['PROTOCOL_ERROR', message]);
    expect(laterStream.error?.code).toBe('PROTOCOL_ERROR');
    await expect(a.ping()).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message });
    await pair.settle();
    expect(tapA.raw(byteMark).length).toBe(written.length);

    // The peer got the ERROR and failed its calls with the same code.
    await bStream.done;
    expect(pair.b.closed).toBeInstanceOf(ProtocolError);
    expect(pair.b.closed!.message).toBe(`E_PEER: peer reported a protocol error: ${message}`);
    expect([bUnary.error?.code, bStream.error?.code]).toEqual(['PROTOCOL_ERROR', 'PROTOCOL_ERROR']);
    for (const c of onB.calls) expect(c.ctx.signal.aborted).toBe(true);
    // The peer answers nothing to an ERROR.
    expect(tapB.since(bFramesBefore).filter((f) => f.type !== 'GOAWAY')).toEqual([]);
    expect([pair.b.session.outgoingCalls, pair.b.session.incomingCalls, pair.b.session.nextDeadline()]).toEqual([0, 0, Infinity]);
  });

  it('frames before a codec error in the same chunk are still acted on, nothing after it', async () => {
    const { end, tap } = lone();
    tap.drain();
    const good = encodeFrames([{ type: 'PING', flags: [], id: 42 }]);
    const after = encodeFrames([{ type: 'PING', flags: [], id: 43 }]);
    inject(end, Buffer.concat([good, Buffer.from([0x01, 0, 0, 0x0b, 0x00]), after]));
    tap.drain();
    expect(tap.plain(1)).toEqual([
      { type: 'PONG', flags: [], id: 42 },
      { type: 'ERROR', flags: [], id: 0, code: 9, message: `E_UNKNOWN_TYPE at offset ${good.length}: reserved frame type` },
    ]);
    expect(end.closed).toBeInstanceOf(ProtocolError);
    // A dead session ignores further input without throwing.
    expect(() => inject(end, after)).not.toThrow();
    expect(tap.drain()).toEqual([]);
  });

  it('frames that crossed a terminal frame are ignored, not violations', async () => {
    const { end, tap } = lone({ services: { s: { m: () => 'x' } } });
    tap.drain();
    inject(end, [{ type: 'REQUEST', flags: [], id: 3, service: 's', method: 'm', payload: '' }]);
    expect(tap.drain().map((f) => [f.type, f.id])).toEqual([['RESPONSE', 3]]);
    inject(end, [
      { type: 'CANCEL', flags: [], id: 3 },
      { type: 'CREDIT', flags: [], id: 3, credit: 5 },
      { type: 'DATA', flags: [], id: 3, payload: '00' },
      { type: 'PONG', flags: [], id: 77 },
    ]);
    // An EXTENSION frame is skipped by the codec.
    inject(end, Uint8Array.from([0x02, 0, 0, 0xff, 0x00, 0x00]));
    expect(end.closed).toBeUndefined();
    expect(tap.drain()).toEqual([]);
    expect(end.session.incomingCalls).toBe(0);
  });
});

describe('ERROR from the peer', () => {
  async function receiveError(frames: VFrame[] | Uint8Array) {
    const { pair, tapA, onA, aUnary, aStream: readAStream } = await busyPair();
    pair.flush();
    const mark = tapA.raw().length;
    inject(pair.a, frames);
    await microtasks();
    const aStream = readAStream();
    await aStream.done;
    await pair.settle();
    return { pair, tapA, onA, aUnary, aStream, written: tapA.raw(mark) };
  }

  function expectAllFailed(r: { pair: Pair; onA: ReturnType<typeof parked>; aUnary: Outcome; aStream: StreamOutcome; written: Buffer }, code: string, status: number, message: string) {
    expect([r.aUnary.error?.code, r.aUnary.error?.status, r.aUnary.error?.message]).toEqual([code, status, message]);
    expect([r.aStream.ends, r.aStream.error?.code, r.aStream.error?.status]).toEqual([1, code, status]);
    for (const c of r.onA.calls) expect(c.ctx.signal.aborted).toBe(true);
    const a = r.pair.a.session;
    expect([a.closed, a.outgoingCalls, a.incomingCalls, a.nextDeadline()]).toEqual([true, 0, 0, Infinity]);
    // The receiver of ERROR sends nothing more.
    expect(r.written.length).toBe(0);
  }

  it('every call fails with the code of the ERROR (UNAVAILABLE)', async () => {
    const r = await receiveError([{ type: 'ERROR', flags: [], id: 0, code: 8, message: 'overloaded' }]);
    expectAllFailed(r, 'UNAVAILABLE', 8, 'peer closed the connection: overloaded');
    expect(r.pair.a.closed?.code).toBe('UNAVAILABLE');
    // Calls after the end fail the same way.
    const later = track(r.pair.a.session.call('b', 'wait', ''));
    await later.promise;
    expect([later.error?.code, later.error?.message]).toEqual(['UNAVAILABLE', 'peer closed the connection: overloaded']);
  });

  it('an application code in ERROR is kept', async () => {
    const r = await receiveError([{ type: 'ERROR', flags: [], id: 0, code: 4000, message: 'license expired' }]);
    expectAllFailed(r, 'APPLICATION_ERROR', 4000, 'peer closed the connection: license expired');
  });

  it('ERROR PROTOCOL_ERROR fails everything with PROTOCOL_ERROR; a non-zero id is ignored', async () => {
    // ERROR with id 5, code 9, "bad flags": 0b 00 00 0a 05 09 ...
    const r = await receiveError(Buffer.concat([Buffer.from([0x0b, 0, 0, 0x0a, 0x05, 0x09]), Buffer.from('bad flags')]));
    expectAllFailed(r, 'PROTOCOL_ERROR', 9, 'E_PEER: peer reported a protocol error: bad flags');
    expect(r.pair.a.closed).toBeInstanceOf(ProtocolError);
    expect((r.pair.a.closed as ProtocolError).reason).toBe('E_PEER');
  });
});

describe('transport loss', () => {
  it('a cut fails every pending call and stream CONNECTION_CLOSED at once, aborts handlers, leaves no deadline', async () => {
    const onA = parked();
    const onB = parked();
    const pair = new Pair({ services: { a: onA.service } }, { services: { b: onB.service } });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    const aCalls = [
      track(pair.a.session.call('b', 'wait', '1', { timeout: 1000 }, 0)),
      track(pair.a.session.call('b', 'wait', '2')),
    ];
    const bCalls = [track(pair.b.session.call('a', 'wait', '3', { timeout: 500 }, 0))];
    const aStreams = [consume(pair.a.session.stream('b', 'feed', '', { timeout: 2000 }, 0))];
    const bStreams = [consume(pair.b.session.stream('a', 'feed', ''))];
    await pair.settle();
    expect(onA.calls).toHaveLength(2);
    expect(onB.calls).toHaveLength(3);
    expect(pair.a.session.nextDeadline()).toBe(500);
    const marks = [tapA.frames.length, tapB.frames.length];

    pair.cut();
    await microtasks();
    for (const o of [...aCalls, ...bCalls]) {
      expect([o.settlements, o.error?.code, o.error?.message]).toEqual([1, 'CONNECTION_CLOSED', 'connection closed']);
    }
    await Promise.all([...aStreams, ...bStreams].map((s) => s.done));
    for (const s of [...aStreams, ...bStreams]) expect([s.ends, s.error?.code]).toEqual([1, 'CONNECTION_CLOSED']);
    for (const c of [...onA.calls, ...onB.calls]) {
      expect(c.ctx.signal.aborted).toBe(true);
      expect((c.ctx.signal.reason as PipitError).code).toBe('CONNECTION_CLOSED');
    }
    for (const end of [pair.a, pair.b]) {
      const s = end.session;
      expect([s.closed, s.outgoingCalls, s.incomingCalls, s.nextDeadline()]).toEqual([true, 0, 0, Infinity]);
      expect(end.closed?.code).toBe('CONNECTION_CLOSED');
    }
    // Aborted handlers write nothing, and time passing changes nothing.
    pair.advance(10_000);
    await pair.settle();
    expect([tapA.frames.length, tapB.frames.length]).toEqual(marks);
    expect(aCalls.every((o) => o.settlements === 1)).toBe(true);
  });

  it('calls and streams started after the connection ended fail CONNECTION_CLOSED at once (§10.3)', async () => {
    const pair = new Pair();
    pair.flush();
    pair.cut();
    const c = track(pair.a.session.call('s', 'm', ''));
    const st = consume(pair.a.session.stream('s', 'm', ''));
    await Promise.all([c.promise, st.done]);
    expect(c.error?.code).toBe('CONNECTION_CLOSED');
    expect(st.error?.code).toBe('CONNECTION_CLOSED');
    await expect(pair.a.session.ping()).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('a ping started after the connection ended fails CONNECTION_CLOSED at once', async () => {
    const pair = new Pair();
    const tapA = new Tap(pair.a.session);
    pair.flush();
    pair.cut();
    await expect(pair.a.session.ping()).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    pair.flush();
    expect(tapA.ofType('PING')).toHaveLength(0);
  });

  it('a ping waiting for its PONG fails when the connection ends', async () => {
    const pair = new Pair();
    pair.flush();
    const p = pair.a.session.ping(0);
    let outcome: unknown = 'pending';
    p.then((v) => (outcome = v), (e: PipitError) => (outcome = e.code));
    pair.cut();
    await microtasks();
    expect(outcome).toBe('CONNECTION_CLOSED');
  });

  it('the cause of a transport failure is kept', async () => {
    const { end } = lone();
    const c = track(end.session.call('s', 'm', ''));
    const cause = new Error('ECONNRESET');
    end.session.transportClosed(cause);
    await c.promise;
    expect(end.closed?.code).toBe('CONNECTION_CLOSED');
    expect(end.closed?.cause).toBe(cause);
    expect(c.error?.code).toBe('CONNECTION_CLOSED');
  });
});

describe('ping', () => {
  it('resolves with the round trip measured on the injected clock', async () => {
    const pair = new Pair();
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    pair.flush();
    pair.now = 100;
    const p1 = pair.a.session.ping(pair.now);
    pair.now = 103;
    const p2 = pair.a.session.ping(pair.now);
    pair.now = 110;
    pair.flush();
    expect(await p1).toBe(10);
    expect(await p2).toBe(7);
    expect(tapA.plain(1)).toEqual([{ type: 'PING', flags: [], id: 1 }, { type: 'PING', flags: [], id: 2 }]);
    expect(tapB.plain(1)).toEqual([{ type: 'PONG', flags: [], id: 1 }, { type: 'PONG', flags: [], id: 2 }]);
    expect(tapA.frames.slice(1).map((f) => f.bytes)).toEqual([5, 5]);
    // A PONG that matches nothing is ignored.
    inject(pair.a, [{ type: 'PONG', flags: [], id: 1 }]);
    expect(pair.a.closed).toBeUndefined();
    const p3 = pair.b.session.ping(pair.now);
    pair.now += 1;
    pair.flush();
    expect(await p3).toBe(1);
  });

  it('a ping answered while calls are in flight does not disturb them', async () => {
    const gate = deferred<string>();
    const pair = new Pair({}, { services: { s: { m: () => gate.promise } } });
    const c = track(pair.a.session.call('s', 'm', ''));
    await pair.settle();
    const p = pair.a.session.ping(pair.now);
    pair.now += 2;
    await pair.settle();
    expect(await p).toBe(2);
    gate.resolve('fine');
    await pair.settle();
    await c.promise;
    expect(c.value?.toString()).toBe('fine');
    await turn();
  });
});
