/**
 * Cancellation, deadlines, graceful close and protocol errors between two processes. The
 * other process reports what its handlers saw (ctx.signal, ctx.deadline) over IPC.
 */
import { describe, expect, it } from 'vitest';
import { performance } from 'node:perf_hooks';
import { connect, listen, type Peer, type PipitError } from '../../bindings/index.js';
import { scaled } from '../helpers/slow.js';
import { RawPeer, clientProcess, hex, serverProcess, socketPath, within } from '../helpers/harness.js';


describe('cancellation', () => {
  it('aborts the handler’s ctx.signal in the other process when the caller aborts', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const peer = await connect(path);

    const ac = new AbortController();
    const call = peer.call('db', 'hang', 'c1', { signal: ac.signal });
    await child.next('entered', { tag: 'c1' });
    const t0 = performance.now();
    ac.abort();
    await expect(call).rejects.toMatchObject({ code: 'CANCELLED' });
    const abortMs = performance.now() - t0;
    console.log(`abort: the call failed CANCELLED ${abortMs.toFixed(1)} ms later (limit ${scaled(50)} ms)`);
    expect(abortMs).toBeLessThan(scaled(50));
    expect(await child.next('aborted', { tag: 'c1' })).toMatchObject({ code: 'CANCELLED' });

    // A stream: the producer's signal fires and its generator is closed (finally runs).
    const ac2 = new AbortController();
    const rows = peer.stream('db', 'rows', 'inf', { signal: ac2.signal, credit: 4 });
    let read = 0;
    const reading = (async () => {
      for await (const _ of rows) if (++read === 20) ac2.abort();
    })();
    await expect(reading).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(read).toBe(20);
    expect(await child.next('aborted', { tag: 'inf' })).toMatchObject({ method: 'rows', code: 'CANCELLED' });
    await child.next('rows-closed', { tag: 'inf' });

    // Leaving a for-await early cancels the same way.
    for await (const row of peer.stream('db', 'rows', 'inf')) if (row.toString() === '5') break;
    expect(await child.next('aborted', { tag: 'inf' })).toMatchObject({ code: 'CANCELLED' });
    await child.next('rows-closed', { tag: 'inf' });

    // The server holds no call afterwards; the connection is still good.
    expect(JSON.parse((await peer.call('db', 'stats')).toString())).toMatchObject({ incoming: 1 });
    await peer.close();
  });
});

describe('deadlines', () => {
  it('sends the timeout with the request; both sides end the call', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const peer = await connect(path);

    // Long enough for the request to reach the handler before it expires: 150 ms on the
    // reference machine (under qemu, armhf, a handler entered 136 ms after that had passed).
    const timeout = scaled(150);
    const t0 = performance.now();
    const call = peer.call('db', 'hang', 'd1', { timeout, metadata: { trace: 't-1' } });
    // Settled from the start: on a slow machine the call can fail before the handler reports.
    const failed = call.then(() => null, (e: PipitError) => e);
    const entered = await child.next('entered', { tag: 'd1' });
    // The deadline travelled: the handler sees it (relative to its own clock) and the metadata.
    expect(entered.metadata).toEqual({ trace: 't-1' });
    expect(entered.remainingMs).toBeGreaterThan(0);
    expect(entered.remainingMs).toBeLessThanOrEqual(timeout);
    expect(await failed).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    const elapsed = performance.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(timeout - 1);
    expect(elapsed).toBeLessThan(timeout + scaled(850));
    // Its signal fired: by its own deadline or by the caller's CANCEL, whichever came first.
    expect(['DEADLINE_EXCEEDED', 'CANCELLED']).toContain((await child.next('aborted', { tag: 'd1' })).code);
    console.log(`timeout ${timeout} ms: the handler entered with ${entered.remainingMs.toFixed(1)} ms left; the caller failed after ${elapsed.toFixed(1)} ms (limit ${timeout + scaled(850)} ms)`);
    await peer.close();
  });

  it('enforces the deadline on the responder by itself (a caller that never cancels)', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const raw = await RawPeer.connect(path);
    const t0 = performance.now();
    raw.write([
      { type: 'REQUEST', flags: [], id: 1, service: 'db', method: 'hang', ext: { deadlineMs: 100 }, payload: hex('raw') },
    ]);
    const status = await raw.frame((f) => f.type === 'STATUS' && f.id === 1);
    const elapsed = performance.now() - t0;
    expect(status.code).toBe(6); // DEADLINE_EXCEEDED
    expect(elapsed).toBeGreaterThanOrEqual(99);
    expect(await child.next('aborted', { tag: 'raw' })).toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    raw.socket.end();
    await raw.closed;
  });

  it('ends a handler that never settles (and ignores its signal) by the caller’s deadline', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const peer = await connect(path);
    const t0 = performance.now();
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, (_, i) => peer.call('db', 'forever', String(i), { timeout: 100 + i * 10 })),
    );
    const elapsed = performance.now() - t0;
    for (const r of results) expect(r).toMatchObject({ status: 'rejected', reason: { code: 'DEADLINE_EXCEEDED' } });
    expect(elapsed).toBeGreaterThanOrEqual(189);
    expect(elapsed).toBeLessThan(190 + scaled(1310));
    console.log(`timeouts 100–190 ms: the last of 10 calls failed after ${elapsed.toFixed(1)} ms (limit ${190 + scaled(1310)} ms)`);
    await child.many('entered', 10, { method: 'forever' });
    // Nothing is held for them on either side; later calls are served normally.
    expect(JSON.parse((await peer.call('db', 'stats')).toString())).toMatchObject({ incoming: 1 });
    expect((await peer.call('db', 'query', 'after')).toString()).toBe('q:after');
    expect(peer.session.nextDeadline()).toBe(Infinity);
    await peer.close();
  });
});

