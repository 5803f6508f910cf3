/**
 * The session oracle (test/helpers/output-model.ts) must not pass anything: each sequence the
 * protocol forbids is rejected with its reason, the same sequence made legal passes, and the
 * in-memory test beds really run every session's output through it.
 */
import { describe, expect, it } from 'vitest';
import { tsCodec } from '../bindings/codec-ts.js';
import { MAX_FRAME_BYTES_LIMIT } from '../bindings/constants.js';
import { encodeFrames, type VFrame } from './helpers/frames.js';
import { OutputModel } from './helpers/output-model.js';
import { Pair } from './helpers/pair.js';
import { Tap, lone, track } from './helpers/session-kit.js';

/** What the peer sent (in), then what the session wrote (out), in turns. */
type Turn = { in: VFrame[] } | { out: VFrame[] };

function play(turns: Turn[]): void {
  const model = new OutputModel();
  const dec = tsCodec.createDecoder(MAX_FRAME_BYTES_LIMIT);
  for (const t of turns) {
    if ('in' in t) model.input(dec.push(encodeFrames(t.in)));
    else model.output([encodeFrames(t.out)]);
  }
}

const req = (id: number, extra: Partial<VFrame> = {}): VFrame => ({ type: 'REQUEST', flags: [], id, service: 's', method: 'm', payload: '', ...extra });
const stream = (id: number, credit?: number): VFrame =>
  credit === undefined ? req(id, { flags: ['STREAM'] }) : req(id, { flags: ['STREAM', 'EXT'], ext: { credit } });
const res = (id: number, flags: string[] = ['END'], payload = ''): VFrame => ({ type: 'RESPONSE', flags, id, payload });
const status = (id: number, code = 0): VFrame => ({ type: 'STATUS', flags: [], id, code, message: '' });
const goaway: VFrame = { type: 'GOAWAY', flags: [], id: 0, code: 0, message: '' };
const error: VFrame = { type: 'ERROR', flags: [], id: 0, code: 9, message: 'E_NO_SUCH_CALL: x' };
const ping: VFrame = { type: 'PING', flags: [], id: 1 };

/** [what, a forbidden sequence, the reason, the nearest legal sequence]. */
const RULES: Array<[string, Turn[], RegExp, Turn[]]> = [
  ['a second terminal frame', [{ in: [req(1)] }, { out: [res(1)] }, { out: [status(1, 6)] }], /terminal frame 2 for call 1, which the peer opened 1 times/,
    [{ in: [req(1)] }, { out: [res(1)] }, { in: [req(1)] }, { out: [status(1, 6)] }]],
  ['a terminal frame for a call never opened', [{ out: [status(7)] }], /terminal frame 1 for call 7, which the peer opened 0 times/, [{ in: [req(7)] }, { out: [status(7)] }]],
  ['a second message on a unary call', [{ in: [req(1)] }, { out: [res(1, []), res(1)] }], /started message 2 on call 1; the peer allowed 1/, [{ in: [req(1)] }, { out: [res(1)] }]],
  ['a stream message beyond credit', [{ in: [stream(3, 2)] }, { out: [res(3, []), res(3, []), res(3, [])] }], /started message 3 on call 3; the peer allowed 2/,
    [{ in: [stream(3, 2)] }, { out: [res(3, []), res(3, [])] }, { in: [{ type: 'CREDIT', flags: [], id: 3, credit: 1 }] }, { out: [res(3)] }]],
  ['a stream message beyond the default credit (128)', [{ in: [stream(4)] }, { out: Array.from({ length: 129 }, () => res(4, [])) }], /started message 129 on call 4; the peer allowed 128/,
    [{ in: [stream(4)] }, { out: Array.from({ length: 128 }, () => res(4, [])) }, { out: [status(4)] }]],
  ['anything after ERROR', [{ out: [error, ping] }], /wrote PING after its ERROR frame/, [{ out: [ping, error] }]],
  ['a frame over the peer’s limit', [{ in: [req(1)] }, { out: [res(1, ['END'], '00'.repeat(65536))] }], /wrote a 65541-byte RESPONSE; the peer accepts 65536/,
    [{ in: [{ type: 'HELLO', flags: [], id: 1, settings: [[1, 70_000]] }, req(1)] }, { out: [res(1, ['END'], '00'.repeat(65536))] }]],
  ['a second GOAWAY', [{ out: [goaway, goaway] }], /second GOAWAY/, [{ out: [goaway] }]],
  ['a REQUEST after its own GOAWAY', [{ out: [goaway, req(2)] }], /opened call 2 after GOAWAY/, [{ out: [req(2), goaway] }]],
  ['a REQUEST after the peer’s GOAWAY', [{ in: [goaway] }, { out: [] }, { out: [req(2)] }], /opened call 2 after GOAWAY/,
    // Taken together with the GOAWAY's arrival, a REQUEST may have been written before it.
    [{ in: [goaway] }, { out: [req(2)] }]],
];

describe('OutputModel', () => {
  it.each(RULES)('rejects %s, and passes the legal sequence next to it', (_, bad, reason, good) => {
    expect(() => play(bad)).toThrow(reason);
    expect(() => play(good)).not.toThrow();
  });

  it('rejects output that does not decode', () => {
    const model = new OutputModel();
    expect(() => model.output([Uint8Array.of(1, 0, 0, 0x0b, 0)])).toThrow(/undecodable stream: E_UNKNOWN_TYPE/);
  });

  it('keeps the first violation: every later take fails with it', () => {
    const model = new OutputModel();
    expect(() => model.output([encodeFrames([status(1)])])).toThrow(/terminal frame 1/);
    expect(() => model.output([])).toThrow(/terminal frame 1/);
    expect(model.violation?.message).toMatch(/terminal frame 1 for call 1/);
  });
});

describe('the in-memory test beds run every session through it', () => {
  it('Pair: a session that writes a second terminal frame fails the flush that carries it', async () => {
    const pair = new Pair({}, { services: { s: { m: (p: Buffer) => p } } });
    const call = track(pair.a.session.call('s', 'm', 'x'));
    await pair.settle();
    await call.promise;
    expect(call.value?.toString()).toBe('x');
    expect(pair.b.model.written).toMatchObject({ HELLO: 1, RESPONSE: 1 });
    // Reach under the session and write what its responder must never write.
    const link = (pair.b.session as unknown as { link: { writer: { status(id: number, code: number): void }; outputReady(): void } }).link;
    link.writer.status(0, 0);
    link.outputReady();
    expect(() => pair.flush()).toThrow(/terminal frame 2 for call 0, which the peer opened 1 times/);
    // The point of this test: the violation is expected, so it must not fail the test again afterwards.
    pair.b.model.violation = null;
  });

  it('Tap on a lone session: frames written after ERROR fail the drain', () => {
    const { end, tap } = lone({ hello: false });
    const link = (end.session as unknown as { link: { writer: { error(code: number, m: string): void; ping(id: number): void }; outputReady(): void } }).link;
    link.writer.error(9, 'E_NO_SUCH_CALL: made up');
    link.writer.ping(1);
    expect(() => tap.drain()).toThrow(/wrote PING after its ERROR frame/);
    tap.model.violation = null;
  });

  it('Tap: the same model whatever watches the session first', () => {
    const pair = new Pair();
    expect(new Tap(pair.a.session).model).toBe(pair.a.model);
  });
});
