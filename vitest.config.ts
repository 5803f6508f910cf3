import { defineConfig, type ViteUserConfig } from 'vitest/config';
import { measureSlowFactor } from './test/helpers/calibrate.js';
import { runSeed } from './test/helpers/prng.js';

const integration = 'test/integration/**/*.test.ts';

// Wall-clock bounds in the tests are set for the reference machine and multiplied by this
// factor, measured once per run (test/helpers/slow.ts; PIPIT_SLOW=<factor> overrides it).
// Everything random in the tests derives from one seed per run (test/helpers/seed.ts),
// printed here and by every failing test; PIPIT_SEED=<seed> replays a run.
// vitest loads this file once more per project: measure and pick only the first time.
const cache = globalThis as { pipitSlow?: ReturnType<typeof measureSlowFactor>; pipitSeed?: number };

export default defineConfig(async (): Promise<ViteUserConfig> => {
  if (cache.pipitSlow === undefined) {
    cache.pipitSlow = measureSlowFactor();
    const { factor, source } = await cache.pipitSlow;
    console.log(`slow factor ${factor} (${source}): the tests' time bounds are multiplied by it`);
  }
  if (cache.pipitSeed === undefined) {
    cache.pipitSeed = runSeed();
    console.log(`seed ${cache.pipitSeed}: PIPIT_SEED=${cache.pipitSeed} replays this run's random choices`);
  }
  const slow = await cache.pipitSlow;
  return {
    test: {
      // Hang detectors, not speed checks: long enough for the slowest test on this machine.
      testTimeout: Math.ceil(30_000 * slow.factor),
      hookTimeout: Math.ceil(30_000 * slow.factor),
      pool: 'forks',
      provide: { pipitSlow: slow.factor, pipitSeed: cache.pipitSeed },
      setupFiles: ['test/helpers/setup.ts'],
      // The integration suite (real sockets, child processes) runs once per codec choice;
      // PIPIT_CODEC reaches the child processes through their inherited environment.
      projects: [
        { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: [integration] } },
        { extends: true, test: { name: 'integration (auto)', include: [integration] } },
        { extends: true, test: { name: 'integration (PIPIT_CODEC=ts)', include: [integration], env: { PIPIT_CODEC: 'ts' } } },
        { extends: true, test: { name: 'integration (PIPIT_CODEC=wasm)', include: [integration], env: { PIPIT_CODEC: 'wasm' } } },
      ],
    },
  };
});
