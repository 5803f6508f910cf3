/**
 * Every error pipit reports, pinned so that none drifts silently (undici's test/errors.js is
 * the model): each class of bindings/errors.ts with its name, `.code`, `.status` and message
 * template; the status number → name table; the message of every codec error (CODEC_MESSAGES,
 * through codecError and through both decoders); and every session violation (spec §14.3)
 * provoked for real, with the ERROR frame it makes the session send. A change here is a
 * change callers can see: make it on purpose, in both implementations and spec/PROTOCOL.md.
 */
import { describe, expect, it } from 'vitest';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  CODEC_ERROR_NAMES, MAX_CREDIT, SESSION_VIOLATIONS, STATUS_NAMES, Status, type SessionViolation,
} from '../bindings/constants.js';
import { InvalidArgumentError, PipitError, ProtocolError, codecError, statusName, type ErrorCode } from '../bindings/errors.js';
import { codecs } from './helpers/codecs.js';
import type { VFrame } from './helpers/frames.js';
import { deferred, inject, lone, track } from './helpers/session-kit.js';

interface Expected {
  name: string;
  code: string;
  status: number;
  message: string;
}

const pick = (e: PipitError): Expected => ({ name: e.name, code: e.code, status: e.status, message: e.message });

describe('error classes', () => {
  const cause = new Error('the cause');
  // [what, construct, name, code, status, message]
  const table: Array<[string, () => PipitError, string, ErrorCode, number, string]> = [
    ['PipitError by name', () => new PipitError('UNAVAILABLE', 'going away'), 'PipitError', 'UNAVAILABLE', 8, 'going away'],
    ['PipitError without a message', () => new PipitError('CANCELLED'), 'PipitError', 'CANCELLED', 1, ''],
    ['PipitError CONNECTION_CLOSED (local only, §13.1)', () => new PipitError('CONNECTION_CLOSED', 'connection closed'), 'PipitError', 'CONNECTION_CLOSED', 11, 'connection closed'],
    ['PipitError UNKNOWN (a failure of unknown kind)', () => new PipitError('UNKNOWN', 'what'), 'PipitError', 'UNKNOWN', 10, 'what'],
    ['PipitError by an application status', () => new PipitError(300, 'app'), 'PipitError', 'APPLICATION_ERROR', 300, 'app'],
    ['PipitError by a wire number', () => new PipitError(7, 'full'), 'PipitError', 'RESOURCE_EXHAUSTED', 7, 'full'],
    ['ProtocolError at an offset', () => new ProtocolError('E_BAD_FLAGS', 'reserved flag set', 118), 'ProtocolError', 'PROTOCOL_ERROR', 9, 'E_BAD_FLAGS at offset 118: reserved flag set'],
    ['ProtocolError of a session rule', () => new ProtocolError('E_NO_SUCH_CALL', 'RESPONSE for call 9, which is not open'), 'ProtocolError', 'PROTOCOL_ERROR', 9, 'E_NO_SUCH_CALL: RESPONSE for call 9, which is not open'],
    ['InvalidArgumentError', () => new InvalidArgumentError('credit must be an integer from 1 to 2147483647, got 0'), 'InvalidArgumentError', 'INVALID_ARGUMENT', 4, 'credit must be an integer from 1 to 2147483647, got 0'],
  ];

  it.each(table)('%s: name, code, status, message', (_, make, name, code, status, message) => {
    const e = make();
    expect(pick(e)).toEqual({ name, code, status, message });
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(PipitError);
    expect(e.stack).toContain(`${name}: ${message}`);
  });

  it('every status name makes a PipitError with its number; OK and unknown names are a TypeError', () => {
    for (const [name, status] of Object.entries(Status)) {
      if (name === 'OK') continue;
      expect(pick(new PipitError(name as ErrorCode, 'm')), name).toEqual({ name: 'PipitError', code: name, status, message: 'm' });
    }
    expect(() => new PipitError('OK' as ErrorCode)).toThrow(new TypeError('unknown pipit error code "OK"'));
    expect(() => new PipitError('NOPE' as ErrorCode)).toThrow(new TypeError('unknown pipit error code "NOPE"'));
  });

  it('ProtocolError keeps its reason and offset (-1 when not tied to a frame)', () => {
    expect(new ProtocolError('E_TRUNCATED', 'x', 0)).toMatchObject({ reason: 'E_TRUNCATED', offset: 0, message: 'E_TRUNCATED at offset 0: x' });
    expect(new ProtocolError('E_SECOND_GOAWAY', 'second GOAWAY')).toMatchObject({ reason: 'E_SECOND_GOAWAY', offset: -1 });
    expect(new ProtocolError('E_PEER', 'x')).toBeInstanceOf(ProtocolError);
    expect(new InvalidArgumentError('x')).not.toBeInstanceOf(ProtocolError);
  });

  it('the cause travels', () => {
    expect(new PipitError('UNAVAILABLE', 'm', { cause }).cause).toBe(cause);
  });

  it('instanceof PipitError holds across duplicate installs (the Symbol.for brand), subclasses stay strict', () => {
    const foreign = Object.create(Error.prototype, { [Symbol.for('pipit.error')]: { value: true } }) as unknown;
    expect(foreign instanceof PipitError).toBe(true);
    expect(foreign instanceof ProtocolError).toBe(false);
    expect(new Error('plain') instanceof PipitError).toBe(false);
    expect((null as unknown) instanceof PipitError).toBe(false);
  });
});

