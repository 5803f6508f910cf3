/**
 * Codec benchmark: pure-TS scanner vs Wasm scanner, same process, same streams.
 *
 *   npm run bench:codec        (builds the module and dist/, then runs dist/bench/codec.bench.js)
 *
 * Every Wasm figure includes the copy into linear memory (push) and reading the frame table
 * back; every task checks its frame count (and a checksum of the table) inside the loop, so
 * a broken path cannot look fast. Tasks run interleaved over ROUNDS rounds with the order
 * rotated each round; a figure is the median of the per-round medians. Ratios are
 * speedups: TS time / Wasm time (above 1: Wasm is faster).
 * Also measured: compile + instantiate of the embedded module in fresh processes, and its size.
 */
import { Bench } from 'tinybench';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './socket-workloads.js';
import { COL_BODY_LEN, COL_HEAD, COL_ID, STRIDE } from '../bindings/frame-table.js';
import type { Decoder, FrameBatch } from '../bindings/codec.js';
import { tsCodec } from '../bindings/codec-ts.js';
import { wasmCodec } from '../bindings/codec-wasm.js';
import { type InPlaceDecoder, TsInPlaceDecoder } from '../bindings/in-place-decoder.js';
import { instantiate, releaseModule } from '../bindings/wasm-module.js';
import { explainCodecChoice } from '../bindings/codec-select.js';
import { FrameWriter, encodeExt, encodeRoute } from '../bindings/frame-writer.js';
import { WASM_BYTE_LENGTH } from '../bindings/wasm-bytes.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TIME_MS = Number(process.env.BENCH_TIME_MS ?? 150);
const CHUNK = 64 * 1024;
const STREAM_BYTES = 1 << 20;

// ---- streams ---------------------------------------------------------------------

/** Deterministic PRNG (mulberry32) so both codecs and every run see the same bytes. */
function rng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function bytesOf(w: FrameWriter): Buffer {
  return Buffer.concat(w.take());
}

/**
 * RESPONSE frames of `size` bytes in total (1-byte id) up to STREAM_BYTES, after one
 * 13-byte STATUS so that frames straddle the chunk boundaries as socket reads do.
 */
function uniform(size: number): { bytes: Buffer; frames: number } {
  const w = new FrameWriter(1 << 30);
  w.status(1, 0, 'ok-ok-ok');
  const payload = Buffer.alloc(size - 5, 0xab);
  let frames = 1;
  for (let n = 13; n + size <= STREAM_BYTES; n += size) {
    w.response(frames & 0x7f, 1, payload);
    frames++;
  }
  return { bytes: bytesOf(w), frames };
}

/** A mix of every common frame, payloads 0..4 KiB with mostly small ones. */
function mixed(): { bytes: Buffer; frames: number } {
  const r = rng(7);
  const w = new FrameWriter(1 << 30);
  const route = encodeRoute('pipit.Echo', 'Say');
  const ext = encodeExt({ deadlineMs: 1500, metadata: [['trace', 'abc123']] });
  const big = Buffer.alloc(4096, 0x5a);
  let frames = 0;
  let bytes = 0;
  while (bytes < STREAM_BYTES - 8192) {
    const k = r();
    const size = k < 0.6 ? Math.floor(r() * 64) : k < 0.9 ? Math.floor(r() * 1024) : Math.floor(r() * 4096);
    const payload = big.subarray(0, size);
    const t = r();
    if (t < 0.3) w.request(frames & 0x7f, 0, route, r() < 0.3 ? ext : null, payload);
    else if (t < 0.75) w.response(frames & 0x7f, 1, payload);
    else if (t < 0.85) w.status(300 + (frames & 0xff), 5, 'application failure');
    else if (t < 0.95) w.credit(frames & 0x7f, 64);
    else w.ping(frames);
    frames++;
    bytes = w.pendingBytes;
  }
  return { bytes: bytesOf(w), frames };
}

/** Buffers, as a socket's 'data' events deliver them. */
function chunks(bytes: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < bytes.length; p += size) out.push(Buffer.from(bytes.subarray(p, p + size)));
  return out;
}

/** One db/query REQUEST with a 32-byte payload (46 bytes) per chunk, 1024 chunks. */
function onePerChunk(): { list: Buffer[]; frames: number } {
  const w = new FrameWriter(1 << 30);
  w.request(1, 0, encodeRoute('db', 'query'), null, Buffer.alloc(32, 1));
  const one = bytesOf(w);
  return { list: Array.from({ length: 1024 }, () => Buffer.from(one)), frames: 1024 };
}

