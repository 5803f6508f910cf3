/**
 * Turning bytes into something a person or a pipe can take: text when it is printable UTF-8,
 * a hex dump when not, escaped previews for one-line fields, and writes that respect
 * backpressure and a reader that went away (EPIPE).
 */
import type { Writable } from 'node:stream';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** The bytes as a string when they are valid UTF-8, else null. */
export function utf8OrNull(b: Uint8Array): string | null {
  try {
    return strictUtf8.decode(b);
  } catch {
    return null;
  }
}

/**
 * Valid UTF-8 without control characters other than tab, newline and carriage return (an
 * escape sequence written to a terminal would act, not show).
 */
export function isPrintable(b: Uint8Array): boolean {
  const s = utf8OrNull(b);
  // eslint-disable-next-line no-control-regex
  return s !== null && !/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/.test(s);
}

/** `xxd`-style dump: offset, 16 bytes in hex, the printable ASCII. */
export function hexDump(b: Uint8Array): string {
  const lines: string[] = [];
  for (let off = 0; off < b.length; off += 16) {
    const row = b.subarray(off, off + 16);
    const hex = [...row].map((x) => x.toString(16).padStart(2, '0'));
    const left = hex.slice(0, 8).join(' ');
    const right = hex.slice(8).join(' ');
    const ascii = [...row].map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : '.')).join('');
    lines.push(`${off.toString(16).padStart(8, '0')}  ${left.padEnd(23)}  ${right.padEnd(23)}  |${ascii}|`);
  }
  return lines.join('\n');
}

/** One-line rendering of text: quoted, with control characters and quotes escaped. */
export function quote(s: string): string {
  return JSON.stringify(s).replace(/[\u007f-\u009f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * A one-line preview of a payload, at most `max` bytes shown: quoted text when it is printable
 * UTF-8 (or `text` says so and it decodes), else hex.
 */
export function preview(b: Uint8Array, max: number, text = false): string {
  const shown = b.length > max ? b.subarray(0, max) : b;
  const more = b.length > max ? ` … (${b.length - max} more bytes)` : '';
  if (b.length === 0) return '(empty)';
  // A cut can split a UTF-8 sequence: judge the whole payload, then cut the string.
  const whole = isPrintable(b) || (text && utf8OrNull(b) !== null) ? utf8OrNull(b) : null;
  if (whole !== null) {
    const cut = Buffer.from(whole).length > max ? cutUtf8(whole, max) : whole;
    return `text ${quote(cut)}${more}`;
  }
  return `hex ${Buffer.from(shown).toString('hex')}${more}`;
}

/** The longest prefix of `s` whose UTF-8 form fits in `max` bytes. */
function cutUtf8(s: string, max: number): string {
  let bytes = 0;
  let i = 0;
  for (const ch of s) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > max) break;
    bytes += n;
    i += ch.length;
  }
  return s.slice(0, i);
}

/** A failed write because the reader of a pipe went away. */
export function isBrokenPipe(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED';
}

/**
 * Writes to stdout (or any Writable) that wait for `drain` when the stream is full, and that
 * turn the stream's 'error' into a rejection instead of an uncaught exception.
 */
export class Output {
  private error: Error | null = null;
  private readonly waiters = new Set<(e: Error) => void>();

  constructor(readonly stream: Writable & { isTTY?: boolean }) {
    stream.on('error', (e: Error) => {
      this.error ??= e;
      for (const w of this.waiters) w(e);
      this.waiters.clear();
    });
  }

  get isTTY(): boolean {
    return this.stream.isTTY === true;
  }

  /** The write error seen so far (EPIPE when the reader went away), if any. */
  get failed(): Error | null {
    return this.error;
  }

  /** Register a callback for the first write error. */
  onError(cb: (e: Error) => void): void {
    if (this.error !== null) cb(this.error);
    else this.waiters.add(cb);
  }

  /** Write; resolves once the stream can take more (at once, unless it is full). */
  write(chunk: Uint8Array | string): Promise<void> {
    if (this.error !== null) return Promise.reject(this.error);
    const more = this.stream.write(chunk);
    if (more) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const fail = (e: Error): void => {
        this.stream.off('drain', done);
        reject(e);
      };
      const done = (): void => {
        this.waiters.delete(fail);
        resolve();
      };
      this.stream.once('drain', done);
      this.waiters.add(fail);
    });
  }

  /** Resolves once everything written so far has been handed to the system. */
  flushed(): Promise<void> {
    if (this.error !== null) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      const fail = (e: Error): void => reject(e);
      this.waiters.add(fail);
      this.stream.write('', () => {
        this.waiters.delete(fail);
        if (this.error !== null) reject(this.error);
        else resolve();
      });
    });
  }
}
