/**
 * Wall-clock bounds scaled for the machine the suite runs on. A bound that proves something
 * happens fast enough ("CONNECTION_CLOSED within 100 ms of the SIGKILL") was set on the
 * reference machine; on a Raspberry Pi or under emulation the same work takes longer, so the
 * test checks `scaled(100)`: the reference bound times the slow factor measured once per run
 * (test/helpers/calibrate.ts; PIPIT_SLOW=<factor> sets it by hand). Lower bounds (a deadline
 * must not fire early) are never scaled.
 */
import { inject } from 'vitest';
import { measureSlowFactor } from './calibrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Set by vitest.config.ts from measureSlowFactor(). */
    pipitSlow: number;
  }
}

/** How many times slower than the reference machine this run is (at least 1). */
export const SLOW: number = inject('pipitSlow') ?? (await measureSlowFactor()).factor;

/** A reference-machine bound of `ms`, for this machine. */
export function scaled(ms: number): number {
  return Math.ceil(ms * SLOW);
}
