/**
 * The one seeded pseudo-random generator of the tests and scripts (xorshift32, Marsaglia
 * 2003): payload patterns (session-kit.ts `pattern`), the random pieces a conversation is cut
 * into (conversation.ts), the soak's operation mix (scripts/soak.ts).
 * Not for anything that needs real randomness: the same seed always gives the same numbers,
 * which is the point — a failure found with seed N is replayed with seed N.
 *
 * Where a seed comes from: a test run picks one (vitest.config.ts: PIPIT_SEED, or
 * `freshSeed()`), prints it, and every test derives its own from it and its name
 * (test/helpers/seed.ts); the fuzzer and the soak take `--seed` and default to a fresh one,
 * which they print with the command that replays it. No vitest here: scripts import this
 * file from dist/.
 */
import { randomInt } from 'node:crypto';

/** What a zero seed becomes (xorshift never leaves 0). */
const ZERO_SEED = 0x9e3779b9;

export class Prng {
  private x: number;

  /** `seed`: any number; its low 32 bits are used (0 stands for ZERO_SEED). */
  constructor(readonly seed: number) {
    this.x = seed >>> 0 || ZERO_SEED;
  }

  /** The next 32-bit value, as an unsigned integer. */
  next(): number {
    let x = this.x;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.x = x >>> 0;
    return this.x;
  }

  /** A number in [0, 1). */
  float(): number {
    return this.next() / 0x100000000;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + this.below(max - min + 1);
  }

  /** Fill `b` with bytes (the low byte of each next value). */
  fill(b: Uint8Array): Uint8Array {
    for (let i = 0; i < b.length; i++) b[i] = this.next() & 0xff;
    return b;
  }
}

/** A seed nobody chose: 31 bits from the system's random source (so it prints as a positive number). */
export function freshSeed(): number {
  return randomInt(1, 0x80000000);
}

/**
 * A seed for one named use of a run's seed: the same run seed and name always give the same
 * seed, different names give unrelated ones (FNV-1a over the name, mixed with the seed).
 */
export function deriveSeed(seed: number, name: string): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h ^= name.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return (h & 0x7fffffff) || 1;
}

/** A seed given as text (PIPIT_SEED, --seed): a non-negative integer below 2^32, else an Error. */
export function parseSeed(text: string, from: string): number {
  const n = Number(text);
  if (text.trim() === '' || !Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw new Error(`${from}=${text}: expected an integer from 0 to ${0xffffffff}`);
  }
  return n;
}

/** The seed of a test run: PIPIT_SEED if set, else a fresh one. */
export function runSeed(): number {
  const env = process.env.PIPIT_SEED;
  return env === undefined || env === '' ? freshSeed() : parseSeed(env, 'PIPIT_SEED');
}
