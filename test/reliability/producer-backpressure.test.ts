/**
 * A caller that grants a huge credit and never reads cannot make the server queue without
 * bound: once the server's write buffer passes maxWriteBufferBytes, its stream producer is
 * held, for a synchronous and an asynchronous generator alike. The server runs in a second
 * process (test/fixtures/peer.mjs); this process is the raw caller.
 */
import { expect, it } from 'vitest';
import { scaled } from '../helpers/slow.js';
import { RawPeer, hex, serverProcess, socketPath, within } from '../helpers/harness.js';

const MiB = 1024 * 1024;
/** Event-loop turns the server gets after its buffer filled: an unheld producer runs in every one. */
const TURNS = 2000;

it.each(['syncTicks', 'ticks'])('%s: a caller granting a large credit and never reading cannot make the server queue without bound', async (method) => {
  const path = socketPath();
  const child = await serverProcess(path, { maxWriteBufferBytes: MiB }, ['--expose-gc']);
  const raw = await RawPeer.connect(path);
  await child.next('connection');
  const base = await child.ask({ cmd: 'stats', gc: true }, 'stats');
  raw.socket.pause();
  raw.write([{ type: 'REQUEST', flags: ['STREAM', 'EXT'], id: 0, service: 'svc', method, ext: { credit: 300_000 }, payload: hex('1024') }]);
  const full = await within(child.ask({ cmd: 'when', maxWritable: MiB }, 'reached'), 20_000, 'the write buffer reaching maxWriteBufferBytes');
  // The producer must be held from here on, however many turns the server's loop takes.
  const later = await child.ask({ cmd: 'turns', n: TURNS }, 'turned');
  console.log(
    `${method}: produced ${full.produced} items when the write buffer reached the limit, ${later.produced} after ${TURNS} more turns; ` +
      `peak write buffer ${(later.maxWritable / MiB).toFixed(2)} MiB, RSS ${(base.rss / MiB).toFixed(0)} -> ${(later.rss / MiB).toFixed(0)} MiB`,
  );
  expect(later.produced - full.produced).toBeLessThan(256);
  expect(later.maxWritable).toBeLessThan(4 * MiB);
  expect(later.rss - base.rss).toBeLessThan(64 * MiB);
}, scaled(60_000));
