/**
 * Small tools for session tests: a tap that decodes every frame a session writes, frame
 * injection, outcome tracking for calls and streams, and deferred promises.
 */
import { MAX_FRAME_BYTES_LIMIT } from '../../bindings/constants.js';
import { tsCodec } from '../../bindings/codec-ts.js';
import type { Decoder } from '../../bindings/codec.js';
import { PipitError } from '../../bindings/errors.js';
import type { MessageStream } from '../../bindings/message-stream.js';
import type { Session, SessionOptions } from '../../bindings/session.js';
import type { HandlerContext } from '../../bindings/routes.js';
import { End, watch } from './pair.js';
import type { OutputModel } from './output-model.js';
import { Prng } from './prng.js';
import { encodeFrames, rowToFrame, type VFrame } from './frames.js';

/** A decoded frame plus its size on the wire. */
export interface TappedFrame extends VFrame {
  bytes: number;
}

/**
 * Records everything a session hands out through `takeOutput()` (which Pair calls), decoded
 * into plain frames. The decoder is strict: a frame above `maxFrameBytes` fails the test. The
 * session is watched by the session oracle too (output-model.ts, via `watch` in pair.ts):
 * what it writes must be allowed by what it received.
 */
export class Tap {
  readonly frames: TappedFrame[] = [];
  /** Every byte written, in order. */
  private readonly segments: Buffer[] = [];
  private readonly decoder: Decoder;
  readonly model: OutputModel;

  constructor(
    readonly session: Session,
    maxFrameBytes = MAX_FRAME_BYTES_LIMIT,
  ) {
    this.decoder = tsCodec.createDecoder(maxFrameBytes);
    this.model = watch(session);
    const take = session.takeOutput.bind(session);
    session.takeOutput = () => {
      const segments = take();
      for (const s of segments) this.feed(s);
      return segments;
    };
  }

  private feed(segment: Uint8Array): void {
    this.segments.push(Buffer.from(segment));
    const batch = this.decoder.push(segment);
    for (let i = 0; i < batch.count; i++) {
      const f = rowToFrame(batch, i) as TappedFrame;
      f.bytes = encodeFrames([f]).length;
      this.frames.push(f);
    }
    if (batch.error !== null) throw new Error(`session wrote an undecodable stream: ${batch.error.message}`);
  }

  /** All bytes written so far (or from byte `from` on). */
  raw(from = 0): Buffer {
    return Buffer.concat(this.segments).subarray(from);
  }

  /** Take output now (for a session with no Pair around it). */
  drain(): TappedFrame[] {
    const before = this.frames.length;
    this.session.takeOutput();
    return this.frames.slice(before);
  }

  /** Frames recorded since `mark` (a previous `frames.length`). */
  since(mark: number): TappedFrame[] {
    return this.frames.slice(mark);
  }

  ofType(type: string, from = 0): TappedFrame[] {
    return this.frames.slice(from).filter((f) => f.type === type);
  }

  /** Frames without the size field, for toEqual against hand-written frames. */
  plain(from = 0): VFrame[] {
    return this.frames.slice(from).map(({ bytes: _bytes, ...f }) => f);
  }
}

/** Feed frames (or raw bytes) to an end as if its peer had sent them. */
export function inject(end: End, frames: VFrame[] | Uint8Array, now = 0): void {
  const bytes = frames instanceof Uint8Array ? frames : encodeFrames(frames);
  end.session.receive(end.decoder.push(bytes), now);
}

/** Move one batch of output (one `takeOutput()`) from one end to the other, as one write. */
export function deliverOnce(from: End, to: End, now = 0): number {
  let n = 0;
  for (const seg of from.session.takeOutput()) {
    n += seg.length;
    from.sentBytes += seg.length;
    to.session.receive(to.decoder.push(seg), now);
  }
  return n;
}

/** One session with no peer: frames go in by `inject`, come out through `tap.drain()`. */
export function lone(options: SessionOptions = {}): { end: End; tap: Tap } {
  const end = new End(options, tsCodec);
  const tap = new Tap(end.session);
  return { end, tap };
}

export interface Deferred<T> {
  promise: Promise<T>;
  resolve(v: T): void;
  reject(e: unknown): void;
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** What became of a unary call: counts every settlement the promise reports. */
export interface Outcome {
  settlements: number;
  value: Buffer | undefined;
  error: PipitError | undefined;
  readonly pending: boolean;
  readonly promise: Promise<void>;
}

export function track(p: Promise<Buffer>): Outcome {
  const o = {
    settlements: 0,
    value: undefined as Buffer | undefined,
    error: undefined as PipitError | undefined,
    get pending() {
      return this.settlements === 0;
    },
    promise: undefined as unknown as Promise<void>,
  };
  o.promise = p.then(
    (v) => {
      o.settlements++;
      o.value = v;
    },
    (e: unknown) => {
      o.settlements++;
      if (!(e instanceof PipitError)) throw new Error(`call rejected with a non-PipitError: ${String(e)}`);
      o.error = e;
    },
  );
  return o;
}

/** What became of a stream call read to the end by a background consumer. */
export interface StreamOutcome {
  items: string[];
  ends: number;
  error: PipitError | undefined;
  /** The consumer stopped on its own (break) after `limit` items. */
  broke: boolean;
  done: Promise<void>;
}

/** Read `stream` in the background, optionally stopping after `limit` items. */
export function consume(stream: MessageStream, limit = Infinity): StreamOutcome {
  const o: StreamOutcome = { items: [], ends: 0, error: undefined, broke: false, done: undefined as unknown as Promise<void> };
  o.done = (async () => {
    try {
      for await (const item of stream) {
        o.items.push(item.toString());
        if (o.items.length >= limit) {
          o.broke = true;
          break;
        }
      }
      o.ends++;
    } catch (e) {
      o.ends++;
      if (!(e instanceof PipitError)) throw new Error(`stream failed with a non-PipitError: ${String(e)}`);
      o.error = e;
    }
  })();
  return o;
}

/** Let queued microtasks and one macrotask turn run (no clock involved). */
export async function turn(): Promise<void> {
  await new Promise((r) => setImmediate(r));
}

/** Bytes of the given size, filled deterministically: the same `seed` gives the same bytes. */
export function pattern(n: number, seed = 1): Buffer {
  return new Prng(seed).fill(Buffer.allocUnsafe(n)) as Buffer;
}

/** Handlers that wait until released or aborted, recording their context. */
export function parked() {
  const calls: Array<{ payload: string; ctx: HandlerContext; gate: Deferred<string> }> = [];
  const service = {
    wait(p: Buffer, ctx: HandlerContext) {
      const gate = deferred<string>();
      calls.push({ payload: p.toString(), ctx, gate });
      ctx.signal.addEventListener('abort', () => gate.reject(ctx.signal.reason));
      return gate.promise;
    },
    async *feed(_p: Buffer, ctx: HandlerContext) {
      const gate = deferred<string>();
      calls.push({ payload: 'feed', ctx, gate });
      ctx.signal.addEventListener('abort', () => gate.reject(ctx.signal.reason));
      yield await gate.promise;
    },
  };
  return { calls, service };
}
