/**
 * Messages with their TEXT flag (spec §6): `callMessage` and `stream.messages()` say whether
 * the responder sent each message as text, however it arrived (folded with END, before a
 * STATUS OK, in fragments); `call` and plain stream iteration keep giving Buffers.
 * Also: the ext rewrite of a queued call's deadline, the lifecycle table, and the Peer's
 * `callMessage` with a handler whose `ctx.peer` is typed as the Peer.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Duplex, PassThrough } from 'node:stream';
import { Pair } from './helpers/pair.js';
import { Tap, inject, lone } from './helpers/session-kit.js';
import { encodeExt, withDeadline } from '../bindings/frame-writer.js';
import { ALLOWS, transition, type LifecycleEvent, type State } from '../bindings/lifecycle.js';
import { MessageStream, type Message } from '../bindings/message-stream.js';
import { Peer } from '../bindings/peer.js';

describe('callMessage', () => {
  const services = {
    s: {
      text: () => 'héllo',
      bytes: () => Uint8Array.from([1, 2, 3]),
      empty: () => undefined,
      emptyText: () => '',
      big: () => 'x'.repeat(200_000),
    },
  };

  it('resolves the payload with the TEXT flag of the response; call() still resolves the bytes', async () => {
    const pair = new Pair({}, { services });
    const s = pair.a.session;
    const got = Promise.all([
      s.callMessage('s', 'text', ''), s.callMessage('s', 'bytes', ''), s.callMessage('s', 'empty', ''),
      s.callMessage('s', 'emptyText', ''), s.call('s', 'text', ''),
    ]);
    await pair.settle();
    const [text, bytes, empty, emptyText, plain] = await got;
    expect(text).toEqual({ payload: Buffer.from('héllo'), text: true });
    expect(bytes).toEqual({ payload: Buffer.from([1, 2, 3]), text: false });
    expect(empty).toEqual({ payload: Buffer.alloc(0), text: false });
    expect(emptyText).toEqual({ payload: Buffer.alloc(0), text: true });
    expect(plain).toBeInstanceOf(Buffer);
    expect(plain.toString()).toBe('héllo');
  });

  it('a text message in fragments keeps its flag (TEXT is on the first fragment only)', async () => {
    const pair = new Pair({ maxFrameBytes: 65536 }, { services });
    const tapB = new Tap(pair.b.session);
    const got = pair.a.session.callMessage('s', 'big', '');
    await pair.settle();
    const m = await got;
    expect(m.text).toBe(true);
    expect(m.payload.toString()).toBe('x'.repeat(200_000));
    const flags = tapB.ofType('RESPONSE').map((f) => f.flags);
    expect(flags.length).toBeGreaterThan(1);
    expect(flags[0]).toEqual(['TEXT', 'FOLLOWS']);
    expect(flags.slice(1).every((f) => !f.includes('TEXT'))).toBe(true);
  });

  it('RESPONSE then STATUS OK keeps the flag of the message; STATUS OK alone is an empty binary message', async () => {
    const { end, tap } = lone({ hello: false });
    const withMessage = end.session.callMessage('s', 'm', '');
    const alone = end.session.callMessage('s', 'm', '');
    expect(tap.drain().map((f) => f.id)).toEqual([0, 1]);
    inject(end, [
      { type: 'RESPONSE', flags: ['TEXT'], id: 0, payload: Buffer.from('hi').toString('hex') },
      { type: 'STATUS', flags: [], id: 0, code: 0, message: '' },
      { type: 'STATUS', flags: [], id: 1, code: 0, message: '' },
    ]);
    expect(await withMessage).toEqual({ payload: Buffer.from('hi'), text: true });
    expect(await alone).toEqual({ payload: Buffer.alloc(0), text: false });
  });

  it('fails as call() does', async () => {
    const pair = new Pair({}, { services });
    const got = expect(pair.a.session.callMessage('s', 'nope', '')).rejects.toMatchObject({ code: 'UNKNOWN_METHOD' });
    await pair.settle();
    await got;
  });
});

describe('sending a message with an explicit TEXT flag ({ payload, text })', () => {
  it('a call and a handler pass bytes on with TEXT as given, even bytes that are not UTF-8', async () => {
    const notUtf8 = Buffer.from([0xff, 0xfe, 0x41]);
    const pair = new Pair({}, {
      services: {
        s: {
          echo: (p: Buffer, ctx: { text: boolean }) => ({ payload: p, text: ctx.text }),
          *items() {
            yield { payload: notUtf8, text: true };
            yield { payload: Buffer.from('plain'), text: false };
          },
        },
      },
    });
    const tapA = new Tap(pair.a.session);
    const tapB = new Tap(pair.b.session);
    const asText = pair.a.session.callMessage('s', 'echo', { payload: notUtf8, text: true });
    const asBytes = pair.a.session.callMessage('s', 'echo', { payload: Buffer.from('abc'), text: false });
    const got: Message[] = [];
    const reading = (async () => {
      for await (const m of pair.a.session.stream('s', 'items', '').messages()) got.push(m);
    })();
    await pair.settle();
    const [t, b] = await Promise.all([asText, asBytes]);
    await reading;
    expect([t.payload, t.text]).toEqual([notUtf8, true]);
    expect([b.payload.toString(), b.text]).toEqual(['abc', false]);
    expect(got.map((m) => [m.payload.toString('hex'), m.text])).toEqual([['fffe41', true], [Buffer.from('plain').toString('hex'), false]]);
    expect(tapA.ofType('REQUEST').map((f) => f.flags)).toEqual([['TEXT'], [], ['STREAM', 'TEXT']]);
    expect(tapB.ofType('RESPONSE').filter((f) => f.id < 2).map((f) => [f.id, f.flags, f.payload])).toEqual([
      [0, ['END', 'TEXT'], 'fffe41'],
      [1, ['END'], Buffer.from('abc').toString('hex')],
    ]);
  });

  it('anything else is refused: the call with InvalidArgumentError, the handler result with INTERNAL', async () => {
    const pair = new Pair({}, { services: { s: { bad: () => ({ payload: 'not bytes', text: true }) } } });
    await expect(pair.a.session.call('s', 'bad', { payload: 'x', text: true } as never)).rejects.toThrow(/payload must be/);
    const e = pair.a.session.call('s', 'bad', '').catch((x: Error & { code: string }) => x.code);
    await pair.settle();
    expect(await e).toBe('INTERNAL');
  });
});

describe('stream.messages()', () => {
  const services = {
    s: {
      *mixed() {
        yield 'a';
        yield Uint8Array.from([0xff]);
        yield '';
        yield 'd';
      },
    },
  };

  it('iterates the stream as messages with their TEXT flags', async () => {
    const pair = new Pair({}, { services });
    const stream = pair.a.session.stream('s', 'mixed', '');
    const got: Message[] = [];
    const done = (async () => {
      for await (const m of stream.messages()) got.push(m);
    })();
    await pair.settle();
    await done;
    expect(got).toEqual([
      { payload: Buffer.from('a'), text: true },
      { payload: Buffer.from([0xff]), text: false },
      { payload: Buffer.alloc(0), text: true },
      { payload: Buffer.from('d'), text: true },
    ]);
  });

  it('shares the queue with plain iteration: an item is read once, either way', async () => {
    const pair = new Pair({}, { services });
    const stream = pair.a.session.stream('s', 'mixed', '');
    await pair.settle();
    expect(stream.buffered).toBe(4);
    const first = await stream.next();
    const messages = stream.messages();
    const second = await messages.next();
    const rest = await stream.toArray();
    expect(first).toEqual({ done: false, value: Buffer.from('a') });
    expect(second).toEqual({ done: false, value: { payload: Buffer.from([0xff]), text: false } });
    expect(rest).toEqual([Buffer.alloc(0), Buffer.from('d')]);
    expect(await messages.next()).toEqual({ done: true, value: undefined });
  });

  it('a consumer already waiting gets the message form it asked for', async () => {
    const pair = new Pair({}, { services });
    const stream = pair.a.session.stream('s', 'mixed', '');
    const waiting = stream.messages().next();
    await pair.settle();
    expect(await waiting).toEqual({ done: false, value: { payload: Buffer.from('a'), text: true } });
    const plain = new Pair({}, { services });
    const other = plain.a.session.stream('s', 'mixed', '');
    const waitingPlain = other.next();
    await plain.settle();
    expect(await waitingPlain).toEqual({ done: false, value: Buffer.from('a') });
  });

  it('leaving messages() early cancels the call', async () => {
    const pair = new Pair({}, { services: { s: { *endless() { for (;;) yield 'x'; } } } });
    const tapA = new Tap(pair.a.session);
    const stream = pair.a.session.stream('s', 'endless', '', { credit: 4 });
    const reader = (async () => {
      for await (const m of stream.messages()) {
        expect(m.text).toBe(true);
        break;
      }
    })();
    await pair.settle();
    await reader;
    await pair.settle();
    expect(tapA.ofType('CANCEL')).toHaveLength(1);
    expect(pair.a.session.outgoingCalls).toBe(0);
    expect(pair.b.session.incomingCalls).toBe(0);
  });
});

describe('MessageStream TEXT flags', () => {
  it('every item keeps its flag, however pushes, waiting reads and queued reads interleave', async () => {
    type Read = { n: number; text: boolean | null } | null;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.boolean().map((text) => ({ push: text })), fc.boolean().map((asMessage) => ({ read: asMessage }))), { maxLength: 60 }), async (steps) => {
        const stream = new MessageStream();
        const sent: boolean[] = [];
        const got: Read[] = [];
        // One consumer, as `for await` reads: a read that waits holds off the next one.
        let waiting: Promise<Read> | null = null;
        for (const step of steps) {
          if ('push' in step) {
            stream.push(Buffer.from([sent.length]), step.push);
            sent.push(step.push);
            if (waiting !== null) {
              got.push(await waiting);
              waiting = null;
            }
          } else if (waiting === null) {
            const queued = stream.buffered > 0;
            const read: Promise<Read> = step.read
              ? stream.messages().next().then((r) => (r.done ? null : { n: r.value.payload[0]!, text: r.value.text }))
              : stream.next().then((r) => (r.done ? null : { n: r.value[0]!, text: null }));
            if (queued) got.push(await read);
            else waiting = read;
          }
        }
        stream.finish(null);
        if (waiting !== null) expect(await waiting).toBeNull();
        got.forEach((g, i) => {
          expect(g!.n).toBe(i);
          if (g!.text !== null) expect(g!.text).toBe(sent[i]);
        });
      }),
      { numRuns: 500 },
    );
  });
});

describe('withDeadline', () => {
  it('gives the bytes encodeExt gives for the new deadline, whatever follows it', () => {
    const u32 = fc.integer({ min: 1, max: 0xffffffff });
    fc.assert(
      fc.property(u32, u32, fc.option(fc.integer({ min: 1, max: 0x7fffffff }), { nil: undefined }),
        fc.option(fc.array(fc.tuple(fc.string({ maxLength: 8 }), fc.string({ maxLength: 8 })), { maxLength: 3 }), { nil: undefined }),
        (before, after, credit, metadata) => {
          const ext = encodeExt({ deadlineMs: before, credit, metadata })!;
          expect(Buffer.from(withDeadline(ext, after))).toEqual(Buffer.from(encodeExt({ deadlineMs: after, credit, metadata })!));
        }),
      { numRuns: 300 },
    );
  });

  it('refuses an ext block without a deadline entry', () => {
    expect(() => withDeadline(encodeExt({ credit: 5 })!, 10)).toThrow(/no deadline/);
  });
});

describe('lifecycle table', () => {
  const states: State[] = ['OPEN', 'GOAWAY_SENT', 'GOAWAY_RECEIVED', 'DRAINING', 'CLOSED'];
  const events: LifecycleEvent[] = ['SEND_GOAWAY', 'RECV_GOAWAY', 'FINISHED', 'FAIL'];

  it('has exactly the transitions its comment draws', () => {
    const got: string[] = [];
    for (const s of states) for (const e of events) {
      const next = transition(s, e);
      if (next !== undefined) got.push(`${s} --${e}--> ${next}`);
    }
    expect(got).toEqual([
      'OPEN --SEND_GOAWAY--> GOAWAY_SENT',
      'OPEN --RECV_GOAWAY--> GOAWAY_RECEIVED',
      'OPEN --FAIL--> CLOSED',
      'GOAWAY_SENT --RECV_GOAWAY--> DRAINING',
      'GOAWAY_SENT --FAIL--> CLOSED',
      'GOAWAY_RECEIVED --SEND_GOAWAY--> DRAINING',
      'GOAWAY_RECEIVED --FAIL--> CLOSED',
      'DRAINING --FINISHED--> CLOSED',
      'DRAINING --FAIL--> CLOSED',
    ]);
  });

  it('only OPEN opens calls; only OPEN and GOAWAY_RECEIVED serve new requests; only DRAINING finishes when idle', () => {
    expect(states.filter((s) => ALLOWS[s].openCalls)).toEqual(['OPEN']);
    expect(states.filter((s) => ALLOWS[s].serveRequests)).toEqual(['OPEN', 'GOAWAY_RECEIVED']);
    expect(states.filter((s) => ALLOWS[s].finishWhenIdle)).toEqual(['DRAINING']);
  });
});

describe('Peer.callMessage', () => {
  it('over a byte stream, with a handler calling back through its typed ctx.peer', async () => {
    const ab = new PassThrough();
    const ba = new PassThrough();
    const a = new Peer(Duplex.from({ readable: ba, writable: ab }), { codec: 'ts', services: { ui: { notify: (p) => `seen ${p.toString()}` } } });
    const b = new Peer(Duplex.from({ readable: ab, writable: ba }), {
      codec: 'ts',
      services: {
        // ctx.peer is the Peer: its methods type-check without a cast.
        s: { back: async (p, ctx) => (await ctx.peer.callMessage('ui', 'notify', p)).payload },
      },
    });
    expect(await a.callMessage('s', 'back', 'x')).toEqual({ payload: Buffer.from('seen x'), text: false });
    a.destroy();
    b.destroy();
  });
});
