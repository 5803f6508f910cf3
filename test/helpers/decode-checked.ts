/**
 * The codec oracle: decode a byte stream through any Codec and check every promise of the
 * Codec interface on the way (bindings/codec.ts, spec/PROTOCOL.md §14.2), not only the
 * frames that come out:
 *  - `push()` and `end()` never throw: bad input is reported in `batch.error`;
 *  - the error is a ProtocolError with code PROTOCOL_ERROR, a known E_* reason and the
 *    offset of a byte that was fed;
 *  - `pending` never exceeds maxFrameBytes nor the bytes fed;
 *  - a batch holds no more frames than the bytes fed allow (a frame is at least 5 bytes),
 *    and every frame it reports can be read;
 *  - a dead decoder holds nothing and stays dead, with the same error;
 *  - `end()` reports E_INCOMPLETE exactly when a partial frame is pending;
 *  - Wasm linear memory grows with the bytes fed, never with a length a frame claims.
 *
 * Used by the codec tests (test/codec.test.ts and others) and by the fuzzer
 * (scripts/fuzz.ts), which compares its results across codecs and chunkings. No vitest here:
 * the fuzzer imports this file from dist/.
 */
import { CODEC_ERROR_NAMES } from '../../bindings/constants.js';
import type { Codec, FrameBatch } from '../../bindings/codec.js';
import { PipitError, ProtocolError } from '../../bindings/errors.js';
import { rowToFrame, type Decoded } from './frames.js';

const ONE = Uint8Array.of(0);
/** Wasm memory before any input: static data, results, the initial input region and table. */
const WASM_BASE_BYTES = 1 << 20;
/** The smallest frame: the 4-byte word and a 1-byte id. */
const MIN_FRAME_BYTES = 5;

/** A thrown value as one line (with a few stack lines when it is an Error). */
export function describeThrown(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}${e.stack ? '\n' + e.stack.split('\n').slice(1, 6).join('\n') : ''}`;
  return String(e);
}

function checkError(kind: string, e: unknown, fed: number): ProtocolError {
  if (!(e instanceof ProtocolError) || !(e instanceof PipitError)) throw new Error(`${kind}: error is not a ProtocolError: ${describeThrown(e)}`);
  if (e.code !== 'PROTOCOL_ERROR') throw new Error(`${kind}: error code ${e.code}, expected PROTOCOL_ERROR`);
  if (!CODEC_ERROR_NAMES.includes(e.reason) || e.reason === 'E_OK') throw new Error(`${kind}: unknown reason ${e.reason}`);
  if (!Number.isInteger(e.offset) || e.offset < 0 || e.offset >= fed) {
    throw new Error(`${kind}: error offset ${e.offset} outside the ${fed} bytes fed`);
  }
  return e;
}

/**
 * Decode `chunks` (then `end()`) with every check of the codec contract; throws an Error
 * naming the codec and the broken promise on any violation. Returns the frames and the
 * error, as the shared vectors spell them (test/helpers/frames.ts).
 */
export function decodeChecked(codec: Codec, chunks: Uint8Array[], max = 65536): Decoded {
  const kind = codec.kind;
  const dec = codec.createDecoder(max);
  const frames: Decoded['frames'] = [];
  let fed = 0;
  for (const c of chunks) {
    fed += c.length;
    let batch: FrameBatch;
    try {
      batch = dec.push(c);
    } catch (e) {
      throw new Error(`${kind}: push() threw instead of reporting: ${describeThrown(e)}`);
    }
    const pending = dec.pending;
    if (!(pending >= 0 && pending <= max && pending <= fed)) {
      throw new Error(`${kind}: pending ${pending} bytes (maxFrameBytes ${max}, ${fed} bytes fed)`);
    }
    if (kind === 'wasm') {
      const mem = batch.buffers[0]!.buffer.byteLength;
      if (mem > WASM_BASE_BYTES + 16 * fed) throw new Error(`wasm: linear memory is ${mem} bytes after ${fed} bytes fed`);
    }
    if (batch.count * MIN_FRAME_BYTES > fed) throw new Error(`${kind}: ${batch.count} frames out of ${fed} bytes`);
    for (let i = 0; i < batch.count; i++) {
      try {
        frames.push(rowToFrame(batch, i));
      } catch (e) {
        throw new Error(`${kind}: frame ${frames.length} reported valid but unreadable: ${describeThrown(e)}`);
      }
    }
    if (batch.error !== null) {
      const err = checkError(kind, batch.error, fed);
      if (dec.pending !== 0) throw new Error(`${kind}: a dead decoder still holds ${dec.pending} bytes`);
      const again = dec.push(ONE);
      if (again.count !== 0 || again.error?.reason !== err.reason || again.error.offset !== err.offset) {
        throw new Error(`${kind}: the decoder came back to life after ${err.reason}`);
      }
      return { frames, error: { code: err.reason, offset: err.offset } };
    }
  }
  let tail: ProtocolError | null;
  try {
    tail = dec.end();
  } catch (e) {
    throw new Error(`${kind}: end() threw: ${describeThrown(e)}`);
  }
  if (tail !== null) {
    const err = checkError(kind, tail, fed);
    if (err.reason !== 'E_INCOMPLETE') throw new Error(`${kind}: end() reported ${err.reason}, expected E_INCOMPLETE`);
    if (dec.pending === 0) throw new Error(`${kind}: end() reported a partial frame, but nothing is pending`);
    return { frames, error: { code: err.reason, offset: err.offset } };
  }
  if (dec.pending !== 0) throw new Error(`${kind}: end() found no partial frame, but ${dec.pending} bytes are pending`);
  return { frames, error: null };
}
