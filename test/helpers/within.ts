import { SLOW, scaled } from './slow.js';

/**
 * Reject if `p` takes longer than `ms` on the reference machine (scaled by the slow factor
 * here, test/helpers/slow.ts): an upper bound, never a wait.
 */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  const limit = scaled(ms);
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${limit} ms (${ms} ms × slow factor ${SLOW})`)), limit);
    }),
  ]);
}
