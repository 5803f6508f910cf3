/**
 * Peer: binds a Session to a byte stream (a net.Socket, or any Duplex such as a child
 * process's stdio joined with Duplex.from). With transport.ts, which makes the sockets, this
 * is the only layer that touches a stream or a timer.
 *
 * - Writes are coalesced: the session's output is flushed once per event-loop turn
 *   (setImmediate runs right after the I/O callbacks of the current turn, after their
 *   promise jobs), as one cork/uncork batch, so a burst of calls or responses costs one
 *   writev.
 * - Backpressure lives in the session (Rule 4, backpressure.ts): the peer reports the stream's
 *   write backlog after every write and on drain, and stops reading only when the session
 *   says the other side is `overloaded` (it keeps sending work while we are congested).
 *   Large-message fragments are written a budget at a time, after a drain when full.
 * - Timers, all unref'd: one deadline timer, re-armed for the session's earliest deadline
 *   (in steps of at most 2^31-1 ms); and while closing, the `close({ timeout })` limit when
 *   one is given and a grace period for the other side's end (CLOSE_GRACE_MS).
 * - No 'error' event is ever emitted: failures reach the calls they affect, and 'close'
 *   carries the connection's error (or null).
 */
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Decoder } from './codec.js';
import { selectCodec, type CodecChoice } from './codec-select.js';
import { PipitError } from './errors.js';
import type { Sendable } from './frame-writer.js';
import { INTROSPECTION_METHOD, INTROSPECTION_SERVICE, decodeMethodList, type MethodInfo } from './introspection.js';
import type { Message, MessageStream } from './message-stream.js';
import type { Service } from './routes.js';
import type { CallOptions, StreamOptions } from './caller.js';
import { Session, type SessionOptions } from './session.js';

export interface PeerOptions extends Omit<SessionOptions<Peer>, 'peer'> {
  /** Frame codec. Defaults to 'auto' (PIPIT_CODEC overrides). */
  codec?: CodecChoice;
}

export interface PeerEvents {
  close: [error: PipitError | null];
}

/** @internal In-place reading hooks, used by `connect` for net.Socket's `onread`. */
export interface InPlaceReader {
  buffer(): Uint8Array;
  read(n: number): boolean;
}

const now = (): number => performance.now();
const EMPTY_REQUEST = new Uint8Array(0);

/** After a graceful end, how long the other side may take to end too before we destroy. */
const CLOSE_GRACE_MS = 2000;
/** Longest delay setTimeout honours (2^31-1 ms, about 24.8 days). */
const MAX_TIMER_MS = 0x7fffffff;

export class Peer extends EventEmitter<PeerEvents> {
  readonly session: Session<Peer>;
  private readonly decoder: Decoder;
  private flushScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = Infinity;
  /** Reading stopped because the peer is overloading us. */
  private paused = false;
  private ended = false;
  private closeEmitted = false;
  private closeError: PipitError | null = null;
  private readonly closedPromise: Promise<PipitError | null>;
  private resolveClosed!: (e: PipitError | null) => void;

  /**
   * @param transport any Duplex carrying pipit frames both ways.
   * @param options services, limits, codec. Options not set default as documented.
   */
  constructor(
    readonly transport: Duplex,
    options: PeerOptions & { inPlace?: boolean } = {},
  ) {
    super();
    this.session = new Session<Peer>({ ...options, peer: this });
    const codec = selectCodec(options.codec, { inPlace: options.inPlace === true });
    this.decoder = codec.createDecoder(this.session.maxFrameBytes);
    this.closedPromise = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    this.session.host = {
      onOutput: () => this.scheduleFlush(),
      onClose: (error) => this.onSessionClose(error),
    };
    const stream = transport;
    if (options.inPlace !== true) {
      stream.on('data', (chunk: Buffer) => this.onData(chunk));
    }
    stream.on('end', () => this.onTransportEnd(null));
    stream.on('error', (err: Error) => this.onTransportEnd(err));
    stream.on('close', () => this.onTransportClose());
    stream.on('drain', () => this.onDrain());
    this.scheduleFlush(); // HELLO
  }

