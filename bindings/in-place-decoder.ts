/**
 * In-place reading (net.Socket `onread` with a function-form buffer): the socket writes
 * straight into the decoder's buffer, and the decoder scans those bytes where they are, with
 * no Buffer per read. The Wasm decoder (wasm-decoder.ts) reads into its linear memory; this
 * file gives the same two methods to any other decoder, over one reused JS buffer.
 */
import type { Codec, Decoder, FrameBatch } from './codec.js';
import { FastBuffer } from './codec.js';
import type { ProtocolError } from './errors.js';

/** A decoder that can also scan bytes a socket wrote straight into its buffer. */
export interface InPlaceDecoder extends Decoder {
  /**
   * Where the next read should land (net.Socket `onread.buffer` in function form): at least
   * READ_BYTES bytes right after the carried partial frame. Invalidates the previous batch.
   */
  readBuffer(): Uint8Array;
  /**
   * Scan the `n` bytes just written into the last readBuffer(). Rows use buffer 0, which is
   * not retainable: copy what must outlive the next readBuffer (`batch.body` does).
   */
  commit(n: number): FrameBatch;
}

export interface InPlaceCodec extends Codec {
  createDecoder(maxFrameBytes: number): InPlaceDecoder;
}

/** Minimum capacity readBuffer() offers (one socket read). */
export const READ_BYTES = 64 * 1024;

/**
 * TS decoder with the in-place methods: the socket reads into one reused JS buffer, which
 * is scanned where it is (rows use buffer 1, not retainable). Used when Wasm is not chosen or
 * cannot be instantiated.
 */
export class TsInPlaceDecoder implements InPlaceDecoder {
  readonly kind = 'ts';
  private readonly inner: Decoder;
  private readonly buf = Buffer.allocUnsafeSlow(READ_BYTES);

  constructor(inner: Decoder) {
    this.inner = inner;
  }
  get maxFrameBytes(): number {
    return this.inner.maxFrameBytes;
  }
  set maxFrameBytes(v: number) {
    this.inner.maxFrameBytes = v;
  }
  get pending(): number {
    return this.inner.pending;
  }
  push(chunk: Uint8Array, retainable?: boolean): FrameBatch {
    return this.inner.push(chunk, retainable);
  }
  readBuffer(): Uint8Array {
    return this.buf;
  }
  commit(n: number): FrameBatch {
    const b = this.buf;
    return this.inner.push(new FastBuffer(b.buffer, b.byteOffset, n), false);
  }
  end(): ProtocolError | null {
    return this.inner.end();
  }
}

/** `codec` whose decoders also read in place (TsInPlaceDecoder around each one). */
export function inPlaceCodec(codec: Codec): InPlaceCodec {
  // The Wasm codec's decoders (and its fallback decoders) already read in place.
  if (codec.kind === 'wasm' && 'wasmModule' in codec) return codec as InPlaceCodec;
  return {
    kind: codec.kind,
    createDecoder: (maxFrameBytes: number) => new TsInPlaceDecoder(codec.createDecoder(maxFrameBytes)),
  };
}

