/**
 * Exit statuses of `pipit call`, `stream`, `ls` and `ping`: 0 for OK, and a distinct code for
 * every status a call can end with (spec/PROTOCOL.md §13), 10 + its number, so a script can
 * tell them apart without parsing stderr.
 */
import { PipitError, Status, type StatusName } from '../bindings/index.js';

export const EXIT_OK = 0;
/** A failure that is not a call status: output could not be written, a file could not be read... */
export const EXIT_FAILURE = 1;
/** Bad arguments (one line on stderr). */
export const EXIT_USAGE = 2;
/** The status of a call: 10 + its number (CANCELLED 11 ... INTERNAL 20, CONNECTION_CLOSED 21). */
const STATUS_BASE = 10;
/** A reserved status number (12-255) was received: surfaced as UNKNOWN (§12). */
export const EXIT_UNKNOWN_STATUS = 22;
/** An application-defined status (256 and above); the number is on stderr. */
export const EXIT_APPLICATION_STATUS = 23;
const NAMES = Object.keys(Status) as StatusName[];

const MEANINGS: Partial<Record<StatusName, string>> = {
  CANCELLED: 'the call was cancelled (Ctrl-C)',
  UNKNOWN_SERVICE: 'no such service; not processed',
  UNKNOWN_METHOD: 'no such method; not processed',
  INVALID_ARGUMENT: 'the request is malformed for this method',
  APPLICATION_ERROR: 'the handler failed',
  DEADLINE_EXCEEDED: 'the deadline (--timeout) expired',
  RESOURCE_EXHAUSTED: 'a limit was exceeded',
  UNAVAILABLE: 'not processed, safe to retry (also: cannot connect)',
  PROTOCOL_ERROR: 'the protocol was broken',
  INTERNAL: 'implementation failure',
  CONNECTION_CLOSED: 'the connection ended with the call open (local only, §13.1)',
};

/** Rows of the table in `--help` and the README: [exit, status, meaning]. */
export const EXIT_TABLE: ReadonlyArray<readonly [number, string, string]> = [
  [EXIT_OK, 'OK', 'the call succeeded'],
  [EXIT_FAILURE, '-', 'a local failure that is not a call status'],
  [EXIT_USAGE, '-', 'bad arguments'],
  ...NAMES.filter((n) => n !== 'OK').map((n) => [STATUS_BASE + Status[n], `${n} (${Status[n]})`, MEANINGS[n] ?? ''] as const),
  [EXIT_UNKNOWN_STATUS, 'UNKNOWN (12-255)', 'a reserved status number was received'],
  [EXIT_APPLICATION_STATUS, 'application (>= 256)', 'an application-defined status; its number is on stderr'],
];

/** The exit status for a failed call (or any error the command ended with). */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof PipitError)) return EXIT_FAILURE;
  if (err.code === 'UNKNOWN') return EXIT_UNKNOWN_STATUS;
  if (err.status >= 256) return EXIT_APPLICATION_STATUS;
  return STATUS_BASE + Status[err.code];
}

/**
 * One line for stderr: status name, its number, and the message (a protocol error's message
 * starts with the rule broken and its offset, spec/PROTOCOL.md §10.1).
 */
export function describeFailure(err: unknown): string {
  if (!(err instanceof PipitError)) return err instanceof Error ? err.message : String(err);
  const name = err.status >= 256 ? 'application status' : err.code;
  return `${name} (${err.status})${err.message ? `: ${err.message}` : ''}`;
}

/** The exit-code table as aligned text, for `--help`. */
export function exitTableText(indent = '  '): string {
  const w = Math.max(...EXIT_TABLE.map((r) => r[1].length));
  return EXIT_TABLE.map(([code, name, meaning]) => `${indent}${String(code).padStart(3)}  ${name.padEnd(w)}  ${meaning}`).join('\n');
}
