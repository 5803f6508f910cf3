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
 * Two call tables, one per direction (spec/PROTOCOL.md, ids):
 *   - `out`: calls we opened, indexed by our id. Ids are reused, smallest-ish first (a
 *     free stack), so they stay one byte. An id is released only when the call's terminal
 *     frame (RESPONSE|END or STATUS) arrives, even if the user already saw a timeout or
 *     cancellation: until then a late frame for it must still find it.
 *   - `inc`: calls the peer opened, keyed by the peer's id. A call leaves the table when we
 *     send its terminal frame; frames that cross that (CANCEL, CREDIT, DATA) are ignored.
 *
 * Rule 1: every call ends with exactly one outcome on each side. On ours, `settle*`
 *   functions are the only place a user-visible outcome is delivered, and they check
 *   `settled` first. On the responder side, `finishIncoming` is the only place a terminal
 *   frame is written.
 * Rule 2: the peer breaking the protocol is terminal for the connection: ERROR is sent,
 *   every call fails with PROTOCOL_ERROR, and nothing after the bad frame is processed.
 * Rule 3: every buffer the peer can make us grow is capped before it grows: frames by the
 *   codec, calls in flight by maxInflight, reassembly per message and per connection,
 *   stream items by the credit window we granted.
 * Rule 4: output is capped the same way. When our pending output plus the transport's
 *   backlog passes maxWriteBufferBytes we are congested: new requests are held (at most
 *   maxInflight of them), producers wait, our queued calls wait. We keep reading, so two
 *   congested peers still receive each other's responses and credits and cannot deadlock;
 *   only a peer that keeps sending work beyond its allowance while we are congested is
 *   `overloaded`, and the transport then stops reading from it.
 */
import {
  DEFAULT_MAX_FRAME_BYTES, DEFAULT_MAX_INFLIGHT, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_WIRE_CREDIT,
  F_END, F_FOLLOWS, F_STREAM, F_TEXT, MAX_CREDIT, MAX_FRAME_BYTES_LIMIT, PROTOCOL_VERSION, handlerMaySend,
  S_MAX_FRAME_BYTES, S_MAX_INFLIGHT, S_MAX_MESSAGE_BYTES, Status, T_CANCEL, T_CREDIT, T_DATA, T_ERROR,
  T_GOAWAY, T_HELLO, T_PING, T_PONG, T_REQUEST, T_RESPONSE, T_STATUS,
} from './constants.js';
import type { FrameBatch } from './codec.js';
import { InvalidArgumentError, PipitError, ProtocolError } from './errors.js';
import { FrameWriter, encodeExt, type Payload } from './frame-writer.js';
import { MessageStream } from './message-stream.js';
import { RouteTable, type HandlerContext, type Services } from './routes.js';

export interface SessionOptions {
  /** Services this end serves. More can be added with `handle`. */
  services?: Services;
  /** Largest frame we accept (announced in HELLO). Defaults to 262144. */
  maxFrameBytes?: number;
  /** Largest reassembled message we accept (announced). Defaults to 16 MiB. */
  maxMessageBytes?: number;
  /** Calls from the peer we serve at once (announced); beyond: RESOURCE_EXHAUSTED. Defaults to 1024. */
  maxInflight?: number;
  /** Calls of ours waiting for the peer's maxInflight to allow them; beyond: RESOURCE_EXHAUSTED. Defaults to 65536. */
  maxQueuedCalls?: number;
  /** Bytes of partial messages held at once across all calls. Defaults to 64 MiB. */
  maxReassemblyBytes?: number;
  /**
   * Initial credit (stream window) we grant per stream call. Unless a call sets `credit`, the
   * window then grows (doubling) while the consumer finds no item waiting, up to
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
  peer?: unknown;
  /** Send HELLO first. Defaults to true. */
  hello?: boolean;
  /**
   * Serve `$pipit`/`methods`, the list of methods served (spec/PROTOCOL.md §8.11); when false,
   * calls to it get UNKNOWN_SERVICE. Defaults to true.
   */
  introspection?: boolean;
}

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

/** What the transport learns from the session. */
export interface SessionHost {
  /** Output is waiting in `takeOutput()`. Called once until taken. */
  onOutput(): void;
  /** The connection is finished (gracefully or not): flush and close the transport. */
  onClose(error: PipitError | null): void;
}

const enum Phase {
  OPEN,
  /** We sent GOAWAY: no new calls either way; close when no call remains. */
  DRAINING,
  CLOSED,
}

const NO_DEADLINE = Infinity;

class OutCall {
  id = -1;
  seq = 0;
  settled = false;
  /** Unary: the response message once received; stream: unused. */
  message: Buffer | null = null;
  /** Reassembly of a fragmented response. */
  parts: Buffer[] | null = null;
  partBytes = 0;
  /** Stream: items still allowed by the credit we granted; granted-but-unreported consumption. */
  credit = 0;
  unacked = 0;
  window = 0;
  /** The window may grow (no explicit credit): items and bytes received so far. */
  adaptive = false;
  itemsIn = 0;
  bytesIn = 0;
  deadline = NO_DEADLINE;
  /** Session clock when the call was opened (calls with a deadline). */
  openedAt = 0;
  signal: AbortSignal | null = null;
  onAbort: (() => void) | null = null;
  /** Frames waiting to be sent (queued call, or remaining fragments). */
  pending: PendingSend | null = null;
  /** In the local queue and not settled: counted in `queuedLive`. */
  queued = false;
  constructor(
    readonly stream: MessageStream | null,
    readonly resolve: ((v: Buffer) => void) | null,
    readonly reject: ((e: PipitError) => void) | null,
    readonly service: string,
    readonly method: string,
  ) {}
}

interface PendingSend {
  route: Uint8Array;
  ext: Uint8Array | null;
  flags: number;
  payload: Payload;
  /** What the ext was built from, to rebuild it with the time left if the call waits in the queue. */
  credit: number | undefined;
  metadata: Array<[string, string]> | undefined;
}

class InCall {
  settled = false;
  stream: boolean;
  /** Credit the caller granted us (streams). */
  credit: number;
  creditWaiter: (() => void) | null = null;
  controller: AbortController | null = null;
  abortReason: PipitError | null = null;
  deadline = NO_DEADLINE;
  /** Request reassembly. */
  parts: Buffer[] | null = null;
  partBytes = 0;
  text: boolean;
  service = '';
  method = '';
  metadata: Record<string, string> = EMPTY_METADATA;
  /** Remaining response fragments to send. */
  fragments: FragmentSender | null = null;
  constructor(
    readonly id: number,
    readonly seq: number,
    flags: number,
    credit: number,
  ) {
    this.stream = (flags & F_STREAM) !== 0;
    this.text = (flags & F_TEXT) !== 0;
    this.credit = credit;
  }
}

