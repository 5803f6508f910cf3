import { expect, it } from 'vitest';
import { scaled } from '../helpers/slow.js';
import { RawPeer, hex, serverProcess, socketPath, within } from '../helpers/harness.js';
const MiB = 1024 * 1024;
it.each(['syncTicks', 'ticks'])('%s: a caller granting a large credit and never reading cannot make the server queue without bound', async (method) => {
  const path = socketPath();
  const child = await serverProcess(path, { maxWriteBufferBytes: MiB }, ['--expose-gc']);
  const raw = await RawPeer.connect(path);
  await child.next('connection');
  const base = await child.ask({ cmd: 'stats', gc: true }, 'stats');
  raw.socket.pause();
  raw.write([{ type: 'REQUEST', flags: ['STREAM', 'EXT'], id: 0, service: 'svc', method, ext: { credit: 300_000 }, payload: hex('1024') }]);
  // Once the write buffer has reached its limit the producer must be held; give an unbounded
  // one 1.5 s to show itself.
  const full = await within(child.ask({ cmd: 'when', maxWritable: MiB }, 'reached'), 20000, 'the write buffer reaching maxWriteBufferBytes');
  await new Promise((r) => setTimeout(r, 1500));
  const s = await within(child.ask({ cmd: 'stats' }, 'stats'), 20000, 'stats');
  console.log(method, 'produced', full.produced, 'when the write buffer reached the limit');
  console.log(method, 'produced', s.produced, 'peak write buffer MiB', (s.maxWritable / MiB).toFixed(0), 'RSS MiB', (base.rss / MiB).toFixed(0), '->', (s.rss / MiB).toFixed(0));
  expect(s.rss - base.rss).toBeLessThan(64 * MiB);
}, scaled(60_000));
