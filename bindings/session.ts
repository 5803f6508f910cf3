/**
 * Session: the sans-IO state machine of one pipit connection.
 *
 * Theory of operation
 * -------------------
 * Decoded frames (a FrameBatch) and the current time go in through `receive(batch, now)`;
 * frames to send come out of `takeOutput()` as byte segments. The session never reads a
 * socket, writes one, or sets a timer: the transport (peer.ts) does, and asks
 * `nextDeadline()` when to call `tick(now)`. Handlers are invoked from here, so a pair of
 * sessions joined in memory is a complete, deterministic test bed.
 *
 * The session itself is frame dispatch and the connection's lifecycle. Its rooms:
 *   caller.ts      the calls we open (`out`, by our id): open, queue, send, settle, release
 *   responder.ts   the calls we serve (`calls`, by the peer's id): dispatch, run, respond, finish
 *   lifecycle.ts   the connection's state: OPEN, GOAWAY sent or received, DRAINING, CLOSED
 *   link.ts        what both call tables share: the output (frame writer, fragmenter,
 *                  backpressure), the reassembler, the deadline heap, the peer's limits
 * Frames for our calls (RESPONSE, STATUS) go to the caller, frames for the calls we serve
 * (REQUEST, DATA, CREDIT, CANCEL) to the responder; HELLO, PING, PONG, GOAWAY and ERROR
 * are the connection's and are handled here.
 *
 * Rule 1: every call ends with exactly one outcome on each side. On ours, `Caller.settle` is
 *   the only place a user-visible outcome is delivered, and it checks `settled` first. On the
 *   responder side, `Responder.finish` is the only place a terminal frame is written.
 * Rule 2: the peer breaking the protocol is terminal for the connection: ERROR is sent,
 *   every call fails with PROTOCOL_ERROR, and nothing after the bad frame is processed.
 * Rule 3: every buffer the peer can make us grow is capped before it grows: frames by the
 *   codec, calls in flight by maxInflight, reassembly per message and per connection
 *   (reassembler.ts), stream items by the credit window we granted (stream-window.ts).
 * Rule 4: output is capped the same way (backpressure.ts). When our pending output plus the
 *   transport's backlog passes maxWriteBufferBytes we are congested: new requests are held
 *   (at most maxInflight of them), producers wait, our queued calls wait. We keep reading, so
 *   two congested peers still receive each other's responses and credits and cannot
 *   deadlock; only a peer that keeps sending work beyond its allowance while we are
 *   congested is `overloaded`, and the transport then stops reading from it.
 */
import {
  DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_MESSAGE_BYTES, MAX_FRAME_BYTES_LIMIT,
  PROTOCOL_VERSION, S_MAX_FRAME_BYTES, S_MAX_INFLIGHT, S_MAX_MESSAGE_BYTES, Status, T_CANCEL, T_CREDIT,
  T_DATA, T_ERROR, T_GOAWAY, T_HELLO, T_PING, T_PONG, T_REQUEST, T_RESPONSE, T_STATUS,
} from './constants.js';
import { Caller, OutCall, goingAway, type CallOptions, type StreamOptions } from './caller.js';
import type { FrameBatch } from './codec.js';
import { InvalidArgumentError, PipitError, ProtocolError } from './errors.js';
import type { Sendable } from './frame-writer.js';
import { ALLOWS, transition, type LifecycleEvent, type State } from './lifecycle.js';
import { Link, type Limits, type SessionHost } from './link.js';
import type { Message, MessageStream } from './message-stream.js';
import { InCall, Responder } from './responder.js';
import { RouteTable, type Service, type Services } from './routes.js';

