import { defineConfig } from 'vitest/config';

const integration = 'test/integration/**/*.test.ts';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // The integration suite (real sockets, child processes) runs once per codec choice;
    // PIPIT_CODEC reaches the child processes through their inherited environment.
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: [integration] } },
      { extends: true, test: { name: 'integration (auto)', include: [integration] } },
      { extends: true, test: { name: 'integration (PIPIT_CODEC=ts)', include: [integration], env: { PIPIT_CODEC: 'ts' } } },
      { extends: true, test: { name: 'integration (PIPIT_CODEC=wasm)', include: [integration], env: { PIPIT_CODEC: 'wasm' } } },
    ],
  },
});
