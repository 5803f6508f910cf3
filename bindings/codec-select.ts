/**
 * Codec selection: `selectCodec('auto' | 'wasm' | 'ts', { inPlace })`, overridden by the
 * environment variable PIPIT_CODEC=ts|wasm|auto (debugging, benchmarks).
 *
 * The rule for 'auto', from bench/codec.bench.ts (speedup = TS time / Wasm time, medians of
 * 5 interleaved rounds, 2-vCPU x86-64 VM shared with other work, Node 20; every Wasm figure
 * includes the copy into linear memory and reading the frame table back):
 *
 *   in-place reads (net.Socket `onread` writes into the decoder's buffer)  -> Wasm
 *     64 KiB reads of 32 B frames 2.4-2.5x, of 1 KiB frames 1.9x, mixed 0-4 KiB 2.1x,
 *     one 46 B frame per read 1.4-1.5x, 64 KiB frames (body kept) 1.0-1.05x.
 *     Faster or even in every row: no copy in, and the TS side pays a view per read.
 *   chunks from 'data' events (push)                                       -> TS
 *     64 KiB chunks of small frames are 1.9-2.5x faster in Wasm, but one 46 B frame per
 *     chunk (request/response ping-pong, the common RPC shape) is 0.75x: the copy in and
 *     the call cost more than the TS scan of one frame. A decoder is chosen before its
 *     traffic is known, and a Wasm decoder costs ~15 µs to create (an instance) against
 *     ~0.5 µs, plus one Wasm memory reservation per connection; so servers, whose accepted
 *     sockets cannot use `onread` in Node 20, stay on TS.
 * (Figures of two full runs, after readVarint stopped using `2 ** shift`, which had made the
 * TS scanner ~40% slower on mixed frames.)
 *
 * Whatever was asked for, the result is TS when WebAssembly is missing (`node --jitless`)
 * or the module does not compile.
 */
import type { Codec } from './codec.js';
import { tsCodec } from './codec-ts.js';
import { wasmCodec } from './codec-wasm.js';
import { type InPlaceCodec, inPlaceCodec } from './in-place-decoder.js';

export type CodecChoice = 'auto' | 'wasm' | 'ts';

export interface SelectOptions {
  /** The caller reads with readBuffer()/commit() (net.Socket `onread`). Defaults to false. */
  inPlace?: boolean;
}

export interface CodecDecision {
  codec: Codec;
  /** One line: what was picked and why. */
  reason: string;
}

let wasmError: string | null | undefined;

/** Why Wasm cannot be used here, or null when it can (compiles the module on first call). */
export function wasmUnavailable(): string | null {
  if (wasmError === undefined) {
    try {
      wasmCodec.wasmModule();
      wasmError = null;
    } catch (e) {
      wasmError = e instanceof Error ? e.message : String(e);
    }
  }
  return wasmError;
}

function envChoice(): CodecChoice | null {
  const v = process.env.PIPIT_CODEC;
  return v === 'ts' || v === 'wasm' || v === 'auto' ? v : null;
}

/** The codec `selectCodec` returns for these arguments, and the reason, as one line. */
export function decideCodec(choice: CodecChoice = 'auto', opts: SelectOptions = {}): CodecDecision {
  const env = envChoice();
  const asked = env ?? choice;
  const via = env !== null ? ' (PIPIT_CODEC)' : '';
  const inPlace = opts.inPlace === true;
  const ts = inPlace ? inPlaceCodec(tsCodec) : tsCodec;
  if (asked === 'ts') return { codec: ts, reason: `ts: asked for${via}` };
  const why = wasmUnavailable();
  if (why !== null) return { codec: ts, reason: `ts: wasm unavailable (${why})` };
  if (asked === 'wasm') return { codec: wasmCodec, reason: `wasm: asked for${via}` };
  return inPlace
    ? { codec: wasmCodec, reason: `wasm: auto${via}, in-place reads (measured 1.0-2.5x faster than TS)` }
    : { codec: ts, reason: `ts: auto${via}, 'data' chunks (Wasm measured 0.75x on one frame per chunk)` };
}

/**
 * The codec to use. 'auto' (the default) picks Wasm only for in-place reads, where it was
 * measured faster; with `inPlace` every decoder of the result has readBuffer()/commit().
 */
export function selectCodec(choice: CodecChoice, opts: SelectOptions & { inPlace: true }): InPlaceCodec;
export function selectCodec(choice?: CodecChoice, opts?: SelectOptions): Codec;
export function selectCodec(choice: CodecChoice = 'auto', opts: SelectOptions = {}): Codec {
  return decideCodec(choice, opts).codec;
}

/** What 'auto' (or PIPIT_CODEC) picks for these options and why: for docs and diagnostics. */
export function explainCodecChoice(choice: CodecChoice = 'auto', opts: SelectOptions = {}): string {
  return decideCodec(choice, opts).reason;
}
