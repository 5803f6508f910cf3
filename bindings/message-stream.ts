/**
 * MessageStream: the caller's side of a stream call, an AsyncIterable of response messages.
 *
 * Items arrive only as far as credit was granted, so the queue never holds more than the
 * window. Consuming items returns credit in batches (half the window at a time, spec/PROTOCOL.md
 * §8.6): the session is told through `control.consumed`. Leaving a `for await` early calls
 * `return()`, which cancels the call.
 *
 * Iterated directly, a stream yields each message's bytes (a Buffer), the common case.
 * `messages()` iterates the same queue as `Message`s, which also say whether the responder
 * sent the message as text (the TEXT flag, §6). `batches()` iterates it as arrays of every
 * message that has arrived: one promise per read of the socket instead of one per message.
 */
import type { PipitError } from './errors.js';

/** A message with its TEXT flag: `text` is true when the sender sent `payload` as UTF-8 text. */
export interface Message {
  payload: Buffer;
  text: boolean;
}

/** What the session needs from a stream it feeds. */
export interface StreamSink {
  push(item: Buffer, text: boolean): void;
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

/** What the consumer waiting for the next item reads it as. */
const enum Want {
  Item,
  Message,
  Batch,
}

export class MessageStream implements AsyncIterableIterator<Buffer>, StreamSink {
  private items: Buffer[] = [];
  private head = 0;
  /**
   * TEXT flags, kept as the queue positions where the flag changes from the item before: a
   * stream is nearly always all text or all bytes, and this costs each item one comparison
   * where an array of flags cost a second store and load (measured ~8% of an in-memory
   * stream's time per item). `pushed` and `taken` count queued items; the flags of the last
   * item queued and the last item taken run alongside.
   */
  private flips: number[] = [];
  private flipHead = 0;
  private pushed = 0;
  private taken = 0;
  private pushedText = false;
  private takenText = false;
  private ended = false;
  private error: PipitError | null = null;
  private waiting: ((r: IteratorResult<Buffer | Message | Buffer[]>) => void) | null = null;
  private failWaiting: ((e: unknown) => void) | null = null;
  /** How the waiting consumer reads (iterated directly, `messages()` or `batches()`). */
  private want = Want.Item;
  /** A waiting `batches()` consumer is answered in a microtask, with all that arrived by then. */
  private batchDue = false;
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
    if (this.head < this.items.length) return Promise.resolve({ done: false, value: this.shift() });
    return this.wait(Want.Item) as Promise<IteratorResult<Buffer>>;
  }

  /**
   * The same stream, read as messages with their TEXT flag. It shares this stream's queue:
   * an item read one way is not read again the other way. Leaving it early cancels the call.
   */
  messages(): AsyncIterableIterator<Message> {
    return this.view(() => {
      if (this.head < this.items.length) {
        const payload = this.shift();
        return Promise.resolve({ done: false, value: { payload, text: this.takenText } });
      }
      return this.wait(Want.Message) as Promise<IteratorResult<Message>>;
    });
  }

  /**
   * The same stream, read as arrays: each step yields every message that has arrived and
   * not been read (at least one), so a consumer pays one promise per batch rather than one
   * per message; credit is returned for the whole array at once. It shares this stream's
   * queue. Leaving it early cancels the call.
   */
  batches(): AsyncIterableIterator<Buffer[]> {
    return this.view(() => {
      if (this.head < this.items.length) return Promise.resolve({ done: false, value: this.shiftAll() });
      return this.wait(Want.Batch) as Promise<IteratorResult<Buffer[]>>;
    });
  }

  /** Another way to read this stream's queue: its own `next`, this stream's `return` and `throw`. */
  private view<T>(next: () => Promise<IteratorResult<T>>): AsyncIterableIterator<T> {
    const it: AsyncIterableIterator<T> = {
      next,
      return: () => this.return(),
      throw: (e?: unknown) => this.throw(e),
      [Symbol.asyncIterator]: () => it,
    };
    return it;
  }

  /** Every queued item, in order (the TEXT flag of the last is then `takenText`). */
  private shiftAll(): Buffer[] {
    const n = this.items.length - this.head;
    const out = this.head === 0 ? this.items : this.items.slice(this.head);
    const end = this.taken + n;
    while (this.flipHead < this.flips.length && this.flips[this.flipHead]! < end) {
      this.takenText = !this.takenText;
      this.flipHead++;
    }
    this.taken = end;
    this.items = [];
    this.empty();
    this.control?.consumed(n);
    return out;
  }

  /** The next queued item; its TEXT flag is then `takenText`. */
  private shift(): Buffer {
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined as unknown as Buffer;
    if (this.flipHead < this.flips.length && this.flips[this.flipHead] === this.taken) {
      this.takenText = !this.takenText;
      this.flipHead++;
    }
    this.taken++;
    if (this.head === this.items.length) this.empty();
    this.control?.consumed(1);
    return item;
  }

  /** Nothing queued: the failure, the end, or a promise of the next item. */
  private wait(want: Want): Promise<IteratorResult<Buffer | Message | Buffer[]>> {
    if (this.error !== null) return Promise.reject(this.error);
    if (this.ended) return Promise.resolve(DONE);
    this.control?.starved();
    return new Promise((resolve, reject) => {
      this.waiting = resolve;
      this.failWaiting = reject;
      this.want = want;
    });
  }

  /** Answer the waiting `batches()` consumer with what arrived since it began to wait. */
  private readonly deliverBatch = (): void => {
    this.batchDue = false;
    const w = this.waiting;
    if (w === null) return;
    this.waiting = null;
    this.failWaiting = null;
    // Empty only if the consumer left (return()) in between.
    w(this.head < this.items.length ? { done: false, value: this.shiftAll() } : DONE);
  };

  private empty(): void {
    this.items.length = 0;
    this.head = 0;
    this.flips.length = 0;
    this.flipHead = 0;
  }

  return(): Promise<IteratorReturnResult<undefined>> {
    if (!this.ended) {
      this.ended = true;
      this.empty();
      this.control?.abandon();
    }
    return Promise.resolve(DONE);
  }

  throw(e?: unknown): Promise<IteratorReturnResult<undefined>> {
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

  push(item: Buffer, text: boolean): void {
    if (this.ended) return;
    const w = this.waiting;
    if (w !== null && this.want !== Want.Batch) {
      // The queue is empty: the item goes straight to the consumer, and both flags are its.
      this.waiting = null;
      this.failWaiting = null;
      this.pushedText = this.takenText = text;
      this.control?.consumed(1);
      w({ done: false, value: this.want === Want.Message ? { payload: item, text } : item });
      return;
    }
    if (w !== null && !this.batchDue) {
      // Items of one read arrive in one synchronous run: the batch is answered after them.
      this.batchDue = true;
      queueMicrotask(this.deliverBatch);
    }
    if (text !== this.pushedText) {
      this.flips.push(this.pushed);
      this.pushedText = text;
    }
    this.pushed++;
    this.items.push(item);
  }

  finish(error: PipitError | null): void {
    if (this.ended) return;
    this.ended = true;
    this.control = null;
    // A batch is due to the waiting consumer: it gets its items first, the end after them.
    if (this.batchDue) {
      this.error = error;
      return;
    }
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