export interface SessionOptions<P = unknown> {
  /** Services this end serves. More can be added with `handle`. */
  services?: Services<P>;
  /** Largest frame we accept (announced in HELLO). Defaults to 262144. */
  maxFrameBytes?: number;
  /** Largest reassembled message we accept (announced); 0 accepts only empty messages. Defaults to 16 MiB. */
  maxMessageBytes?: number;
  /** Calls from the peer we serve at once (announced); beyond: RESOURCE_EXHAUSTED. Defaults to 1024. */
  maxInflight?: number;
  /** Calls of ours waiting for the peer's maxInflight to allow them; beyond: RESOURCE_EXHAUSTED. Defaults to 65536. */
  maxQueuedCalls?: number;
  /** Bytes of partial messages held at once across all calls. Defaults to 64 MiB. */
  maxReassemblyBytes?: number;
  /**
   * Initial credit (stream window) we grant per stream call. Unless a call sets `credit`, the
   * window then grows (fourfold) while the consumer finds no item waiting, up to
   * maxStreamWindowBytes of messages of the average size seen. Defaults to 128.
   */
  initialCredit?: number;
  /** Bytes of stream messages an adaptive window may let the producer send ahead. Defaults to 1 MiB. */
  maxStreamWindowBytes?: number;
  /**
   * Output waiting to be written (ours plus the transport's backlog, see setBacklog) above
   * which we are congested: new incoming requests are held, stream producers wait, our own
   * calls stay queued; frames from the peer are still read. Defaults to 4 MiB.
   */
  maxWriteBufferBytes?: number;
  /** The object handlers see as `ctx.peer`. */
  peer?: P;
  /** Send HELLO first. Defaults to true. */
  hello?: boolean;
  /**
   * Serve `$pipit`/`methods`, the list of methods served (spec/PROTOCOL.md §8.11); when false,
   * calls to it get UNKNOWN_SERVICE. Defaults to true.
   */
  introspection?: boolean;
}

interface Ping {
  sent: number;
  resolve: (rtt: number) => void;
  reject: (e: PipitError) => void;
}

export class Session<P = unknown> implements Limits {
  // ---- limits (SessionOptions) ----
  readonly maxFrameBytes: number;
  readonly maxMessageBytes: number;
  readonly maxInflight: number;
  readonly maxQueuedCalls: number;
  readonly maxReassemblyBytes: number;
  readonly initialCredit: number;
  readonly maxStreamWindowBytes: number;
  readonly maxWriteBufferBytes: number;

  readonly routes: RouteTable<P>;
  private readonly link: Link;
  private readonly caller: Caller;
  private readonly responder: Responder<P>;
  private state: State = 'OPEN';
  /** Why the connection closed (null: gracefully, or not closed). */
  private closeError: PipitError | null = null;
  /** REQUEST frames received, mod 2^32: the count our GOAWAY announces (§9.1). */
  private recvSeq = 0;
  /** Frames received (EXTENSION frames never reach the session): HELLO is valid only as the first (§11.1). */
  private framesReceived = 0;
  private readonly pings = new Map<number, Ping>();
  private pingId = 0;

  constructor(options: SessionOptions<P> = {}) {
    this.maxFrameBytes = clamp(options.maxFrameBytes ?? 262144, DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT);
    // 0 is allowed: only empty messages are accepted (spec §11.3).
    this.maxMessageBytes = atLeast(options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, 0, 'maxMessageBytes');
    this.maxInflight = positive(options.maxInflight ?? DEFAULT_MAX_INFLIGHT, 'maxInflight');
    this.maxQueuedCalls = positive(options.maxQueuedCalls ?? 65536, 'maxQueuedCalls');
    this.maxReassemblyBytes = positive(options.maxReassemblyBytes ?? 64 * 1024 * 1024, 'maxReassemblyBytes');
    this.initialCredit = positive(options.initialCredit ?? 128, 'initialCredit');
    this.maxStreamWindowBytes = positive(options.maxStreamWindowBytes ?? 1024 * 1024, 'maxStreamWindowBytes');
    this.maxWriteBufferBytes = positive(options.maxWriteBufferBytes ?? 4 * 1024 * 1024, 'maxWriteBufferBytes');
    this.routes = new RouteTable(options.services, { introspection: options.introspection });
    this.link = new Link(this, () => this.maybeFinish());
    this.caller = new Caller(this.link, this.routes);
    this.responder = new Responder(this.link, this.routes, options.peer as P);
    if (options.hello !== false) {
      this.link.writer.hello(PROTOCOL_VERSION, [
        [S_MAX_FRAME_BYTES, this.maxFrameBytes],
        [S_MAX_MESSAGE_BYTES, this.maxMessageBytes],
        [S_MAX_INFLIGHT, this.maxInflight],
      ]);
    }
  }

