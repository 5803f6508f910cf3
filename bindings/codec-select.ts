import type { Codec } from './codec.js';
import { tsCodec } from './codec-ts.js';

export type CodecChoice = 'auto' | 'wasm' | 'ts';

/** Placeholder until the Wasm codec lands: always the TS codec. */
export function selectCodec(_choice: CodecChoice = 'auto', _opts: { inPlace?: boolean } = {}): Codec {
  return tsCodec;
}
