/**
 * Runs before every test file (vitest.config.ts `setupFiles`): seeds fast-check from the run's
 * seed for each test, and makes a failing test print how to replay it.
 */
import fc from 'fast-check';
import { relative } from 'node:path';
import { beforeEach } from 'vitest';
import { SEED, testSeed } from './seed.js';

const ROOT = new URL('../../', import.meta.url).pathname;

beforeEach(({ task, onTestFailed }) => {
  // Each property of this test draws from the run's seed (fast-check also prints its own
  // seed and path on failure, for replaying one counterexample).
  fc.configureGlobal({ ...fc.readConfigureGlobal(), seed: testSeed('fast-check') });
  onTestFailed(() => {
    const file = task.file === undefined ? '' : relative(ROOT, task.file.filepath);
    // -t takes a pattern: the name with its pattern characters escaped, quoted for the shell.
    const pattern = task.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/'/g, `'\\''`);
    console.error(`replay: PIPIT_SEED=${SEED} npx vitest run ${file} -t '${pattern}'`);
  });
});