  // =====================================================================
  // Public state
  // =====================================================================

  /** The transport's hooks (peer.ts sets them; a test may set its own). */
  get host(): SessionHost | null {
    return this.link.host;
  }
  set host(host: SessionHost | null) {
    this.link.host = host;
  }
  /** The peer's limits: defaults until its HELLO arrives. */
  get peerMaxFrameBytes(): number {
    return this.link.peerMaxFrameBytes;
  }
  get peerMaxMessageBytes(): number {
    return this.link.peerMaxMessageBytes;
  }
  get peerMaxInflight(): number {
    return this.link.peerMaxInflight;
  }
  get closed(): boolean {
    return this.state === 'CLOSED';
  }
  /** GOAWAY was sent or received (or the connection closed): no new calls either way. */
  get draining(): boolean {
    return this.state !== 'OPEN';
  }
  /** Our calls in flight (sent, awaiting their terminal frame), and queued locally. */
  get outgoingCalls(): number {
    return this.caller.openCalls;
  }
  /** Peer calls being served. */
  get incomingCalls(): number {
    return this.responder.size;
  }
  /** Earliest deadline among calls, or Infinity. */
  nextDeadline(): number {
    return this.link.deadlines.peekTime();
  }
  hasOutput(): boolean {
    return this.link.hasOutput;
  }
  /** Fragments of large messages still to be written (the transport writes them after a drain). */
  get fragmentsPending(): boolean {
    return this.link.fragmenter.pending;
  }
  /** Our pending output plus the transport's backlog is over maxWriteBufferBytes. */
  get congested(): boolean {
    return this.link.pressure.congested;
  }
  /** Congested, and the peer keeps sending work beyond what it may: stop reading from it. */
  get overloaded(): boolean {
    return this.link.pressure.overloaded;
  }

  /**
   * The transport's write backlog (bytes accepted, not yet written), after each write and on
   * drain. When output is no longer congested, held work resumes.
   */
  setBacklog(bytes: number): void {
    this.link.pressure.backlog = bytes;
    if (!this.link.pressure.congested) this.relieve();
  }

  private relieve(): void {
    this.link.pressure.relieve();
    this.caller.pump();
  }

  // =====================================================================
  // Calls
  // =====================================================================

  /**
   * Unary call. Resolves with the response message.
   * @throws rejects with a PipitError (InvalidArgumentError for a bad argument).
   */
  call(service: string, method: string, payload: Sendable, options: CallOptions = {}, now = 0): Promise<Buffer> {
    return this.caller.call(service, method, payload, options, now);
  }

  /** Unary call, resolving with the response message and its TEXT flag. Fails as `call` does. */
  callMessage(service: string, method: string, payload: Sendable, options: CallOptions = {}, now = 0): Promise<Message> {
    return this.caller.callMessage(service, method, payload, options, now);
  }

  /**
   * Stream call. The returned stream yields each response message.
   * @throws InvalidArgumentError for a `credit` out of range; any other failure ends the stream.
   */
  stream(service: string, method: string, payload: Sendable, options: StreamOptions = {}, now = 0): MessageStream {
    return this.caller.stream(service, method, payload, options, now);
  }

  /** Serve (or replace) a service. @throws InvalidArgumentError for a bad name or service. */
  handle(name: string, service: Service<P>): void {
    this.routes.add(name, service);
  }

  // =====================================================================
  // Input
  // =====================================================================

