/**
 * Two sessions joined in memory through a codec, with an injected clock. No sockets, no
 * timers: `flush()` moves bytes both ways until nothing is left; `settle()` also lets
 * handlers' promises run in between.
 *
 * Every session built here (and every one a `Tap` watches, session-kit.ts) writes under the
 * session oracle (output-model.ts): a frame the protocol does not allow where the session
 * wrote it fails the test at the `takeOutput()` that hands it out, and again after the test
 * if something swallowed that throw.
 */
import { afterEach } from 'vitest';
import { Session, type SessionOptions } from '../../bindings/session.js';
import type { Codec, Decoder } from '../../bindings/codec.js';
import { tsCodec } from '../../bindings/codec-ts.js';
import type { PipitError } from '../../bindings/errors.js';
import { type OutputModel, watchSession } from './output-model.js';

/** The models of the sessions watched during the current test. */
const models: OutputModel[] = [];

/** Check everything `session` writes from now on (see output-model.ts); idempotent. */
export function watch<P>(session: Session<P>): OutputModel {
  const model = watchSession(session);
  if (!models.includes(model)) models.push(model);
  return model;
}

afterEach(() => {
  const bad = models.splice(0).find((m) => m.violation !== null);
  if (bad !== undefined) throw new Error(`a session wrote what the protocol does not allow: ${bad.violation!.message}`, { cause: bad.violation });
});

export class End {
  readonly session: Session;
  readonly decoder: Decoder;
  /** What the session may write, given what it received: checked at every takeOutput(). */
  readonly model: OutputModel;
  closed: PipitError | null | undefined = undefined;
  /** Every byte this end sent, for wire-size assertions. */
  sentBytes = 0;
  constructor(options: SessionOptions, codec: Codec) {
    this.session = new Session(options);
    this.model = watch(this.session);
    this.decoder = codec.createDecoder(this.session.maxFrameBytes);
    this.session.host = {
      onOutput: () => {},
      onClose: (e) => {
        this.closed = e;
      },
    };
  }
}

export class Pair {
  readonly a: End;
  readonly b: End;
  now = 0;
  /** When set, bytes are delivered to the decoder in chunks of this size. */
  chunkSize = 0;
  constructor(a: SessionOptions = {}, b: SessionOptions = {}, codec: Codec = tsCodec) {
    this.a = new End(a, codec);
    this.b = new End(b, codec);
  }

  /** Move output across until both sides are quiet. Returns bytes moved. */
  flush(): number {
    let moved = 0;
    for (let guard = 0; guard < 10_000; guard++) {
      const n = this.move(this.a, this.b) + this.move(this.b, this.a);
      if (n === 0) return moved;
      moved += n;
    }
    throw new Error('pair did not go quiet');
  }

  private move(from: End, to: End): number {
    if (!from.session.hasOutput()) return 0;
    let n = 0;
    for (const seg of from.session.takeOutput()) {
      n += seg.length;
      from.sentBytes += seg.length;
      if (to.closed !== undefined) continue;
      const step = this.chunkSize > 0 ? this.chunkSize : seg.length;
      for (let p = 0; p < seg.length; p += step) {
        to.session.receive(to.decoder.push(seg.subarray(p, p + step)), this.now);
      }
    }
    return n;
  }

  /** Flush, let promises and async generators run, repeat until quiet. */
  async settle(rounds = 50): Promise<void> {
    for (let i = 0; i < rounds; i++) {
      const moved = this.flush();
      await new Promise((r) => setImmediate(r));
      if (moved === 0 && !this.a.session.hasOutput() && !this.b.session.hasOutput()) {
        await new Promise((r) => setImmediate(r));
        if (!this.a.session.hasOutput() && !this.b.session.hasOutput()) return;
      }
    }
  }

  /** Advance the clock and expire deadlines on both sides. */
  advance(ms: number): void {
    this.now += ms;
    this.a.session.tick(this.now);
    this.b.session.tick(this.now);
  }

  /** Drop the connection under both sessions (peer death). */
  cut(): void {
    this.a.session.transportClosed();
    this.b.session.transportClosed();
  }
}