interface FragmentSender {
  out: boolean;
  id: number;
  bytes: Uint8Array;
  pos: number;
  /** RESPONSE: END on the last fragment. */
  endFlag: number;
  done: (() => void) | null;
}

const EMPTY_METADATA: Record<string, string> = Object.freeze({}) as Record<string, string>;
const EMPTY = Buffer.alloc(0);

/** Largest window an adaptive stream grows to (items). */
const MAX_ADAPTIVE_WINDOW = 65536;
/** Max bytes of fragments written per takeOutput(), so small frames interleave. */
const FRAGMENT_BUDGET = 256 * 1024;

export class Session {
  // ---- limits ----
  readonly maxFrameBytes: number;
  readonly maxMessageBytes: number;
  readonly maxInflight: number;
  readonly maxQueuedCalls: number;
  readonly maxReassemblyBytes: number;
  readonly initialCredit: number;
  readonly maxStreamWindowBytes: number;
  readonly maxWriteBufferBytes: number;
  /** The peer's limits: defaults until its HELLO arrives. */
  peerMaxFrameBytes = DEFAULT_MAX_FRAME_BYTES;
  peerMaxMessageBytes = DEFAULT_MAX_MESSAGE_BYTES;
  peerMaxInflight = DEFAULT_MAX_INFLIGHT;

  readonly routes: RouteTable;
  host: SessionHost | null = null;
  private readonly writer = new FrameWriter();
  private outputSignalled = false;

  // ---- our calls ----
  private readonly out: (OutCall | undefined)[] = [];
  private readonly freeIds: number[] = [];
  private nextId = 0;
  private outActive = 0;
  private readonly queue: OutCall[] = [];
  private queueHead = 0;
  /** Queued calls not yet settled (a cancelled one stays in `queue` until dequeued). */
  private queuedLive = 0;
  private sentSeq = 0;

  // ---- their calls ----
  private readonly inc = new Map<number, InCall>();
  private recvSeq = 0;
  private reassemblyBytes = 0;

  // ---- connection ----
  private phase = Phase.OPEN;
  private goawaySent = false;
  private goawayReceived = false;
  private closeError: PipitError | null = null;
  private readonly fragments: FragmentSender[] = [];
  private readonly pings = new Map<number, (rtt: number) => void>();
  private readonly pingSent = new Map<number, number>();
  private readonly pingFail = new Map<number, (e: PipitError) => void>();
  private pingId = 0;
  private deadlines: DeadlineHeap = new DeadlineHeap();
  /** Latest time the session was given (receive, tick, call): when a queued call is sent. */
  private clock = 0;
  // ---- backpressure (Rule 4) ----
  /** Bytes the transport has accepted but not yet written. */
  private backlog = 0;
  /** Requests accepted while congested, run when output drains. */
  private held: Array<{ call: InCall; payload: Buffer }> = [];
  private heldHead = 0;
  /** Producers waiting for output to drain. */
  private writableWaiters: InCall[] = [];
  /** Frames the peer made us answer unasked (refusals, PONGs) while congested. */
  private strikes = 0;
  private readonly peerRef: unknown;
  /** Stream offset bookkeeping for error messages: frames received so far. */
  framesReceived = 0;

  constructor(options: SessionOptions = {}) {
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
    this.peerRef = options.peer;
    if (options.hello !== false) {
      this.writer.hello(PROTOCOL_VERSION, [
        [S_MAX_FRAME_BYTES, this.maxFrameBytes],
        [S_MAX_MESSAGE_BYTES, this.maxMessageBytes],
        [S_MAX_INFLIGHT, this.maxInflight],
      ]);
      this.outputSignalled = false;
    }
  }

  // =====================================================================
  // Public state
  // =====================================================================

  get closed(): boolean {
    return this.phase === Phase.CLOSED;
  }
  get draining(): boolean {
    return this.phase !== Phase.OPEN;
  }
  /** Our calls in flight (sent, awaiting their terminal frame), and queued locally. */
  get outgoingCalls(): number {
    return this.outActive + this.queuedLive;
  }
  /** Peer calls being served. */
  get incomingCalls(): number {
    return this.inc.size;
  }
  /** Earliest deadline among calls, or Infinity. */
  nextDeadline(): number {
    return this.deadlines.peekTime();
  }
  hasOutput(): boolean {
    return this.writer.pendingBytes > 0 || this.fragments.length > 0;
  }
  /** Our pending output plus the transport's backlog is over maxWriteBufferBytes. */
  get congested(): boolean {
    return this.writer.pendingBytes + this.backlog > this.maxWriteBufferBytes;
  }

  /** Congested, and the peer keeps sending work beyond what it may: stop reading from it. */
  get overloaded(): boolean {
    return this.congested && (this.held.length - this.heldHead >= this.maxInflight || this.strikes >= 1024);
  }

  /**
   * The transport's write backlog (bytes accepted, not yet written), after each write and on
   * drain. When output is no longer congested, held work resumes.
   */
  setBacklog(bytes: number): void {
    this.backlog = bytes;
    if (!this.congested) this.relieve();
  }

  private relieve(): void {
    this.strikes = 0;
    while (this.heldHead < this.held.length && !this.congested && !this.closed) {
      const h = this.held[this.heldHead]!;
      this.held[this.heldHead++] = undefined as unknown as { call: InCall; payload: Buffer };
      if (!h.call.settled) this.run(h.call, h.payload);
    }
    if (this.heldHead === this.held.length) {
      this.held.length = 0;
      this.heldHead = 0;
    }
    if (this.writableWaiters.length > 0 && !this.congested) {
      const waiters = this.writableWaiters;
      this.writableWaiters = [];
      for (const c of waiters) this.wake(c);
    }
    this.pump();
  }

  /** Fragments of large messages still to be written (the transport writes them after a drain). */
  get fragmentsPending(): boolean {
    return this.fragments.length > 0;
  }

  // =====================================================================
  // Calls we make
  // =====================================================================

  /** Unary call. Resolves with the response message; rejects with a PipitError. */
  call(service: string, method: string, payload: Payload, options: CallOptions = {}, now = 0): Promise<Buffer> {
    return new Promise<Buffer>((resolve, reject) => {
      const call = new OutCall(null, resolve, reject, service, method);
      this.open(call, 0, payload, options, now, undefined);
    });
  }

