/**
 * What the platform costs before any protocol: the floors under the W4 and W7 rows of the
 * socket bench, measured on the machine that runs it.
 *
 *   npm run bench:floor        (also part of `npm run bench`, which writes bench/RESULTS.md)
 *
 * 1. The iteration protocol, in one process, no sockets: ns per item to drain 100,000 items
 *    (one preallocated 32-byte Buffer, so only the iteration is measured) through
 *      - a sync generator read with `for...of` (W4's producer, as pipit drains it);
 *      - an async generator read with `for await` (W4a's producer: a promise per item);
 *      - an async generator yielding pages of 64 (W4b's producer), each page read with for...of;
 *      - a queue of items that have already arrived, read with `for await` (a stream's consumer:
 *        next() returns a resolved promise per item).
 *    Compare them with the raw socket's CPU per item in the W4 rows: an async generator alone
 *    costs about what the raw socket spends on an item in both processes together.
 * 2. What the Wasm codec adds to a process's memory, in fresh processes (median of 5): VmHWM,
 *    and how much of it is file-backed (RssFile: pages of the node executable, clean and
 *    shared with every Node process) or private (RssAnon), around compiling the embedded
 *    module and around the first decoder's first scan.
 */
import { Bench } from 'tinybench';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { median } from './socket-workloads.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const TIME_MS = Number(process.env.BENCH_TIME_MS ?? 150);
const N = 100_000;
const PAGE = 64;
const ITEM = Buffer.alloc(32, 7);

function* syncItems(n: number): Generator<Buffer> {
  for (let i = 0; i < n; i++) yield ITEM;
}
async function* asyncItems(n: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < n; i++) yield ITEM;
}
async function* asyncPages(n: number): AsyncGenerator<Buffer[]> {
  for (let i = 0; i < n; ) {
    const page: Buffer[] = [];
    for (const end = Math.min(n, i + PAGE); i < end; i++) page.push(ITEM);
    yield page;
  }
}

/** Items that have arrived, read with `for await`: one resolved promise per item. */
class Arrived implements AsyncIterableIterator<Buffer> {
  private k = 0;
  constructor(private readonly items: Buffer[]) {}
  next(): Promise<IteratorResult<Buffer>> {
    if (this.k < this.items.length) return Promise.resolve({ done: false, value: this.items[this.k++]! });
    return Promise.resolve({ done: true, value: undefined });
  }
  [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    return this;
  }
}
const ARRIVED = Array.from({ length: N }, () => ITEM);

const check = (bytes: number): void => {
  if (bytes !== N * ITEM.length) throw new Error(`drained ${bytes} bytes, expected ${N * ITEM.length}`);
};

const cases: Array<[string, () => Promise<void> | void]> = [
  ['sync generator, for...of (W4 producer)', () => {
    let bytes = 0;
    for (const b of syncItems(N)) bytes += b.length;
    check(bytes);
  }],
  ['async generator, for await (W4a producer)', async () => {
    let bytes = 0;
    for await (const b of asyncItems(N)) bytes += b.length;
    check(bytes);
  }],
  [`async generator of pages of ${PAGE}, for await per page (W4b producer)`, async () => {
    let bytes = 0;
    for await (const page of asyncPages(N)) for (const b of page) bytes += b.length;
    check(bytes);
  }],
  ['items already arrived, for await (a stream consumer)', async () => {
    let bytes = 0;
    for await (const b of new Arrived(ARRIVED)) bytes += b.length;
    check(bytes);
  }],
];

async function iteration(): Promise<string[]> {
  const perRound = new Map<string, number[]>(cases.map(([name]) => [name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    const bench = new Bench({ time: TIME_MS, warmupTime: 50, throws: true });
    const k = round % cases.length;
    for (const [name, fn] of [...cases.slice(k), ...cases.slice(0, k)]) bench.add(name, fn);
    await bench.run();
    for (const task of bench.tasks) {
      if (task.result.state !== 'completed') throw new Error(`${task.name}: ${task.result.state}`);
      perRound.get(task.name)!.push(task.result.latency.p50);
    }
  }
  return cases.map(([name]) => `| ${name} | ${((median(perRound.get(name)!) * 1e6) / N).toFixed(1)} |`);
}

/** [VmHWM, RssFile, RssAnon] deltas in KiB for each step in fresh processes (medians of `runs`). */
interface MemSteps {
  compile: number[];
  firstScan: number[];
}

function wasmMemory(runs: number): MemSteps {
  const url = (f: string): string => JSON.stringify(new URL(f, import.meta.url).href);
  const script = `
    import { readFileSync } from 'node:fs';
    const kib = () => {
      const s = readFileSync('/proc/self/status', 'utf8');
      return ['VmHWM', 'RssFile', 'RssAnon'].map((k) => Number(new RegExp(k + ':\\\\s+(\\\\d+)').exec(s)[1]));
    };
    const { releaseModule } = await import(${url('../bindings/wasm-module.js')});
    const { wasmCodec } = await import(${url('../bindings/codec-wasm.js')});
    const a = kib();
    releaseModule();
    const b = kib();
    const d = wasmCodec.createDecoder(65536);
    d.push(Uint8Array.of(1, 0, 0, 7, 1));
    const c = kib();
    console.log(JSON.stringify({ compile: b.map((v, i) => v - a[i]), firstScan: c.map((v, i) => v - b[i]) }));`;
  const compile: number[][] = [];
  const firstScan: number[][] = [];
  for (let i = 0; i < runs; i++) {
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: fileURLToPath(new URL('.', import.meta.url)),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const r = JSON.parse(out) as MemSteps;
    compile.push(r.compile);
    firstScan.push(r.firstScan);
  }
  const col = (rows: number[][]): number[] => [0, 1, 2].map((j) => median(rows.map((r) => r[j]!)));
  return { compile: col(compile), firstScan: col(firstScan) };
}

async function main(): Promise<void> {
  const rows = await iteration();
  console.log(`\nNode ${process.version}, ${ROUNDS} rounds x ${TIME_MS} ms per task; ns per item over ${N.toLocaleString('en-US')} items, medians.\n`);
  console.log('| drained through | ns per item |');
  console.log('|---|---|');
  for (const r of rows) console.log(r);
  if (process.platform !== 'linux') {
    console.log('\nWasm memory: needs /proc/self/status (Linux).');
    return;
  }
  const mem = wasmMemory(5);
  const fmt = (v: number[]): string => v.map((k) => (k / 1024).toFixed(2)).join(' | ');
  console.log('\nWhat the Wasm codec adds to a fresh process (MiB, median of 5): file-backed pages are the node executable\'s own code (V8\'s Wasm compiler), shared with every Node process; private is what this process alone holds.\n');
  console.log('| step | VmHWM | file-backed (RssFile) | private (RssAnon) |');
  console.log('|---|---|---|---|');
  console.log(`| compile the embedded module | ${fmt(mem.compile)} |`);
  console.log(`| first decoder: instance, memory, first scan | ${fmt(mem.firstScan)} |`);
}

await main();