  /** Process a decoded batch. A protocol error closes the session (Rule 2). */
  receive(batch: FrameBatch, now = 0): void {
    if (this.state === 'CLOSED') return;
    const link = this.link;
    if (now > link.clock) link.clock = now;
    try {
      for (let i = 0; i < batch.count && !this.closed; i++) {
        this.framesReceived++;
        switch (batch.type(i)) {
          case T_RESPONSE:
            this.caller.onResponse(batch, i);
            break;
          case T_REQUEST:
            this.recvSeq = (this.recvSeq + 1) >>> 0;
            this.responder.onRequest(batch, i, now, ALLOWS[this.state].serveRequests);
            break;
          case T_STATUS:
            this.caller.onStatus(batch, i);
            break;
          case T_CREDIT:
            this.responder.onCredit(batch, i);
            break;
          case T_CANCEL:
            this.responder.onCancel(batch, i);
            break;
          case T_DATA:
            this.responder.onData(batch, i);
            break;
          case T_HELLO:
            this.onHello(batch, i);
            break;
          case T_PING:
            link.pressure.strike();
            link.writer.pong(batch.id(i));
            link.outputReady();
            break;
          case T_PONG:
            this.onPong(batch.id(i), now);
            break;
          case T_GOAWAY:
            this.onGoaway(batch.id(i), batch.bodyText(i));
            break;
          case T_ERROR:
            this.onError(batch.aux(i), batch.bodyText(i));
            break;
        }
      }
    } catch (e) {
      if (e instanceof ProtocolError) {
        this.protocolError(e);
        return;
      }
      throw e;
    }
    if (batch.error !== null) this.protocolError(batch.error);
  }

  private onHello(batch: FrameBatch, i: number): void {
    const version = batch.id(i);
    if (version === 0) throw new ProtocolError('E_BAD_HELLO', 'HELLO with version 0');
    if (this.framesReceived !== 1) throw new ProtocolError('E_BAD_HELLO', 'HELLO must be the first frame and sent once');
    const link = this.link;
    for (const [k, v] of batch.settings(i)) {
      if (k === S_MAX_FRAME_BYTES) link.peerMaxFrameBytes = clamp(v, DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT);
      else if (k === S_MAX_MESSAGE_BYTES) link.peerMaxMessageBytes = v;
      else if (k === S_MAX_INFLIGHT) link.peerMaxInflight = Math.max(1, v);
    }
    this.caller.pump();
  }

  private onGoaway(lastSeq: number, message: string): void {
    // A GOAWAY in GOAWAY_RECEIVED or DRAINING is the peer's second (lifecycle.ts).
    this.enter('RECV_GOAWAY', () => new ProtocolError('E_SECOND_GOAWAY', 'second GOAWAY'));
    this.caller.goawayReceived(lastSeq, message);
    this.goAway();
  }

  private onError(code: number, message: string): void {
    const err = code === Status.PROTOCOL_ERROR
      ? new ProtocolError('E_PEER', `peer reported a protocol error: ${message}`)
      : new PipitError(code === Status.OK ? Status.INTERNAL : code, `peer closed the connection: ${message}`);
    this.close(err);
  }

  private onPong(id: number, now: number): void {
    const ping = this.pings.get(id);
    if (ping === undefined) return;
    this.pings.delete(id);
    ping.resolve(now - ping.sent);
  }

  // =====================================================================
  // Time and output
  // =====================================================================

  /** Expire deadlines up to `now`. */
  tick(now: number): void {
    const link = this.link;
    if (now > link.clock) link.clock = now;
    for (;;) {
      const entry = link.deadlines.popDue(now);
      if (entry === null) return;
      if (entry instanceof OutCall) this.caller.expire(entry, now);
      else this.responder.expire(entry as InCall, now);
    }
  }

  /** Segments to write, in order. Writes at most a budget of large-message fragments (fragmenter.ts). */
  takeOutput(): Uint8Array[] {
    const out = this.link.take();
    // Taking output is progress even for a transport that never reports a backlog: resume
    // held work if that is enough. (A transport that does report corrects it right after.)
    const pressure = this.link.pressure;
    if ((pressure.waiting || this.caller.queueing) && !pressure.congested) this.relieve();
    return out;
  }

  /** The number of the last `takeOutput()`, for `outputWritten`. */
  get outputTaken(): number {
    return this.link.writer.taken;
  }

  /**
   * The transport has written every segment of the takes up to `take`: their buffers may be
   * reused. Optional; a transport that never calls it gets fresh buffers.
   */
  outputWritten(take: number): void {
    this.link.writer.written(take);
  }

  // =====================================================================
  // Connection lifecycle (lifecycle.ts)
  // =====================================================================

