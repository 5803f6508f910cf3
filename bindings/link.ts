/**
 * Link: what the session's rooms share on one connection. The Session makes one and hands it
 * to the Caller (calls we open) and the Responder (calls we serve); both write into the same
 * output and draw on the same budgets, so the frames of both directions leave in one order.
 *
 *   writer       the frame writer: every frame this end sends is encoded here
 *   fragmenter   the rest of large messages, written a budget at a time (§8.7)
 *   pressure     backpressure on that output (Session Rule 4)
 *   reassembler  partial messages arriving, under one byte budget (Session Rule 3)
 *   deadlines    every call's deadline, both directions, for `nextDeadline` and `tick`
 *   peer*        the peer's limits, defaults until its HELLO arrives (§11.3)
 *   clock        the latest time the session was given
 *
 * It also tells the host that output is waiting, and the session that a call ended (the
 * session may then be finished, §9.4).
 */
import { DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_MESSAGE_BYTES } from './constants.js';
import { DeadlineHeap } from './deadline-heap.js';
import type { PipitError } from './errors.js';
import { Backpressure } from './backpressure.js';
import { Fragmenter, messageRoom } from './fragmenter.js';
import { FrameWriter } from './frame-writer.js';
import { Reassembler } from './reassembler.js';

/** What the transport learns from the session. */
export interface SessionHost {
  /** Output is waiting in `takeOutput()`. Called once until taken. */
  onOutput(): void;
  /** The connection is finished (gracefully or not): flush and close the transport. */
  onClose(error: PipitError | null): void;
}

/** This end's limits, as the session options set them (SessionOptions says what each means). */
export interface Limits {
  readonly maxFrameBytes: number;
  readonly maxMessageBytes: number;
  readonly maxInflight: number;
  readonly maxQueuedCalls: number;
  readonly maxReassemblyBytes: number;
  readonly initialCredit: number;
  readonly maxStreamWindowBytes: number;
  readonly maxWriteBufferBytes: number;
}

export class Link {
  /** The peer's limits: what it announced in HELLO, defaults until then (§11.3). */
  peerMaxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  peerMaxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  peerMaxInflight = DEFAULT_MAX_INFLIGHT;
  /** Latest time the session was given (receive, tick, call): when a queued call is sent. */
  clock = 0;
  host: SessionHost | null = null;
  readonly writer = new FrameWriter();
  readonly fragmenter = new Fragmenter(this.writer);
  readonly pressure: Backpressure;
  readonly reassembler: Reassembler;
  readonly deadlines = new DeadlineHeap();
  /** The host was told about output not taken yet. */
  private signalled = false;

  constructor(
    readonly limits: Limits,
    /** A call ended in either direction. */
    readonly callEnded: () => void,
  ) {
    this.pressure = new Backpressure(this.writer, limits.maxWriteBufferBytes, limits.maxInflight);
    this.reassembler = new Reassembler(limits.maxMessageBytes, limits.maxReassemblyBytes);
  }

  /** Output is waiting: tell the host, once until it is taken. */
  outputReady(): void {
    if (this.signalled || this.host === null) return;
    this.signalled = true;
    this.host.onOutput();
  }

  /**
   * Hand out the output. Frames written meanwhile (the fragments' pass) leave with it, so they
   * signal nothing.
   */
  take(): Uint8Array[] {
    this.signalled = true;
    if (this.fragmenter.pending) this.fragmenter.write(messageRoom(this.peerMaxFrameBytes));
    const out = this.writer.take();
    this.signalled = false;
    return out;
  }

  /** Frames are waiting to be taken. */
  get hasOutput(): boolean {
    return this.writer.pendingBytes > 0 || this.fragmenter.pending;
  }
}
