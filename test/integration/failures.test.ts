/**
 * What happens when the other process dies: every pending call and stream fails with
 * CONNECTION_CLOSED within 100 ms of the SIGKILL (on the reference machine; the bound is
 * scaled for this one, test/helpers/slow.ts), and nothing is left behind.
 */
import { describe, expect, it } from 'vitest';
import { getEventListeners, setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { connect, listen, type MessageStream, type Peer, type PipitError } from '../../bindings/index.js';
import { scaled } from '../helpers/slow.js';
import { clientProcess, outcome, serverProcess, socketPath, within, type Outcome } from '../helpers/harness.js';

/** The calls' own timeouts are 60 s: failing within this shows the loss itself ended them. */
const LIMIT_MS = scaled(100);

/** Read a stream until it fails; `progress` resolves once `after` items were read. */
function consume(stream: MessageStream, after: number): { progress: Promise<void>; done: Promise<Outcome<number>> } {
  let reached!: () => void;
  const progress = new Promise<void>((r) => (reached = r));
  const done = outcome(
    (async () => {
      let n = 0;
      for await (const _ of stream) if (++n === after) reached();
      return n;
    })(),
  );
  return { progress, done };
}

/** No timer armed, no call or deadline left in the session, the socket gone from the event loop. */
async function expectNothingLeft(peer: Peer, socketClosed: Promise<unknown>): Promise<void> {
  const p = peer as unknown as { timer: NodeJS.Timeout | null };
  expect(peer.closed).toBe(true);
  expect(p.timer).toBeNull();
  expect(peer.session.outgoingCalls).toBe(0);
  expect(peer.session.incomingCalls).toBe(0);
  expect(peer.session.nextDeadline()).toBe(Infinity);
  expect(peer.transport.destroyed).toBe(true);
  // The socket's handle is released when its own 'close' event fires (just after the peer's).
  await socketClosed;
  const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles();
  expect(handles.some((h) => h === peer.transport)).toBe(false);
}

/** When the socket first reports the loss (EOF, reset or close), by performance.now(). */
function lossSeen(peer: Peer): Promise<number> {
  return new Promise((resolve) => {
    const seen = (): void => resolve(performance.now());
    peer.transport.once('end', seen).once('error', seen).once('close', seen);
  });
}

async function summarize(what: string, t0: number, outcomes: Outcome<unknown>[], loss: Promise<number>): Promise<number> {
  const worst = Math.max(...outcomes.map((o) => o.at - t0));
  const seen = (await loss) - t0;
  console.log(
    `${what}: ${outcomes.length} pending calls/streams failed within ${worst.toFixed(1)} ms of SIGKILL (limit ${LIMIT_MS} ms) ` +
      `(socket reported the loss at ${seen.toFixed(1)} ms, the last call failed ${(worst - seen).toFixed(2)} ms later)`,
  );
  return worst;
}

describe('peer process killed', () => {
  it('fails the client’s pending calls and streams with CONNECTION_CLOSED within 100 ms', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const peer = await connect(path);
    const socketClosed = new Promise((r) => peer.transport.once('close', r));
    const ac = new AbortController();
    setMaxListeners(100, ac.signal); // one signal shared by 26 calls

    // Mid-call: 50 calls the server holds (some with a deadline, some with a signal).
    const calls = Array.from({ length: 50 }, (_, i) =>
      outcome(peer.call('db', 'hang', String(i), i % 2 ? { timeout: 60_000 } : { signal: ac.signal })),
    );
    await child.many('entered', 50, { method: 'hang' });
    // Mid-stream: two endless streams read as fast as they come, one whose reader stopped.
    const fast = [consume(peer.stream('db', 'rows', 'inf', { credit: 8 }), 100), consume(peer.stream('db', 'rows', 'inf', { timeout: 60_000 }), 100)];
    const stalled = peer.stream('db', 'rows', 'inf', { credit: 4, signal: ac.signal });
    await Promise.all(fast.map((f) => f.progress));
    await stalled.next();
    expect(getEventListeners(ac.signal, 'abort').length).toBe(26);

    const loss = lossSeen(peer);
    const t0 = performance.now();
    child.kill('SIGKILL');
    const all = await within(Promise.all([...calls, ...fast.map((f) => f.done)]), 5000, 'failures');
    const worst = await summarize('client survivor', t0, all, loss);
    for (const o of all) {
      expect(o.ok).toBe(false);
      expect(o.error?.code).toBe('CONNECTION_CLOSED');
    }
    expect(worst).toBeLessThan(LIMIT_MS);
    // The stopped reader gets the items it was sent, then the same failure.
    await expect(stalled.toArray()).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });

    expect((await peer.whenClosed)?.code).toBe('CONNECTION_CLOSED');
    await expectNothingLeft(peer, socketClosed);
    expect(getEventListeners(ac.signal, 'abort').length).toBe(0);
    expect((await child.exited).signal).toBe('SIGKILL');
    // Calls after the end fail at once, the same way.
    await expect(peer.call('db', 'query', 'x')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
  });

  it('fails calls opened after the connection died with CONNECTION_CLOSED (§10.3)', async () => {
    const path = socketPath();
    const child = await serverProcess(path);
    const peer = await connect(path);
    child.kill('SIGKILL');
    expect((await peer.whenClosed)?.code).toBe('CONNECTION_CLOSED');
    await expect(peer.call('db', 'query', 'x')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    await expect(peer.stream('db', 'rows', '3').toArray()).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
  });

  it('fails the server’s calls to a killed client, aborts its handlers and forgets the connection', async () => {
    const path = socketPath();
    const handlerSignals: AbortSignal[] = [];
    let entered!: () => void;
    const allEntered = new Promise<void>((r) => (entered = r));
    const server = await listen(path, {
      services: {
        db: {
          hang(_p: Buffer, ctx: { signal: AbortSignal }) {
            handlerSignals.push(ctx.signal);
            if (handlerSignals.length === 20) entered();
            return new Promise(() => {});
          },
        },
      },
    });
    const connected = new Promise<Peer>((resolve) => server.once('connection', resolve));
    const disconnected = new Promise<PipitError | null>((resolve) => server.once('disconnect', (_p, e) => resolve(e)));
    const child = await clientProcess(path);
    const peer = await connected;
    const socketClosed = new Promise((r) => peer.transport.once('close', r));

    // The client's calls into us, held by our handler.
    for (let i = 0; i < 20; i++) child.send({ cmd: 'call', id: i, service: 'db', method: 'hang', payload: String(i) });
    await allEntered;
    // Our calls and streams into the client.
    const calls = Array.from({ length: 30 }, (_, i) => outcome(peer.call('ui', 'hang', String(i), { timeout: 60_000 })));
    await child.many('entered', 30, { method: 'hang' });
    const ticks = [consume(peer.stream('ui', 'ticks', '', { credit: 16 }), 50), consume(peer.stream('ui', 'ticks', ''), 50)];
    await Promise.all(ticks.map((t) => t.progress));
    expect(server.peers.size).toBe(1);

    const loss = lossSeen(peer);
    const t0 = performance.now();
    child.kill('SIGKILL');
    const all = await within(Promise.all([...calls, ...ticks.map((t) => t.done)]), 5000, 'failures');
    const worst = await summarize('server survivor', t0, all, loss);
    for (const o of all) expect(o.error?.code).toBe('CONNECTION_CLOSED');
    expect(worst).toBeLessThan(LIMIT_MS);

    expect((await disconnected)?.code).toBe('CONNECTION_CLOSED');
    expect(server.peers.size).toBe(0);
    for (const s of handlerSignals) {
      expect(s.aborted).toBe(true);
      expect((s.reason as PipitError).code).toBe('CONNECTION_CLOSED');
    }
    await expectNothingLeft(peer, socketClosed);
    await server.close();
  });
});
