/**
 * The TypeScript client against the testee of each implementation (spec/TESTEE.md), over real
 * Unix sockets: TS ⇄ TS, and TS client ⇄ Go server. Every testee method is exercised, with
 * concurrency, multi-MiB fragmented messages, a slow consumer, cancel, deadline, callback,
 * goaway and unknown routes. The Go client's side of the matrix is go/interop_test.go, which
 * this suite runs against the TS testee.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { connect, PipitError, type Peer } from '../../bindings/index.js';
import { within } from '../helpers/within.js';
import { goAvailable, spawnFailure, startTestee, type Impl, type Testee } from './testee.js';

const impls: Impl[] = goAvailable() ? ['ts', 'go'] : ['ts'];
if (!impls.includes('go')) console.warn('go is not installed: the Go side of the interop tests is skipped');

/**
 * Ask `cancellations` until it passes `above`. The handler stops after the caller's failure,
 * in its own time (a goroutine on the Go testee), and the testee reports nothing when it
 * does: each question is a round trip, as many as it takes; a hang is caught by `within`.
 */
function cancellationsAbove(peer: Peer, above: number): Promise<number> {
  const ask = async (): Promise<number> => {
    for (;;) {
      const n = Number((await peer.call('testee', 'cancellations', '')).toString());
      if (n > above) return n;
      await new Promise((r) => setImmediate(r));
    }
  };
  return within(ask(), 10_000, `the testee counting more than ${above} cancellations`);
}

