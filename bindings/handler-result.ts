/**
 * What a handler hands back, read the way spec/PROTOCOL.md wants it: a result (§8.1), a
 * stream of them (§8.2, §8.10), or a failure, and what that failure becomes on the wire
 * (§13.2).
 */
import { handlerMaySend } from './constants.js';
import { PipitError } from './errors.js';
import { isSendable, type Sendable } from './frame-writer.js';

export function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}

/** The iterator of a stream result (an iterable or async iterable, not a byte array), or null. */
export function iteratorOf(v: unknown): Iterator<unknown> | AsyncIterator<unknown> | null {
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return null;
  const o = v as Record<symbol, unknown>;
  if (typeof o[Symbol.asyncIterator] === 'function') return (o[Symbol.asyncIterator] as () => AsyncIterator<unknown>)();
  if (typeof o[Symbol.iterator] === 'function') return (o[Symbol.iterator] as () => Iterator<unknown>)();
  return null;
}

/** A result that can be sent as one message (bytes, text, or `{ payload, text }`), or null. */
export function toMessage(v: unknown): Sendable | null {
  return isSendable(v) ? v : null;
}

/** The failure for a result that is neither bytes, text, a message, nothing nor a stream. */
export function badResult(v: unknown): PipitError {
  return new PipitError('INTERNAL', `handler result must be a Uint8Array, a string, { payload, text } or nothing, got ${describe(v)}`);
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? `an object (${v.constructor?.name ?? 'Object'})` : typeof v;
}

/**
 * What a handler's failure becomes on the wire: its message, never its stack; its code only if
 * a handler may send it (spec §13.2), else APPLICATION_ERROR.
 */
export function handlerError(e: unknown): PipitError {
  if (e instanceof PipitError) {
    return handlerMaySend(e.status) ? e : new PipitError('APPLICATION_ERROR', e.message, { cause: e });
  }
  const message = e instanceof Error ? e.message : typeof e === 'string' ? e : 'handler failed';
  return new PipitError('APPLICATION_ERROR', message);
}