describe('graceful close', () => {
  it('lets calls in flight finish when the client closes; new calls fail UNAVAILABLE', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const peer = await connect(path);
    const inFlight = [0, 1, 2].map((i) => peer.call('db', 'gate', String(i)));
    const stream = peer.stream('db', 'rows', '300', { credit: 2 });
    await child.many('entered', 3, { method: 'gate' });
    const first = await stream.next();
    expect(first.value?.toString()).toBe('0');

    const closing = peer.close();
    await expect(peer.call('db', 'query', 'new')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await expect(peer.stream('db', 'rows', '3').toArray()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(peer.closed).toBe(false);

    child.send({ cmd: 'release' });
    expect((await Promise.all(inFlight)).map(String)).toEqual(['done:0', 'done:1', 'done:2']);
    const rest = (await stream.toArray()).map(String);
    expect(rest.length).toBe(299);
    expect(rest.at(-1)).toBe('299');
    await closing;
    expect(await peer.whenClosed).toBeNull();
    expect(await child.next('disconnect')).toMatchObject({ code: null });
  });

  it('lets calls in flight finish when the server closes; calls after its GOAWAY fail UNAVAILABLE', async () => {
    const path = socketPath();
    const gates: Array<() => void> = [];
    let entered!: () => void;
    const allEntered = new Promise<void>((r) => (entered = r));
    const server = await listen(path, {
      services: {
        db: {
          query: (p: Buffer) => `q:${p}`,
          gate(p: Buffer) {
            return new Promise<string>((resolve) => {
              gates.push(() => resolve(`done:${p}`));
              if (gates.length === 3) entered();
            });
          },
        },
      },
    });
    const connected = new Promise<Peer>((resolve) => server.once('connection', resolve));
    const disconnected = new Promise<PipitError | null>((resolve) => server.once('disconnect', (_p, e) => resolve(e)));
    const child = await clientProcess(path);
    const peer = await connected;
    // The client makes 3 calls; once the first is answered (which is after our GOAWAY,
    // on the same ordered stream) it tries one more.
    const report = child.next('gated-done');
    child.send({ cmd: 'gated', n: 3 });
    await allEntered;

    const closed = server.close();
    await expect(peer.call('ui', 'notify', 'x')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    for (const g of gates.splice(0)) g();
    expect(await report).toEqual({
      ev: 'gated-done',
      results: ['done:0', 'done:1', 'done:2'],
      after: { ok: false, code: 'UNAVAILABLE' },
      closed: null,
    });
    await within(closed, 5000, 'server.close()');
    expect(await disconnected).toBeNull();
    expect(server.peers.size).toBe(0);
    await expect(connect(path)).rejects.toMatchObject({ code: 'UNAVAILABLE' });
  });
});

describe('protocol errors', () => {
  it('close only the offending connection, with PROTOCOL_ERROR', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const good = await connect(path);
    await child.next('connection');
    expect((await good.call('db', 'query', 'before')).toString()).toBe('q:before');

    const raw = await RawPeer.connect(path);
    await child.next('connection');
    raw.write([{ type: 'REQUEST', flags: ['TEXT'], id: 1, service: 'db', method: 'query', payload: hex('ok') }]);
    expect(await raw.frame((f) => f.type === 'RESPONSE' && f.id === 1)).toMatchObject({ flags: ['END', 'TEXT'], payload: hex('q:ok') });
    // Then garbage: a frame of reserved type 0xB.
    raw.write(Buffer.from('0100000b00ffffffff', 'hex'));
    const error = await raw.frame((f) => f.type === 'ERROR');
    expect(error.code).toBe(9); // PROTOCOL_ERROR
    expect(error.message).toMatch(/reserved frame type/);
    await raw.closed;
    expect(await child.next('disconnect')).toMatchObject({ code: 'PROTOCOL_ERROR' });

    // The other connection to the same server is unaffected.
    const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => good.call('db', 'query', String(i))));
    expect(answers.map(String)).toEqual(Array.from({ length: 100 }, (_, i) => `q:${i}`));
    expect(good.closed).toBe(false);
    expect(JSON.parse((await good.call('db', 'stats')).toString())).toMatchObject({ peers: 1 });
    await good.close();
  });
});
