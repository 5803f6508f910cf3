/**
 * Outgoing messages and their fragments (spec/PROTOCOL.md §8.7, §8.8).
 *
 * A message leaves in one frame when it fits the peer's maxFrameBytes. A larger one leaves as
 * its first fragment at once (REQUEST|FOLLOWS or RESPONSE|FOLLOWS, written by its call) and
 * the rest is queued here. `write` then sends one piece per queued message in turn, round
 * robin, up to FRAGMENT_BUDGET bytes per output taken, so the small frames of other calls
 * interleave with a large message instead of waiting behind it.
 *
 * A call that ends while its message is still queued has its pieces dropped (`drop`) before
 * its id can be reused: written after a REQUEST that reuses the id, they would be read as the
 * new call's (§8.7).
 *
 * Every piece but the last is written here (DATA|FOLLOWS, RESPONSE|FOLLOWS). The last piece
 * of a request is written here too (DATA). The last piece of a response is handed back to its
 * call (`last`), because it may be the call's terminal frame, RESPONSE|END, which only the
 * responder's `finish` writes (Session Rule 1).
 */
import { F_FOLLOWS } from './constants.js';
import type { FrameWriter, Payload } from './frame-writer.js';

/**
 * Bytes of a frame that are not payload, rounded up: the word (4) and the id varint (at most
 * 5). A REQUEST adds its route and ext block (requestRoom).
 */
export const FRAME_OVERHEAD = 16;
/** Largest varint (u32) that prefixes the ext block. */
const EXT_LENGTH_BYTES = 5;
/** Bytes of fragments written per `write` (per output taken), so small frames interleave. */
const FRAGMENT_BUDGET = 256 * 1024;

/** The rest of one message, queued. */
export interface Fragments {
  /** Pieces of a request we sent (DATA), else of a response we serve (RESPONSE). */
  readonly request: boolean;
  readonly id: number;
  readonly bytes: Uint8Array;
  /** Offset of the next piece. */
  pos: number;
  /** Response: writes the last piece (see the file comment). Request: null. */
  readonly last: ((piece: Uint8Array) => void) | null;
}

/** Payload room in a RESPONSE or DATA frame the peer accepts. */
export function messageRoom(peerMaxFrameBytes: number): number {
  return peerMaxFrameBytes - FRAME_OVERHEAD;
}

/** Payload room in a REQUEST frame with this route and ext block. */
export function requestRoom(peerMaxFrameBytes: number, route: Uint8Array, ext: Uint8Array | null): number {
  return peerMaxFrameBytes - FRAME_OVERHEAD - route.length - (ext === null ? 0 : EXT_LENGTH_BYTES + ext.length);
}

/**
 * A message as it goes to the frame writer. A string stays a string — its UTF-8 is written
 * straight into the output arena — when even at 3 bytes per UTF-16 unit it fits `room`, the
 * payload room of its frame; else it is encoded here, so it can be measured and fragmented.
 * Callers and responders use this one rule, with the room their frame really has.
 */
export function wireForm(payload: Payload, room: number): Payload {
  return typeof payload === 'string' && payload.length * 3 > room ? Buffer.from(payload, 'utf8') : payload;
}

/**
 * The byte size of `payload` if it exceeds `limit` (the peer's maxMessageBytes), else -1. A
 * string is measured only when its worst case could exceed the limit.
 */
export function sizeOver(payload: Payload, limit: number): number {
  const size = typeof payload !== 'string' ? payload.length : payload.length * 3 > limit ? Buffer.byteLength(payload) : 0;
  return size > limit ? size : -1;
}

export class Fragmenter {
  private readonly queue: Fragments[] = [];

  constructor(private readonly writer: FrameWriter) {}

  /** Pieces are waiting to be written. */
  get pending(): boolean {
    return this.queue.length > 0;
  }

  add(f: Fragments): void {
    this.queue.push(f);
  }

  /** Write one piece per message in turn, `room` bytes at most each, until the budget is spent. */
  write(room: number): void {
    const w = this.writer;
    let budget = FRAGMENT_BUDGET;
    while (budget > 0 && this.queue.length > 0) {
      const f = this.queue.shift()!;
      const n = Math.min(room, f.bytes.length - f.pos);
      const piece = f.bytes.subarray(f.pos, f.pos + n);
      f.pos += n;
      budget -= n;
      if (f.pos < f.bytes.length) {
        if (f.request) w.data(f.id, F_FOLLOWS, piece);
        else w.response(f.id, F_FOLLOWS, piece);
        this.queue.push(f);
      } else if (f.last === null) {
        w.data(f.id, 0, piece);
      } else {
        f.last(piece);
      }
    }
  }

  /** Drop the queued pieces of one call (its call ended). */
  drop(request: boolean, id: number): void {
    for (let k = this.queue.length - 1; k >= 0; k--) {
      const f = this.queue[k]!;
      if (f.request === request && f.id === id) this.queue.splice(k, 1);
    }
  }

  /** The connection is over. */
  clear(): void {
    this.queue.length = 0;
  }
}