  /** Which codec decodes this peer's input: 'ts' or 'wasm'. */
  get codec(): string {
    return this.decoder.kind ?? 'ts';
  }

  /** True once the connection is finished. */
  get closed(): boolean {
    return this.session.closed;
  }

  /**
   * Unary call: resolves with the response bytes (a Buffer: `.toString()` reads it as text).
   * @throws rejects with PipitError: UNKNOWN_SERVICE, UNKNOWN_METHOD, APPLICATION_ERROR,
   *   CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, UNAVAILABLE, PROTOCOL_ERROR,
   *   CONNECTION_CLOSED, INVALID_ARGUMENT...
   */
  call(service: string, method: string, payload: Sendable = '', options?: CallOptions): Promise<Buffer> {
    return this.session.call(service, method, payload, options, options?.timeout !== undefined ? now() : 0);
  }

  /**
   * Unary call, resolving with the response bytes and whether the responder sent them as
   * text (the TEXT flag). Fails as `call` does.
   */
  callMessage(service: string, method: string, payload: Sendable = '', options?: CallOptions): Promise<Message> {
    return this.session.callMessage(service, method, payload, options, options?.timeout !== undefined ? now() : 0);
  }

  /**
   * Stream call: iterate the response messages with `for await` (Buffers), or
   * `stream.messages()` for each with its TEXT flag. Breaking out cancels it.
   */
  stream(service: string, method: string, payload: Sendable = '', options?: StreamOptions): MessageStream {
    return this.session.stream(service, method, payload, options, options?.timeout !== undefined ? now() : 0);
  }

  /** Serve (or replace) a service on this connection. */
  handle(name: string, service: Service<Peer>): this {
    this.session.handle(name, service);
    return this;
  }

  /**
   * The methods the other peer serves on this connection, from its `$pipit`/`methods`
   * (spec/PROTOCOL.md §8.11), sorted by service then method.
   * @throws rejects with UNKNOWN_SERVICE when the peer has introspection off, PROTOCOL_ERROR
   *   when its answer is malformed, or as any call fails.
   */
  async methods(options?: CallOptions): Promise<MethodInfo[]> {
    return decodeMethodList(await this.call(INTROSPECTION_SERVICE, INTROSPECTION_METHOD, EMPTY_REQUEST, options));
  }

  /** Round trip time in milliseconds (PING/PONG). */
  ping(): Promise<number> {
    return this.session.ping(now());
  }

  /**
   * Graceful close: GOAWAY, calls in flight in both directions finish, then the stream ends.
   * New calls fail with UNAVAILABLE at once. With `timeout`, whatever is still running then
   * is cut off (CONNECTION_CLOSED).
   */
  async close(options: { timeout?: number } = {}): Promise<void> {
    if (!this.session.closed) this.session.goAway();
    if (options.timeout !== undefined && !this.session.closed) {
      const t = setTimeout(() => this.destroy(), options.timeout);
      t.unref();
      await this.closedPromise;
      clearTimeout(t);
      return;
    }
    await this.closedPromise;
  }

  /** Close at once: every call in flight fails with CONNECTION_CLOSED (or `error`). */
  destroy(error?: PipitError): void {
    this.session.close(error ?? new PipitError('CONNECTION_CLOSED', 'connection destroyed locally'));
    this.transport.destroy();
  }

  /** Resolves once the connection is finished, with its error or null. */
  get whenClosed(): Promise<PipitError | null> {
    return this.closedPromise;
  }

  // ---- input ----

  private onData(chunk: Buffer): void {
    const batch = this.decoder.push(chunk);
    this.session.receive(batch, now());
    this.afterInput();
  }

  /** @internal */
  inPlaceReader(): InPlaceReader {
    const dec = this.decoder;
    if (dec.readBuffer === undefined || dec.commit === undefined) throw new Error('decoder cannot read in place');
    return {
      buffer: () => dec.readBuffer!(),
      read: (n: number) => {
        this.session.receive(dec.commit!(n), now());
        this.afterInput();
        return !this.paused;
      },
    };
  }