  /** Stream call. The returned stream yields each response message. */
  stream(service: string, method: string, payload: Payload, options: StreamOptions = {}, now = 0): MessageStream {
    const stream = new MessageStream();
    const call = new OutCall(stream, null, null, service, method);
    const window = options.credit ?? this.initialCredit;
    if (!Number.isInteger(window) || window < 1 || window > MAX_CREDIT) {
      throw new InvalidArgumentError(`credit must be an integer from 1 to ${MAX_CREDIT}, got ${window}`);
    }
    call.window = window;
    call.credit = window;
    call.adaptive = options.credit === undefined;
    stream.control = {
      consumed: (n) => this.consumed(call, n),
      starved: () => this.starved(call),
      abandon: () => this.cancelOut(call, new PipitError('CANCELLED', 'stream abandoned by the consumer')),
    };
    try {
      this.open(call, F_STREAM, payload, options, now, window === DEFAULT_WIRE_CREDIT ? undefined : window);
    } catch (e) {
      this.settleOut(call, e instanceof PipitError ? e : new InvalidArgumentError(String(e)));
    }
    return stream;
  }

  private open(call: OutCall, flags: number, payload: Payload, options: CallOptions, now: number, credit: number | undefined): void {
    const route = this.routes.outgoingRoute(call.service, call.method);
    if (typeof payload !== 'string' && !(payload instanceof Uint8Array)) {
      throw new InvalidArgumentError('payload must be a Uint8Array or a string');
    }
    if (this.phase !== Phase.OPEN || this.goawayReceived) {
      // After a failure, new calls fail the same way as the open ones did (CONNECTION_CLOSED, the
      // peer's ERROR code, PROTOCOL_ERROR); after GOAWAY or a clean close, UNAVAILABLE.
      this.settleOut(call, this.closeError !== null ? this.closedError() : new PipitError('UNAVAILABLE', 'connection is going away; the call was not sent'));
      return;
    }
    const { timeout, signal } = options;
    const metadata = options.metadata === undefined ? undefined : Object.entries(options.metadata);
    if (now > this.clock) this.clock = now;
    let ext: Uint8Array | null = null;
    if (timeout !== undefined || credit !== undefined || metadata !== undefined) {
      if (timeout !== undefined && !(timeout >= 0 && timeout <= 0xffffffff)) {
        throw new InvalidArgumentError(`timeout must be a number of milliseconds from 0 to ${0xffffffff}, got ${timeout}`);
      }
      ext = encodeExt({
        deadlineMs: timeout === undefined ? undefined : Math.ceil(timeout),
        credit,
        metadata,
      });
    }
    if (timeout === 0) {
      // Out of time before it was sent: fail it here; never send DEADLINE 0 (spec §8.5).
      this.settleOut(call, new PipitError('DEADLINE_EXCEEDED', `${call.service}.${call.method} had no time left; not sent`));
      return;
    }
    if (signal) {
      if (signal.aborted) {
        this.settleOut(call, abortError(signal));
        return;
      }
      call.signal = signal;
      call.onAbort = () => this.cancelOut(call, abortError(signal));
      signal.addEventListener('abort', call.onAbort, { once: true });
    }
    if (timeout !== undefined) {
      call.openedAt = now;
      call.deadline = now + timeout;
      this.deadlines.push(call.deadline, call);
    }
    if (typeof payload === 'string' && payload.length * 3 + 600 > this.peerMaxFrameBytes) {
      payload = Buffer.from(payload, 'utf8');
      flags |= F_TEXT;
    } else if (typeof payload === 'string') {
      flags |= F_TEXT;
    }
    const size = typeof payload !== 'string' ? payload.length : payload.length * 3 > this.peerMaxMessageBytes ? Buffer.byteLength(payload) : 0;
    if (size > this.peerMaxMessageBytes) {
      this.settleOut(call, new PipitError('RESOURCE_EXHAUSTED', `request of ${size} bytes exceeds the peer's maxMessageBytes ${this.peerMaxMessageBytes}; not sent`));
      return;
    }
    call.pending = { route, ext, flags, payload, credit, metadata };
    if (this.outActive >= this.peerMaxInflight || this.congested || this.queueHead < this.queue.length) {
      if (this.queuedLive >= this.maxQueuedCalls) {
        this.settleOut(call, new PipitError('RESOURCE_EXHAUSTED', `${this.maxQueuedCalls} calls already queued`));
        return;
      }
      this.queue.push(call);
      call.queued = true;
      this.queuedLive++;
      return;
    }
    this.send(call);
  }

  /** Allocate an id and write the REQUEST (and queue any further fragments). */
  private send(call: OutCall): void {
    const p = call.pending!;
    call.pending = null;
    if (call.deadline !== NO_DEADLINE && this.clock > call.openedAt) {
      // It waited in the queue: the deadline on the wire is the time left, rounded up, so it is
      // never 0 while time is left (spec/PROTOCOL.md §8.5). Out of time: not sent at all.
      const left = Math.ceil(call.deadline - this.clock);
      if (left <= 0) {
        this.settleOut(call, new PipitError('DEADLINE_EXCEEDED', `${call.service}.${call.method} did not finish before its deadline; not sent`));
        return;
      }
      p.ext = encodeExt({ deadlineMs: left, credit: p.credit, metadata: p.metadata });
    }
    const id = this.freeIds.length > 0 ? this.freeIds.pop()! : this.nextId++;
    call.id = id;
    call.seq = this.sentSeq = (this.sentSeq + 1) >>> 0;
    this.out[id] = call;
    this.outActive++;
    const payload = p.payload;
    const room = this.peerMaxFrameBytes - 16 - p.route.length - (p.ext === null ? 0 : p.ext.length + 5);
    if (typeof payload === 'string' || payload.length <= room) {
      this.writer.request(id, p.flags, p.route, p.ext, payload);
    } else {
      this.writer.request(id, p.flags | F_FOLLOWS, p.route, p.ext, payload.subarray(0, room));
      this.fragments.push({ out: true, id, bytes: payload, pos: room, endFlag: 0, done: null });
    }
    this.signalOutput();
  }

  private consumed(call: OutCall, n: number): void {
    if (call.settled) return;
    call.unacked += n;
    // Grant in batches: once half the window was consumed.
    if (call.unacked * 2 >= call.window && this.out[call.id] === call) {
      call.credit += call.unacked;
      this.writer.credit(call.id, call.unacked);
      call.unacked = 0;
      this.signalOutput();
    }
  }

