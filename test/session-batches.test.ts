/**
 * Session, streams in batches: a producer that yields arrays of messages (one await for many
 * items) and a consumer that reads `batches()` (one promise per arrival). Both must keep the
 * credit exact, the order, the TEXT flags, and stop at once on cancel.
 */
import { describe, expect, it } from 'vitest';
import { Pair } from './helpers/pair.js';
import { Tap, consume, inject, lone, turn } from './helpers/session-kit.js';
import { PipitError } from '../bindings/errors.js';

const range = (from: number, n: number): string[] => Array.from({ length: n }, (_, i) => `${from + i}`);

describe('a producer yielding arrays', () => {
  it('each element is its own message, in order; empty arrays send nothing', async () => {
    const pair = new Pair({}, {
      services: {
        s: {
          async *pages() {
            yield ['a', Uint8Array.of(0x62)];
            yield [];
            yield 'c';
            yield [{ payload: Buffer.from('d'), text: true }, 'e'];
          },
          *syncPages() {
            yield range(0, 3);
            yield range(3, 2);
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const o = consume(pair.a.session.stream('s', 'pages', ''));
    const p = consume(pair.a.session.stream('s', 'syncPages', ''));
    await pair.settle();
    await Promise.all([o.done, p.done]);
    expect(o).toMatchObject({ items: ['a', 'b', 'c', 'd', 'e'], ends: 1, error: undefined });
    expect(p).toMatchObject({ items: range(0, 5), ends: 1, error: undefined });
    const answers = tapB.ofType('RESPONSE').filter((f) => f.id === 0);
    expect(answers.map((f) => f.flags)).toEqual([['TEXT'], [], ['TEXT'], ['TEXT'], ['TEXT']]);
  });

  it('an array larger than the window is sent as credit arrives, never more than the window ahead', async () => {
    let resumed = 0;
    const pair = new Pair({}, {
      services: {
        s: {
          async *pages() {
            resumed++;
            yield range(0, 25);
            resumed++;
            yield range(25, 5);
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const stream = pair.a.session.stream('s', 'pages', '', { credit: 4 });
    await pair.settle();
    // Four messages out, the rest of the array held by the producer; the generator not resumed.
    expect(tapB.ofType('RESPONSE')).toHaveLength(4);
    expect(stream.buffered).toBe(4);
    expect(resumed).toBe(1);
    const got: string[] = [];
    let maxBuffered = 0;
    for await (const item of stream) {
      got.push(item.toString());
      maxBuffered = Math.max(maxBuffered, stream.buffered);
      await pair.settle(2);
    }
    expect(got).toEqual(range(0, 30));
    expect(maxBuffered).toBeLessThanOrEqual(4);
    expect(resumed).toBe(2);
    expect(pair.b.session.incomingCalls).toBe(0);
  });

  it('a cancel in the middle of an array stops it at once and runs the generator finally', async () => {
    let finallyRan = 0;
    const pair = new Pair({}, {
      services: {
        s: {
          async *pages() {
            try {
              for (let p = 0; ; p++) yield range(p * 10, 10);
            } finally {
              finallyRan++;
            }
          },
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const stream = pair.a.session.stream('s', 'pages', '', { credit: 3 });
    await pair.settle();
    expect(tapB.ofType('RESPONSE')).toHaveLength(3);
    await stream.return();
    await pair.settle();
    expect(finallyRan).toBe(1);
    // Nothing after the CANCEL: three items and the terminal STATUS.
    expect(tapB.ofType('RESPONSE')).toHaveLength(3);
    expect(tapB.ofType('STATUS')).toHaveLength(1);
    expect(pair.b.session.incomingCalls).toBe(0);
    expect(pair.a.session.outgoingCalls).toBe(0);
  });

  it('an element that is not a message fails the stream with INTERNAL after the elements before it', async () => {
    const pair = new Pair({}, { services: { s: { *pages() { yield ['ok', 42 as unknown as string, 'never']; } } } });
    const o = consume(pair.a.session.stream('s', 'pages', ''));
    await pair.settle();
    await o.done;
    expect(o.items).toEqual(['ok']);
    expect(o.error).toBeInstanceOf(PipitError);
    expect(o.error!.code).toBe('INTERNAL');
    expect(o.error!.message).toMatch(/got number/);
  });
});

describe('a consumer reading batches()', () => {
  it('gets every item once, in order, in arrays of what had arrived; credit follows the arrays', async () => {
    const n = 1000;
    const pair = new Pair({}, { services: { s: { *g() { for (let i = 0; i < n; i++) yield `${i}`; } } } });
    const tapA = new Tap(pair.a.session);
    const stream = pair.a.session.stream('s', 'g', '', { credit: 20 });
    const got: string[] = [];
    const sizes: number[] = [];
    const reader = (async () => {
      for await (const batch of stream.batches()) {
        sizes.push(batch.length);
        for (const b of batch) got.push(b.toString());
      }
    })();
    await pair.settle(500);
    await reader;
    expect(got).toEqual(range(0, n));
    // Never more than the window at once, and not one promise per item.
    expect(Math.max(...sizes)).toBeLessThanOrEqual(20);
    expect(sizes.length).toBeLessThan(n / 2);
    const granted = tapA.ofType('CREDIT').reduce((s, f) => s + f.credit!, 0);
    expect(granted + 20).toBeGreaterThanOrEqual(n);
  });

  it('a waiting batches() reader gets everything of one read in one array, then the end', async () => {
    const { end } = lone();
    const stream = end.session.stream('x', 'y', '', { credit: 8 });
    const it = stream.batches();
    const first = it.next();
    inject(end, [
      { type: 'RESPONSE', flags: ['TEXT'], id: 0, payload: Buffer.from('a').toString('hex') },
      { type: 'RESPONSE', flags: [], id: 0, payload: '62' },
      { type: 'RESPONSE', flags: ['END'], id: 0, payload: '63' },
    ]);
    const r = await first;
    expect(r.done).toBe(false);
    expect((r.value as Buffer[]).map((b) => b.toString())).toEqual(['a', 'b', 'c']);
    expect(await it.next()).toEqual({ done: true, value: undefined });
  });

  it('items that arrived before a failure are read first, then the error is thrown', async () => {
    const { end } = lone();
    const stream = end.session.stream('x', 'y', '', { credit: 8 });
    const it = stream.batches();
    const first = it.next();
    inject(end, [
      { type: 'RESPONSE', flags: [], id: 0, payload: '01' },
      { type: 'STATUS', flags: [], id: 0, code: 5, message: 'cursor lost' },
    ]);
    const r = await first;
    expect((r.value as Buffer[]).map((b) => b[0])).toEqual([1]);
    await expect(it.next()).rejects.toMatchObject({ code: 'APPLICATION_ERROR', message: 'cursor lost' });
  });

  it('mixes with single reads on the same queue, and TEXT flags stay with their items', async () => {
    const pair = new Pair({}, { services: { s: { *g() { yield 'a'; yield Uint8Array.of(0x62); yield 'c'; yield Uint8Array.of(0x64); } } } });
    const stream = pair.a.session.stream('s', 'g', '');
    await pair.settle();
    const messages = stream.messages();
    expect((await messages.next()).value).toEqual({ payload: Buffer.from('a'), text: true });
    const batch = await stream.batches().next();
    expect((batch.value as Buffer[]).map((b) => b.toString())).toEqual(['b', 'c', 'd']);
    // After the batch, the flags read on are those of the items after it: nothing is left.
    expect(await messages.next()).toEqual({ done: true, value: undefined });
  });

  it('leaving a batches() loop early cancels the call', async () => {
    let finallyRan = 0;
    const pair = new Pair({}, {
      services: { s: { *g() { try { for (let i = 0; ; i++) yield `${i}`; } finally { finallyRan++; } } } },
    });
    const stream = pair.a.session.stream('s', 'g', '', { credit: 10 });
    const reader = (async () => {
      for await (const batch of stream.batches()) if (batch.length > 0) break;
    })();
    await pair.settle();
    await reader;
    await pair.settle();
    await turn();
    expect(finallyRan).toBe(1);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });
});
