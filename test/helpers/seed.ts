/**
 * The run's seed, for tests. vitest.config.ts picks one per run (PIPIT_SEED, or a fresh one),
 * prints it, and hands it to every test file; a test that fails prints the command that
 * replays it with the same seed (test/helpers/setup.ts). Everything random in the suite
 * derives from it, by the test's name, so a test sees the same numbers whatever runs
 * before it: `seeded()` here, and fast-check's properties (setup.ts seeds them).
 */
import { expect, inject } from 'vitest';
import { Prng, deriveSeed, runSeed } from './prng.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by vitest.config.ts from runSeed(). */
    pipitSeed: number;
  }
}

/** This run's seed. */
export const SEED: number = inject('pipitSeed') ?? runSeed();

/** The seed of the running test for `label`: the run's seed mixed with the test's full name. */
export function testSeed(label = ''): number {
  return deriveSeed(SEED, `${expect.getState().currentTestName ?? ''}#${label}`);
}

/** A generator for the running test (one per `label`), replayed by PIPIT_SEED. */
export function seeded(label = ''): Prng {
  return new Prng(testSeed(label));
}