  /**
   * The consumer waits with nothing queued: the window may be too small for the round trip,
   * so quadruple it, as far as maxStreamWindowBytes of messages of the average size seen allows
   * (one extra CREDIT, no per-item cost). A slow consumer is never starved, so its window
   * stays where it is; a slow producer may grow it to the byte cap, which bounds it.
   */
  private starved(call: OutCall): void {
    if (!call.adaptive || call.settled || call.itemsIn === 0 || this.out[call.id] !== call) return;
    const avg = Math.max(1, call.bytesIn / call.itemsIn);
    const cap = Math.min(MAX_ADAPTIVE_WINDOW, Math.floor(this.maxStreamWindowBytes / avg));
    const next = Math.min(call.window * 4, cap);
    if (next <= call.window) return;
    const grant = next - call.window + call.unacked;
    call.window = next;
    call.unacked = 0;
    call.credit += grant;
    this.writer.credit(call.id, grant);
    this.signalOutput();
  }

  /** User-side cancellation (signal, abandon, deadline): settle now, CANCEL the peer, keep the id until the terminal. */
  private cancelOut(call: OutCall, error: PipitError): void {
    if (call.settled) return;
    if (call.pending !== null) {
      // Never sent: drop it from the queue (lazily: it is skipped when dequeued).
      this.settleOut(call, error);
      return;
    }
    this.settleOut(call, error);
    if (this.out[call.id] === call && !this.closed) {
      this.dropFragments(true, call.id);
      this.writer.cancel(call.id);
      this.signalOutput();
    }
  }

  /** Deliver the one user-visible outcome of a call (Rule 1). */
  private settleOut(call: OutCall, result: Buffer | PipitError): void {
    if (call.settled) return;
    call.settled = true;
    if (call.queued) {
      call.queued = false;
      this.queuedLive--;
    }
    if (call.parts !== null) {
      // Keep `parts` as a marker that a fragmented message is still arriving; drop its bytes.
      this.reassemblyBytes -= call.partBytes;
      call.partBytes = 0;
      call.parts.length = 0;
    }
    if (call.signal !== null && call.onAbort !== null) call.signal.removeEventListener('abort', call.onAbort);
    call.signal = null;
    call.onAbort = null;
    const error = result instanceof PipitError ? (result as PipitError) : null;
    if (call.stream !== null) {
      call.stream.finish(error);
    } else if (error === null) {
      call.resolve!(result as Buffer);
    } else {
      call.reject!(error);
    }
  }

  /**
   * The call is over on the wire (its terminal frame arrived, or GOAWAY discarded it): drop
   * its unwritten fragments — written after a REQUEST that reuses the id they would be read as
   * the new call's (spec §8.7) — release the id, then maybe send a queued call.
   */
  private releaseOut(call: OutCall): void {
    this.dropFragments(true, call.id);
    this.out[call.id] = undefined;
    if (call.id === this.nextId - 1) this.nextId--;
    else this.freeIds.push(call.id);
    this.reassemblyBytes -= call.partBytes;
    call.partBytes = 0;
    call.id = -1;
    this.outActive--;
    this.pump();
    this.maybeFinishDrain();
  }

  /** Send queued calls while the peer's maxInflight and our output allow. */
  private pump(): void {
    if (this.phase !== Phase.OPEN || this.goawayReceived) return; // failQueued settles them
    while (this.queueHead < this.queue.length && this.outActive < this.peerMaxInflight && !this.congested) {
      const call = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = undefined as unknown as OutCall;
      if (this.queueHead === this.queue.length) {
        this.queue.length = 0;
        this.queueHead = 0;
      }
      if (call.queued) {
        call.queued = false;
        this.queuedLive--;
      }
      if (!call.settled) this.send(call);
    }
  }

  // =====================================================================
  // Serving: handlers
  // =====================================================================

  handle(name: string, service: Services[string]): void {
    this.routes.add(name, service);
  }

  private onRequest(batch: FrameBatch, i: number, now: number): void {
    const id = batch.id(i);
    const flags = batch.flags(i);
    const seq = (this.recvSeq = (this.recvSeq + 1) >>> 0);
    // The id rule comes first, even after our GOAWAY (spec §9.2): the caller broke §4.2.
    if (this.inc.has(id)) {
      throw new ProtocolError('E_ID_IN_USE', `REQUEST reuses id ${id} of a call still in progress`);
    }
    // After our GOAWAY every new request is past the sequence number it announced: discard it
    // unprocessed and unanswered (the peer fails it with UNAVAILABLE when the GOAWAY arrives).
    if (this.goawaySent) return;
    const stream = (flags & F_STREAM) !== 0;
    const ext = batch.hasExt(i) ? batch.ext(i) : null;
    // Credit means nothing on a unary call: its ext CREDIT is ignored, whatever its value (§8.6).
    if (stream && ext?.credit !== undefined && ext.credit > MAX_CREDIT) {
      throw new ProtocolError('E_CREDIT_OVERFLOW', `initial credit ${ext.credit} of call ${id} exceeds ${MAX_CREDIT}`);
    }
    const call = new InCall(id, seq, flags, stream ? ext?.credit ?? DEFAULT_WIRE_CREDIT : 0);
    if (this.inc.size >= this.maxInflight) {
      if (this.congested) this.strikes++;
      this.writer.status(id, Status.RESOURCE_EXHAUSTED, `more than ${this.maxInflight} calls in flight`);
      this.signalOutput();
      return; // its DATA fragments, if any, are ignored like those of any unknown id
    }
    this.inc.set(id, call);
    call.service = batch.service(i);
    call.method = batch.method(i);
    if (ext !== null) {
      if (ext.deadlineMs === 0) {
        // Expired before it was sent: not processed (§8.5). Later fragments are ignored.
        this.finishIncoming(call, new PipitError('DEADLINE_EXCEEDED', 'the request arrived with no time left (DEADLINE 0)'));
        return;
      }
      if (ext.deadlineMs !== undefined) {
        call.deadline = now + ext.deadlineMs;
        this.deadlines.push(call.deadline, call);
      }
      if (ext.metadata !== undefined) call.metadata = Object.fromEntries(ext.metadata);
    }
    if (batch.bodyLength(i) > this.maxMessageBytes) {
      this.finishIncoming(call, new PipitError('RESOURCE_EXHAUSTED', `request exceeds maxMessageBytes ${this.maxMessageBytes}`));
      return;
    }
    if (flags & F_FOLLOWS) {
      const body = batch.body(i);
      if (body.length > this.maxMessageBytes || !this.reserveReassembly(body.length)) {
        this.finishIncoming(call, new PipitError('RESOURCE_EXHAUSTED', `request exceeds maxMessageBytes ${this.maxMessageBytes}`));
        return;
      }
      call.parts = [body];
      call.partBytes = body.length;
      return;
    }
    this.dispatch(call, batch.body(i));
  }

