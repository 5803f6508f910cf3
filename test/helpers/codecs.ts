import type { Codec } from '../../bindings/codec.js';
import { tsCodec } from '../../bindings/codec-ts.js';

/** Every codec the contract suite runs against. */
export const codecs: Codec[] = [tsCodec];
