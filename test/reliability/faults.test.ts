/**
 * Faults over real Unix sockets, with the pipit side in a second process (test/fixtures/peer.mjs,
 * importing dist/bindings/index.js) and this process playing the other peer, raw or pipit:
 *  - the peer half-closes its socket (end() without close);
 *  - garbage follows valid frames in the same write;
 *  - handlers throw, reject, throw non-Errors, settle after their deadline, never settle;
 *  - GOAWAY lands in the middle of a burst of calls, with the server's answers held until it
 *    has left or racing the rest of the burst.
 */
import { describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import { connect, PipitError, type Peer } from '../../bindings/index.js';
import { T_GOAWAY } from '../../bindings/constants.js';
import { encodeFrames, type VFrame } from '../helpers/frames.js';
import { scaled } from '../helpers/slow.js';
import { Child, RawPeer, hex, rawServer, serverProcess, socketPath, within, type Msg, type PeerOptions } from '../helpers/harness.js';

/** The REQUEST frames a raw peer received, by the payload the fixture put in them (its tag). */
function byTag(raw: RawPeer): Map<string, VFrame> {
  const m = new Map<string, VFrame>();
  for (const f of raw.frames) if (f.type === 'REQUEST') m.set(Buffer.from(f.payload!, 'hex').toString(), f);
  return m;
}

/** A fixture server process on a fresh socket path. */
async function server(options: PeerOptions = {}): Promise<{ child: Child; path: string }> {
  const path = socketPath();
  return { child: await serverProcess(path, options), path };
}

const stats = (child: Child, gc = false): Promise<Msg> => child.ask({ cmd: 'stats', gc }, 'stats');

describe('half-closed socket', () => {
  it('the server half-closes: the client process fails its pending calls and streams CONNECTION_CLOSED at once, aborts its handlers, ends its side', async () => {
    const path = socketPath();
    const { server, next } = await rawServer(path);
    const child = Child.fork('peer.mjs', ['connect', path]);
    const raw = await next();
    await child.next('connected');
    // A call from the raw side that the client's handler holds open.
    raw.write([{ type: 'REQUEST', flags: [], id: 0, service: 'svc', method: 'hang', payload: hex('h') }]);
    const calls = [
      ...Array.from({ length: 20 }, (_, i) => ({ tag: `u${i}`, method: 'echo', payload: `u${i}` })),
      { tag: 's0', method: 'ticks', payload: 's0', stream: true },
      { tag: 's1', method: 'ticks', payload: 's1', stream: true },
    ];
    const results = child.ask({ cmd: 'calls', id: 1, calls }, 'results');
    await raw.count((f) => f.type === 'REQUEST', 22, 'requests');
    const req = byTag(raw);
    // Two calls answered, two items on each stream, then FIN without closing.
    raw.write([
      { type: 'RESPONSE', flags: ['END'], id: req.get('u0')!.id, payload: hex('r0') },
      { type: 'RESPONSE', flags: ['END'], id: req.get('u1')!.id, payload: hex('r1') },
      ...['s0', 's1'].flatMap((s): VFrame[] => [
        { type: 'RESPONSE', flags: [], id: req.get(s)!.id, payload: hex(`${s}-0`) },
        { type: 'RESPONSE', flags: [], id: req.get(s)!.id, payload: hex(`${s}-1`) },
      ]),
    ]);
    await child.next('settled', { tag: 'u1' });
    const t0 = performance.now();
    raw.socket.end();
    const r = await within(results, 2000, 'the pending calls failing after the FIN');
    const elapsed = performance.now() - t0;
    const res = new Map<string, Msg>(r.results.map((x: Msg) => [x.tag, x]));
    expect(res.get('u0')).toMatchObject({ ok: true, value: 'r0' });
    expect(res.get('u1')).toMatchObject({ ok: true, value: 'r1' });
    for (let i = 2; i < 20; i++) expect(res.get(`u${i}`)).toMatchObject({ ok: false, code: 'CONNECTION_CLOSED' });
    for (const s of ['s0', 's1']) expect(res.get(s)).toMatchObject({ ok: false, code: 'CONNECTION_CLOSED', items: [`${s}-0`, `${s}-1`] });
    expect(elapsed).toBeLessThan(scaled(500));
    expect(r).toMatchObject({ closed: true, outgoing: 0, incoming: 0 });
    // The client ends its side in turn: the socket closes on both ends, nothing lingers.
    await within(raw.ended, 1000, 'the client ending its side');
    await within(raw.closed, 1000, 'the socket closing');
    expect(await child.next('disconnect')).toMatchObject({ code: 'CONNECTION_CLOSED' });
    const s = await stats(child);
    expect(s).toMatchObject({ peers: 0, incoming: 0, outgoing: 0, aborted: { hang: 1 } });
    expect(s.resources).not.toContain('Timeout');
    console.log(`half-close: 18 calls and 2 streams failed CONNECTION_CLOSED ${elapsed.toFixed(1)} ms after the FIN (limit ${scaled(500)} ms)`);
    server.close();
  });

  it('a client half-closes: the server process aborts the handlers of its calls, empties its table, ends its side and keeps serving', async () => {
    const { child, path } = await server();
    const raw = await RawPeer.connect(path, { allowHalfOpen: true });
    await child.next('connection');
    raw.write([
      { type: 'REQUEST', flags: [], id: 0, service: 'svc', method: 'hang', payload: '' },
      { type: 'REQUEST', flags: [], id: 1, service: 'svc', method: 'never', payload: '' },
      { type: 'REQUEST', flags: ['STREAM', 'EXT'], id: 2, service: 'svc', method: 'ticks', ext: { credit: 2 }, payload: '' },
      { type: 'REQUEST', flags: [], id: 3, service: 'svc', method: 'echo', payload: hex('x') },
    ]);
    await raw.frame((f) => f.type === 'RESPONSE' && f.id === 3);
    await raw.count((f) => f.type === 'RESPONSE' && f.id === 2, 2, 'stream items');
    expect(await stats(child)).toMatchObject({ incoming: 3 });
    raw.socket.end();
    await within(raw.ended, 1000, 'the server ending its side');
    await within(raw.closed, 1000, 'the socket closing');
    expect(await child.next('disconnect')).toMatchObject({ code: 'CONNECTION_CLOSED' });
    const s = await stats(child);
    expect(s).toMatchObject({ peers: 0, incoming: 0, aborted: { hang: 1, never: 1 } });
    expect(s.counts['ticks-closed']).toBe(1);
    // Nothing was written after the FIN arrived, and the server still serves.
    const peer = await connect(path);
    expect((await peer.call('svc', 'echo', 'after')).toString()).toBe('after');
    await peer.close();
  });
});

/** Bytes that break the protocol, each after good frames in the same write. */
const GARBAGE: Array<[string, Buffer]> = [
  ['a reserved frame type', Buffer.from('0100000b00', 'hex')],
  ['the word ff ff ff ff (16 MiB claimed)', Buffer.concat([Buffer.from('ffffffff', 'hex'), Buffer.alloc(256 * 1024, 0xee)])],
  ['LENGTH 0', Buffer.from('00000007', 'hex')],
  ['an overlong id varint', Buffer.from('020000088000', 'hex')],
  ['RESPONSE with END and FOLLOWS', Buffer.from('03000052016f6b', 'hex')],
  ['a RESPONSE for a call never made', Buffer.from('020000027861', 'hex')],
  ['a second HELLO', Buffer.from('0100000001', 'hex')],
];

describe('garbage after valid frames', () => {
  it('fails the pending calls PROTOCOL_ERROR after acting on the good frames; the process survives every kind', async () => {
    const path = socketPath();
    const { server, next } = await rawServer(path);
    const child = Child.fork('peer.mjs', ['connect', path]);
    let raw = await next();
    await child.next('connected');
    const summary: string[] = [];
    for (const [k, [what, garbage]] of GARBAGE.entries()) {
      if (k > 0) {
        child.send({ cmd: 'connect', path });
        raw = await next();
        await child.next('connected');
      }
      raw.write([{ type: 'HELLO', flags: [], id: 1, settings: [] }]);
      raw.write([{ type: 'REQUEST', flags: [], id: 0, service: 'svc', method: 'hang', payload: hex(`h${k}`) }]);
      const calls = [
        ...Array.from({ length: 5 }, (_, i) => ({ tag: `g${i}`, method: 'echo', payload: `g${i}` })),
        { tag: 'st', method: 'ticks', payload: 'st', stream: true },
      ];
      const results = child.ask({ cmd: 'calls', id: k, calls }, 'results', { id: k });
      await raw.count((f) => f.type === 'REQUEST', 6, 'requests');
      const req = byTag(raw);
      // One write: an answer, a stream item, then the garbage.
      const good = encodeFrames([
        { type: 'RESPONSE', flags: ['END'], id: req.get('g0')!.id, payload: hex('answer') },
        { type: 'RESPONSE', flags: [], id: req.get('st')!.id, payload: hex('item') },
      ]);
      raw.write(Buffer.concat([good, garbage]));
      const r = await within(results, 2000, `the calls failing after ${what}`);
      const res = new Map<string, Msg>(r.results.map((x: Msg) => [x.tag, x]));
      expect(res.get('g0'), what).toMatchObject({ ok: true, value: 'answer' });
      for (let i = 1; i < 5; i++) expect(res.get(`g${i}`), what).toMatchObject({ ok: false, code: 'PROTOCOL_ERROR' });
      expect(res.get('st'), what).toMatchObject({ ok: false, code: 'PROTOCOL_ERROR', items: ['item'] });
      // The client tells us why, then closes.
      const error = await raw.frame((f) => f.type === 'ERROR', 'ERROR');
      expect(error.code, what).toBe(9);
      await within(raw.ended, 1000, `the client ending the connection after ${what}`);
      raw.socket.end();
      const d = await child.next('disconnect');
      expect(d.code, what).toBe('PROTOCOL_ERROR');
      summary.push(`${what}: ${d.reason} (${error.message})`);
    }
    const s = await stats(child);
    expect(child.alive).toBe(true);
    expect(s).toMatchObject({ peers: 0, incoming: 0, outgoing: 0, aborted: { hang: GARBAGE.length } });
    expect(s.resources).not.toContain('Timeout');
    console.log(`garbage after valid frames, each closed with PROTOCOL_ERROR:\n  ${summary.join('\n  ')}`);
    server.close();
  });
});

describe('handlers that fail', () => {
  it('throw, reject, throw non-Errors, settle after their deadline or never: each call gets its status, the server table empties, the process lives on', async () => {
    const { child, path } = await server();
    const peer = await connect(path);
    type Result = { what: string; ok: boolean; code?: string; status?: number; message?: string; items?: string[] };
    const call = (what: string, method: string, payload: string, timeout?: number): Promise<Result> =>
      peer.call('svc', method, payload, timeout === undefined ? {} : { timeout }).then(
        (v) => ({ what, ok: true, message: v.toString() }),
        (e: PipitError) => ({ what, ok: false, code: e.code, status: e.status, message: e.message }),
      );
    const stream = async (what: string, method: string): Promise<Result> => {
      const items: string[] = [];
      try {
        for await (const item of peer.stream('svc', method, '')) items.push(item.toString());
        return { what, ok: true, items };
      } catch (e) {
        return { what, ok: false, code: (e as PipitError).code, message: (e as PipitError).message, items };
      }
    };
    const burst: Array<Promise<Result>> = [];
    const kinds = ['undefined', 'null', 'number', 'string', 'object'];
    for (let i = 0; i < 10; i++) {
      burst.push(call('throws', 'throws', String(i)));
      burst.push(call('throwsValue', 'throwsValue', kinds[i % kinds.length]!));
      burst.push(call('rejects', 'rejects', String(i)));
      burst.push(call('rejectsApp', 'rejectsApp', ''));
      burst.push(call('never', 'never', '', 100));
      burst.push(call('resolvesLate', 'resolvesLate', '250', 50));
      burst.push(call('rejectsLate', 'rejectsLate', '250', 50));
      burst.push(stream('failsAfter3', 'failsAfter3'));
      burst.push(stream('badItem', 'badItem'));
      burst.push(call('echo', 'echo', `e${i}`));
    }
    const results = await Promise.all(burst);
    const of = (what: string): Result[] => results.filter((r) => r.what === what);
    for (const r of of('throws')) expect(r).toMatchObject({ ok: false, code: 'APPLICATION_ERROR', message: expect.stringMatching(/^throws \d$/) });
    for (const r of of('throwsValue')) {
      expect(r).toMatchObject({ ok: false, code: 'APPLICATION_ERROR' });
      expect(['handler failed', 'str string']).toContain(r.message);
    }
    for (const r of of('rejects')) expect(r).toMatchObject({ ok: false, code: 'APPLICATION_ERROR', message: expect.stringMatching(/^rejects \d$/) });
    for (const r of of('rejectsApp')) expect(r).toMatchObject({ ok: false, code: 'APPLICATION_ERROR', status: 300 });
    for (const w of ['never', 'resolvesLate', 'rejectsLate']) for (const r of of(w)) expect(r, w).toMatchObject({ ok: false, code: 'DEADLINE_EXCEEDED' });
    for (const r of of('failsAfter3')) expect(r).toMatchObject({ ok: false, code: 'APPLICATION_ERROR', message: 'stream broke after 3', items: ['a', 'b', 'c'] });
    for (const r of of('badItem')) expect(r).toMatchObject({ ok: false, code: 'INTERNAL', items: ['fine'] });
    for (const r of of('echo')) expect(r.ok).toBe(true);

    // Let the late handlers settle: their results must be dropped, not sent as a second
    // terminal frame (which this side would answer with a PROTOCOL_ERROR).
    await child.ask({ cmd: 'when', counts: { 'resolvesLate-settled': 10, 'rejectsLate-settled': 10 } }, 'reached');
    expect((await peer.call('svc', 'echo', 'still fine')).toString()).toBe('still fine');
    expect(peer.closed).toBe(false);
    const s = await stats(child);
    expect(child.alive).toBe(true);
    expect(s.incoming).toBe(0);
    expect(s.aborted.never).toBe(10);
    expect(s.counts).toMatchObject({ throws: 10, throwsValue: 10, rejects: 10, rejectsApp: 10, never: 10, resolvesLate: 10, rejectsLate: 10, failsAfter3: 10, badItem: 10 });
    expect(s.resources).not.toContain('Timeout');
    expect(peer.session.outgoingCalls).toBe(0);
    expect(peer.session.nextDeadline()).toBe(Infinity);
    await peer.close();
  });
});

/** The count of the first GOAWAY `peer` receives (§9.1: requests the other side received before it). */
function goawayCount(peer: Peer): Promise<number> {
  return new Promise((resolve) => {
    const session = peer.session;
    const receive = session.receive.bind(session);
    session.receive = (batch, now) => {
      for (let i = 0; i < batch.count; i++) if (batch.type(i) === T_GOAWAY) resolve(batch.id(i));
      receive(batch, now);
    };
  });
}

describe('GOAWAY during a burst', () => {
  // Held: the server's handlers wait until its GOAWAY has reached us, so no answer leaves
  // before it. Racing (five runs): answers leave while the rest of the burst still arrives,
  // and where the GOAWAY falls differs from run to run.
  it.each([
    ['held', true],
    ...[1, 2, 3, 4, 5].map((run) => [`racing, run ${run}`, false] as [string, boolean]),
  ])('%s: every call up to the GOAWAY’s count completes; every later one fails UNAVAILABLE and never ran on the server', async (_, hold) => {
    const { child, path } = await server({ maxInflight: 100_000 });
    const peer: Peer = await connect(path);
    await child.next('connection');
    const lastSeq = goawayCount(peer);
    // The server sends GOAWAY once 300 requests have reached the handler.
    await child.ask({ cmd: 'goaway-after', n: 300, hold }, 'armed');
    const N = 3000;
    const pad = 'p'.repeat(1000); // 3 MB in all: the burst is still arriving when GOAWAY leaves
    // Issued in order: call i is the (i + 1)th request on the connection.
    const settled = Promise.allSettled(Array.from({ length: N }, (_, i) => peer.call('svc', 'count', `${i}:${pad}`)));
    const accepted = await lastSeq;
    if (hold) child.send({ cmd: 'release' });
    const results = await settled;
    const ok: number[] = [];
    const codes = new Map<string, number>();
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') {
        expect(r.value.toString()).toBe(`${i}:${pad}`);
        ok.push(i);
      } else {
        const code = (r.reason as PipitError).code;
        codes.set(code, (codes.get(code) ?? 0) + 1);
      }
    });
    // The GOAWAY fell inside the burst, after the 300 requests that set it off.
    expect(accepted).toBeGreaterThanOrEqual(300);
    expect(accepted).toBeLessThan(N);
    // Exactly the calls it counted completed, and every other one is UNAVAILABLE.
    expect(ok).toEqual(Array.from({ length: accepted }, (_, i) => i));
    expect([...codes.entries()]).toEqual([['UNAVAILABLE', N - accepted]]);
    // The server ran exactly those, once each.
    const { handled } = await child.ask({ cmd: 'handled' }, 'handled');
    expect([...(handled as string[])].map(Number).sort((a, b) => a - b)).toEqual(ok);
    expect(await peer.whenClosed).toBeNull();
    expect(await child.next('disconnect')).toMatchObject({ code: null });
    console.log(`GOAWAY during a burst of ${N} (${hold ? 'held' : 'racing'}): GOAWAY counted ${accepted}; ${ok.length} completed, ${N - ok.length} UNAVAILABLE and never run`);
  });
});
