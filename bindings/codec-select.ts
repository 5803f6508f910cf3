/**
 * Codec selection: `selectCodec('auto' | 'wasm' | 'ts', { inPlace })`, overridden by the
 * environment variable PIPIT_CODEC=ts|wasm|auto (debugging, benchmarks).
 *
 * The rule for 'auto' (numbers: bench/codec.bench.ts, medians on a 2-vCPU x86-64 VM, Node 20):
 *   - in-place reads (the socket writes into the decoder's buffer through `onread`): Wasm.
 *     AUTO_NUMBERS
 *   - everything else ('data' events: each chunk must first be copied into linear memory): TS.
 * Whatever was asked for, the result is TS when WebAssembly is missing (`node --jitless`)
 * or the module does not compile.
 */
import type { Codec } from './codec.js';
import { tsCodec } from './codec-ts.js';
import { type InPlaceCodec, inPlaceCodec, wasmCodec } from './codec-wasm.js';

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
    ? { codec: wasmCodec, reason: `wasm: auto${via}, in-place reads (AUTO_INPLACE)` }
    : { codec: ts, reason: `ts: auto${via}, chunks copied into Wasm memory (AUTO_COPY)` };
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
