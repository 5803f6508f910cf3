import { APP_STATUS_MIN, CODEC_ERROR_NAMES, STATUS_NAMES, Status, type StatusName } from './constants.js';

/**
 * Every failure pipit reports. `code` is a status name from spec/PROTOCOL.md §13
 * ('CONNECTION_CLOSED' is local only, 'UNKNOWN' a reserved number this version does not
 * know). `status` is the number: the wire code, or 11 for CONNECTION_CLOSED (§13.1); for an
 * application-defined status (>= 256) `code` is 'APPLICATION_ERROR' and `status` the number.
 */
export type ErrorCode = Exclude<StatusName, 'OK'> | 'UNKNOWN';

const BRAND = Symbol.for('pipit.error');

export class PipitError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  /**
   * @param code a status name, or an application status number (>= 256).
   * @param message short human-readable fact; travels to the caller for statuses.
   */
  constructor(code: ErrorCode | number, message = '', options?: { cause?: unknown }) {
    super(message, options);
    if (typeof code === 'number') {
      this.status = code >>> 0;
      this.code = statusName(this.status);
    } else {
      if ((!(code in Status) || (code as string) === 'OK') && code !== 'UNKNOWN') {
        throw new TypeError(`unknown pipit error code ${JSON.stringify(code)}`);
      }
      this.code = code;
      // UNKNOWN without a number: a failure of unknown kind. What a handler's failure becomes
      // on the wire is decided by handlerMaySend (spec §13.2), not here.
      this.status = code === 'UNKNOWN' ? Status.INTERNAL : Status[code];
    }
    this.name = 'PipitError';
  }

  /** Branded so `instanceof PipitError` holds across duplicate installs of the package. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    if (this !== PipitError) return Function.prototype[Symbol.hasInstance].call(this, value);
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[BRAND] === true;
  }
}
Object.defineProperty(PipitError.prototype, BRAND, { value: true });

/**
 * The protocol was broken: by the peer (or the input is not pipit), or — `reason` 'E_PEER' —
 * the peer's ERROR says we broke it. Terminal for the connection. The message starts with the
 * rule's name, as the ERROR frame's does (spec §10.1): `E_BAD_FLAGS at offset 118: ...`.
 */
export class ProtocolError extends PipitError {
  /** Codec error name (E_*, spec §14.2), session violation name (§14.3), or 'E_PEER'. */
  readonly reason: string;
  /** Stream offset of the first byte of the bad frame, or -1 when not tied to one frame. */
  readonly offset: number;

  constructor(reason: string, detail: string, offset = -1) {
    super('PROTOCOL_ERROR', `${reason}${offset >= 0 ? ` at offset ${offset}` : ''}: ${detail}`);
    this.name = 'ProtocolError';
    this.reason = reason;
    this.offset = offset;
  }
}

/**
 * The caller misused the API (bad argument, oversize name...). Reported where the misuse is
 * found, the way the method reports any failure: thrown by synchronous ones (constructors,
 * `handle`, `stream` for its `credit`), the rejection of the promise of `call`,
 * `callMessage`, `listen` and `connect`, and the end of a stream for `stream`'s other
 * arguments.
 */
export class InvalidArgumentError extends PipitError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
    this.name = 'InvalidArgumentError';
  }
}

/** Name for a status number received from the wire (11, local only, reads as UNKNOWN). */
export function statusName(status: number): ErrorCode {
  if (status >= APP_STATUS_MIN) return 'APPLICATION_ERROR';
  const name = STATUS_NAMES[status];
  if (name === undefined || name === 'OK') return 'UNKNOWN';
  return name;
}

/** ProtocolError for a codec error code. */
export function codecError(code: number, offset: number, detail?: string): ProtocolError {
  const name = CODEC_ERROR_NAMES[code] ?? `E_${code}`;
  return new ProtocolError(name, detail ?? CODEC_MESSAGES[code] ?? name, offset);
}

const CODEC_MESSAGES: Record<number, string> = {
  1: 'frame length exceeds maxFrameBytes',
  2: 'frame length 0 leaves no room for the id',
  3: 'reserved frame type',
  4: 'reserved flag set',
  5: 'overlong or out-of-range varint',
  6: 'field runs past the end of the frame',
  7: 'name length runs past the end of the frame',
  8: 'ext block runs past the end of the frame',
  9: 'malformed ext block',
  10: 'malformed frame body',
  11: 'the byte stream ended inside a frame',
};
