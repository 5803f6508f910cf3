/**
 * Introspection (spec/PROTOCOL.md §8.11): the reserved service `$pipit`, its method `methods`,
 * and the binary listing it answers with.
 *
 * A listing is a sequence of entries laid out like the name block of a REQUEST followed by
 * one kind byte, `u8 svcLen, service, u8 methLen, method, u8 kind`, sorted by service then
 * method, byte for byte. The entries must fill the message exactly.
 *
 * What TS can know about a method's kind: a generator function or an async generator function
 * produces a stream (2). Any other function may return a value, a promise or an iterable, and
 * which one is only known once it runs, so it is listed as unknown (0) unless it was declared
 * with `unary()` (1) or `streaming()` (2).
 */
import { MAX_NAME_BYTES } from './constants.js';
import { PipitError } from './errors.js';

/** The reserved service name: no application may register it. */
export const INTROSPECTION_SERVICE = '$pipit';
/** The method of `$pipit` that lists the methods served on the connection. */
export const INTROSPECTION_METHOD = 'methods';

/** Kind byte of a listing entry. Values other than these are reserved and read as UNKNOWN. */
export const MethodKind = {
  /** The implementation cannot tell before running the method. */
  UNKNOWN: 0,
  /** The method produces one result. */
  UNARY: 1,
  /** The method produces a stream of results. */
  STREAM: 2,
} as const;
export type MethodKind = (typeof MethodKind)[keyof typeof MethodKind];

/** One entry of a `$pipit`/`methods` listing. */
export interface MethodInfo {
  service: string;
  method: string;
  kind: MethodKind;
}

const KIND = Symbol.for('pipit.methodKind');

type Fn = (...args: never[]) => unknown;

/** Declare a handler as producing one result, so introspection lists it as unary. Returns `fn`. */
export function unary<F extends Fn>(fn: F): F {
  return mark(fn, MethodKind.UNARY);
}

/**
 * Declare a handler as producing a stream (for one that returns an iterable rather than being
 * a generator function), so introspection lists it as a stream. Returns `fn`.
 */
export function streaming<F extends Fn>(fn: F): F {
  return mark(fn, MethodKind.STREAM);
}

function mark<F extends Fn>(fn: F, kind: MethodKind): F {
  if (typeof fn !== 'function') throw new TypeError('a handler must be a function');
  Object.defineProperty(fn, KIND, { value: kind, configurable: true });
  return fn;
}

const GeneratorFunction = Object.getPrototypeOf(function* () {}).constructor as FunctionConstructor;
const AsyncGeneratorFunction = Object.getPrototypeOf(async function* () {}).constructor as FunctionConstructor;

/** The kind introspection lists for a handler (see the file comment for what TS can know). */
export function methodKind(fn: unknown): MethodKind {
  if (typeof fn !== 'function') return MethodKind.UNKNOWN;
  const f = fn as object;
  const declared = (f as Record<symbol, unknown>)[KIND];
  if (declared === MethodKind.UNARY || declared === MethodKind.STREAM) return declared;
  if (f instanceof GeneratorFunction || f instanceof AsyncGeneratorFunction) return MethodKind.STREAM;
  return MethodKind.UNKNOWN;
}

/** Encode a listing: entries sorted by service, then method, byte for byte. */
export function encodeMethodList(entries: Iterable<MethodInfo>): Buffer {
  const rows = [...entries].map((e) => ({
    s: Buffer.from(e.service, 'utf8'),
    m: Buffer.from(e.method, 'utf8'),
    kind: e.kind,
  }));
  rows.sort((a, b) => Buffer.compare(a.s, b.s) || Buffer.compare(a.m, b.m));
  let size = 0;
  for (const r of rows) {
    if (r.s.length > MAX_NAME_BYTES || r.m.length > MAX_NAME_BYTES) {
      throw new PipitError('INTERNAL', `name of ${r.s.length} + ${r.m.length} bytes does not fit a listing entry`);
    }
    size += 3 + r.s.length + r.m.length;
  }
  const out = Buffer.allocUnsafe(size);
  let p = 0;
  for (const r of rows) {
    out[p++] = r.s.length;
    p += r.s.copy(out, p);
    out[p++] = r.m.length;
    p += r.m.copy(out, p);
    out[p++] = r.kind;
  }
  return out;
}

/**
 * Decode a `$pipit`/`methods` answer. Reserved kind values read as UNKNOWN.
 * @throws PipitError PROTOCOL_ERROR when the entries do not exactly fill the message (the
 *   connection itself stays usable).
 */
export function decodeMethodList(bytes: Uint8Array): MethodInfo[] {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  const out: MethodInfo[] = [];
  let p = 0;
  while (p < b.length) {
    const at = p;
    const fail = (what: string): never => {
      throw new PipitError('PROTOCOL_ERROR', `malformed ${INTROSPECTION_SERVICE}/${INTROSPECTION_METHOD} answer: entry at byte ${at} ${what} (message is ${b.length} bytes)`);
    };
    const sEnd = p + 1 + b[p]!;
    if (sEnd + 1 > b.length) fail('has its service name run past the end');
    const mEnd = sEnd + 1 + b[sEnd]!;
    if (mEnd + 1 > b.length) fail('has its method name or kind run past the end');
    const kind = b[mEnd]!;
    out.push({
      service: b.toString('utf8', p + 1, sEnd),
      method: b.toString('utf8', sEnd + 1, mEnd),
      kind: kind === MethodKind.UNARY || kind === MethodKind.STREAM ? kind : MethodKind.UNKNOWN,
    });
    p = mEnd + 1;
  }
  return out;
}
