// pipit Wasm codec: exports only. Every export is a stateless function on raw pointers;
// TS (bindings/wasm-decoder.ts) owns the layout of linear memory.
export { scan } from './scan';
export { heapBase, nop } from './boundary';
