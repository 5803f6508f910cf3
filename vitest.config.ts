import { defineConfig, type ViteUserConfig } from 'vitest/config';
import { measureSlowFactor } from './test/helpers/calibrate.js';

const integration = 'test/integration/**/*.test.ts';

// Wall-clock bounds in the tests are set for the reference machine and multiplied by this
// factor, measured once per run (test/helpers/slow.ts; PIPIT_SLOW=<factor> overrides it).
// vitest loads this file once more per project: measure only the first time.
const cache = globalThis as { pipitSlow?: ReturnType<typeof measureSlowFactor> };

export default defineConfig(async (): Promise<ViteUserConfig> => {
  if (cache.pipitSlow === undefined) {
    cache.pipitSlow = measureSlowFactor();
    const { factor, source } = await cache.pipitSlow;
    console.log(`slow factor ${factor} (${source}): the tests' time bounds are multiplied by it`);
  }
  const slow = await cache.pipitSlow;
  return {
    test: {
      // Hang detectors, not speed checks: long enough for the slowest test on this machine.
      testTimeout: Math.ceil(30_000 * slow.factor),
      hookTimeout: Math.ceil(30_000 * slow.factor),
      pool: 'forks',
      provide: { pipitSlow: slow.factor },
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
