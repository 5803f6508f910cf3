/**
 * Two peers flooding each other with large calls at once: both go past maxWriteBufferBytes.
 * If congestion stopped reading on both sides, neither would ever drain (a deadlock); the
 * session holds new work instead and keeps reading responses (session.ts, Rule 4).
 */
import { expect, it } from 'vitest';
import { connect, listen, type Peer } from '../../bindings/index.js';
import { socketPath } from '../helpers/harness.js';
import { scaled } from '../helpers/slow.js';

/** Both bursts take well under a second on the reference machine; longer than this is stuck. */
const STUCK_MS = scaled(15_000);

it('two peers calling each other with 200 x 64 KiB at once both finish', async () => {
  const path = socketPath();
  const services = { svc: { echo: (p: Buffer) => p } };
  const server = await listen(path, { services, maxWriteBufferBytes: 1024 * 1024 });
  const serverPeer = new Promise<Peer>((resolve) => server.once('connection', resolve));
  const client = await connect(path, { services, maxWriteBufferBytes: 1024 * 1024 });
  const other = await serverPeer;
  const payload = Buffer.alloc(64 * 1024, 7);
  const burst = (peer: Peer) => Promise.all(Array.from({ length: 200 }, () => peer.call('svc', 'echo', payload)));
  let timer: NodeJS.Timeout | undefined;
  const stuck = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`stuck: client ${client.session.outgoingCalls} / server ${other.session.outgoingCalls} calls in flight after ${STUCK_MS} ms`)), STUCK_MS);
  });
  const [a, b] = (await Promise.race([Promise.all([burst(client), burst(other)]), stuck])) as Buffer[][];
  clearTimeout(timer);
  expect(a!.every((r) => r.equals(payload))).toBe(true);
  expect(b!.every((r) => r.equals(payload))).toBe(true);
  await client.close();
  await server.close();
}, STUCK_MS + 15_000);