describe('status numbers', () => {
  it('read off the wire as names by an explicit table', () => {
    expect([...STATUS_NAMES]).toEqual([
      'OK', 'CANCELLED', 'UNKNOWN_SERVICE', 'UNKNOWN_METHOD', 'INVALID_ARGUMENT', 'APPLICATION_ERROR',
      'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'UNAVAILABLE', 'PROTOCOL_ERROR', 'INTERNAL',
    ]);
    const read: Array<[number, ErrorCode]> = [
      [0, 'UNKNOWN'], // OK is no failure
      [1, 'CANCELLED'], [2, 'UNKNOWN_SERVICE'], [3, 'UNKNOWN_METHOD'], [4, 'INVALID_ARGUMENT'], [5, 'APPLICATION_ERROR'],
      [6, 'DEADLINE_EXCEEDED'], [7, 'RESOURCE_EXHAUSTED'], [8, 'UNAVAILABLE'], [9, 'PROTOCOL_ERROR'], [10, 'INTERNAL'],
      [11, 'UNKNOWN'], // CONNECTION_CLOSED never comes off the wire
      [12, 'UNKNOWN'], [255, 'UNKNOWN'], // reserved
      [256, 'APPLICATION_ERROR'], [0xffffffff, 'APPLICATION_ERROR'],
    ];
    for (const [n, name] of read) {
      expect(statusName(n), String(n)).toBe(name);
      expect(new PipitError(n).status, String(n)).toBe(n);
    }
  });
});

/** The message template of each codec error code (bindings/errors.ts CODEC_MESSAGES). */
const CODEC_MESSAGES: Array<[number, string, string]> = [
  [1, 'E_FRAME_TOO_LARGE', 'frame length exceeds maxFrameBytes'],
  [2, 'E_FRAME_TOO_SHORT', 'frame length 0 leaves no room for the id'],
  [3, 'E_UNKNOWN_TYPE', 'reserved frame type'],
  [4, 'E_BAD_FLAGS', 'reserved flag set'],
  [5, 'E_BAD_VARINT', 'overlong or out-of-range varint'],
  [6, 'E_TRUNCATED', 'field runs past the end of the frame'],
  [7, 'E_NAME_OVERRUN', 'name length runs past the end of the frame'],
  [8, 'E_EXT_OVERRUN', 'ext block runs past the end of the frame'],
  [9, 'E_BAD_EXT', 'malformed ext block'],
  [10, 'E_BAD_BODY', 'malformed frame body'],
  [11, 'E_INCOMPLETE', 'the byte stream ended inside a frame'],
];

/** Every case of the shared vectors (spec/vectors) that ends in a codec error. */
const VECTOR_DIR = join(import.meta.dirname, '..', 'spec', 'vectors');
const errorCases = readdirSync(VECTOR_DIR)
  .filter((f) => f.endsWith('.json'))
  .flatMap((f) => (JSON.parse(readFileSync(join(VECTOR_DIR, f), 'utf8')) as { cases: Array<{ name: string; hex: string; maxFrameBytes?: number; error: { code: string; offset: number } | null }> }).cases)
  .filter((c) => c.error !== null);

