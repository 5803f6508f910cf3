/**
 * The Wasm codec: a Codec whose decoders run the AssemblyScript scanner (wasm-decoder.ts),
 * each over its own instance of the module (wasm-module.ts). Every decoder it hands out
 * reads in place too (in-place-decoder.ts). Which codec a connection gets is decided in
 * codec-select.ts, by measurement.
 */
import { tsCodec } from './codec-ts.js';
import { type InPlaceCodec, type InPlaceDecoder, TsInPlaceDecoder } from './in-place-decoder.js';
import { LARGE_FRAME_BYTES, WasmDecoder } from './wasm-decoder.js';
import { type Exports, type WasmModule, instantiate, lazyModule, releaseModule } from './wasm-module.js';

export interface WasmCodec extends InPlaceCodec {
  readonly kind: 'wasm';
  /** The compiled module (compiles on first call; throws when Wasm is unavailable). */
  wasmModule(): WasmModule;
}

export interface WasmCodecOptions {
  /** Module bytes (tests use the debug build). Defaults to the embedded release module. */
  bytes?: () => Uint8Array;
  /**
   * A partial frame larger than this is collected in a Buffer of its own instead of linear
   * memory: the socket (or push) copies its payload once, straight to where it stays, and
   * the memory never grows to the largest frame seen. Its header is then validated by the
   * reference scanner. Defaults to LARGE_FRAME_BYTES (4096); Infinity keeps every frame in
   * linear memory, growing it up to maxFrameBytes.
   */
  largeFrameBytes?: number;
}

/**
 * A Wasm codec. createDecoder compiles the module on first use and throws only when it
 * cannot be compiled at all; when one more instance cannot be created it returns a TS
 * decoder (same interface, `kind` 'ts').
 */
export function createWasmCodec(opts: WasmCodecOptions = {}): WasmCodec {
  const wasmModule = opts.bytes === undefined ? releaseModule : lazyModule(opts.bytes);
  const large = opts.largeFrameBytes ?? LARGE_FRAME_BYTES;
  return {
    kind: 'wasm',
    wasmModule,
    createDecoder(maxFrameBytes: number): InPlaceDecoder {
      const module = wasmModule();
      let ex: Exports;
      try {
        ex = instantiate(module);
      } catch {
        return new TsInPlaceDecoder(tsCodec.createDecoder(maxFrameBytes));
      }
      return new WasmDecoder(ex, maxFrameBytes, large);
    },
  };
}

export const wasmCodec: WasmCodec = createWasmCodec();
