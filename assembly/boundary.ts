// Boundary helpers for the TS side.

/** First byte of linear memory TS may lay out (after static data, e.g. debug assert messages). */
export function heapBase(): usize {
  return __heap_base;
}

/** Empty export: the cost of one JS -> Wasm call, for the benchmark baseline. */
export function nop(): void {}