describe('codec errors', () => {
  it('every code has a name and a message; codecError builds "<name> at offset <n>: <message>"', () => {
    expect(CODEC_MESSAGES.map(([code, name]) => [code, name])).toEqual(CODEC_ERROR_NAMES.slice(1).map((n, i) => [i + 1, n]));
    for (const [code, name, template] of CODEC_MESSAGES) {
      const e = codecError(code, 42);
      expect([e.name, e.code, e.status, e.reason, e.offset, e.message]).toEqual(['ProtocolError', 'PROTOCOL_ERROR', 9, name, 42, `${name} at offset 42: ${template}`]);
    }
    expect(codecError(3, 0, 'a detail of its own').message).toBe('E_UNKNOWN_TYPE at offset 0: a detail of its own');
    // A code with no name (a scanner newer than this table) is still reported, by number.
    expect(codecError(99, 7)).toMatchObject({ reason: 'E_99', message: 'E_99 at offset 7: E_99' });
  });

  it('the shared vectors reach every code', () => {
    expect(new Set(errorCases.map((c) => c.error!.code))).toEqual(new Set(CODEC_ERROR_NAMES.slice(1)));
  });

  describe.each(codecs.map((c) => [c.kind, c] as const))('codec %s', (_, codec) => {
    it('reports each error of the shared vectors with its template and the offset of the bad frame', () => {
      for (const c of errorCases) {
        const bytes = Buffer.from(c.hex, 'hex');
        const max = c.maxFrameBytes ?? 65536;
        const dec = codec.createDecoder(max);
        const e = dec.push(bytes).error ?? dec.end()!;
        const { code, offset } = c.error!;
        // The end of the stream names how much of a frame it cut off.
        const template = code === 'E_INCOMPLETE' ? `stream ended inside a frame (${bytes.length - offset} bytes)` : CODEC_MESSAGES.find(([, n]) => n === code)![2];
        expect([e.reason, e.offset, e.message], c.name).toEqual([code, offset, `${code} at offset ${offset}: ${template}`]);
      }
    });
  });
});

// ---- session violations ---------------------------------------------------------------

interface Violation {
  what: string;
  reason: SessionViolation | 'E_PEER';
  message: string;
  /** Frames injected once the session is set up. */
  frames: VFrame[];
  /** Open calls of our own first: a unary call (id 0), or a stream call with credit 1. */
  own?: 'unary' | 'stream';
}

const req = (id: number, extra: Partial<VFrame> = {}): VFrame => ({ type: 'REQUEST', flags: [], id, service: 's', method: 'hold', payload: '', ...extra });
const res = (id: number, flags: string[], payload = '01'): VFrame => ({ type: 'RESPONSE', flags, id, payload });
const goaway = (id: number): VFrame => ({ type: 'GOAWAY', flags: [], id, code: 0, message: '' });

