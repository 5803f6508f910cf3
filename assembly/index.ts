// pipit Wasm codec: exports only. Every export is a stateless function on raw pointers;
// TS (bindings/codec-wasm.ts) owns the layout of linear memory.
export { scan } from './scan';
export { encodeHeader } from './header';
export { heapBase, nop } from './boundary';
