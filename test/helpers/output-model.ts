/**
 * The session oracle: a model of what one session may write, given what its peer sent it.
 * It decodes everything the session hands out through `takeOutput()` and throws at the first
 * frame the protocol does not allow there:
 *  - output that does not decode;
 *  - anything after the session's own ERROR frame (§10.1);
 *  - a frame larger than the peer's frame limit (65536, or what the peer's HELLO announced);
 *  - a second GOAWAY, or a REQUEST after a GOAWAY either way (§9);
 *  - a terminal frame (RESPONSE|END or STATUS) for an id more times than the peer opened it
 *    (Rule 1 of bindings/session.ts: exactly one per call);
 *  - a response message the peer did not allow: one per unary call, a stream's credit
 *    (its initial credit, DEFAULT_WIRE_CREDIT by default, plus every CREDIT) (§8.6).
 * It is lenient where the order of takes hides the order of writes: a REQUEST taken in the
 * same `takeOutput()` as a GOAWAY arrived may have been written before it.
 *
 * `watchSession(session)` wires a model into a session: every batch passed to `receive` is
 * accounted for first, every `takeOutput()` checked. The in-memory test beds do this for
 * every session they build (test/helpers/pair.ts, session-kit.ts `Tap`, the scenario runner),
 * so any test that makes a session write a bad sequence fails; the fuzzer (scripts/fuzz.ts)
 * feeds a model by hand. No vitest here: the fuzzer imports this file from dist/.
 */
import {
  DEFAULT_MAX_FRAME_BYTES, DEFAULT_WIRE_CREDIT, F_END, F_FOLLOWS, F_STREAM, MAX_FRAME_BYTES_LIMIT, S_MAX_FRAME_BYTES,
  T_CREDIT, T_ERROR, T_GOAWAY, T_HELLO, T_REQUEST, T_RESPONSE, T_STATUS, TYPE_NAMES,
} from '../../bindings/constants.js';
import type { FrameBatch } from '../../bindings/codec.js';
import { tsCodec } from '../../bindings/codec-ts.js';
import type { Session } from '../../bindings/session.js';

/** Decodes everything a session writes and checks it against what the peer allowed. */
export class OutputModel {
  private readonly decoder = tsCodec.createDecoder(MAX_FRAME_BYTES_LIMIT);
  /** Per incoming id: REQUESTs delivered, terminal frames written. */
  private readonly requests = new Map<number, number>();
  private readonly terminals = new Map<number, number>();
  /** Per incoming id: messages the peer allowed (1 per unary request, credit for streams), messages started. */
  private readonly allowed = new Map<number, number>();
  private readonly started = new Map<number, number>();
  private readonly following = new Set<number>();
  /** Sizes of the frames in the output, from their words (the decoder does not report them). */
  private readonly sizes: number[] = [];
  private readonly word = new Uint8Array(4);
  private wordLen = 0;
  private skip = 0;
  /** The first violation found (kept: a caller may have swallowed the throw). */
  violation: Error | null = null;
  peerMaxFrame = DEFAULT_MAX_FRAME_BYTES;
  errorWritten = false;
  goawayWritten = 0;
  /** A GOAWAY from the peer arrived before the last output was taken: no REQUEST may follow. */
  goawayReceived = false;
  goawayInInput = false;
  /** Codes of the ERROR frames the peer sent. */
  readonly errorCodesFed = new Set<number>();
  framesFed = 0;
  /** Frames the session wrote, by type name. */
  readonly written: Record<string, number> = {};

  /** Account for a decoded input batch before the session sees it. */
  input(batch: FrameBatch): void {
    const add = (m: Map<number, number>, id: number, n: number): void => {
      m.set(id, (m.get(id) ?? 0) + n);
    };
    for (let i = 0; i < batch.count; i++) {
      this.framesFed++;
      const id = batch.id(i);
      switch (batch.type(i)) {
        case T_REQUEST: {
          add(this.requests, id, 1);
          const stream = (batch.flags(i) & F_STREAM) !== 0;
          add(this.allowed, id, stream ? (batch.hasExt(i) ? batch.ext(i).credit : undefined) ?? DEFAULT_WIRE_CREDIT : 1);
          break;
        }
        case T_CREDIT:
          add(this.allowed, id, batch.aux(i));
          break;
        case T_HELLO:
          for (const [k, v] of batch.settings(i)) {
            if (k === S_MAX_FRAME_BYTES) this.peerMaxFrame = Math.max(this.peerMaxFrame, Math.min(v, MAX_FRAME_BYTES_LIMIT));
          }
          break;
        case T_ERROR:
          this.errorCodesFed.add(batch.aux(i));
          break;
        case T_GOAWAY:
          this.goawayInInput = true;
          break;
      }
    }
  }

