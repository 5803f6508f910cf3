/**
 * The soak of scripts/soak.ts at CI size: 20,000 calls and streams in both directions
 * between two processes, then a 20,000-item stream read slowly. The script checks that every
 * call settled exactly once (by code), the call tables are empty, no timer is left, the heap
 * after GC is within 5% of its start and the producer's RSS grows by less than 16 MiB; this
 * test fails on any failed check and prints the figures. `npm run soak` is the full size.
 */
import { expect, it } from 'vitest';
import { SEED } from '../helpers/seed.js';
import { scaled } from '../helpers/slow.js';
import { built, runNode } from '../helpers/harness.js';

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

it('soak, CI size: 20,000 calls and streams both ways, a 20,000-item slow stream', async () => {
  const args = ['--calls', '20000', '--items', '20000', '--json'];
  args.push('--seed', String(SEED)); // the run's seed: PIPIT_SEED replays the operation mix
  const r = await runNode(built('scripts/soak.js'), args, { execArgv: ['--expose-gc'], timeoutMs: scaled(60_000) });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  let s: { ok: boolean; checks: Check[]; callsPerSecond: number; byCode: Record<string, number>; config: { seed: number }; heapStart: { main: number; child: number }; heapEnd: { main: number; child: number }; slowStream: { producerRssGrowth: number } };
  try {
    s = JSON.parse(line);
  } catch {
    throw new Error(`soak.js (exit ${r.code}) printed no summary:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  }
  const MiB = 1024 * 1024;
  console.log(
    `soak (seed ${s.config.seed}): ${Math.round(s.callsPerSecond)} calls/s; ${JSON.stringify(s.byCode)}; ` +
      `heap main ${(s.heapStart.main / MiB).toFixed(2)} -> ${(s.heapEnd.main / MiB).toFixed(2)} MiB, child ${(s.heapStart.child / MiB).toFixed(2)} -> ${(s.heapEnd.child / MiB).toFixed(2)} MiB; ` +
      `slow-stream producer RSS +${(s.slowStream.producerRssGrowth / MiB).toFixed(2)} MiB`,
  );
  expect(s.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`), `seed ${s.config.seed}`).toEqual([]);
  expect(s.checks.length).toBeGreaterThanOrEqual(14);
  expect(s.ok).toBe(true);
  expect(r.code).toBe(0);
}, scaled(90_000));
