import { expect, it } from 'vitest';
import { connect, type PipitError } from '../../bindings/index.js';
import { serverProcess, socketPath } from '../helpers/harness.js';
it.each(Array.from({ length: 6 }, (_, i) => i))('GOAWAY mid-burst, run %i: every call up to the last accepted sequence completes', async () => {
  const path = socketPath();
  const child = await serverProcess(path, { maxInflight: 100000 });
  const peer = await connect(path);
  await child.next('connection');
  await child.ask({ cmd: 'goaway-after', n: 300 }, 'armed');
  const pad = 'p'.repeat(1000);
  const results = await Promise.allSettled(Array.from({ length: 3000 }, (_, i) => peer.call('svc', 'count', `${i}:${pad}`)));
  const codes: Record<string, number> = {};
  for (const r of results) { const k = r.status === 'fulfilled' ? 'OK' : (r.reason as PipitError).code; codes[k] = (codes[k] ?? 0) + 1; }
  const { handled } = await child.ask({ cmd: 'handled' }, 'handled');
  console.log(JSON.stringify(codes), 'server ran', handled.length);
  expect(codes.CONNECTION_CLOSED ?? 0).toBe(0);
});