  /** Check the segments of one `takeOutput()`. Throws the first violation (and every call after it). */
  output(segments: Uint8Array[]): void {
    if (this.violation !== null) throw this.violation;
    try {
      for (const seg of segments) {
        this.walk(seg);
        const batch = this.decoder.push(seg);
        if (batch.error !== null) throw new Error(`the session wrote an undecodable stream: ${batch.error.message}`);
        for (let i = 0; i < batch.count; i++) this.frame(batch, i);
      }
    } catch (e) {
      this.violation = e as Error;
      throw e;
    }
    if (this.goawayInInput) this.goawayReceived = true;
  }

  /** Frame sizes from the words in the byte stream. */
  private walk(seg: Uint8Array): void {
    let p = 0;
    while (p < seg.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, seg.length - p);
        this.skip -= n;
        p += n;
        continue;
      }
      this.word[this.wordLen++] = seg[p++]!;
      if (this.wordLen === 4) {
        const len = this.word[0]! | (this.word[1]! << 8) | (this.word[2]! << 16);
        this.sizes.push(4 + len);
        this.skip = len;
        this.wordLen = 0;
      }
    }
  }

  private frame(batch: FrameBatch, i: number): void {
    const type = batch.type(i);
    const name = TYPE_NAMES[type]!;
    const size = this.sizes.shift()!;
    if (this.errorWritten) throw new Error(`the session wrote ${name} after its ERROR frame`);
    if (size > this.peerMaxFrame) throw new Error(`the session wrote a ${size}-byte ${name}; the peer accepts ${this.peerMaxFrame}`);
    this.written[name] = (this.written[name] ?? 0) + 1;
    const id = batch.id(i);
    const flags = batch.flags(i);
    switch (type) {
      case T_ERROR:
        this.errorWritten = true;
        break;
      case T_GOAWAY:
        if (++this.goawayWritten > 1) throw new Error('the session wrote a second GOAWAY');
        break;
      case T_REQUEST:
        if (this.goawayWritten > 0 || this.goawayReceived) throw new Error(`the session opened call ${id} after GOAWAY`);
        break;
      case T_RESPONSE: {
        if (!this.following.has(id)) {
          const n = (this.started.get(id) ?? 0) + 1;
          this.started.set(id, n);
          if (n > (this.allowed.get(id) ?? 0)) throw new Error(`the session started message ${n} on call ${id}; the peer allowed ${this.allowed.get(id) ?? 0}`);
        }
        if (flags & F_FOLLOWS) this.following.add(id);
        else this.following.delete(id);
        if (flags & F_END) this.terminal(id);
        break;
      }
      case T_STATUS:
        this.following.delete(id);
        this.terminal(id);
        break;
    }
  }

  private terminal(id: number): void {
    const n = (this.terminals.get(id) ?? 0) + 1;
    this.terminals.set(id, n);
    if (n > (this.requests.get(id) ?? 0)) throw new Error(`terminal frame ${n} for call ${id}, which the peer opened ${this.requests.get(id) ?? 0} times`);
  }
}

const watched = new WeakMap<Session<never>, OutputModel>();

/**
 * Check everything `session` writes from now on against an OutputModel: `receive` feeds the
 * model each batch before the session sees it, `takeOutput` checks what it returns (and
 * throws on a violation). Wire it before the session receives anything; a second call
 * returns the same model.
 */
export function watchSession<P>(session: Session<P>): OutputModel {
  const key = session as unknown as Session<never>;
  const known = watched.get(key);
  if (known !== undefined) return known;
  const model = new OutputModel();
  const receive = session.receive.bind(session);
  session.receive = (batch, now) => {
    model.input(batch);
    receive(batch, now);
  };
  const take = session.takeOutput.bind(session);
  session.takeOutput = () => {
    const out = take();
    model.output(out);
    return out;
  };
  watched.set(key, model);
  return model;
}
