/**
 * Responder: the calls the peer opens and this end serves (spec/PROTOCOL.md §8, the
 * responder's side), from their REQUEST to their terminal frame.
 *
 * Theory of operation
 * -------------------
 * A REQUEST is checked (id, credit, maxInflight, deadline, size); a fragmented one is
 * reassembled from its DATA frames. The complete request is dispatched: run at once, or held
 * while our output is congested (Session Rule 4). Running it calls the handler with a
 * `Context`; what the handler hands back (handler-result.ts) is sent as one message, or, for a
 * stream, produced item by item while the caller's credit and our output allow.
 *
 * `calls` holds the calls being served, by the peer's id. A call leaves it when its terminal
 * frame is written; frames that cross that (CANCEL, CREDIT, DATA) find nothing and are ignored.
 *
 * Rule 1, responder's side: `finish` is the only place a terminal frame is written — STATUS,
 * or RESPONSE|END carrying the last message (or the last piece of a fragmented one, which the
 * fragmenter hands back to it) — and `end` the only place a call leaves `calls`.
 */
import { DEFAULT_WIRE_CREDIT, F_END, F_FOLLOWS, F_STREAM, F_TEXT, MAX_CREDIT, Status } from './constants.js';
import { EMPTY, type FrameBatch } from './codec.js';
import { NO_DEADLINE, type Timed } from './deadline-heap.js';
import { PipitError, ProtocolError } from './errors.js';
import { type Fragments, messageRoom, sizeOver, wireForm } from './fragmenter.js';
import { payloadOf, textOf, type Payload, type Sendable } from './frame-writer.js';
import { badResult, handlerError, isPromiseLike, iteratorOf, toMessage } from './handler-result.js';
import type { Link } from './link.js';
import { Partial } from './reassembler.js';
import type { HandlerContext, RouteTable } from './routes.js';

const EMPTY_METADATA: Record<string, string> = Object.freeze({}) as Record<string, string>;
/** Output a producer may encode before it waits for the transport to take it (one socket write). */
const PRODUCER_BATCH_BYTES = 64 * 1024;
/** A handler's result of nothing: an empty message. */
const NOTHING = EMPTY;

/** One call we serve. */
export class InCall implements Timed {
  settled = false;
  readonly stream: boolean;
  /** The request payload was sent as text. */
  readonly text: boolean;
  /** Stream: credit the caller granted (§8.6), less the messages we started. */
  credit: number;
  deadline = NO_DEADLINE;
  service = '';
  method = '';
  metadata: Record<string, string> = EMPTY_METADATA;
  /** A fragmented request still arriving. */
  partial: Partial | null = null;
  /** The rest of a response message, still being written. */
  fragments: Fragments | null = null;
  /** The handler's signal, made when the handler first asks for it. */
  private controller: AbortController | null = null;
  private abortReason: PipitError | null = null;
  /** The producer waits for credit, for its fragments or for output to drain. */
  private waiter: (() => void) | null = null;

  constructor(
    readonly id: number,
    flags: number,
    credit: number,
  ) {
    this.stream = (flags & F_STREAM) !== 0;
    this.text = (flags & F_TEXT) !== 0;
    this.credit = credit;
  }

  /** Resolves at the next `wake`. */
  sleep(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.waiter = resolve;
    });
  }

  wake(): void {
    const w = this.waiter;
    if (w !== null) {
      this.waiter = null;
      w();
    }
  }

  /** Stop the handler (cancel, deadline, connection loss). */
  abort(reason: PipitError): void {
    this.abortReason ??= reason;
    this.controller?.abort(reason);
  }

  /** Lazily made: most handlers never look at their signal. */
  signal(): AbortSignal {
    if (this.controller === null) {
      this.controller = new AbortController();
      if (this.abortReason !== null) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }
}

/** The `ctx` a handler gets. */
class Context<P> implements HandlerContext<P> {
  private sig: AbortSignal | null = null;
  constructor(
    private readonly call: InCall,
    readonly peer: P,
  ) {}
  get service(): string {
    return this.call.service;
  }
  get method(): string {
    return this.call.method;
  }
  get metadata(): Record<string, string> {
    return this.call.metadata;
  }
  get text(): boolean {
    return this.call.text;
  }
  get deadline(): number | undefined {
    return this.call.deadline === NO_DEADLINE ? undefined : this.call.deadline;
  }
  get signal(): AbortSignal {
    return (this.sig ??= this.call.signal());
  }
}

