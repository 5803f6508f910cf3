/**
 * MessageStream: the caller's side of a stream call, an AsyncIterable of response messages.
 *
 * Items arrive only as far as credit was granted, so the queue never holds more than the
 * window. Consuming items returns credit in batches (half the window at a time, spec/PROTOCOL.md
 * credits): the session is told through `onConsumed`. Leaving a `for await` early calls
 * `return()`, which cancels the call.
 */
import type { PipitError } from './errors.js';

/** What the session needs from a stream it feeds. */
export interface StreamSink {
  push(item: Buffer): void;
  finish(error: PipitError | null): void;
}

/** Hooks back into the session. */
export interface StreamControl {
  /** `n` items were taken by the consumer. */
  consumed(n: number): void;
  /** The consumer stopped early (break / return / throw). */
  abandon(): void;
  /** The consumer asked for an item and none was there (the window may be too small). */
  starved(): void;
}

const DONE: IteratorReturnResult<undefined> = Object.freeze({ done: true, value: undefined });

export class MessageStream implements AsyncIterableIterator<Buffer>, StreamSink {
  private items: Buffer[] = [];
  private head = 0;
  private ended = false;
  private error: PipitError | null = null;
  private waiting: ((r: IteratorResult<Buffer>) => void) | null = null;
  private failWaiting: ((e: unknown) => void) | null = null;
  /** Set by the session once the call exists. */
  control: StreamControl | null = null;

  [Symbol.asyncIterator](): this {
    return this;
  }

  /** Items received and not yet read. */
  get buffered(): number {
    return this.items.length - this.head;
  }

  next(): Promise<IteratorResult<Buffer>> {
    if (this.head < this.items.length) {
      const value = this.items[this.head]!;
      this.items[this.head++] = undefined as unknown as Buffer;
      if (this.head === this.items.length) {
        this.items.length = 0;
        this.head = 0;
      }
      this.control?.consumed(1);
      return Promise.resolve({ done: false, value });
    }
    if (this.error !== null) {
      const e = this.error;
      return Promise.reject(e);
    }
    if (this.ended) return Promise.resolve(DONE);
    this.control?.starved();
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
    });
  }

  return(): Promise<IteratorResult<Buffer>> {
    if (!this.ended) {
      this.ended = true;
      this.items.length = 0;
      this.head = 0;
      this.control?.abandon();
    }
    return Promise.resolve(DONE);
  }

  throw(e?: unknown): Promise<IteratorResult<Buffer>> {
    void this.return();
    return Promise.reject(e);
  }

  /** Read every remaining item into an array. */
  async toArray(): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for await (const item of this) out.push(item);
    return out;
  }

  // ---- StreamSink (session side) ----

  push(item: Buffer): void {
    if (this.ended) return;
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      this.failWaiting = null;
      this.control?.consumed(1);
      w({ done: false, value: item });
      return;
    }
    this.items.push(item);
  }

  finish(error: PipitError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.control = null;
    if (error !== null) {
      this.error = error;
      // Items already received stay readable; the error comes after them.
      const f = this.failWaiting;
      if (f !== null) {
        this.waiting = null;
        this.failWaiting = null;
        f(error);
      }
      return;
    }
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      this.failWaiting = null;
      w(DONE);
    }
  }
}
