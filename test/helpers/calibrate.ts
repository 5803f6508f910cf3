/**
 * How much slower than the reference machine this one runs the suite's kind of work, for the
 * tests' wall-clock bounds (test/helpers/slow.ts). vitest.config.ts measures it once per run,
 * in vitest's own process, and hands it to every test file.
 *
 * The reference is a 2-core x86-64 VM (the CI machine, Node 20), where every bound in the
 * suite was set. A calibration run is a fixed amount of the work the bounded paths do: object
 * and Map churn, Buffer writes, JSON and hex, and promise turns through the event loop. It
 * starts cold, as a test's first calls do, and is timed by the wall clock, so a machine busy
 * with other processes reads as slower too, as it is for the tests. The factor is that time
 * over the reference time, never below 1: bounds are only ever widened.
 *
 * PIPIT_SLOW=<factor> replaces the measurement (PIPIT_SLOW=1 keeps the reference bounds).
 */
import { performance } from 'node:perf_hooks';

/**
 * One calibration run on the reference machine, ms: the top of what 10 runs took there while
 * it was otherwise nearly idle (29–46 ms), so that machine idle reads 1. With other jobs
 * sharing it, 16 runs took 53–172 ms; under qemu (arm64 and armhf: Cortex-A72 and A7
 * models, on the same machine) 345–2,650 ms, depending on the load.
 */
export const REFERENCE_MS = 50;

function churn(n: number): number {
  const map = new Map<number, { id: number; name: string; bytes: number }>();
  const buf = Buffer.alloc(64 * 1024);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    map.set(i & 1023, { id: i, name: 'm' + (i % 97), bytes: i & 255 });
    const o = map.get((i * 7) & 1023);
    if (o !== undefined) acc += o.id & 0xff;
    buf.writeUInt32LE(i >>> 0, (i * 4) & 0xfff8);
    if ((i & 63) === 0) {
      const s = JSON.stringify({ ev: 'result', id: i, ok: true, items: [o?.name, acc] });
      acc += (JSON.parse(s) as { id: number }).id & 1;
      acc += buf.subarray(i & 0x7ff, (i & 0x7ff) + 512).toString('hex').length & 1;
    }
  }
  return acc;
}

async function turns(n: number): Promise<number> {
  let acc = 0;
  for (let i = 0; i < n; i++) acc += await new Promise<number>((r) => (i & 7 ? r(i) : setImmediate(() => r(i))));
  return acc;
}

/** Wall-clock ms of one calibration run (cold code included). */
export async function calibrationMs(): Promise<number> {
  const t0 = performance.now();
  for (let k = 0; k < 5; k++) {
    churn(50_000);
    await turns(2_000);
  }
  return performance.now() - t0;
}

export interface SlowFactor {
  factor: number;
  /** Where it came from: 'PIPIT_SLOW' or the measured ms. */
  source: string;
}

/** PIPIT_SLOW if set, else the calibration measured now (at least 1, at most 100). */
export async function measureSlowFactor(): Promise<SlowFactor> {
  const env = process.env.PIPIT_SLOW;
  if (env !== undefined && env !== '') {
    const f = Number(env);
    if (!(f > 0)) throw new Error(`PIPIT_SLOW=${env}: expected a positive number`);
    return { factor: f, source: 'PIPIT_SLOW' };
  }
  const ms = await calibrationMs();
  const factor = Math.min(100, Math.max(1, Math.round((ms / REFERENCE_MS) * 10) / 10));
  return { factor, source: `calibration ${ms.toFixed(0)} ms vs ${REFERENCE_MS} ms` };
}
