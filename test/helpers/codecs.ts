import type { Codec } from '../../bindings/codec.js';
import { tsCodec } from '../../bindings/codec-ts.js';
import { wasmCodec } from '../../bindings/codec-wasm.js';

/** Every codec the contract suite runs against. */
export const codecs: Codec[] = [tsCodec, wasmCodec];
