/**
 * Reassembly of fragmented messages (spec/PROTOCOL.md §8.7, §8.8): one reassembler per
 * connection serves both directions — requests arriving as REQUEST|FOLLOWS then DATA, and
 * responses arriving as RESPONSE|FOLLOWS then RESPONSE.
 *
 * Two caps, each checked before a fragment is copied (Session Rule 3): maxMessageBytes for one
 * message (what we announced in HELLO), and maxReassemblyBytes for every partial message of
 * the connection together, so many calls each just under the first cap cannot add up.
 */
import type { FrameBatch } from './codec.js';

/** One message arriving in fragments. */
export class Partial {
  parts: Buffer[] = [];
  bytes = 0;
}

export class Reassembler {
  /** Bytes held in every partial message of the connection. */
  private held = 0;

  constructor(
    readonly maxMessageBytes: number,
    readonly maxReassemblyBytes: number,
  ) {}

  /**
   * Add the body of frame `i` to `message`, both caps checked first. False when a cap would
   * be passed: nothing was copied, and the message keeps what it had.
   */
  add(message: Partial, batch: FrameBatch, i: number): boolean {
    const len = batch.bodyLength(i);
    if (message.bytes + len > this.maxMessageBytes || this.held + len > this.maxReassemblyBytes) return false;
    this.held += len;
    message.parts.push(batch.body(i));
    message.bytes += len;
    return true;
  }

  /** The whole message, out of its fragments; its bytes leave the connection's count. */
  finish(message: Partial): Buffer {
    const whole = Buffer.concat(message.parts, message.bytes);
    this.release(message);
    return whole;
  }

  /** Drop what `message` holds (its call ended, or it went over a cap). */
  release(message: Partial): void {
    this.held -= message.bytes;
    message.bytes = 0;
    message.parts.length = 0;
  }

  /** The connection is over: nothing is held any more. */
  clear(): void {
    this.held = 0;
  }
}