export class Responder<P> {
  private readonly calls = new Map<number, InCall>();

  constructor(
    private readonly link: Link,
    private readonly routes: RouteTable<P>,
    /** What handlers see as `ctx.peer`. */
    private readonly peer: P,
  ) {}

  /** Calls being served. */
  get size(): number {
    return this.calls.size;
  }

  // ---- frames from the caller ----

  /** A REQUEST. `serving` false: we sent GOAWAY, and a new request is discarded (§9.2). */
  onRequest(batch: FrameBatch, i: number, now: number, serving: boolean): void {
    const id = batch.id(i);
    // The id rule comes first, even after our GOAWAY (§9.2): the caller broke §4.2.
    if (this.calls.has(id)) {
      throw new ProtocolError('E_ID_IN_USE', `REQUEST reuses id ${id} of a call still in progress`);
    }
    // Unprocessed and unanswered: the peer fails it with UNAVAILABLE when our GOAWAY arrives.
    if (!serving) return;
    const link = this.link;
    const flags = batch.flags(i);
    const stream = (flags & F_STREAM) !== 0;
    const ext = batch.hasExt(i) ? batch.ext(i) : null;
    // Credit means nothing on a unary call: its ext CREDIT is ignored, whatever its value (§8.6).
    if (stream && ext?.credit !== undefined && ext.credit > MAX_CREDIT) {
      throw new ProtocolError('E_CREDIT_OVERFLOW', `initial credit ${ext.credit} of call ${id} exceeds ${MAX_CREDIT}`);
    }
    const max = link.limits.maxInflight;
    if (this.calls.size >= max) {
      link.pressure.strike();
      link.writer.status(id, Status.RESOURCE_EXHAUSTED, `more than ${max} calls in flight`);
      link.outputReady();
      return; // its DATA fragments, if any, are ignored like those of any unknown id
    }
    const call = new InCall(id, flags, stream ? ext?.credit ?? DEFAULT_WIRE_CREDIT : 0);
    this.calls.set(id, call);
    call.service = batch.service(i);
    call.method = batch.method(i);
    if (ext !== null) {
      if (ext.deadlineMs === 0) {
        // Expired before it was sent: not processed (§8.5). Later fragments are ignored.
        this.finish(call, new PipitError('DEADLINE_EXCEEDED', 'the request arrived with no time left (DEADLINE 0)'));
        return;
      }
      if (ext.deadlineMs !== undefined) {
        call.deadline = now + ext.deadlineMs;
        link.deadlines.push(call.deadline, call);
      }
      if (ext.metadata !== undefined) call.metadata = Object.fromEntries(ext.metadata);
    }
    if (flags & F_FOLLOWS) {
      call.partial = new Partial();
      if (!link.reassembler.add(call.partial, batch, i)) this.tooLarge(call);
      return;
    }
    if (batch.bodyLength(i) > link.reassembler.maxMessageBytes) {
      this.tooLarge(call);
      return;
    }
    this.dispatch(call, batch.body(i));
  }

  onData(batch: FrameBatch, i: number): void {
    const call = this.calls.get(batch.id(i));
    if (call === undefined || call.settled) return; // crossed our terminal frame
    const partial = call.partial;
    if (partial === null) throw new ProtocolError('E_DATA_COMPLETE', `DATA for call ${call.id}, whose request is already complete`);
    const reassembler = this.link.reassembler;
    if (!reassembler.add(partial, batch, i)) {
      this.tooLarge(call);
      return;
    }
    if ((batch.flags(i) & F_FOLLOWS) === 0) {
      call.partial = null;
      this.dispatch(call, reassembler.finish(partial));
    }
  }

  onCredit(batch: FrameBatch, i: number): void {
    const call = this.calls.get(batch.id(i));
    if (call === undefined || !call.stream) return; // crossed the terminal frame, or unary
    const credit = call.credit + batch.aux(i);
    if (credit > MAX_CREDIT) throw new ProtocolError('E_CREDIT_OVERFLOW', `credit for call ${call.id} exceeds ${MAX_CREDIT}`);
    call.credit = credit;
    call.wake();
  }