  private afterInput(): void {
    if (this.session.closed) return;
    // Output this chunk produced synchronously (sync handlers, CREDIT, PONG) leaves now, as
    // one write for the chunk; output produced later in the turn still waits for the check
    // phase. Saves a loop phase per request/response round trip.
    if (this.flushScheduled) this.flush();
    if (this.session.overloaded) this.pauseReading();
    this.armTimer();
  }

  private pauseReading(): void {
    if (this.paused) return;
    this.paused = true;
    this.transport.pause();
  }

  private onTransportEnd(err: Error | null): void {
    if (err === null && !this.session.closed) {
      const tail = this.decoder.end();
      if (tail !== null) {
        // The stream ended inside a frame: the connection is gone (spec/PROTOCOL.md §10.3), with
        // the truncation as the cause.
        this.session.transportClosed(tail);
        return;
      }
    }
    this.session.transportClosed(err ?? undefined);
  }

  private onTransportClose(): void {
    this.session.transportClosed();
    this.emitClose();
  }

  // ---- output ----

  private scheduleFlush(): void {
    if (this.flushScheduled || this.ended) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.ended) return;
    const stream = this.transport;
    if (stream.destroyed || !stream.writable) return;
    const segs = this.session.takeOutput();
    if (segs.length > 0) {
      // Once the last segment is written, so are all before it: their buffers may be reused.
      const take = this.session.outputTaken;
      const written = (err?: Error | null): void => {
        if (!err) this.session.outputWritten(take);
      };
      if (segs.length === 1) {
        stream.write(segs[0], written);
      } else {
        stream.cork();
        for (let k = 0; k < segs.length - 1; k++) stream.write(segs[k]);
        stream.write(segs[segs.length - 1], written);
        stream.uncork();
      }
    }
    if (this.session.closed) {
      this.finishStream();
      return;
    }
    this.session.setBacklog(stream.writableLength);
    if (this.session.overloaded) this.pauseReading();
    if (this.session.fragmentsPending && !stream.writableNeedDrain) this.scheduleFlush();
    this.armTimer();
  }

  private onDrain(): void {
    if (this.session.closed) return;
    this.session.setBacklog(this.transport.writableLength);
    if (this.paused && !this.session.overloaded) {
      this.paused = false;
      this.transport.resume();
    }
    if (this.session.hasOutput()) this.scheduleFlush();
  }

  // ---- timers ----

  private armTimer(): void {
    const at = this.session.nextDeadline();
    if (at === this.timerAt) return;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.timerAt = at;
    if (at === Infinity) return;
    // Node fires a delay above 2^31-1 ms after 1 ms (with a TimeoutOverflowWarning): wait in
    // steps instead; an early wake-up ticks nothing and re-arms (spec §8.5: deadlines up to
    // 2^32-1 ms cost nothing while they run).
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(at - now())));
    this.timer = setTimeout(() => this.onTimer(), delay);
    this.timer.unref();
  }

  private onTimer(): void {
    this.timer = null;
    this.timerAt = Infinity;
    this.session.tick(now());
    this.armTimer();
  }

  // ---- close ----

  private onSessionClose(error: PipitError | null): void {
    this.closeError = error;
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.timerAt = Infinity;
    // Write what is left (GOAWAY, ERROR), then end our side.
    this.flushScheduled = false;
    this.flush();
    this.finishStream();
  }

  private finishStream(): void {
    if (this.ended) return;
    this.ended = true;
    const stream = this.transport;
    if (stream.destroyed) {
      this.emitClose();
      return;
    }
    if (this.paused) stream.resume();
    stream.end();
    // Wait for the other side's end too (a socket closes by itself then), reading and dropping
    // what still arrives (spec §9.4, §10.1). Destroying as soon as our end is flushed would
    // reset a peer that is still writing (a CREDIT, or the rest of a bad frame), and on Linux
    // the reset can cut off what it has not read yet: our last answers, or our ERROR. A Duplex
    // whose other side never ends is destroyed after a grace period.
    const grace = setTimeout(() => stream.destroy(), CLOSE_GRACE_MS);
    grace.unref();
    stream.once('close', () => clearTimeout(grace));
  }

  private emitClose(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.resolveClosed(this.closeError);
    this.emit('close', this.closeError);
  }
}
