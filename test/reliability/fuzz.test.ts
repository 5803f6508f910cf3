/**
 * The fuzz properties of scripts/fuzz.ts at CI size: thousands of cases per property, run by
 * the same script and worker pool as `npm run fuzz` (so a hang is caught by its watchdog and
 * reported with a seed, instead of stalling the test run). Its base seed is the run's seed
 * (test/helpers/seed.ts): PIPIT_SEED=<seed> replays it; each failure prints its own replay.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { SEED } from '../helpers/seed.js';
import { scaled } from '../helpers/slow.js';
import { built, runNode } from '../helpers/harness.js';

const CODEC_INPUTS = Number(process.env.PIPIT_FUZZ_INPUTS ?? 12_000);
const SESSION_CASES = Number(process.env.PIPIT_FUZZ_SESSION ?? 2_000);

interface Summary {
  seed: number;
  seconds: number;
  props: Record<string, { runs: number; outcomes: Record<string, number>; sessions: Record<string, number>; ownCalls: Record<string, number>; framesFed: number }>;
  inputsPerCodec: { ts: number; wasm: number };
  sessionCases: number;
  failures: Array<{ prop: string; kind: string; seed: number; path: string; error: string; counterexample: string; replay: string }>;
}

let summary: Summary;

beforeAll(async () => {
  const args = ['--inputs', String(CODEC_INPUTS), '--session', String(SESSION_CASES), '--json', '--stall-ms', String(scaled(15_000))];
  args.push('--seed', String(SEED));
  const r = await runNode(built('scripts/fuzz.js'), args, { timeoutMs: scaled(120_000) });
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    summary = JSON.parse(line) as Summary;
  } catch {
    throw new Error(`fuzz.js (exit ${r.code}) printed no summary:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  }
  const f = summary.failures.length;
  console.log(`fuzz: seed ${summary.seed}, ${summary.inputsPerCodec.ts} inputs per codec, ${summary.sessionCases} session cases, ${f} failures, ${summary.seconds.toFixed(1)} s`);
}, scaled(150_000));

function failuresOf(prop: string): string {
  return summary.failures
    .filter((f) => f.prop === prop)
    .map((f) => `${f.kind}: ${f.error}\ncounterexample: ${f.counterexample}\nreplay: ${f.replay}`)
    .join('\n\n');
}

describe('fuzz (CI size)', () => {
  it.each(['codec-random', 'codec-soup', 'codec-mutated'])('%s: frames or one PROTOCOL_ERROR; both codecs agree whole and split; pending and memory bounded', (prop) => {
    expect(failuresOf(prop)).toBe('');
    const p = summary.props[prop]!;
    expect(p.runs).toBeGreaterThanOrEqual(Math.floor(CODEC_INPUTS / 3));
    // The generator reaches both outcomes: whole streams decoded, and many kinds of error.
    expect(p.outcomes.ok ?? 0).toBeGreaterThan(0);
    expect(Object.keys(p.outcomes).length).toBeGreaterThanOrEqual(prop === 'codec-random' ? 4 : 8);
  });

  it('each codec decoded every input', () => {
    expect(summary.inputsPerCodec.ts).toBeGreaterThanOrEqual(CODEC_INPUTS - 2);
    expect(summary.inputsPerCodec.wasm).toBe(summary.inputsPerCodec.ts);
  });

  it('session: hostile frame sequences never throw out of receive(); every own call settles; tables end empty', () => {
    expect(failuresOf('session')).toBe('');
    const p = summary.props.session!;
    expect(p.runs).toBe(SESSION_CASES);
    // Cases reach every kind of ending, not only the first protocol error.
    const states = Object.keys(p.sessions).map((k) => k.split(' ')[0]);
    for (const s of ['open', 'draining', 'graceful', 'PROTOCOL_ERROR', 'peer']) expect(states).toContain(s);
    for (const code of ['OK', 'CANCELLED', 'DEADLINE_EXCEEDED', 'PROTOCOL_ERROR', 'CONNECTION_CLOSED', 'UNAVAILABLE']) {
      expect(p.ownCalls[code] ?? 0, code).toBeGreaterThan(0);
    }
  });
});