  onCancel(batch: FrameBatch, i: number): void {
    const call = this.calls.get(batch.id(i));
    if (call === undefined) return;
    const reason = new PipitError('CANCELLED', 'the caller cancelled the call');
    this.finish(call, reason);
    call.abort(reason);
  }

  /** Its deadline came (the session's tick). */
  expire(call: InCall, now: number): void {
    if (call.settled || call.deadline > now) return;
    const reason = new PipitError('DEADLINE_EXCEEDED', 'deadline exceeded');
    this.finish(call, reason);
    call.abort(reason);
  }

  private tooLarge(call: InCall): void {
    this.finish(call, new PipitError('RESOURCE_EXHAUSTED', `request exceeds maxMessageBytes ${this.link.reassembler.maxMessageBytes}`));
  }

  // ---- running the handler ----

  /** A complete request: run it, or hold it while output is congested (Rule 4). */
  private dispatch(call: InCall, payload: Buffer): void {
    const pressure = this.link.pressure;
    if (pressure.holding) {
      pressure.hold(() => {
        if (!call.settled) this.run(call, payload);
      });
      return;
    }
    this.run(call, payload);
  }

  private run(call: InCall, payload: Buffer): void {
    const handler = this.routes.find(call.service, call.method);
    if (typeof handler !== 'function') {
      this.finish(call, handler === undefined
        ? new PipitError('UNKNOWN_SERVICE', `unknown service ${JSON.stringify(call.service)}`)
        : new PipitError('UNKNOWN_METHOD', `unknown method ${JSON.stringify(call.service + '.' + call.method)}`));
      return;
    }
    let result: unknown;
    try {
      result = handler(payload, new Context(call, this.peer));
    } catch (e) {
      this.finish(call, handlerError(e));
      return;
    }
    if (isPromiseLike(result)) {
      result.then(
        (v) => this.onResult(call, v),
        (e) => this.finish(call, handlerError(e)),
      );
    } else {
      this.onResult(call, result);
    }
  }

  private onResult(call: InCall, value: unknown): void {
    if (call.settled) return;
    if (call.stream) {
      const it = iteratorOf(value);
      if (it !== null) {
        void this.produce(call, it);
        return;
      }
      // A stream call served by a unary handler: its one result is the last message, folded
      // with END; nothing is an empty message (§8.10). END costs a credit like any message.
      const message = value === undefined || value === null ? NOTHING : toMessage(value);
      if (message === null) return this.finish(call, badResult(value));
      if (call.credit <= 0) {
        void this.sendLastWhenCredited(call, message);
        return;
      }
      call.credit--;
      this.send(call, message, true);
      return;
    }
    if (value === undefined || value === null) {
      this.send(call, NOTHING, true);
      return;
    }
    const message = toMessage(value);
    if (message === null) {
      const it = iteratorOf(value);
      if (it === null) return this.finish(call, badResult(value));
      // A unary call cannot take a stream: refuse it without reading the stream (§8.10).
      void Promise.resolve().then(() => it.return?.()).catch(() => {});
      this.finish(call, new PipitError('INVALID_ARGUMENT', `${call.service}.${call.method} produces a stream; call it as a stream`));
      return;
    }
    this.send(call, message, true);
  }

  /** A stream call's single result (§8.10), once the caller grants a credit for it. */
  private async sendLastWhenCredited(call: InCall, message: Sendable): Promise<void> {
    while (!call.settled && call.credit <= 0) await call.sleep();
    if (call.settled) return;
    call.credit--;
    this.send(call, message, true);
  }

  /**
   * Drive a stream handler's iterator while credit lasts and output is not congested. A sync
   * iterator is drained without promises; an async one costs one await per step (the
   * iterator protocol's own). A step may hand over an array of messages (a page of rows):
   * each is its own message on the wire, sent as credit allows, and the iterator is not
   * resumed before the last of them is sent, so one await serves the whole array.
   */
  private async produce(call: InCall, it: Iterator<unknown> | AsyncIterator<unknown>): Promise<void> {
    try {
      for (;;) {
        if (call.settled) {
          await it.return?.();
          return;
        }
        if (this.mustWait(call)) {
          await call.sleep();
          continue;
        }
        let r = it.next();
        if (isPromiseLike(r)) r = await r;
        const step = r as IteratorResult<unknown>;
        if (call.settled) continue;
        if (step.done) {
          this.finish(call, null);
          return;
        }
        const value = step.value;
        if (!Array.isArray(value)) {
          this.sendItem(call, value);
          continue;
        }
        for (let k = 0; k < value.length && !call.settled; ) {
          if (this.mustWait(call)) await call.sleep();
          else this.sendItem(call, value[k++]);
        }
      }
    } catch (e) {
      this.finish(call, handlerError(e));
    }
  }

