/**
 * Backpressure on our output (Session Rule 4, spec/PROTOCOL.md §15).
 *
 * Output is congested when what we have encoded and not handed out (the frame writer's
 * pending bytes) plus what the transport has accepted and not written (its backlog, reported
 * by the transport after each write and on drain) passes maxWriteBufferBytes. While it is:
 *   - new requests are held here, in order, instead of running (at most maxInflight of them:
 *     the responder refuses more, §8.9);
 *   - stream producers wait here for output to drain;
 *   - our own queued calls stay queued (the caller asks `congested`).
 * We keep reading all the while, so two congested peers still receive each other's responses
 * and credits and cannot deadlock. A peer that keeps making us write beyond its allowance
 * while we are congested — a full set of held requests, or a run of answers it asked for
 * unasked (refusals, PONGs), its `strikes` — is `overloaded`, and only then does the
 * transport stop reading from it.
 */
import type { FrameWriter } from './frame-writer.js';

/** Answers written unasked while congested before the peer counts as overloading us. */
const MAX_STRIKES = 1024;

/** A producer that waits for output to drain. */
export interface Wakeable {
  wake(): void;
}

export class Backpressure {
  /** Bytes the transport has accepted but not yet written. */
  backlog = 0;
  /** Requests that arrived while congested, each as the function that runs it. */
  private held: Array<(() => void) | undefined> = [];
  private heldHead = 0;
  private waiters: Wakeable[] = [];
  private strikes = 0;

  constructor(
    private readonly writer: FrameWriter,
    readonly maxWriteBufferBytes: number,
    /** Held requests that make the peer overloading (its maxInflight allowance). */
    private readonly maxHeld: number,
  ) {}

  /** Our pending output plus the transport's backlog is over maxWriteBufferBytes. */
  get congested(): boolean {
    return this.writer.pendingBytes + this.backlog > this.maxWriteBufferBytes;
  }

  /** Congested, and the peer keeps sending work beyond what it may: stop reading from it. */
  get overloaded(): boolean {
    return this.congested && (this.held.length - this.heldHead >= this.maxHeld || this.strikes >= MAX_STRIKES);
  }

  /** A new request must wait: output is congested, or earlier requests wait (order is kept). */
  get holding(): boolean {
    return this.congested || this.heldHead < this.held.length;
  }

  /** Held requests or waiting producers that relief would resume. */
  get waiting(): boolean {
    return this.heldHead < this.held.length || this.waiters.length > 0;
  }

  /** The peer made us write an answer it did not earn (a refusal, a PONG): counts only while congested. */
  strike(): void {
    if (this.congested) this.strikes++;
  }

  hold(run: () => void): void {
    this.held.push(run);
  }

  waitWritable(producer: Wakeable): void {
    this.waiters.push(producer);
  }

  /**
   * Output is no longer congested: run held requests in order while it stays so, then wake
   * the waiting producers. (A request run here can close the session; `clear` then empties
   * the queue and the loop ends.)
   */
  relieve(): void {
    this.strikes = 0;
    while (this.heldHead < this.held.length && !this.congested) {
      const run = this.held[this.heldHead]!;
      this.held[this.heldHead++] = undefined;
      run();
    }
    if (this.heldHead === this.held.length) {
      this.held.length = 0;
      this.heldHead = 0;
    }
    if (this.waiters.length > 0 && !this.congested) {
      const waiters = this.waiters;
      this.waiters = [];
      for (const w of waiters) w.wake();
    }
  }

  /** The connection is over: drop everything held (the calls themselves are failed elsewhere). */
  clear(): void {
    this.held = [];
    this.heldHead = 0;
    this.waiters = [];
    this.strikes = 0;
  }
}