const VIOLATIONS: Violation[] = [
  { what: 'HELLO not first', reason: 'E_BAD_HELLO', frames: [{ type: 'PING', flags: [], id: 1 }, { type: 'HELLO', flags: [], id: 1, settings: [] }], message: 'HELLO must be the first frame and sent once' },
  { what: 'HELLO with version 0', reason: 'E_BAD_HELLO', frames: [{ type: 'HELLO', flags: [], id: 0, settings: [] }], message: 'HELLO with version 0' },
  { what: 'a REQUEST reusing an open id', reason: 'E_ID_IN_USE', frames: [req(3), req(3)], message: 'REQUEST reuses id 3 of a call still in progress' },
  { what: 'a RESPONSE for no open call', reason: 'E_NO_SUCH_CALL', frames: [res(9, ['END'])], message: 'RESPONSE for call 9, which is not open' },
  { what: 'a STATUS for no open call', reason: 'E_NO_SUCH_CALL', frames: [{ type: 'STATUS', flags: [], id: 9, code: 0, message: '' }], message: 'STATUS for call 9, which is not open' },
  { what: 'a second message on a unary call', reason: 'E_SECOND_MESSAGE', own: 'unary', frames: [res(0, []), res(0, [])], message: 'second response message on unary call 0' },
  { what: 'a stream message beyond credit', reason: 'E_NO_CREDIT', own: 'stream', frames: [res(0, []), res(0, [])], message: 'stream message on call 0 beyond the credit granted' },
  {
    what: 'an initial credit above 2^31-1', reason: 'E_CREDIT_OVERFLOW',
    frames: [req(4, { flags: ['STREAM', 'EXT'], ext: { credit: MAX_CREDIT + 1 } })], message: `initial credit ${MAX_CREDIT + 1} of call 4 exceeds ${MAX_CREDIT}`,
  },
  {
    what: 'credit growing above 2^31-1', reason: 'E_CREDIT_OVERFLOW',
    frames: [req(4, { flags: ['STREAM', 'EXT'], ext: { credit: 1 }, method: 'feed' }), { type: 'CREDIT', flags: [], id: 4, credit: MAX_CREDIT }], message: `credit for call 4 exceeds ${MAX_CREDIT}`,
  },
  { what: 'TEXT on a continuation', reason: 'E_TEXT_CONTINUATION', own: 'unary', frames: [res(0, ['FOLLOWS']), res(0, ['TEXT'])], message: 'TEXT flag on a continuation fragment of call 0' },
  { what: 'DATA for a complete request', reason: 'E_DATA_COMPLETE', frames: [req(5), { type: 'DATA', flags: [], id: 5, payload: '01' }], message: 'DATA for call 5, whose request is already complete' },
  { what: 'STATUS OK inside a fragmented message', reason: 'E_OK_MID_MESSAGE', own: 'unary', frames: [res(0, ['FOLLOWS']), { type: 'STATUS', flags: [], id: 0, code: 0, message: '' }], message: 'STATUS OK on call 0 in the middle of a fragmented message' },
  // A call of the peer's held open, or the first GOAWAY would finish the connection (§9.4).
  { what: 'a second GOAWAY', reason: 'E_SECOND_GOAWAY', frames: [req(3), goaway(0), goaway(0)], message: 'second GOAWAY' },
  { what: 'a GOAWAY counting requests never sent', reason: 'E_BAD_GOAWAY', frames: [goaway(5)], message: 'GOAWAY counts 5 requests received, but 0 were sent' },
  {
    what: 'a GOAWAY discarding a request it answered', reason: 'E_BAD_GOAWAY', own: 'unary',
    frames: [res(0, ['END']), goaway(0)], message: 'GOAWAY discards the last 1 requests sent, but 1 of them were answered',
  },
  { what: 'an ERROR from the peer', reason: 'E_PEER', frames: [{ type: 'ERROR', flags: [], id: 0, code: 9, message: 'E_NO_CREDIT: you' }], message: 'peer reported a protocol error: E_NO_CREDIT: you' },
];

describe('session violations (§14.3)', () => {
  it('the table covers every name', () => {
    expect(new Set(VIOLATIONS.map((v) => v.reason))).toEqual(new Set([...SESSION_VIOLATIONS, 'E_PEER']));
  });

  it.each(VIOLATIONS.map((v) => [v.what, v] as const))('%s', async (_, v) => {
    const held = deferred<string>();
    const { end, tap } = lone({
      hello: false,
      services: { s: { hold: () => held.promise, async *feed() { yield await held.promise; } } },
    });
    const own = v.own === 'unary' ? track(end.session.call('s', 'm', '')) : null;
    const stream = v.own === 'stream' ? end.session.stream('s', 'm', '', { credit: 1 }) : null;
    tap.drain();
    inject(end, v.frames);
    const message = `${v.reason}: ${v.message}`;
    expect(end.closed).toBeInstanceOf(ProtocolError);
    expect(end.closed).toMatchObject({ name: 'ProtocolError', code: 'PROTOCOL_ERROR', status: 9, reason: v.reason, offset: -1, message });
    // Our own ERROR tells the peer the same, unless it was the peer's ERROR that ended it.
    const errors = tap.drain().filter((f) => f.type === 'ERROR');
    expect(errors).toEqual(v.reason === 'E_PEER' ? [] : [{ type: 'ERROR', flags: [], id: 0, code: 9, message, bytes: expect.any(Number) }]);
    // Our open calls fail with the same error.
    if (own !== null) {
      await own.promise;
      if (own.error !== undefined) expect([own.error.code, own.error.message]).toEqual(['PROTOCOL_ERROR', message]);
    }
    if (stream !== null) await expect(stream.toArray()).rejects.toMatchObject({ code: 'PROTOCOL_ERROR', message });
  });
});