  /**
   * The producer may not send now: no credit, a fragmented message still going out, output
   * congested, or a write's worth encoded and not yet taken. (In the last two it is woken
   * once output is taken: an async producer resumes in microtasks and would otherwise fill
   * its whole window before the event loop got to write anything, so the consumer would
   * idle while the producer works, and then the other way round.)
   */
  private mustWait(call: InCall): boolean {
    if (call.credit <= 0 || call.fragments !== null) return true;
    const link = this.link;
    if (link.pressure.congested || link.writer.pendingBytes >= PRODUCER_BATCH_BYTES) {
      link.pressure.waitWritable(call);
      return true;
    }
    return false;
  }

  /** One produced item as one message of the stream (a credit spent). */
  private sendItem(call: InCall, item: unknown): void {
    const message = toMessage(item);
    if (message === null) throw badResult(item);
    call.credit--;
    this.send(call, message, false);
  }

  // ---- writing the answer ----

  /**
   * Write one message of the answer, fragmenting it if the peer's frame limit requires;
   * `last`: it ends the call (as RESPONSE|END, through `finish`).
   */
  private send(call: InCall, message: Sendable, last: boolean): void {
    if (call.settled) return;
    const link = this.link;
    const room = messageRoom(link.peerMaxFrameBytes);
    const text = textOf(message) ? F_TEXT : 0;
    const payload = wireForm(payloadOf(message), room);
    const size = sizeOver(payload, link.peerMaxMessageBytes);
    if (size >= 0) {
      this.finish(call, new PipitError('RESOURCE_EXHAUSTED', `response of ${size} bytes exceeds the peer's maxMessageBytes ${link.peerMaxMessageBytes}`));
      return;
    }
    if (typeof payload !== 'string' && payload.length > room) {
      link.writer.response(call.id, text | F_FOLLOWS, payload.subarray(0, room));
      call.fragments = { request: false, id: call.id, bytes: payload, pos: room, last: (piece) => this.lastPiece(call, piece, last) };
      link.fragmenter.add(call.fragments);
      link.outputReady();
      return;
    }
    if (last) {
      this.finish(call, null, payload, text);
      return;
    }
    link.writer.response(call.id, text, payload);
    link.outputReady();
  }

  /** The fragmenter reached the last piece of a message of ours. */
  private lastPiece(call: InCall, piece: Uint8Array, last: boolean): void {
    call.fragments = null;
    if (last) {
      this.finish(call, null, piece);
      return;
    }
    this.link.writer.response(call.id, 0, piece);
    call.wake();
  }

  /**
   * End a call we serve with its terminal frame (Rule 1: the only place one is written):
   * STATUS with `error`'s code, STATUS OK when neither `error` nor `last` is given, or
   * RESPONSE|END carrying `last` with the TEXT flag `text`. Unwritten pieces of a message
   * are dropped first: only the terminal frame is written (§8.7).
   */
  private finish(call: InCall, error: PipitError | null, last?: Payload, text = 0): void {
    if (call.settled) return;
    const link = this.link;
    if (call.fragments !== null) {
      link.fragmenter.drop(false, call.id);
      call.fragments = null;
    }
    if (error !== null) link.writer.status(call.id, error.status, error.message);
    else if (last === undefined) link.writer.status(call.id, Status.OK);
    else link.writer.response(call.id, text | F_END, last);
    link.outputReady();
    this.end(call);
  }

  /** The call is over: out of the table, its partial request dropped, its producer woken. */
  private end(call: InCall): void {
    call.settled = true;
    if (this.calls.get(call.id) === call) this.calls.delete(call.id);
    if (call.partial !== null) {
      this.link.reassembler.release(call.partial);
      call.partial = null;
    }
    call.wake();
    this.link.callEnded();
  }

  /** The connection is over: every call ends without a frame, its handler stopped. */
  closed(failure: PipitError): void {
    for (const call of this.calls.values()) {
      call.settled = true;
      call.abort(failure);
      call.wake();
    }
    this.calls.clear();
  }
}