// ---- consumers: identical for both codecs --------------------------------------

let sink = 0;

/**
 * Read every row back (what a session does first) and return a checksum. With `bodies`, also
 * take each payload as a Buffer the caller may keep (`body()`: a view of a retainable chunk,
 * else a copy), as a session does for a message.
 */
function consume(batch: FrameBatch, bodies: boolean): number {
  if (batch.error !== null) throw batch.error;
  const t = batch.table;
  let s = 0;
  for (let i = 0, r = 0; i < batch.count; i++, r += STRIDE) {
    s += (t[r + COL_HEAD]! & 0xf) + t[r + COL_ID]! + t[r + COL_BODY_LEN]!;
    if (bodies) {
      kept = batch.body(i);
      s += kept[kept.length >> 1]!;
    }
  }
  return s;
}
let kept: Buffer = Buffer.alloc(0);

interface Case {
  name: string;
  /** Frames per iteration. */
  frames: number;
  ts: () => void;
  wasm: () => void;
}

function pushCase(name: string, list: Uint8Array[], frames: number, bodies = false): Case {
  const run = (dec: Decoder): (() => void) => {
    let expect = -1;
    return () => {
      let n = 0;
      let s = 0;
      for (const c of list) {
        const b = dec.push(c);
        n += b.count;
        s += consume(b, bodies);
      }
      if (n !== frames || dec.pending !== 0) throw new Error(`${name}: ${n} frames, expected ${frames}`);
      if (expect === -1) expect = s;
      else if (s !== expect) throw new Error(`${name}: checksum changed`);
      sink += s;
    };
  };
  return { name, frames, ts: run(tsCodec.createDecoder(1 << 20)), wasm: run(wasmCodec.createDecoder(1 << 20)) };
}

/** The socket writes each chunk into readBuffer() (one copy, as the kernel would). */
function inPlaceCase(name: string, list: Uint8Array[], frames: number, bodies = false): Case {
  const run = (dec: InPlaceDecoder): (() => void) => () => {
    let n = 0;
    let s = 0;
    for (const c of list) {
      // A read fills at most the buffer offered (the rest of a large frame may be less).
      for (let pos = 0; pos < c.length;) {
        const rb = dec.readBuffer();
        const k = Math.min(rb.length, c.length - pos);
        rb.set(k === c.length ? c : c.subarray(pos, pos + k));
        pos += k;
        const b = dec.commit(k);
        n += b.count;
        s += consume(b, bodies);
      }
    }
    if (n !== frames || dec.pending !== 0) throw new Error(`${name}: ${n} frames, expected ${frames}`);
    sink += s;
  };
  return {
    name,
    frames,
    ts: run(new TsInPlaceDecoder(tsCodec.createDecoder(1 << 20))),
    wasm: run(wasmCodec.createDecoder(1 << 20)),
  };
}

/** Per-connection cost: a new decoder and its first (one-frame) push. */
function newDecoderCase(): Case {
  const ping = Buffer.from([1, 0, 0, 7, 1]);
  const run = (create: () => Decoder) => (): void => {
    if (create().push(ping).count !== 1) throw new Error('new decoder: no frame');
  };
  return {
    name: 'new decoder + first push (per connection)',
    frames: 1,
    ts: run(() => tsCodec.createDecoder(65536)),
    wasm: run(() => wasmCodec.createDecoder(65536)),
  };
}

function baselineCase(): Case {
  const N = 1000;
  const ex = instantiate(releaseModule());
  let x = 0;
  const jsNop = (): void => {
    x++;
  };
  return {
    name: 'empty call (JS function vs Wasm export)',
    frames: N,
    ts: () => {
      for (let i = 0; i < N; i++) jsNop();
    },
    wasm: () => {
      for (let i = 0; i < N; i++) ex.nop();
    },
  };
}

// ---- cold start -----------------------------------------------------------------------

function coldStart(runs: number): { compile: number; firstDecoder: number } {
  const here = fileURLToPath(new URL('.', import.meta.url));
  const script = `
    const t0 = performance.now();
    const { WASM_BASE64 } = await import(${JSON.stringify(new URL('../bindings/wasm-bytes.js', import.meta.url).href)});
    const t1 = performance.now();
    const m = new WebAssembly.Module(Buffer.from(WASM_BASE64, 'base64'));
    new WebAssembly.Instance(m, {});
    const t2 = performance.now();
    const { wasmCodec } = await import(${JSON.stringify(new URL('../bindings/codec-wasm.js', import.meta.url).href)});
    const t3 = performance.now();
    wasmCodec.createDecoder(65536).push(Uint8Array.of(1, 0, 0, 7, 1));
    const t4 = performance.now();
    console.log(JSON.stringify({ compile: t2 - t1, firstDecoder: t4 - t3 }));`;
  const compile: number[] = [];
  const first: number[] = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: here, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    const r = JSON.parse(out) as { compile: number; firstDecoder: number };
    compile.push(r.compile);
    first.push(r.firstDecoder);
  }
  return { compile: median(compile), firstDecoder: median(first) };
}

