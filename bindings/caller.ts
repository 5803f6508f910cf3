/**
 * Caller: the calls this end opens (spec/PROTOCOL.md §8, the caller's side), from `call()` or
 * `stream()` to the terminal frame.
 *
 * Theory of operation
 * -------------------
 * `open` checks a call and prepares its REQUEST; the call is then sent at once, or queued
 * while the peer's maxInflight is reached, our output is congested (Session Rule 4) or
 * earlier calls wait (the queue keeps their order). `send` gives it an id and a sequence
 * number (§9.1) and writes the REQUEST; the rest of a large request goes to the fragmenter.
 * Response frames come back through `onResponse` / `onStatus`.
 *
 * Ids: `out` is indexed by id. Ids are reused, smallest-ish first (a free stack), so they
 * stay one byte. An id is released only when the call's terminal frame (RESPONSE|END or
 * STATUS) arrives, or the peer's GOAWAY says the call was discarded (§9.3) — never when the
 * user gave up on it (timeout, abort, abandoned stream): until its terminal frame, a late
 * frame for it must still find it. `release` is the one place an id is freed, and it drops
 * the call's unwritten DATA with it (§8.7).
 *
 * Rule 1, caller's side: `settle` is the only place a user-visible outcome is delivered. It
 * checks `settled` first, so a call that ends in several ways at once (its response, its
 * deadline, an abort, the connection) reports exactly one of them.
 */
import { DEFAULT_WIRE_CREDIT, F_END, F_FOLLOWS, F_STREAM, F_TEXT, MAX_CREDIT, Status } from './constants.js';
import { EMPTY, type FrameBatch } from './codec.js';
import { NO_DEADLINE, type Timed } from './deadline-heap.js';
import { InvalidArgumentError, PipitError, ProtocolError } from './errors.js';
import { requestRoom, sizeOver, wireForm } from './fragmenter.js';
import { encodeExt, isSendable, payloadOf, textOf, withDeadline, type Payload, type Sendable } from './frame-writer.js';
import type { Link } from './link.js';
import { MessageStream, type Message } from './message-stream.js';
import { Partial } from './reassembler.js';
import type { RouteTable } from './routes.js';
import { StreamWindow } from './stream-window.js';

export interface CallOptions {
  /** Milliseconds before the call fails with DEADLINE_EXCEEDED; travels to the peer. */
  timeout?: number;
  /** Aborting it cancels the call (CANCELLED). */
  signal?: AbortSignal;
  /** Small string key/value pairs sent with the request. */
  metadata?: Record<string, string>;
}

export interface StreamOptions extends CallOptions {
  /**
   * Stream window: items the producer may send ahead of the consumer. Set, it is fixed;
   * unset, it starts at the session's initialCredit and adapts (see SessionOptions).
   */
  credit?: number;
}

/** A REQUEST waiting in the local queue. */
interface QueuedRequest {
  route: Uint8Array;
  ext: Uint8Array | null;
  flags: number;
  payload: Payload;
}

/** One call we opened. */
export class OutCall implements Timed {
  id = -1;
  /** Sequence number of its REQUEST (§9.1), to tell whether a GOAWAY discarded it. */
  seq = 0;
  settled = false;
  /** Unary: the response message once complete, until its STATUS OK. */
  message: Buffer | null = null;
  /** The TEXT flag of the message arriving (its first frame's). */
  text = false;
  /**
   * A fragmented response message arriving. Kept, emptied, after the call settles: later
   * fragments are then absorbed up to the terminal frame.
   */
  partial: Partial | null = null;
  deadline = NO_DEADLINE;
  /** Session clock when the call was opened (calls with a deadline). */
  openedAt = 0;
  signal: AbortSignal | null = null;
  onAbort: (() => void) | null = null;
  /** Waiting in the local queue: the REQUEST it will send. */
  queued: QueuedRequest | null = null;

  constructor(
    readonly service: string,
    readonly method: string,
    /** Stream calls: the consumer's side, and the window we grant. */
    readonly stream: MessageStream | null,
    readonly window: StreamWindow | null,
    /** Unary calls: the promise's settlement. */
    readonly resolve: ((payload: Buffer, text: boolean) => void) | null,
    readonly reject: ((e: PipitError) => void) | null,
  ) {}
}