  /**
   * Measure a round trip (PING/PONG). Resolves with milliseconds (by the clock given to receive).
   * @throws rejects, once the connection is closed or when it closes first, with its failure
   *   (CONNECTION_CLOSED after a clean close).
   */
  ping(now = 0): Promise<number> {
    if (this.state === 'CLOSED') return Promise.reject(this.closedError());
    const id = (this.pingId = (this.pingId + 1) >>> 0);
    return new Promise((resolve, reject) => {
      this.pings.set(id, { sent: now, resolve, reject });
      this.link.writer.ping(id);
      this.link.outputReady();
    });
  }

  /** Graceful shutdown: GOAWAY, let calls in flight finish, then close. */
  goAway(code: number = Status.OK, message = ''): void {
    if (this.state === 'CLOSED') return;
    if (this.state === 'OPEN' || this.state === 'GOAWAY_RECEIVED') {
      this.enter('SEND_GOAWAY');
      this.link.writer.goaway(this.recvSeq, code, message);
      this.caller.goawaySent();
      this.link.outputReady();
    }
    this.maybeFinish();
  }

  /** Close once GOAWAY went both ways and no call remains in either direction (§9.4). */
  private maybeFinish(): void {
    if (!ALLOWS[this.state].finishWhenIdle) return;
    if (this.caller.openCalls > 0 || this.responder.size > 0 || this.link.fragmenter.pending) return;
    this.close(null);
  }

  /** Our side found the peer in breach of the protocol (Rule 2). */
  protocolError(error: ProtocolError): void {
    if (this.state === 'CLOSED') return;
    this.link.writer.error(Status.PROTOCOL_ERROR, error.message);
    this.link.outputReady();
    this.close(error);
  }

  /**
   * The connection is over. `error` null: finished gracefully. Every call still open fails
   * with CONNECTION_CLOSED (or `error`'s code when it is a protocol error or the peer's ERROR).
   */
  close(error: PipitError | null): void {
    if (this.state === 'CLOSED') return;
    this.enter(error === null && this.state === 'DRAINING' ? 'FINISHED' : 'FAIL');
    this.closeError = error;
    const failure = this.closedError();
    const link = this.link;
    this.caller.closed(failure, error === null ? goingAway : () => this.closedError());
    this.responder.closed(failure);
    link.pressure.clear();
    link.reassembler.clear();
    link.fragmenter.clear();
    link.deadlines.clear();
    for (const ping of this.pings.values()) ping.reject(failure);
    this.pings.clear();
    link.host?.onClose(error);
  }

  /** The transport is gone (EOF, reset, peer killed). */
  transportClosed(cause?: unknown): void {
    // A finished connection (GOAWAY both ways, no call left, spec §9.4) closed already; any
    // other end of the byte stream is a lost connection, even with no call open.
    if (this.state === 'CLOSED') return;
    this.close(new PipitError('CONNECTION_CLOSED', 'connection closed', { cause }));
  }

  /** Move to the state `event` leads to; an event the state has no row for throws `refused()`. */
  private enter(event: LifecycleEvent, refused?: () => Error): void {
    const next = transition(this.state, event);
    if (next === undefined) throw refused?.() ?? new Error(`session: ${event} in state ${this.state}`);
    this.state = next;
  }

  private closedError(): PipitError {
    const e = this.closeError;
    if (e === null) return new PipitError('CONNECTION_CLOSED', 'connection closed');
    if (e.code === 'CONNECTION_CLOSED') return e;
    // Its message already carries the offset: a copy would append it a second time.
    if (e instanceof ProtocolError) return e;
    return new PipitError(e.code === 'APPLICATION_ERROR' || e.code === 'UNKNOWN' ? e.status : e.code, e.message, { cause: e });
  }
}

function clamp(v: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, Math.floor(v)));
}

function positive(v: number, name: string): number {
  return atLeast(v, 1, name);
}

function atLeast(v: number, min: number, name: string): number {
  if (!Number.isInteger(v) || v < min) throw new InvalidArgumentError(`${name} must be an integer >= ${min}, got ${v}`);
  return v;
}