  private onData(batch: FrameBatch, i: number): void {
    const call = this.inc.get(batch.id(i));
    if (call === undefined || call.settled) return; // crossed our terminal frame
    if (call.parts === null) throw new ProtocolError('E_DATA_COMPLETE', `DATA for call ${call.id}, whose request is already complete`);
    const len = batch.bodyLength(i);
    if (call.partBytes + len > this.maxMessageBytes || !this.reserveReassembly(len)) {
      this.finishIncoming(call, new PipitError('RESOURCE_EXHAUSTED', `request exceeds maxMessageBytes ${this.maxMessageBytes}`));
      return;
    }
    call.parts.push(batch.body(i));
    call.partBytes += len;
    if ((batch.flags(i) & F_FOLLOWS) === 0) {
      const message = Buffer.concat(call.parts, call.partBytes);
      this.reassemblyBytes -= call.partBytes;
      call.parts = null;
      call.partBytes = 0;
      this.dispatch(call, message);
    }
  }

  private reserveReassembly(n: number): boolean {
    if (this.reassemblyBytes + n > this.maxReassemblyBytes) return false;
    this.reassemblyBytes += n;
    return true;
  }

  /** A complete request: run it, or hold it while output is congested (Rule 4). */
  private dispatch(call: InCall, payload: Buffer): void {
    if (this.congested || this.heldHead < this.held.length) {
      this.held.push({ call, payload });
      return;
    }
    this.run(call, payload);
  }

