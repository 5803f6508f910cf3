/**
 * Deadlines through the Peer's one timer, over an in-memory Duplex pair: a long deadline
 * (up to 2^32-1 ms, spec §8.5) arms one timer and fires nothing early; DEADLINE 0 is refused
 * unprocessed; a status message is cut to 1024 bytes on a character boundary (§7.4).
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Duplex, PassThrough } from 'node:stream';
import { Peer } from '../bindings/peer.js';
import { PipitError } from '../bindings/errors.js';
import type { Services } from '../bindings/routes.js';

function peers(services: Services): [Peer, Peer] {
  const ab = new PassThrough();
  const ba = new PassThrough();
  const a = new Peer(Duplex.from({ readable: ba, writable: ab }), { codec: 'ts' });
  const b = new Peer(Duplex.from({ readable: ab, writable: ba }), { codec: 'ts', services });
  return [a, b];
}

afterEach(() => {
  vi.restoreAllMocks();
});

describe('long deadlines', () => {
  it('a call with timeout 2^32-1 ms and a REQUEST with that DEADLINE arm timers a handful of times, not once per millisecond', async () => {
    const warnings: string[] = [];
    const onWarning = (w: Error): void => {
      warnings.push(w.name);
    };
    process.on('warning', onWarning);
    const armed = vi.spyOn(globalThis, 'setTimeout');
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inHandler = new Promise<void>((r) => (entered = r));
    const [a, b] = peers({ s: { async slow() { entered(); await gate; return 'done'; } } });
    const call = a.call('s', 'slow', '', { timeout: 0xffffffff });
    // Both sides hold the call (and have armed their timers) once the handler runs.
    await inHandler;
    // Then watch them for a while: the old code re-armed a 1 ms timer here. (The window
    // only observes: a slower machine sees fewer re-arms, never a false failure.)
    await new Promise((r) => setTimeout(r, 120));
    const during = armed.mock.calls.filter(([, ms]) => typeof ms === 'number' && ms > 1000).length;
    const tiny = armed.mock.calls.filter(([, ms]) => ms === 0 || ms === 1).length;
    release();
    expect((await call).toString()).toBe('done');
    process.off('warning', onWarning);
    expect(warnings.filter((n) => n === 'TimeoutOverflowWarning')).toEqual([]);
    // One long timer per side (caller and responder), each at most 2^31-1 ms.
    expect(during).toBeGreaterThanOrEqual(2);
    expect(armed.mock.calls.every(([, ms]) => typeof ms !== 'number' || ms <= 0x7fffffff)).toBe(true);
    expect(tiny).toBeLessThan(5);
    await Promise.all([a.close(), b.close()]);
  });
});

describe('DEADLINE 0 and expired calls', () => {
  it('timeout 0 fails at once with DEADLINE_EXCEEDED and nothing reaches the handler', async () => {
    let ran = 0;
    const [a, b] = peers({ s: { m() { ran++; return 'x'; } } });
    await expect(a.call('s', 'm', '', { timeout: 0 })).rejects.toMatchObject({ code: 'DEADLINE_EXCEEDED' });
    expect((await a.call('s', 'm', '')).toString()).toBe('x');
    expect(ran).toBe(1);
    await Promise.all([a.close(), b.close()]);
  });
});

describe('status messages', () => {
  it('are cut to 1024 bytes on a UTF-8 character boundary, never inside a character', async () => {
    const emoji = '\u{1F600}'; // 4 bytes in UTF-8
    const [a, b] = peers({
      s: {
        at1021() { throw new PipitError('INVALID_ARGUMENT', 'a'.repeat(1021) + emoji); }, // would end at byte 1025
        at1020() { throw new PipitError('INVALID_ARGUMENT', 'a'.repeat(1020) + emoji + 'b'); }, // fits exactly to 1024
        long() { throw new Error('é'.repeat(5000)); },
      },
    });
    const e1 = await a.call('s', 'at1021', '').catch((e: PipitError) => e);
    const e2 = await a.call('s', 'at1020', '').catch((e: PipitError) => e);
    const e3 = await a.call('s', 'long', '').catch((e: PipitError) => e);
    expect((e1 as PipitError).message).toBe('a'.repeat(1021));
    expect((e2 as PipitError).message).toBe('a'.repeat(1020) + emoji);
    expect((e3 as PipitError).message).toBe('é'.repeat(512));
    for (const e of [e1, e2, e3]) expect((e as Error).message).not.toContain('\uFFFD');
    await Promise.all([a.close(), b.close()]);
  });
});