export class Caller {
  private readonly out: (OutCall | undefined)[] = [];
  private readonly freeIds: number[] = [];
  private nextId = 0;
  /** Calls sent and waiting for their terminal frame. */
  private active = 0;
  private readonly queue: OutCall[] = [];
  private queueHead = 0;
  /** Queued calls not settled yet (one cancelled in the queue stays there until dequeued). */
  private queuedLive = 0;
  /** REQUEST frames sent, mod 2^32 (§9.1). */
  private sentSeq = 0;
  /** Null while calls may be sent; once the session stops them, what a new call fails with. */
  private refusal: (() => PipitError) | null = null;

  constructor(
    private readonly link: Link,
    private readonly routes: Pick<RouteTable, 'outgoingRoute'>,
  ) {}

  /** Calls in flight (sent, awaiting their terminal frame) and queued locally. */
  get openCalls(): number {
    return this.active + this.queuedLive;
  }

  /** Calls wait in the queue. */
  get queueing(): boolean {
    return this.queueHead < this.queue.length;
  }

  call(service: string, method: string, payload: Sendable, options: CallOptions, now: number): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      this.open(new OutCall(service, method, null, null, resolve, reject), 0, payload, options, now, undefined);
    });
  }

  callMessage(service: string, method: string, payload: Sendable, options: CallOptions, now: number): Promise<Message> {
    return new Promise<Message>((resolve, reject) => {
      const settle = (p: Buffer, text: boolean): void => resolve({ payload: p, text });
      this.open(new OutCall(service, method, null, null, settle, reject), 0, payload, options, now, undefined);
    });
  }

  stream(service: string, method: string, payload: Sendable, options: StreamOptions, now: number): MessageStream {
    const size = options.credit ?? this.link.limits.initialCredit;
    if (!Number.isInteger(size) || size < 1 || size > MAX_CREDIT) {
      throw new InvalidArgumentError(`credit must be an integer from 1 to ${MAX_CREDIT}, got ${size}`);
    }
    const stream = new MessageStream();
    const call = new OutCall(service, method, stream, new StreamWindow(size, options.credit === undefined), null, null);
    stream.control = {
      consumed: (n) => this.consumed(call, n),
      starved: () => this.starved(call),
      abandon: () => this.cancel(call, new PipitError('CANCELLED', 'stream abandoned by the consumer')),
    };
    try {
      this.open(call, F_STREAM, payload, options, now, size === DEFAULT_WIRE_CREDIT ? undefined : size);
    } catch (e) {
      this.settle(call, e instanceof PipitError ? e : new InvalidArgumentError(String(e)));
    }
    return stream;
  }

  /** Check a new call and prepare its REQUEST; send it now or queue it. */
  private open(call: OutCall, flags: number, body: Sendable, options: CallOptions, now: number, credit: number | undefined): void {
    const route = this.routes.outgoingRoute(call.service, call.method);
    if (!isSendable(body)) {
      throw new InvalidArgumentError('payload must be a Uint8Array, a string or { payload: Uint8Array, text: boolean }');
    }
    let payload = payloadOf(body);
    if (this.refusal !== null) {
      this.settle(call, this.refusal());
      return;
    }
    const link = this.link;
    const { timeout, signal } = options;
    const metadata = options.metadata === undefined ? undefined : Object.entries(options.metadata);
    if (now > link.clock) link.clock = now;
    let ext: Uint8Array | null = null;
    if (timeout !== undefined || credit !== undefined || metadata !== undefined) {
      if (timeout !== undefined && !(timeout >= 0 && timeout <= 0xffffffff)) {
        throw new InvalidArgumentError(`timeout must be a number of milliseconds from 0 to ${0xffffffff}, got ${timeout}`);
      }
      ext = encodeExt({ deadlineMs: timeout === undefined ? undefined : Math.ceil(timeout), credit, metadata });
    }
    if (timeout === 0) {
      // Out of time before it was sent: fail it here; never send DEADLINE 0 (spec §8.5).
      this.settle(call, new PipitError('DEADLINE_EXCEEDED', `${call.service}.${call.method} had no time left; not sent`));
      return;
    }
    if (signal) {
      if (signal.aborted) {
        this.settle(call, abortError(signal));
        return;
      }
      call.signal = signal;
      call.onAbort = () => this.cancel(call, abortError(signal));
      signal.addEventListener('abort', call.onAbort, { once: true });
    }
    if (timeout !== undefined) {
      call.openedAt = now;
      call.deadline = now + timeout;
      link.deadlines.push(call.deadline, call);
    }
    if (textOf(body)) flags |= F_TEXT;
    if (typeof payload === 'string') payload = wireForm(payload, requestRoom(link.peerMaxFrameBytes, route, ext));
    const size = sizeOver(payload, link.peerMaxMessageBytes);
    if (size >= 0) {
      this.settle(call, new PipitError('RESOURCE_EXHAUSTED', `request of ${size} bytes exceeds the peer's maxMessageBytes ${link.peerMaxMessageBytes}; not sent`));
      return;
    }
    if (this.active >= link.peerMaxInflight || link.pressure.congested || this.queueHead < this.queue.length) {
      const max = link.limits.maxQueuedCalls;
      if (this.queuedLive >= max) {
        this.settle(call, new PipitError('RESOURCE_EXHAUSTED', `${max} calls already queued`));
        return;
      }
      call.queued = { route, ext, flags, payload };
      this.queue.push(call);
      this.queuedLive++;
      return;
    }
    this.send(call, route, ext, flags, payload);
  }

  /** Allocate an id and write the REQUEST (and queue any further fragments). */
  private send(call: OutCall, route: Uint8Array, ext: Uint8Array | null, flags: number, payload: Payload): void {
    const link = this.link;
    if (call.deadline !== NO_DEADLINE && link.clock > call.openedAt) {
      // Time passed since it was opened (it waited in the queue): the deadline on the wire is
      // the time left, rounded up, so it is never 0 while time is left (§8.5). Out of time:
      // not sent at all.
      const left = Math.ceil(call.deadline - link.clock);
      if (left <= 0) {
        this.settle(call, new PipitError('DEADLINE_EXCEEDED', `${call.service}.${call.method} did not finish before its deadline; not sent`));
        return;
      }
      ext = withDeadline(ext!, left);
    }
    const id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.nextId++;
    call.id = id;
    call.seq = this.sentSeq = (this.sentSeq + 1) >>> 0;
    this.out[id] = call;
    this.active++;
    const room = requestRoom(link.peerMaxFrameBytes, route, ext);
    if (typeof payload === 'string' || payload.length <= room) {
      link.writer.request(id, flags, route, ext, payload);
    } else {
      link.writer.request(id, flags | F_FOLLOWS, route, ext, payload.subarray(0, room));
      link.fragmenter.add({ request: true, id, bytes: payload, pos: room, last: null });
    }
    link.outputReady();
  }

  /** Send queued calls while the peer's maxInflight and our output allow. */
  pump(): void {
    if (this.refusal !== null) return; // stop() failed the queue
    const link = this.link;
    while (this.queueHead < this.queue.length && this.active < link.peerMaxInflight && !link.pressure.congested) {
      const call = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = undefined as unknown as OutCall;
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      }
      const q = call.queued;
      if (q === null) continue; // settled while it waited
      call.queued = null;
      this.queuedLive--;
      this.send(call, q.route, q.ext, q.flags, q.payload);
    }
  }

  // ---- the stream window ----

  private consumed(call: OutCall, n: number): void {
    if (call.settled || this.out[call.id] !== call) return;
    this.grant(call, call.window!.consumed(n));
  }

  private starved(call: OutCall): void {
    if (call.settled || this.out[call.id] !== call) return;
    this.grant(call, call.window!.starved(this.link.limits.maxStreamWindowBytes));
  }

  private grant(call: OutCall, n: number): void {
    if (n === 0) return;
    this.link.writer.credit(call.id, n);
    this.link.outputReady();
  }

  // ---- frames from the responder ----

  onResponse(batch: FrameBatch, i: number): void {
    const id = batch.id(i);
    const call = this.out[id];
    if (call === undefined) throw new ProtocolError('E_NO_SUCH_CALL', `RESPONSE for call ${id}, which is not open`);
    const flags = batch.flags(i);
    let partial = call.partial;
    if (partial !== null) {
      if (flags & F_TEXT) throw new ProtocolError('E_TEXT_CONTINUATION', `TEXT flag on a continuation fragment of call ${id}`);
    } else {
      this.countMessage(call, id);
      call.text = (flags & F_TEXT) !== 0;
    }
    let message: Buffer;
    if (partial !== null || (flags & F_FOLLOWS) !== 0) {
      partial ??= call.partial = new Partial();
      if (!call.settled && !this.link.reassembler.add(partial, batch, i)) {
        // Too big for us: fail it now; later fragments are absorbed until the terminal frame.
        this.cancel(call, new PipitError('RESOURCE_EXHAUSTED', `response exceeds maxMessageBytes ${this.link.reassembler.maxMessageBytes}`));
      }
      if (flags & F_FOLLOWS) return;
      message = call.settled ? EMPTY : this.link.reassembler.finish(partial);
      call.partial = null;
    } else if (!call.settled && batch.bodyLength(i) > this.link.reassembler.maxMessageBytes) {
      // Too big for us: fail it now; with END this is already its terminal frame.
      const error = new PipitError('RESOURCE_EXHAUSTED', `response exceeds maxMessageBytes ${this.link.reassembler.maxMessageBytes}`);
      if (flags & F_END) this.settle(call, error);
      else this.cancel(call, error);
      message = EMPTY;
    } else {
      message = call.settled ? EMPTY : batch.body(i);
    }
    if (call.stream !== null) {
      if (!call.settled) {
        call.window!.received(message.length);
        call.stream.push(message, call.text);
      }
      if (flags & F_END) {
        this.settle(call, EMPTY);
        this.release(call);
      }
      return;
    }
    if (flags & F_END) {
      this.settle(call, message, call.text);
      this.release(call);
    } else {
      call.message = message;
    }
  }

  /** A new response message (not a continuation) on our call: enforce the unary and credit rules. */
  private countMessage(call: OutCall, id: number): void {
    if (call.window === null) {
      if (call.message !== null) throw new ProtocolError('E_SECOND_MESSAGE', `second response message on unary call ${id}`);
      return;
    }
    if (!call.window.take()) throw new ProtocolError('E_NO_CREDIT', `stream message on call ${id} beyond the credit granted`);
  }

  onStatus(batch: FrameBatch, i: number): void {
    const id = batch.id(i);
    const call = this.out[id];
    if (call === undefined) throw new ProtocolError('E_NO_SUCH_CALL', `STATUS for call ${id}, which is not open`);
    const code = batch.aux(i);
    if (code === Status.OK) {
      if (call.partial !== null && !call.settled) {
        throw new ProtocolError('E_OK_MID_MESSAGE', `STATUS OK on call ${id} in the middle of a fragmented message`);
      }
      const message = call.stream === null ? call.message : null;
      this.settle(call, message ?? EMPTY, message !== null && call.text);
    } else {
      this.settle(call, new PipitError(code, batch.bodyText(i)));
    }
    this.release(call);
  }

  // ---- ends ----

  /** User-side cancellation (signal, abandon, deadline): settle now, CANCEL the peer, keep the id until the terminal. */
  private cancel(call: OutCall, error: PipitError): void {
    if (call.settled) return;
    this.settle(call, error);
    // Not sent yet (queued), or already over: nothing to tell the peer.
    if (this.out[call.id] !== call) return;
    this.link.fragmenter.drop(true, call.id);
    this.link.writer.cancel(call.id);
    this.link.outputReady();
  }

  /** Its deadline came (the session's tick). */
  expire(call: OutCall, now: number): void {
    if (call.settled || call.deadline > now) return;
    this.cancel(call, new PipitError('DEADLINE_EXCEEDED', `${call.service}.${call.method} did not finish before its deadline`));
  }

  /** Deliver the one user-visible outcome of a call (Rule 1). */
  private settle(call: OutCall, result: Buffer | PipitError, text = false): void {
    if (call.settled) return;
    call.settled = true;
    if (call.queued !== null) {
      call.queued = null;
      this.queuedLive--;
    }
    // A fragmented message still arriving keeps `partial` as its marker; its bytes go now.
    if (call.partial !== null) this.link.reassembler.release(call.partial);
    if (call.signal !== null && call.onAbort !== null) call.signal.removeEventListener('abort', call.onAbort);
    call.signal = null;
    call.onAbort = null;
    if (result instanceof PipitError) {
      if (call.stream !== null) call.stream.finish(result);
      else call.reject!(result);
    } else if (call.stream !== null) {
      call.stream.finish(null);
    } else {
      call.resolve!(result, text);
    }
  }

  /**
   * The call is over on the wire (its terminal frame arrived, or GOAWAY discarded it): drop
   * its unwritten fragments — written after a REQUEST that reuses the id they would be read as
   * the new call's (§8.7) — release the id, then maybe send a queued call.
   */
  private release(call: OutCall): void {
    this.link.fragmenter.drop(true, call.id);
    this.out[call.id] = undefined;
    if (call.id === this.nextId - 1) this.nextId--;
    else this.freeIds.push(call.id);
    if (call.partial !== null) this.link.reassembler.release(call.partial);
    call.id = -1;
    this.active--;
    this.pump();
    this.link.callEnded();
  }

  /**
   * The peer's GOAWAY(lastSeq) (§9.3): the last `discarded` requests we sent were not
   * processed. Counting back from our own count needs no serial arithmetic and holds however
   * long a call has been open. They fail UNAVAILABLE (safe to retry) and free their ids; no
   * call is sent any more. A count that is impossible — more than were sent, or one that
   * takes in a call already answered — is E_BAD_GOAWAY.
   */
  goawayReceived(lastSeq: number, message: string): void {
    const discarded = (this.sentSeq - lastSeq) >>> 0;
    if (discarded >= 0x80000000) {
      throw new ProtocolError('E_BAD_GOAWAY', `GOAWAY counts ${lastSeq} requests received, but ${this.sentSeq} were sent`);
    }
    const gone: OutCall[] = [];
    if (discarded > 0) {
      for (let id = 0; id < this.out.length; id++) {
        const call = this.out[id];
        if (call !== undefined && ((this.sentSeq - call.seq) >>> 0) < discarded) gone.push(call);
      }
      // The peer sent nothing for a discarded request, so each must still be open here.
      if (gone.length !== discarded) {
        throw new ProtocolError('E_BAD_GOAWAY', `GOAWAY discards the last ${discarded} requests sent, but ${discarded - gone.length} of them were answered`);
      }
    }
    this.refusal = goingAway;
    for (const call of gone) {
      this.settle(call, new PipitError('UNAVAILABLE', `the peer is going away${message ? ': ' + message : ''}; the call was not processed`));
      this.release(call);
    }
    this.failQueued(new PipitError('UNAVAILABLE', 'the peer is going away; the call was not sent'));
  }

  /** We sent GOAWAY: no call is sent any more; calls in flight go on. */
  goawaySent(): void {
    this.refusal = goingAway;
    this.failQueued(new PipitError('UNAVAILABLE', 'the connection is closing; the call was not sent'));
  }

  /** The connection is over: every call fails with `failure`; later calls with `refusal()`. */
  closed(failure: PipitError, refusal: () => PipitError): void {
    this.refusal = refusal;
    for (let id = 0; id < this.out.length; id++) {
      const call = this.out[id];
      if (call !== undefined) {
        this.settle(call, failure);
        this.out[id] = undefined;
      }
    }
    this.out.length = 0;
    this.freeIds.length = 0;
    this.nextId = 0;
    this.active = 0;
    this.failQueued(failure);
  }

  private failQueued(error: PipitError): void {
    while (this.queueHead < this.queue.length) {
      const call = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = undefined as unknown as OutCall;
      this.settle(call, error);
    }
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedLive = 0;
  }
}

/** What a call fails with once GOAWAY went either way, or after a graceful close. */
export function goingAway(): PipitError {
  return new PipitError('UNAVAILABLE', 'connection is going away; the call was not sent');
}

function abortError(signal: AbortSignal): PipitError {
  const reason: unknown = signal.reason;
  if (reason instanceof PipitError) return reason;
  return new PipitError('CANCELLED', 'the call was cancelled', { cause: reason });
}
