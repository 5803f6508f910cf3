/**
 * Calls and streams between two processes over a real Unix socket: both directions at
 * once, a large concurrent load, large messages next to small ones.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { connect, listen, type Peer } from '../../bindings/index.js';
import { clientProcess, serverProcess, socketPath, within } from '../helpers/harness.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('calls across processes', () => {
  it('serves calls in both directions at once', async () => {
    const path = socketPath();
    let notifyAnswers = 0;
    let nested = 0;
    const server = await listen(path, {
      services: {
        db: {
          query: (p: Buffer) => `q:${p}`,
          // While serving the client's call, call the client back on the same connection.
          async nested(p: Buffer, ctx: { peer: Peer }) {
            const back = await ctx.peer.call('ui', 'notify', `in-${p}`);
            nested++;
            return `n:${back}`;
          },
        },
      },
    });
    const connected = new Promise<Peer>((resolve) => server.once('connection', resolve));
    const child = await clientProcess(path);
    const peer = await connected;

    // Server -> client: 1,000 notifies, started while the client's 1,000 db calls run.
    const clientCalls = child.ask({ cmd: 'burst', id: 1, n: 1000, service: 'db', method: 'query', prefix: '', expect: 'q:' }, 'burst-done', { id: 1 });
    const nestedCalls = child.ask({ cmd: 'burst', id: 2, n: 200, service: 'db', method: 'nested', prefix: '', expect: 'n:ack:in-' }, 'burst-done', { id: 2 });
    const notifies = Array.from({ length: 1000 }, (_, i) =>
      peer.call('ui', 'notify', String(i)).then((v) => {
        if (v.toString() === `ack:${i}`) notifyAnswers++;
      }),
    );
    await Promise.all(notifies);
    const [a, b] = await Promise.all([clientCalls, nestedCalls]);
    expect(a).toMatchObject({ ok: 1000, errors: [] });
    expect(b).toMatchObject({ ok: 200, errors: [] });
    expect(notifyAnswers).toBe(1000);
    expect(nested).toBe(200);

    await child.ask({ cmd: 'close' }, 'closed');
    expect(await peer.whenClosed).toBeNull();
    expect(await child.next('disconnect')).toMatchObject({ code: null });
    await server.close();
    child.send({ cmd: 'exit' });
    expect((await child.exited).code).toBe(0);
  });

  it('answers 10,000 concurrent calls interleaved with several streams', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const peer = await connect(path);

    const started = performance.now();
    const streams = [1, 7, 64, 128, 500].map(async (credit, k) => {
      const n = 2000 + k * 111;
      let expected = 0;
      for await (const row of peer.stream('db', 'rows', String(n), { credit })) {
        if (row.toString() !== String(expected)) throw new Error(`stream ${k}: got ${row} at ${expected}`);
        expected++;
      }
      return expected === n;
    });
    // Issued in bursts across event-loop turns, so calls and stream items interleave on the wire.
    const calls: Promise<boolean>[] = [];
    for (let burst = 0; burst < 10; burst++) {
      for (let j = 0; j < 1000; j++) {
        const i = burst * 1000 + j;
        const method = i % 3 === 0 ? 'aquery' : 'query';
        const want = `${method === 'aquery' ? 'a' : 'q'}:${i}`;
        calls.push(peer.call('db', method, String(i)).then((v) => v.toString() === want));
      }
      await new Promise((r) => setImmediate(r));
    }
    const answers = await Promise.all(calls);
    const streamed = await Promise.all(streams);
    const ms = performance.now() - started;
    expect(answers.filter(Boolean).length).toBe(10_000);
    expect(streamed).toEqual([true, true, true, true, true]);
    expect(peer.session.outgoingCalls).toBe(0);
    console.log(`10,000 calls + 5 streams (${[0, 1, 2, 3, 4].reduce((s, k) => s + 2000 + k * 111, 0)} rows) in ${ms.toFixed(0)} ms`);

    await peer.close();
    expect(await child.next('disconnect')).toMatchObject({ code: null });
  });

  it('does not hold small calls behind 8 MiB messages in either direction', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const big = Buffer.alloc(8 * 1024 * 1024);
    for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE(i, i);
    const peer = await connect(path, {
      services: { ui: { size: (p: Buffer) => String(p.length), echo: (p: Buffer) => p } },
    });
    await child.next('connection');

    const order: string[] = [];
    // Client -> server: an 8 MiB request echoed back as an 8 MiB response.
    const t0 = performance.now();
    const echo = peer.call('db', 'echo', big).then((v) => {
      order.push('big');
      return v;
    });
    // Server -> client at the same time: an 8 MiB request to our ui.echo, answered with 8 MiB.
    const reverse = child.ask({ cmd: 'call', id: 'rev', service: 'ui', method: 'echo', size: big.length, fill: 9 }, 'result', { id: 'rev' });
    const smallMs: number[] = [];
    const small: Promise<void>[] = [];
    for (let turn = 0; turn < 5; turn++) {
      for (let j = 0; j < 20; j++) {
        const i = turn * 20 + j;
        const t = performance.now();
        small.push(
          peer.call('db', 'query', String(i)).then((v) => {
            expect(v.toString()).toBe(`q:${i}`);
            smallMs.push(performance.now() - t);
            order.push('small');
          }),
        );
      }
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(small);
    const echoed = await echo;
    const bigMs = performance.now() - t0;
    expect(order.indexOf('big')).toBe(order.length - 1);
    expect(echoed.length).toBe(big.length);
    expect(sha(echoed)).toBe(sha(big));
    const rev = await reverse;
    expect(rev).toMatchObject({ ok: true, value: big.length });
    console.log(`8 MiB echo ${bigMs.toFixed(0)} ms; 100 small calls meanwhile: max ${Math.max(...smallMs).toFixed(1)} ms`);

    await peer.close();
  });

  it('reports handler failures and unknown names with their status', async () => {
    const path = socketPath();
    await serverProcess(path);
    const peer = await connect(path);
    await expect(peer.call('db', 'fail', '42')).rejects.toMatchObject({ code: 'APPLICATION_ERROR', message: 'no row 42' });
    await expect(peer.call('db', 'nope')).rejects.toMatchObject({ code: 'UNKNOWN_METHOD' });
    await expect(peer.call('nodb', 'query')).rejects.toMatchObject({ code: 'UNKNOWN_SERVICE' });
    // The connection is still fine afterwards.
    expect((await within(peer.call('db', 'query', 'x'), 5000, 'call')).toString()).toBe('q:x');
    await peer.close();
  });
});