// ---- run -------------------------------------------------------------------------------

async function main(): Promise<void> {
  const small = uniform(32);
  const kib = uniform(1024);
  const mix = mixed();
  const large = uniform(64 * 1024 + 5);
  const one = onePerChunk();
  const cases: Case[] = [
    pushCase('push: 64 KiB chunks of 32 B frames', chunks(small.bytes, CHUNK), small.frames),
    pushCase('push: 64 KiB chunks of 1 KiB frames', chunks(kib.bytes, CHUNK), kib.frames),
    pushCase('push: 64 KiB chunks, mixed 0-4 KiB frames', chunks(mix.bytes, CHUNK), mix.frames),
    pushCase('push: one 46 B frame per chunk', one.list, one.frames),
    pushCase('push: 64 KiB chunks of 64 KiB frames, body() kept', chunks(large.bytes, CHUNK), large.frames, true),
    inPlaceCase('in place: 64 KiB reads of 32 B frames', chunks(small.bytes, CHUNK), small.frames),
    inPlaceCase('in place: 64 KiB reads of 1 KiB frames', chunks(kib.bytes, CHUNK), kib.frames),
    inPlaceCase('in place: 64 KiB reads, mixed frames', chunks(mix.bytes, CHUNK), mix.frames),
    inPlaceCase('in place: one 46 B frame per read', one.list, one.frames),
    inPlaceCase('in place: 64 KiB reads of 64 KiB frames, body() kept', chunks(large.bytes, CHUNK), large.frames, true),
    newDecoderCase(),
    baselineCase(),
  ];
  const only = process.env.BENCH_FILTER;
  if (only !== undefined) cases.splice(0, cases.length, ...cases.filter((c) => c.name.includes(only)));
  const tasks = cases.flatMap((c) => [
    { key: `${c.name}|ts`, fn: c.ts },
    { key: `${c.name}|wasm`, fn: c.wasm },
  ]);
  const perRound = new Map<string, number[]>(tasks.map((t) => [t.key, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const bench = new Bench({ time: TIME_MS, warmupTime: 50, throws: true });
    const k = (round * 3) % tasks.length;
    for (const t of [...tasks.slice(k), ...tasks.slice(0, k)]) bench.add(t.key, t.fn);
    await bench.run();
    for (const task of bench.tasks) {
      const r = task.result;
      if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state}`);
      perRound.get(task.name)!.push(r.latency.p50);
    }
  }
  const ms = (key: string): number => median(perRound.get(key)!);

  const rows = cases.map((c) => {
    const ts = (ms(`${c.name}|ts`) * 1e6) / c.frames;
    const wasm = (ms(`${c.name}|wasm`) * 1e6) / c.frames;
    return `| ${c.name} | ${c.frames} | ${ts.toFixed(2)} | ${wasm.toFixed(2)} | ${(ts / wasm).toFixed(2)}x |`;
  });
  const cold = only === undefined ? coldStart(9) : { compile: NaN, firstDecoder: NaN };
  console.log(`\nNode ${process.version}, ${ROUNDS} rounds x ${TIME_MS} ms per task; ns per frame (per call), medians.\n`);
  console.log('| case | frames/iter | TS ns | Wasm ns | speedup TS/Wasm |');
  console.log('|---|---|---|---|---|');
  for (const r of rows) console.log(r);
  console.log(`\nrelease module: ${WASM_BYTE_LENGTH} bytes`);
  console.log(`compile + instantiate (fresh process, median of 9): ${cold.compile.toFixed(3)} ms`);
  console.log(`first decoder incl. import of codec-wasm.js + first push (median of 9): ${cold.firstDecoder.toFixed(3)} ms`);
  console.log(`auto, 'data' events: ${explainCodecChoice('auto')}`);
  console.log(`auto, in-place reads: ${explainCodecChoice('auto', { inPlace: true })}`);
  if (sink === 0.5) console.log(sink);
}

await main();