  /** Run the handler for a complete request. */
  private run(call: InCall, payload: Buffer): void {
    const handler = this.routes.find(call.service, call.method);
    if (typeof handler !== 'function') {
      const code = handler === undefined ? Status.UNKNOWN_SERVICE : Status.UNKNOWN_METHOD;
      const what = handler === undefined ? `service ${JSON.stringify(call.service)}` : `method ${JSON.stringify(call.service + '.' + call.method)}`;
      this.finishIncoming(call, new PipitError(code === Status.UNKNOWN_SERVICE ? 'UNKNOWN_SERVICE' : 'UNKNOWN_METHOD', `unknown ${what}`));
      return;
    }
    const ctx = new Context(this, call, this.peerRef);
    let result: unknown;
    try {
      result = handler(payload, ctx);
    } catch (e) {
      this.finishIncoming(call, handlerError(e));
      return;
    }
    if (isPromiseLike(result)) {
      result.then(
        (v) => this.onResult(call, v),
        (e) => this.finishIncoming(call, handlerError(e)),
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
      // with END; nothing is an empty message (spec §8.10). END costs a credit like any message.
      const payload = value === undefined || value === null ? EMPTY : toPayload(value);
      if (payload === null) return this.finishIncoming(call, badResult(value));
      if (call.credit <= 0) {
        void this.sendLastWhenCredited(call, payload);
        return;
      }
      call.credit--;
      this.sendResponse(call, payload, F_END);
      return;
    }
    if (value === undefined || value === null) {
      this.sendResponse(call, EMPTY, F_END);
      return;
    }
    const payload = toPayload(value);
    if (payload === null) {
      const it = iteratorOf(value);
      if (it === null) return this.finishIncoming(call, badResult(value));
      // A unary call cannot take a stream: refuse it without reading the stream (spec §8.10).
      void Promise.resolve().then(() => it.return?.()).catch(() => {});
      this.finishIncoming(call, new PipitError('INVALID_ARGUMENT', `${call.service}.${call.method} produces a stream; call it as a stream`));
      return;
    }
    this.sendResponse(call, payload, F_END);
  }

  /** A stream call's single result (§8.10), once the caller grants a credit for it. */
  private async sendLastWhenCredited(call: InCall, payload: Payload): Promise<void> {
    while (!call.settled && call.credit <= 0) {
      await new Promise<void>((resolve) => {
        call.creditWaiter = resolve;
      });
    }
    if (call.settled) return;
    call.credit--;
    this.sendResponse(call, payload, F_END);
  }

  /**
   * Drive a stream handler's iterator while credit lasts. A sync iterator is drained without
   * promises; an async one costs one await per item (the iterator protocol's own).
   */
  private async produce(call: InCall, it: Iterator<unknown> | AsyncIterator<unknown>): Promise<void> {
    try {
      for (;;) {
        if (call.settled) {
          await it.return?.();
          return;
        }
        if (call.credit <= 0 || call.fragments !== null || this.congested) {
          if (this.congested) this.writableWaiters.push(call);
          await new Promise<void>((resolve) => {
            call.creditWaiter = resolve;
          });
          continue;
        }
        let r = it.next();
        if (isPromiseLike(r)) r = await r;
        const step = r as IteratorResult<unknown>;
        if (call.settled) {
          await it.return?.();
          return;
        }
        if (step.done) {
          this.finishIncoming(call, null);
          return;
        }
        const payload = toPayload(step.value);
        if (payload === null) throw badResult(step.value);
        call.credit--;
        this.sendResponse(call, payload, 0);
      }
    } catch (e) {
      this.finishIncoming(call, handlerError(e));
    }
  }

  /** Write one response message (fragmenting it if the peer's frame limit requires). */
  private sendResponse(call: InCall, payload: Payload, endFlag: number): void {
    if (call.settled) return;
    let flags = endFlag;
    if (typeof payload === 'string') {
      if (payload.length * 3 + 16 > this.peerMaxFrameBytes) payload = Buffer.from(payload, 'utf8');
      flags |= F_TEXT;
    }
    const size = typeof payload !== 'string' ? payload.length : payload.length * 3 > this.peerMaxMessageBytes ? Buffer.byteLength(payload) : 0;
    if (size > this.peerMaxMessageBytes) {
      this.finishIncoming(call, new PipitError('RESOURCE_EXHAUSTED', `response of ${size} bytes exceeds the peer's maxMessageBytes ${this.peerMaxMessageBytes}`));
      return;
    }
    const room = this.peerMaxFrameBytes - 16;
    if (typeof payload !== 'string' && payload.length > room) {
      this.writer.response(call.id, (flags & F_TEXT) | F_FOLLOWS, payload.subarray(0, room));
      const f: FragmentSender = { out: false, id: call.id, bytes: payload, pos: room, endFlag, done: null };
      call.fragments = f;
      f.done = () => {
        call.fragments = null;
        if (endFlag) this.endIncoming(call);
        else this.wake(call);
      };
      this.fragments.push(f);
      this.signalOutput();
      return;
    }
    this.writer.response(call.id, flags, payload);
    if (endFlag) this.endIncoming(call);
    this.signalOutput();
  }

  /** Send the terminal status for an incoming call (Rule 1: the only place). */
  private finishIncoming(call: InCall, error: PipitError | null): void {
    if (call.settled) return;
    if (this.closed) {
      this.endIncoming(call);
      return;
    }
    if (call.fragments !== null) {
      this.dropFragments(false, call.id);
      call.fragments = null;
    }
    if (error === null) this.writer.status(call.id, Status.OK);
    else this.writer.status(call.id, error.status, error.message);
    this.signalOutput();
    this.endIncoming(call);
  }

  private endIncoming(call: InCall): void {
    if (call.settled) return;
    call.settled = true;
    if (this.inc.get(call.id) === call) this.inc.delete(call.id);
    if (call.parts !== null) {
      this.reassemblyBytes -= call.partBytes;
      call.parts = null;
    }
    this.wake(call);
    this.maybeFinishDrain();
  }

  private wake(call: InCall): void {
    const w = call.creditWaiter;
    if (w !== null) {
      call.creditWaiter = null;
      w();
    }
  }

  /** Abort an incoming call's handler (cancel, deadline, connection loss). */
  abortIncoming(call: InCall, reason: PipitError): void {
    call.abortReason ??= reason;
    call.controller?.abort(reason);
  }

  /** Lazily created: most handlers never look at their signal. */
  signalFor(call: InCall): AbortSignal {
    if (call.controller === null) {
      call.controller = new AbortController();
      if (call.abortReason !== null) call.controller.abort(call.abortReason);
    }
    return call.controller.signal;
  }

  // =====================================================================
  // Input
  // =====================================================================

  /** Process a decoded batch. A protocol error closes the session (Rule 2). */
  receive(batch: FrameBatch, now = 0): void {
    if (this.phase === Phase.CLOSED) return;
    if (now > this.clock) this.clock = now;
    try {
      for (let i = 0; i < batch.count && !this.closed; i++) {
        this.framesReceived++;
        switch (batch.type(i)) {
          case T_RESPONSE:
            this.onResponse(batch, i);
            break;
          case T_REQUEST:
            this.onRequest(batch, i, now);
            break;
          case T_STATUS:
            this.onStatus(batch, i);
            break;
          case T_CREDIT:
            this.onCredit(batch, i);
            break;
          case T_CANCEL:
            this.onCancel(batch, i);
            break;
          case T_DATA:
            this.onData(batch, i);
            break;
          case T_HELLO:
            this.onHello(batch, i);
            break;
          case T_PING:
            if (this.congested) this.strikes++;
            this.writer.pong(batch.id(i));
            this.signalOutput();
            break;
          case T_PONG:
            this.onPong(batch.id(i), now);
            break;
          case T_GOAWAY:
            this.onGoaway(batch.id(i), batch.aux(i), batch.bodyText(i));
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

  private onResponse(batch: FrameBatch, i: number): void {
    const id = batch.id(i);
    const call = this.out[id];
    if (call === undefined) throw new ProtocolError('E_NO_SUCH_CALL', `RESPONSE for call ${id}, which is not open`);
    const flags = batch.flags(i);
    let message: Buffer;
    const continuation = call.parts !== null;
    if (continuation) {
      if (flags & F_TEXT) throw new ProtocolError('E_TEXT_CONTINUATION', `TEXT flag on a continuation fragment of call ${id}`);
    } else {
      this.countMessage(call, id);
    }
    if (continuation || (flags & F_FOLLOWS) !== 0) {
      const parts = (call.parts ??= []);
      if (!call.settled) {
        const len = batch.bodyLength(i);
        if (call.partBytes + len > this.maxMessageBytes || !this.reserveReassembly(len)) {
          // Too big for us: fail it now; later fragments are absorbed until the terminal frame.
          this.cancelOut(call, new PipitError('RESOURCE_EXHAUSTED', `response exceeds maxMessageBytes ${this.maxMessageBytes}`));
        } else {
          parts.push(batch.body(i));
          call.partBytes += len;
        }
      }
      if (flags & F_FOLLOWS) return;
      message = call.settled ? EMPTY : Buffer.concat(parts, call.partBytes);
      this.reassemblyBytes -= call.partBytes;
      call.partBytes = 0;
      call.parts = null;
    } else if (!call.settled && batch.bodyLength(i) > this.maxMessageBytes) {
      // Too big for us: fail it now; with END this is already its terminal frame.
      const error = new PipitError('RESOURCE_EXHAUSTED', `response exceeds maxMessageBytes ${this.maxMessageBytes}`);
      if (flags & F_END) this.settleOut(call, error);
      else this.cancelOut(call, error);
      message = EMPTY;
    } else {
      message = call.settled ? EMPTY : batch.body(i);
    }
    if (call.stream !== null) {
      if (!call.settled) {
        call.itemsIn++;
        call.bytesIn += message.length;
        call.stream.push(message);
      }
      if (flags & F_END) {
        this.settleOut(call, EMPTY);
        this.releaseOut(call);
      }
      return;
    }
    if (flags & F_END) {
      this.settleOut(call, message);
      this.releaseOut(call);
    } else {
      call.message = message;
    }
  }

  /** A new response message (not a continuation) on our call: enforce unary/credit rules. */
  private countMessage(call: OutCall, id: number): void {
    if (call.stream === null) {
      if (call.message !== null) throw new ProtocolError('E_SECOND_MESSAGE', `second response message on unary call ${id}`);
      return;
    }
    if (call.credit <= 0) throw new ProtocolError('E_NO_CREDIT', `stream message on call ${id} beyond the credit granted`);
    call.credit--;
  }

  private onStatus(batch: FrameBatch, i: number): void {
    const id = batch.id(i);
    const call = this.out[id];
    if (call === undefined) throw new ProtocolError('E_NO_SUCH_CALL', `STATUS for call ${id}, which is not open`);
    const code = batch.aux(i);
    if (code === Status.OK) {
      if (call.parts !== null && !call.settled) {
        throw new ProtocolError('E_OK_MID_MESSAGE', `STATUS OK on call ${id} in the middle of a fragmented message`);
      }
      this.settleOut(call, call.stream === null ? call.message ?? EMPTY : EMPTY);
    } else {
      this.settleOut(call, new PipitError(code, batch.bodyText(i)));
    }
    this.releaseOut(call);
  }

  private onCredit(batch: FrameBatch, i: number): void {
    const call = this.inc.get(batch.id(i));
    if (call === undefined || !call.stream) return; // crossed the terminal frame, or unary
    const credit = call.credit + batch.aux(i);
    if (credit > MAX_CREDIT) throw new ProtocolError('E_CREDIT_OVERFLOW', `credit for call ${call.id} exceeds ${MAX_CREDIT}`);
    call.credit = credit;
    this.wake(call);
  }

  private onCancel(batch: FrameBatch, i: number): void {
    const call = this.inc.get(batch.id(i));
    if (call === undefined) return;
    const reason = new PipitError('CANCELLED', 'the caller cancelled the call');
    this.finishIncoming(call, reason);
    this.abortIncoming(call, reason);
  }

  private onHello(batch: FrameBatch, i: number): void {
    const version = batch.id(i);
    if (version === 0) throw new ProtocolError('E_BAD_HELLO', 'HELLO with version 0');
    if (this.framesReceived !== 1) throw new ProtocolError('E_BAD_HELLO', 'HELLO must be the first frame and sent once');
    for (const [k, v] of batch.settings(i)) {
      if (k === S_MAX_FRAME_BYTES) this.peerMaxFrameBytes = clamp(v, DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_LIMIT);
      else if (k === S_MAX_MESSAGE_BYTES) this.peerMaxMessageBytes = v;
      else if (k === S_MAX_INFLIGHT) this.peerMaxInflight = Math.max(1, v);
    }
    this.pump();
  }

  private onGoaway(lastSeq: number, _code: number, message: string): void {
    if (this.goawayReceived) throw new ProtocolError('E_SECOND_GOAWAY', 'second GOAWAY');
    // The last `discarded` requests we sent were not processed (spec §9.3): counting back from
    // our own count needs no serial arithmetic and holds however long a call has been open.
    const discarded = (this.sentSeq - lastSeq) >>> 0;
    if (discarded >= 0x80000000) {
      throw new ProtocolError('E_BAD_GOAWAY', `GOAWAY counts ${lastSeq} requests received, but ${this.sentSeq} were sent`);
    }
    this.goawayReceived = true;
    if (discarded > 0) {
      for (let id = 0; id < this.out.length; id++) {
        const call = this.out[id];
        if (call === undefined || ((this.sentSeq - call.seq) >>> 0) >= discarded) continue;
        // Not processed, so safe to retry; its id is free again.
        this.settleOut(call, new PipitError('UNAVAILABLE', `the peer is going away${message ? ': ' + message : ''}; the call was not processed`));
        this.releaseOut(call);
      }
    }
    this.failQueued(new PipitError('UNAVAILABLE', 'the peer is going away; the call was not sent'));
    this.goAway();
  }

  private onError(code: number, message: string): void {
    const err = code === Status.PROTOCOL_ERROR
      ? new ProtocolError('E_PEER', `peer reported a protocol error: ${message}`)
      : new PipitError(code === Status.OK ? Status.INTERNAL : code, `peer closed the connection: ${message}`);
    this.close(err);
  }

  private onPong(id: number, now: number): void {
    const resolve = this.pings.get(id);
    if (resolve === undefined) return;
    const sent = this.pingSent.get(id)!;
    this.pings.delete(id);
    this.pingSent.delete(id);
    this.pingFail.delete(id);
    resolve(now - sent);
  }

  // =====================================================================
  // Time
  // =====================================================================

  /** Expire deadlines up to `now`. */
  tick(now: number): void {
    if (now > this.clock) this.clock = now;
    for (;;) {
      const entry = this.deadlines.popDue(now);
      if (entry === null) return;
      if (entry instanceof OutCall) {
        if (!entry.settled && entry.deadline <= now) {
          this.cancelOut(entry, new PipitError('DEADLINE_EXCEEDED', `${entry.service}.${entry.method} did not finish before its deadline`));
        }
      } else if (!entry.settled && entry.deadline <= now) {
        const reason = new PipitError('DEADLINE_EXCEEDED', 'deadline exceeded');
        this.finishIncoming(entry, reason);
        this.abortIncoming(entry, reason);
      }
    }
  }

  // =====================================================================
  // Output
  // =====================================================================

  /** Segments to write, in order. Writes at most FRAGMENT_BUDGET bytes of large-message fragments. */
  takeOutput(): Uint8Array[] {
    this.outputSignalled = false;
    if (this.fragments.length > 0) this.writeFragments();
    const out = this.writer.take();
    // Taking output is progress even for a transport that never reports a backlog: resume
    // held work if that is enough. (A transport that does report corrects it right after.)
    if ((this.heldHead < this.held.length || this.writableWaiters.length > 0 || this.queueHead < this.queue.length) && !this.congested) {
      this.relieve();
    }
    return out;
  }

  /** Round-robin one fragment per message until the budget is spent. */
  private writeFragments(): void {
    let budget = FRAGMENT_BUDGET;
    const room = this.peerMaxFrameBytes - 16;
    while (budget > 0 && this.fragments.length > 0) {
      const f = this.fragments.shift()!;
      const n = Math.min(room, f.bytes.length - f.pos);
      const last = f.pos + n >= f.bytes.length;
      const part = f.bytes.subarray(f.pos, f.pos + n);
      if (f.out) this.writer.data(f.id, last ? 0 : F_FOLLOWS, part);
      else this.writer.response(f.id, last ? f.endFlag : F_FOLLOWS, part);
      f.pos += n;
      budget -= n;
      if (last) f.done?.();
      else this.fragments.push(f);
    }
  }

  private dropFragments(out: boolean, id: number): void {
    for (let k = this.fragments.length - 1; k >= 0; k--) {
      const f = this.fragments[k]!;
      if (f.out === out && f.id === id) this.fragments.splice(k, 1);
    }
  }

  private signalOutput(): void {
    if (this.outputSignalled || this.host === null) return;
    this.outputSignalled = true;
    this.host.onOutput();
  }

  // =====================================================================
  // Connection lifecycle
  // =====================================================================

  /** Measure a round trip (PING/PONG). Resolves with milliseconds (by the clock given to receive). */
  ping(now = 0): Promise<number> {
    if (this.phase === Phase.CLOSED) return Promise.reject(this.closedError());
    const id = (this.pingId = (this.pingId + 1) >>> 0);
    return new Promise((resolve, reject) => {
      this.pings.set(id, resolve);
      this.pingSent.set(id, now);
      this.pingFail.set(id, reject);
      this.writer.ping(id);
      this.signalOutput();
    });
  }

  /** Graceful shutdown: GOAWAY, let calls in flight finish, then close. */
  goAway(code: number = Status.OK, message = ''): void {
    if (this.phase === Phase.CLOSED) return;
    if (!this.goawaySent) {
      this.goawaySent = true;
      this.phase = Phase.DRAINING;
      this.writer.goaway(this.recvSeq, code, message);
      this.failQueued(new PipitError('UNAVAILABLE', 'the connection is closing; the call was not sent'));
      this.signalOutput();
    }
    this.maybeFinishDrain();
  }

  private failQueued(error: PipitError): void {
    while (this.queueHead < this.queue.length) {
      const call = this.queue[this.queueHead]!;
      this.queue[this.queueHead++] = undefined as unknown as OutCall;
      this.settleOut(call, error);
    }
    this.queue.length = 0;
    this.queueHead = 0;
    this.queuedLive = 0;
  }

  /** Close once GOAWAY went both ways and no call remains in either direction (spec/PROTOCOL.md §9.4). */
  private maybeFinishDrain(): void {
    if (this.phase !== Phase.DRAINING || !this.goawayReceived) return;
    if (this.outActive > 0 || this.inc.size > 0 || this.fragments.length > 0) return;
    this.close(null);
  }

  /** Our side found the peer in breach of the protocol (Rule 2). */
  protocolError(error: ProtocolError): void {
    if (this.phase === Phase.CLOSED) return;
    this.writer.error(Status.PROTOCOL_ERROR, error.message);
    this.signalOutput();
    this.close(error);
  }

  /**
   * The connection is over. `error` null: graceful. Every call still open fails with
   * CONNECTION_CLOSED (or `error`'s code when it is a protocol error or the peer's ERROR).
   */
  close(error: PipitError | null): void {
    if (this.phase === Phase.CLOSED) return;
    this.phase = Phase.CLOSED;
    this.closeError = error;
    const failure = this.closedError();
    for (let id = 0; id < this.out.length; id++) {
      const call = this.out[id];
      if (call !== undefined) {
        this.settleOut(call, failure);
        this.out[id] = undefined;
      }
    }
    this.out.length = 0;
    this.freeIds.length = 0;
    this.nextId = 0;
    this.outActive = 0;
    this.failQueued(failure);
    for (const call of this.inc.values()) {
      call.settled = true;
      this.abortIncoming(call, failure);
      this.wake(call);
    }
    this.inc.clear();
    this.held = [];
    this.heldHead = 0;
    this.writableWaiters = [];
    this.reassemblyBytes = 0;
    this.fragments.length = 0;
    this.deadlines = new DeadlineHeap();
    for (const fail of this.pingFail.values()) fail(failure);
    this.pingFail.clear();
    this.pings.clear();
    this.pingSent.clear();
    this.host?.onClose(error);
  }

  /** The transport is gone (EOF, reset, peer killed). */
  transportClosed(cause?: unknown): void {
    // A finished connection (GOAWAY both ways, no call left, spec §9.4) closed already; any
    // other end of the byte stream is a lost connection, even with no call open.
    if (this.phase === Phase.CLOSED) return;
    this.close(new PipitError('CONNECTION_CLOSED', 'connection closed', { cause }));
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

/** The `ctx` a handler gets. */
class Context implements HandlerContext {
  private sig: AbortSignal | null = null;
  constructor(
    private readonly session: Session,
    private readonly call: InCall,
    readonly peer: unknown,
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
  /** The request payload was sent as text. */
  get text(): boolean {
    return this.call.text;
  }
  /** Absolute deadline on the session clock, or undefined. */
  get deadline(): number | undefined {
    return this.call.deadline === NO_DEADLINE ? undefined : this.call.deadline;
  }
  get signal(): AbortSignal {
    return (this.sig ??= this.session.signalFor(this.call));
  }
}

// ---- helpers ------------------------------------------------------------

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

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as PromiseLike<unknown>).then === 'function';
}

function iteratorOf(v: unknown): Iterator<unknown> | AsyncIterator<unknown> | null {
  if (typeof v !== 'object' || v === null || v instanceof Uint8Array) return null;
  const o = v as Record<symbol, unknown>;
  if (typeof o[Symbol.asyncIterator] === 'function') return (o[Symbol.asyncIterator] as () => AsyncIterator<unknown>)();
  if (typeof o[Symbol.iterator] === 'function') return (o[Symbol.iterator] as () => Iterator<unknown>)();
  return null;
}

function toPayload(v: unknown): Payload | null {
  if (typeof v === 'string' || v instanceof Uint8Array) return v;
  return null;
}

function badResult(v: unknown): PipitError {
  return new PipitError('INTERNAL', `handler result must be a Uint8Array, a string or nothing, got ${describe(v)}`);
}

function describe(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? `an object (${v.constructor?.name ?? 'Object'})` : typeof v;
}

/**
 * What a handler's failure becomes on the wire: its message, never its stack; its code only if
 * a handler may send it (spec §13.2), else APPLICATION_ERROR.
 */
function handlerError(e: unknown): PipitError {
  if (e instanceof PipitError) {
    return handlerMaySend(e.status) ? e : new PipitError('APPLICATION_ERROR', e.message, { cause: e });
  }
  const message = e instanceof Error ? e.message : typeof e === 'string' ? e : 'handler failed';
  return new PipitError('APPLICATION_ERROR', message);
}

function abortError(signal: AbortSignal): PipitError {
  const reason: unknown = signal.reason;
  if (reason instanceof PipitError) return reason;
  return new PipitError('CANCELLED', 'the call was cancelled', { cause: reason });
}

// ---- deadlines: a binary min-heap with lazy deletion ------------------------------

type Timed = OutCall | InCall;

class DeadlineHeap {
  private times: number[] = [];
  private items: Timed[] = [];

  push(time: number, item: Timed): void {
    const t = this.times;
    const it = this.items;
    let i = t.length;
    t.push(time);
    it.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (t[p]! <= time) break;
      t[i] = t[p]!;
      it[i] = it[p]!;
      i = p;
    }
    t[i] = time;
    it[i] = item;
  }

  peekTime(): number {
    // Skip entries whose call already finished, so an idle session reports no deadline.
    while (this.items.length > 0 && this.items[0]!.settled) this.pop();
    return this.times.length > 0 ? this.times[0]! : Infinity;
  }

  popDue(now: number): Timed | null {
    if (this.times.length === 0 || this.times[0]! > now) return null;
    return this.pop();
  }

  private pop(): Timed {
    const t = this.times;
    const it = this.items;
    const top = it[0]!;
    const lastT = t.pop()!;
    const lastI = it.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && t[c + 1]! < t[c]!) c++;
        if (t[c]! >= lastT) break;
        t[i] = t[c]!;
        it[i] = it[c]!;
        i = c;
      }
      t[i] = lastT;
      it[i] = lastI;
    }
    return top;
  }
}