describe.each(impls)('TS client → %s testee', (impl) => {
  let testee: Testee;
  let peer: Peer;
  const echoedBack: Buffer[] = [];

  beforeAll(async () => {
    testee = await startTestee(impl);
    // The testee's `callback` calls testee.echo on us.
    peer = await connect(testee.path, {
      services: {
        testee: {
          echo(p: Buffer, ctx: { text: boolean }) {
            echoedBack.push(p);
            return { payload: p, text: ctx.text };
          },
        },
      },
    });
  });

  afterAll(async () => {
    await peer?.close();
    expect(await testee.stop()).toBe(0);
  });

  it('echo: bytes and text come back identical, text with the TEXT flag, even on bytes that are not UTF-8', async () => {
    const odd = await peer.callMessage('testee', 'echo', { payload: Buffer.from([0xff, 0x00, 0xc3]), text: true });
    expect([odd.payload.toString('hex'), odd.text]).toEqual(['ff00c3', true]);
    const bytes = randomBytes(1000);
    expect(Buffer.compare(await peer.call('testee', 'echo', bytes), bytes)).toBe(0);
    const text = await peer.callMessage('testee', 'echo', 'héllo ✓');
    expect([text.payload.toString(), text.text]).toEqual(['héllo ✓', true]);
    const raw = await peer.callMessage('testee', 'echo', Buffer.from('héllo ✓'));
    expect(raw.text).toBe(false);
    expect((await peer.call('testee', 'echo', '')).length).toBe(0);
  });

  it('sha256 of a 3 MiB request (fragmented) and echo of a 5 MiB message (fragmented both ways)', async () => {
    const big = randomBytes(3 * 1024 * 1024 + 17);
    const digest = await peer.callMessage('testee', 'sha256', big);
    expect(digest.text).toBe(false);
    expect(digest.payload.toString('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    const huge = randomBytes(5 * 1024 * 1024 + 3);
    expect(Buffer.compare(await peer.call('testee', 'echo', huge), huge)).toBe(0);
  });

  it('1,000 concurrent calls, each answered with its own payload, small ones passing a large one', async () => {
    const large = peer.call('testee', 'echo', randomBytes(4 * 1024 * 1024));
    const calls = Array.from({ length: 1000 }, (_, i) => peer.call('testee', 'echo', `call ${i}`));
    const answers = await Promise.all(calls);
    expect(answers.map((a) => a.toString())).toEqual(Array.from({ length: 1000 }, (_, i) => `call ${i}`));
    expect((await large).length).toBe(4 * 1024 * 1024);
  });

  it('rows: count and size, padded, never cut, in order', async () => {
    const got: string[] = [];
    for await (const m of peer.stream('testee', 'rows', '12 2')) got.push(m.toString());
    expect(got).toEqual(Array.from({ length: 12 }, (_, i) => String(i).padEnd(2, ' ')));
    const none: Buffer[] = [];
    for await (const m of peer.stream('testee', 'rows', '0')) none.push(m);
    expect(none).toEqual([]);
  });

  it('rows to a slow consumer with credit 4: all 2,000 arrive, in order', async () => {
    let i = 0;
    for await (const m of peer.stream('testee', 'rows', '2000 6', { credit: 4 })) {
      expect(m.toString()).toBe(String(i).padEnd(6, ' '));
      i++;
      if (i % 100 === 0) await new Promise((r) => setTimeout(r, 2));
    }
    expect(i).toBe(2000);
  });

  it('fail: each code a handler may send arrives as is; the others as APPLICATION_ERROR (§13.2)', async () => {
    const cases: Array<[number, string, number]> = [
      [1, 'CANCELLED', 1], [4, 'INVALID_ARGUMENT', 4], [5, 'APPLICATION_ERROR', 5], [6, 'DEADLINE_EXCEEDED', 6],
      [7, 'RESOURCE_EXHAUSTED', 7], [10, 'INTERNAL', 10], [256, 'APPLICATION_ERROR', 256],
      [4294967295, 'APPLICATION_ERROR', 4294967295],
      [2, 'APPLICATION_ERROR', 5], [3, 'APPLICATION_ERROR', 5], [8, 'APPLICATION_ERROR', 5],
      [9, 'APPLICATION_ERROR', 5], [11, 'APPLICATION_ERROR', 5], [200, 'APPLICATION_ERROR', 5],
    ];
    for (const [code, name, status] of cases) {
      const e = await peer.call('testee', 'fail', `${code} why ${code}`).then(() => null, (x: PipitError) => x);
      expect([code, e?.code, e?.status, e?.message]).toEqual([code, name, status, `why ${code}`]);
    }
    const bare = await peer.call('testee', 'fail', '7').then(() => null, (x: PipitError) => x);
    expect([bare?.code, bare?.message]).toEqual(['RESOURCE_EXHAUSTED', '']);
  });

  it('malformed requests are INVALID_ARGUMENT', async () => {
    for (const [method, payload] of [['fail', '0 zero'], ['fail', 'x'], ['fail', ''], ['sleep', 'soon'], ['sleep', '-1']] as const) {
      await expect(peer.call('testee', method, payload)).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    }
    const rows = peer.stream('testee', 'rows', 'many');
    await expect(rows.next()).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });

  it('sleep: answers after the time; a deadline and a cancel each stop it and count', async () => {
    expect((await peer.call('testee', 'sleep', '5')).length).toBe(0);
    const before = Number((await peer.call('testee', 'cancellations', '')).toString());
    await expect(peer.call('testee', 'sleep', '60000', { timeout: 50 })).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    const afterDeadline = await cancellationsAbove(peer, before);
    expect(afterDeadline).toBe(before + 1);
    const ac = new AbortController();
    const call = peer.call('testee', 'sleep', '60000', { signal: ac.signal });
    setTimeout(() => ac.abort(), 20);
    await expect(call).rejects.toMatchObject({ code: 'CANCELLED' });
    expect(await cancellationsAbove(peer, afterDeadline)).toBe(afterDeadline + 1);
  });

  it('callback: the testee calls testee.echo on us and answers with what it got', async () => {
    echoedBack.length = 0;
    expect((await peer.call('testee', 'callback', 'ring back')).toString()).toBe('ring back');
    expect(echoedBack.map((b) => b.toString())).toEqual(['ring back']);
    const text = await peer.callMessage('testee', 'callback', 'text ✓');
    expect([text.payload.toString(), text.text]).toEqual(['text ✓', true]);
  });

  it('unknown routes, and call shapes against method kinds (§8.10)', async () => {
    await expect(peer.call('testee', 'nope', '')).rejects.toMatchObject({ code: 'UNKNOWN_METHOD' });
    await expect(peer.call('nobody', 'echo', '')).rejects.toMatchObject({ code: 'UNKNOWN_SERVICE' });
    await expect(peer.call('testee', 'rows', '3')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const one: string[] = [];
    for await (const m of peer.stream('testee', 'echo', 'single')) one.push(m.toString());
    expect(one).toEqual(['single']);
  });

  it('introspection lists exactly the eight testee methods with their kinds (§8.11)', async () => {
    const methods = await peer.methods();
    expect(methods.map((m) => [m.service, m.method, m.kind])).toEqual([
      ['testee', 'callback', 1], ['testee', 'cancellations', 1], ['testee', 'echo', 1],
      ['testee', 'fail', 1], ['testee', 'goaway', 1], ['testee', 'rows', 2],
      ['testee', 'sha256', 1], ['testee', 'sleep', 1],
    ]);
  });

  it('goaway: answers OK, then the connection closes gracefully; a new connection still works', async () => {
    const other = await connect(testee.path);
    const closed = new Promise<PipitError | null>((resolve) => other.once('close', resolve));
    expect((await other.call('testee', 'goaway', '')).length).toBe(0);
    expect(await closed).toBeNull();
    await expect(other.call('testee', 'echo', 'late')).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    const again = await connect(testee.path);
    expect((await again.call('testee', 'echo', 'again')).toString()).toBe('again');
    await again.close();
  });
});

describe.runIf(impls.includes('go'))('Go client → TS testee, and Go ⇄ Go', () => {
  it.each(['ts', 'go'] as const)('go test -run TestInterop against the %s testee', async (impl) => {
    const testee = await startTestee(impl);
    try {
      const r = spawnSync('go', ['test', '-count=1', '-v', '-run', '^TestInterop', '.'], {
        cwd: join(import.meta.dirname, '..', '..', 'go'),
        env: { ...process.env, PIPIT_TESTEE_SOCKET: testee.path },
        encoding: 'utf8',
      });
      expect(r.status, `${r.stdout}\n${spawnFailure(r)}`).toBe(0);
      // Ran, and skipped nothing: the Go side skips itself when it is given no socket.
      expect(r.stdout).toMatch(/^--- PASS: TestInterop/m);
      expect(r.stdout).not.toMatch(/--- SKIP|no tests to run/);
    } finally {
      expect(await testee.stop()).toBe(0);
    }
  }, 120_000);
});
