/**
 * End to end over a Unix socket: pipit (TS codec, Wasm codec) against a raw length-prefixed
 * socket, server and client in separate processes, fresh processes for every cell, the raw
 * baseline interleaved with pipit in every repetition so that ratios survive a noisy machine.
 *
 * This module is the bench itself; two entry points run it: `bench/socket.bench.ts` (for
 * `npm run bench`, which writes bench/RESULTS.md) and `pipit bench` (cli/bench.ts, shipped in
 * the package so the numbers can be taken on a machine without a checkout). The processes
 * of each cell run `socket-worker.js`.
 *   PIPIT_BENCH_PROF=dir writes a --cpu-prof profile of every process into dir.
 *
 * Workloads (spec/PROTOCOL.md §16 for the wire sizes):
 *   W1 latency: sequential unary calls, 32-byte payload, 1 in flight: p50, p99 (µs)
 *   W2 throughput: 64 unary calls in flight, 32-byte payload: calls/s
 *   W3 bulk: 64 KiB echo, 8 in flight: MiB/s of request payload
 *   W4 stream: one call answered by 100,000 items of 32 bytes, made by a sync generator
 *      (`*rows()`), read with `for await`: items/s, and CPU of both processes per item,
 *      medians of 5 streams after 4 warm-up streams in the same connection
 *   W4a the same stream made by an async generator (`async *rows()`), the way a DB cursor is
 *      read; the raw baseline is the same as W4's
 *   W4b the same async generator yielding pages of 64 rows (arrays: one message each on the
 *      wire), read with `stream.batches()`: the batch paths for hot streams
 *   W5 CPU (user+sys) of both processes per call in W2: µs/call
 *   W6 wire bytes per call + response in W2 (both directions)
 *   W7 peak RSS (VmHWM) of client and server in the W2 cell
 * `raw-iter` (only with --only): raw bytes with pipit's API shape for streams, a generator on
 * the server and `for await` or batches on the client; it shows what the iteration protocol
 * costs by itself (W4, W4a, W4b), apart from any protocol.
 * Cross-language cells (GO_IMPLS, client-server): `ts-go` is the TS client against pipit's Go
 * implementation as the server, `go-ts` the Go client against the TS server, `go-go` both Go.
 * The Go processes are go/cmd/pipit-bench, built here with `go build` once per run; they run
 * the same workloads and speak to this orchestrator in JSON lines on stdin/stdout instead
 * of over IPC. The TS side of those cells uses the ts codec, as the `ts` cells do.
 * Every response is checked (length, and content for W3; every stream item carries its index)
 * so a broken path cannot look fast.
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connect, listen, streaming, type Peer } from '../bindings/index.js';

export type Impl = 'raw' | 'raw-iter' | 'ts' | 'wasm' | 'ts-go' | 'go-ts' | 'go-go';
export type Cell = 'W1' | 'W2' | 'W3' | 'W4' | 'W4a' | 'W4b';
/** How a W4 cell's stream is produced and read. */
type StreamMode = 'sync' | 'async' | 'paged';
const STREAM_MODES: Partial<Record<Cell, StreamMode>> = { W4: 'sync', W4a: 'async', W4b: 'paged' };
const STREAM_METHODS: Record<StreamMode, string> = { sync: 'rows', async: 'rowsAsync', paged: 'rowsPaged' };
/** Rows per page in W4b. */
const PAGE_ROWS = 64;
/** The default implementations: everything in Node. */
export const IMPLS: readonly Impl[] = ['raw', 'ts', 'wasm'];
/** Cross-language pairs, named client-server: they need Go and this repository's go/ (goUnavailable). */
export const GO_IMPLS: readonly Impl[] = ['ts-go', 'go-ts', 'go-go'];
/**
 * Run only when asked (--only): the raw socket with pipit's API shape for streams, a
 * generator on the server and `for await` (or batches) on the client: what the async
 * iteration protocol costs over the same bytes, with no protocol at all.
 */
export const EXTRA_IMPLS: readonly Impl[] = ['raw-iter'];
const LABELS: Partial<Record<Impl, string>> = { 'raw-iter': 'raw, iterated', 'ts-go': 'TS→Go', 'go-ts': 'Go→TS', 'go-go': 'Go→Go' };
const goClient = (impl: Impl): boolean => impl === 'go-ts' || impl === 'go-go';
const goServer = (impl: Impl): boolean => impl === 'ts-go' || impl === 'go-go';
/** The codec of the TS side of a cell. */
const tsCodec = (impl: Impl): 'ts' | 'wasm' => (impl === 'wasm' ? 'wasm' : 'ts');
export const CELLS: readonly Cell[] = ['W1', 'W2', 'W3', 'W4', 'W4a', 'W4b'];

export interface Params {
  quick: boolean;
  cell: Cell;
  impl: Impl;
  path: string;
}

const WORKER = fileURLToPath(new URL('./socket-worker.js', import.meta.url));
/** W4's stream window: the default (adaptive) unless PIPIT_BENCH_CREDIT fixes one. */
const STREAM_CREDIT = process.env.PIPIT_BENCH_CREDIT ? Number(process.env.PIPIT_BENCH_CREDIT) : undefined;
const PAYLOAD32 = Buffer.alloc(32, 0x61);
const BULK = Buffer.alloc(64 * 1024);
for (let i = 0; i < BULK.length; i++) BULK[i] = (i * 31) & 0xff;

/** Stream item i: 32 bytes, its index in the first four (a fresh row, as a cursor makes one). */
function item(i: number): Buffer {
  const b = Buffer.allocUnsafe(32).fill(0x61, 4);
  b.writeUInt32LE(i, 0);
  return b;
}

/** Check stream item `i` (the count received so far). */
function checkItem(b: Uint8Array, i: number): void {
  if (b.length !== 32 || (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0 !== i >>> 0 || b[31] !== 0x61) {
    throw new Error(`stream item ${i} is wrong`);
  }
}

/** Peak resident set of this process (VmHWM): unlike ru_maxrss it does not carry over from a parent. */
export function peakRssMiB(): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return process.resourceUsage().maxRSS / 1024;
}

/**
 * File-backed resident pages of this process (RssFile), now: mostly the machine code of the
 * node executable that has run. They are clean, shared with every other process mapping the
 * same file and dropped under memory pressure, yet VmHWM counts them. V8's Wasm compiler is
 * such code: a first Wasm module costs about 1.1 MiB of it and ~0.1 MiB of private memory.
 * Pages once touched stay, so VmHWM minus RssFile at the end approximates the private peak.
 */
export function fileRssMiB(): number {
  try {
    const m = /RssFile:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    if (m) return Number(m[1]) / 1024;
  } catch {
    // not Linux
  }
  return 0;
}

// =====================================================================
// Raw baseline: [u32le length of id+payload][u32le id][payload], pipelined, writes
// coalesced per event-loop turn. Method byte: first payload byte is not inspected; the
// request kind is encoded in the id's top bits (0 = echo32, 1 = echo bulk, 2 = stream).
// =====================================================================

class RawConn {
  private carry: Buffer | null = null;
  /** Output arena: frames are packed here; payloads of 2 KiB or more go out as their own segments. */
  private arena = Buffer.allocUnsafe(64 * 1024);
  private pos = 0;
  private start = 0;
  private segs: Buffer[] = [];
  private scheduled = false;
  constructor(
    readonly socket: net.Socket,
    private readonly onFrame: ((id: number, payload: Buffer) => void) | null,
  ) {
    // null: the socket reads in place (RawInPlaceReader); this only writes.
    if (onFrame !== null) socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }
  /** A frame that straddles reads: allocated once its length is known, filled in place. */
  private part: Buffer | null = null;
  private partLen = 0;
  private onData(chunk: Buffer): void {
    let buf = chunk;
    let pos = 0;
    if (this.carry !== null) {
      // Fewer than 8 bytes were left over: join them with this chunk (tiny copy).
      buf = Buffer.concat([this.carry, chunk]);
      this.carry = null;
    } else if (this.part !== null) {
      const part = this.part;
      const n = Math.min(part.length - this.partLen, chunk.length);
      chunk.copy(part, this.partLen, 0, n);
      this.partLen += n;
      if (this.partLen < part.length) return;
      this.part = null;
      this.onFrame!(part.readUInt32LE(4), part.subarray(8));
      pos = n;
    }
    while (buf.length - pos >= 8) {
      const len = buf.readUInt32LE(pos);
      if (buf.length - pos < 4 + len) {
        this.part = Buffer.allocUnsafe(4 + len);
        this.partLen = buf.copy(this.part, 0, pos);
        return;
      }
      this.onFrame!(buf.readUInt32LE(pos + 4), buf.subarray(pos + 8, pos + 4 + len));
      pos += 4 + len;
    }
    if (pos < buf.length) this.carry = Buffer.from(buf.subarray(pos));
  }
  send(id: number, payload: Buffer): void {
    const inline = payload.length < 2048;
    const need = 8 + (inline ? payload.length : 0);
    if (this.pos + need > this.arena.length) {
      this.cut();
      this.arena = Buffer.allocUnsafe(Math.max(64 * 1024, need));
      this.pos = this.start = 0;
    }
    const a = this.arena;
    a.writeUInt32LE(4 + payload.length, this.pos);
    a.writeUInt32LE(id, this.pos + 4);
    this.pos += 8;
    if (inline) {
      payload.copy(a, this.pos);
      this.pos += payload.length;
    } else {
      this.cut();
      this.segs.push(payload);
    }
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.flush());
    }
  }
  /** Bytes packed and not yet flushed. */
  get pending(): number {
    return this.pos - this.start;
  }
  private cut(): void {
    if (this.pos > this.start) {
      this.segs.push(this.arena.subarray(this.start, this.pos));
      this.start = this.pos;
    }
  }
  flush(): void {
    this.scheduled = false;
    this.cut();
    const segs = this.segs;
    this.segs = [];
    if (segs.length === 1) this.socket.write(segs[0]!);
    else if (segs.length > 1) {
      this.socket.cork();
      for (const b of segs) this.socket.write(b);
      this.socket.uncork();
    }
  }
}

const KIND_SHIFT = 28;
/** A raw stream flushes once this much is packed: one 64 KiB write, like pipit's producer. */
const RAW_WRITE_BYTES = 64 * 1024 - 64;

async function rawServer(path: string, onConn: (s: net.Socket) => void): Promise<net.Server> {
  const srv = net.createServer((socket) => {
    onConn(socket);
    const conn = new RawConn(socket, (id, payload) => {
      const kind = id >>> KIND_SHIFT;
      if (kind === 2) {
        const n = payload.readUInt32LE(0);
        // raw-iter names how to produce (a fifth byte); raw sends four and gets the plain loop.
        void (payload.length > 4 ? streamIterated(conn, id, n, ITER_MODES[payload[4]!]!) : streamItems(conn, id, n));
      } else {
        conn.send(id, kind === 1 ? payload : PAYLOAD32);
      }
    });
  });
  await new Promise<void>((r) => srv.listen(path, r));
  return srv;
}

/**
 * Raw stream: n items then an empty terminator, written 64 KiB at a time (as pipit's producer
 * writes), pausing on the socket's backpressure (Node's own signal, writableNeedDrain).
 */
async function streamItems(conn: RawConn, id: number, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    conn.send(id, item(i));
    if (conn.pending >= RAW_WRITE_BYTES) {
      conn.flush();
      if (conn.socket.writableNeedDrain) await new Promise((r) => conn.socket.once('drain', r));
    }
  }
  conn.send(id, Buffer.alloc(0));
}

/** W4 cells: streams run before measuring, and streams measured (the median is kept). */
const STREAM_WARMUPS = 4;
const STREAM_PASSES = 5;

const ITER_MODES: readonly StreamMode[] = ['sync', 'async', 'paged'];

/** The W4 cells' producers, for pipit's server and raw-iter's: W4's sync generator, W4a's async one, W4b's pages. */
function* syncRows(n: number): Generator<Buffer> {
  for (let i = 0; i < n; i++) yield item(i);
}
async function* asyncRows(n: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < n; i++) yield item(i);
}
async function* pagedRows(n: number): AsyncGenerator<Buffer[]> {
  for (let i = 0; i < n; ) {
    const page: Buffer[] = [];
    for (const end = Math.min(n, i + PAGE_ROWS); i < end; i++) page.push(item(i));
    yield page;
  }
}

/**
 * raw-iter's stream: the items of a generator, paced as pipit's producer is: a turn of the
 * event loop after each 64 KiB write, waiting for 'drain' only past pipit's default
 * maxWriteBufferBytes (4 MiB).
 */
async function streamIterated(conn: RawConn, id: number, n: number, mode: StreamMode): Promise<void> {
  const pace = (): Promise<unknown> =>
    new Promise((r) => (conn.socket.writableLength > 4 * 1024 * 1024 ? conn.socket.once('drain', r) : setImmediate(r)));
  const put = (b: Buffer): boolean => {
    conn.send(id, b);
    if (conn.pending < RAW_WRITE_BYTES) return false;
    conn.flush();
    return true;
  };
  if (mode === 'sync') {
    for (const b of syncRows(n)) if (put(b)) await pace();
  } else if (mode === 'async') {
    for await (const b of asyncRows(n)) if (put(b)) await pace();
  } else {
    for await (const page of pagedRows(n)) {
      let wrote = false;
      for (const b of page) wrote = put(b) || wrote;
      if (wrote) await pace();
    }
  }
  conn.send(id, Buffer.alloc(0));
}

/** raw-iter's client side of a stream: an async queue read with `for await`, or in batches. */
class RawQueue implements AsyncIterableIterator<Buffer> {
  private items: Buffer[] = [];
  private head = 0;
  private ended = false;
  private waiting: ((r: IteratorResult<Buffer>) => void) | null = null;
  private waitingBatch: ((r: IteratorResult<Buffer[]>) => void) | null = null;
  private batchDue = false;
  push(b: Buffer): void {
    const w = this.waiting;
    if (w !== null) {
      this.waiting = null;
      w({ done: false, value: b });
      return;
    }
    this.items.push(b);
    if (this.waitingBatch !== null && !this.batchDue) {
      this.batchDue = true;
      queueMicrotask(() => {
        this.batchDue = false;
        const wb = this.waitingBatch!;
        this.waitingBatch = null;
        wb({ done: false, value: this.takeAll() });
      });
    }
  }
  end(): void {
    this.ended = true;
    if (this.waiting !== null) this.waiting({ done: true, value: undefined });
    if (this.waitingBatch !== null && !this.batchDue) this.waitingBatch({ done: true, value: undefined });
  }
  next(): Promise<IteratorResult<Buffer>> {
    if (this.head < this.items.length) {
      const b = this.items[this.head]!;
      this.items[this.head++] = undefined as unknown as Buffer;
      if (this.head === this.items.length) this.items.length = this.head = 0;
      return Promise.resolve({ done: false, value: b });
    }
    if (this.ended) return Promise.resolve({ done: true, value: undefined });
    return new Promise((r) => (this.waiting = r));
  }
  [Symbol.asyncIterator](): this {
    return this;
  }
  private takeAll(): Buffer[] {
    const out = this.head === 0 ? this.items : this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
  batches(): AsyncIterable<Buffer[]> {
    return {
      [Symbol.asyncIterator]: () => ({
        next: (): Promise<IteratorResult<Buffer[]>> => {
          if (this.head < this.items.length) return Promise.resolve({ done: false, value: this.takeAll() });
          if (this.ended) return Promise.resolve({ done: true, value: undefined });
          return new Promise((r) => (this.waitingBatch = r));
        },
      }),
    };
  }
}

interface Client {
  call(payload: Buffer): Promise<Buffer>;
  bulk(payload: Buffer): Promise<Buffer>;
  /** Read a stream of n items, produced and read as `mode` says (raw has one way); resolves with the count received. */
  stream(n: number, mode: StreamMode): Promise<number>;
  bytesWritten(): number;
  codec: string;
  close(): Promise<void>;
}

/**
 * The raw client's reader: reads in place (net.Socket `onread`) into one reused buffer, as
 * pipit clients do, and hands frames out as views of it (`owned` false: valid during the
 * call only). A partial frame is moved to the front; one too large for the buffer gets a
 * buffer of its own, which the following reads fill directly, and is handed out `owned`.
 */
class RawInPlaceReader {
  private buf = Buffer.allocUnsafe(256 * 1024);
  /** Bytes of a partial frame at the front of `buf`. */
  private have = 0;
  /** A frame larger than `buf`, being read into its own buffer: `largeHave` bytes so far. */
  private large: Buffer | null = null;
  private largeHave = 0;
  /**
   * @param copyReads give each read's frames bytes of their own: the read is copied once and
   *   the frames are views of the copy (owned), as pipit's body() does for in-place reads.
   */
  constructor(
    private readonly onFrame: (id: number, payload: Buffer, owned: boolean) => void,
    private readonly copyReads = false,
  ) {}
  buffer(): Buffer {
    if (this.large !== null) return this.large.subarray(this.largeHave);
    return this.have === 0 ? this.buf : this.buf.subarray(this.have);
  }
  read(n: number): void {
    const large = this.large;
    if (large !== null) {
      this.largeHave += n;
      if (this.largeHave === large.length) {
        this.large = null;
        this.onFrame(large.readUInt32LE(4), large.subarray(8), true);
      }
      return;
    }
    const buf = this.buf;
    const end = this.have + n;
    const from = this.copyReads ? Buffer.from(buf.subarray(0, end)) : buf;
    let pos = 0;
    while (end - pos >= 8) {
      const len = buf.readUInt32LE(pos);
      if (end - pos < 4 + len) break;
      this.onFrame(buf.readUInt32LE(pos + 4), from.subarray(pos + 8, pos + 4 + len), from !== buf);
      pos += 4 + len;
    }
    const rest = end - pos;
    if (rest >= 4 && 4 + buf.readUInt32LE(pos) > buf.length / 2) {
      // A large frame: its own buffer, filled by the next reads without another copy.
      this.large = Buffer.allocUnsafe(4 + buf.readUInt32LE(pos));
      this.largeHave = buf.copy(this.large, 0, pos, end);
      this.have = 0;
      return;
    }
    if (rest > 0) buf.copy(buf, 0, pos, end);
    this.have = rest;
  }
}

/** @param iterated raw-iter: streams are produced by generators and read with `for await`. */
async function rawClient(path: string, iterated = false): Promise<Client> {
  const pending = new Map<number, (b: Buffer) => void>();
  let streamCount = 0;
  let streamDone: ((n: number) => void) | null = null;
  let queue: RawQueue | null = null;
  let next = 0;
  const reader = new RawInPlaceReader((id, payload, owned) => {
    if (id >>> KIND_SHIFT === 2) {
      if (queue !== null) {
        // Read later, by the consumer: the item has bytes of its own (copyReads).
        if (payload.length === 0) queue.end();
        else queue.push(owned ? payload : Buffer.from(payload));
      } else if (payload.length === 0) {
        streamDone!(streamCount);
      } else checkItem(payload, streamCount++);
      return;
    }
    const r = pending.get(id)!;
    pending.delete(id);
    r(owned ? payload : Buffer.from(payload)); // a view of the reused buffer gets its own bytes
  }, iterated);
  const socket = new net.Socket({
    onread: { buffer: () => reader.buffer(), callback: (n: number) => void reader.read(n) },
  } as net.SocketConstructorOpts);
  socket.connect(path);
  await new Promise((r) => socket.once('connect', r));
  const conn = new RawConn(socket, null);
  const send = (kind: number, payload: Buffer): Promise<Buffer> => {
    const id = ((kind << KIND_SHIFT) | (next++ & 0xfffffff)) >>> 0;
    return new Promise((resolve) => {
      pending.set(id, resolve);
      conn.send(id, payload);
    });
  };
  return {
    call: (p) => send(0, p),
    bulk: (p) => send(1, p),
    stream: async (n, mode) => {
      if (iterated) {
        const q = (queue = new RawQueue());
        const b = Buffer.alloc(5);
        b.writeUInt32LE(n);
        b[4] = ITER_MODES.indexOf(mode);
        conn.send((2 << KIND_SHIFT) >>> 0, b);
        let count = 0;
        if (mode === 'paged') {
          for await (const batch of q.batches()) for (const it of batch) checkItem(it, count++);
        } else {
          for await (const it of q) checkItem(it, count++);
        }
        queue = null;
        return count;
      }
      return new Promise((resolve) => {
        streamCount = 0;
        streamDone = resolve;
        const b = Buffer.alloc(4);
        b.writeUInt32LE(n);
        conn.send((2 << KIND_SHIFT) >>> 0, b);
      });
    },
    bytesWritten: () => socket.bytesWritten,
    codec: 'raw',
    close: async () => {
      socket.end();
    },
  };
}

// =====================================================================
// pipit server and client
// =====================================================================

async function pipitServer(path: string, codec: 'ts' | 'wasm', sockets: Set<net.Socket>) {
  const server = await listen(path, {
    codec,
    services: {
      db: {
        query: () => PAYLOAD32,
        bulk: (p: Buffer) => p,
        // The same generators raw-iter's server runs (one producer per W4 cell, both sides).
        rows: streaming((p: Buffer) => syncRows(p.readUInt32LE(0))),
        rowsAsync: streaming((p: Buffer) => asyncRows(p.readUInt32LE(0))),
        rowsPaged: streaming((p: Buffer) => pagedRows(p.readUInt32LE(0))),
      },
    },
  });
  server.on('connection', (peer) => sockets.add(peer.transport as net.Socket));
  return server;
}

async function pipitClient(path: string, codec: 'ts' | 'wasm'): Promise<Client> {
  const peer: Peer = await connect(path, { codec });
  return {
    call: (p) => peer.call('db', 'query', p),
    bulk: (p) => peer.call('db', 'bulk', p),
    stream: async (n, mode) => {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(n);
      let count = 0;
      const stream = peer.stream('db', STREAM_METHODS[mode], b, STREAM_CREDIT === undefined ? {} : { credit: STREAM_CREDIT });
      if (mode === 'paged') {
        for await (const batch of stream.batches()) for (const it of batch) checkItem(it, count++);
      } else {
        for await (const it of stream) checkItem(it, count++);
      }
      return count;
    },
    bytesWritten: () => (peer.transport as net.Socket).bytesWritten,
    codec: peer.codec,
    close: () => peer.close(),
  };
}

// =====================================================================
// Workloads (client side)
// =====================================================================

export interface CellResult {
  rep?: number;
  impl: Impl;
  cell: Cell;
  codec: string;
  p50?: number;
  p99?: number;
  callsPerSec?: number;
  mibPerSec?: number;
  itemsPerSec?: number;
  /** W4: CPU of both processes per stream item (µs). */
  itemCpuUs?: number;
  clientCpuUs?: number;
  serverCpuUs?: number;
  calls?: number;
  clientBytes?: number;
  serverBytes?: number;
  clientRssMiB?: number;
  serverRssMiB?: number;
  /** RssFile at the end of the W2 cell (see fileRssMiB). */
  clientFileMiB?: number;
  serverFileMiB?: number;
  baselineRssMiB?: number;
}

const check = (b: Buffer, n: number): void => {
  if (b.length !== n) throw new Error(`wrong response length ${b.length}, expected ${n}`);
};

async function runFor(ms: number, inflight: number, one: () => Promise<void>): Promise<number> {
  let done = 0;
  let stop = false;
  const end = performance.now() + ms;
  const worker = async (): Promise<void> => {
    while (!stop) {
      await one();
      done++;
      if ((done & 63) === 0 && performance.now() >= end) stop = true;
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return done;
}

function ask(msg: string): Promise<Record<string, number>> {
  return new Promise((resolve) => {
    process.once('message', (m) => resolve(m as Record<string, number>));
    process.send!({ ask: msg });
  });
}

export async function clientMain(p: Params): Promise<CellResult> {
  const baselineRss = process.memoryUsage().rss;
  const c = p.impl === 'raw' || p.impl === 'raw-iter' ? await rawClient(p.path, p.impl === 'raw-iter') : await pipitClient(p.path, tsCodec(p.impl));
  const r: CellResult = { impl: p.impl, cell: p.cell, codec: c.codec };
  const q = p.quick;
  if (p.cell === 'W1') {
    const warm = q ? 300 : 3000;
    const n = q ? 500 : 10000;
    for (let i = 0; i < warm; i++) check(await c.call(PAYLOAD32), 32);
    const lat = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const t = performance.now();
      check(await c.call(PAYLOAD32), 32);
      lat[i] = performance.now() - t;
    }
    lat.sort();
    r.p50 = lat[Math.floor(n * 0.5)]! * 1000;
    r.p99 = lat[Math.floor(n * 0.99)]! * 1000;
  } else if (p.cell === 'W2') {
    await runFor(q ? 200 : 700, 64, async () => check(await c.call(PAYLOAD32), 32));
    const ms = q ? 300 : 2000;
    const s0 = await ask('start');
    const b0 = c.bytesWritten();
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    const calls = await runFor(ms, 64, async () => check(await c.call(PAYLOAD32), 32));
    const elapsed = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const b1 = c.bytesWritten();
    const s1 = await ask('stop');
    r.calls = calls;
    r.callsPerSec = calls / elapsed;
    r.clientCpuUs = (cpu.user + cpu.system) / calls;
    r.serverCpuUs = (s1.cpu! - s0.cpu!) / calls;
    r.clientBytes = (b1 - b0) / calls;
    r.serverBytes = (s1.bytes! - s0.bytes!) / calls;
    r.clientRssMiB = peakRssMiB();
    r.serverRssMiB = s1.maxRss!;
    r.clientFileMiB = fileRssMiB();
    r.serverFileMiB = s1.fileRss!;
    r.baselineRssMiB = baselineRss / 1024 / 1024;
  } else if (p.cell === 'W3') {
    const one = async (): Promise<void> => {
      const b = await c.bulk(BULK);
      check(b, BULK.length);
      if (b[12345] !== BULK[12345] || b[65535] !== BULK[65535]) throw new Error('bulk content differs');
    };
    await runFor(q ? 200 : 500, 8, one);
    const t0 = performance.now();
    const calls = await runFor(q ? 300 : 2000, 8, one);
    r.mibPerSec = (calls * BULK.length) / 1024 / 1024 / ((performance.now() - t0) / 1000);
  } else {
    const n = q ? 20000 : 100000;
    const mode = STREAM_MODES[p.cell]!;
    // Steady state, as in a long-running daemon: the first streams still run partly
    // unoptimized code and grow the young generation (a first measured stream ran at a third
    // of the rate of a fifth, raw and pipit alike), so they warm up and are not counted.
    for (let k = 0; k < (q ? 1 : STREAM_WARMUPS); k++) if ((await c.stream(n, mode)) !== n) throw new Error('stream lost items');
    const rates: number[] = [];
    const cpus: number[] = [];
    for (let k = 0; k < (q ? 1 : STREAM_PASSES); k++) {
      const s0 = await ask('start');
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      const got = await c.stream(n, mode);
      const elapsed = (performance.now() - t0) / 1000;
      const cpu = process.cpuUsage(cpu0);
      const s1 = await ask('stop');
      if (got !== n) throw new Error(`stream returned ${got} of ${n} items`);
      rates.push(n / elapsed);
      cpus.push((cpu.user + cpu.system + s1.cpu! - s0.cpu!) / n);
    }
    r.itemsPerSec = median(rates);
    r.itemCpuUs = median(cpus);
  }
  await c.close();
  return r;
}

export async function serverMain(p: Params): Promise<void> {
  const sockets = new Set<net.Socket>();
  const close =
    p.impl === 'raw' || p.impl === 'raw-iter'
      ? await rawServer(p.path, (s) => sockets.add(s)).then((srv) => () => srv.close())
      : await pipitServer(p.path, tsCodec(p.impl), sockets).then((srv) => () => void srv.close({ timeout: 100 }));
  const stats = (): Record<string, number> => {
    const cpu = process.cpuUsage();
    let bytes = 0;
    for (const s of sockets) bytes += s.bytesWritten;
    return { cpu: cpu.user + cpu.system, bytes, maxRss: peakRssMiB(), fileRss: fileRssMiB() };
  };
  process.on('message', (m: { ask?: string }) => {
    if (m.ask === 'exit') {
      close();
      process.exit(0);
    }
    process.send!(stats());
  });
  process.send!({ ready: 1 });
}

// =====================================================================
// Orchestrator
// =====================================================================

/** One process of a cell, as the orchestrator talks to it: Node over IPC, Go in JSON lines. */
interface Role {
  proc: ChildProcess;
  send(message: object): void;
  on(listener: (message: Record<string, unknown>) => void): void;
  once(listener: (message: Record<string, unknown>) => void): void;
}

/** Where the Go module is, seen from dist/bench/ in a checkout. */
const GO_MODULE = fileURLToPath(new URL('../../go/', import.meta.url));

/**
 * Why the Go cells cannot run here, or undefined if they can: they need this repository's
 * go/ directory (a checkout, not the npm package) and a `go` command.
 */
export function goUnavailable(): string | undefined {
  if (!existsSync(join(GO_MODULE, 'cmd', 'pipit-bench'))) return `no ${join(GO_MODULE, 'cmd', 'pipit-bench')} (the Go cells need a checkout of the repository)`;
  const r = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) return 'go is not installed';
  return undefined;
}

/** Build go/cmd/pipit-bench into dir; returns the binary's path. */
function buildGoBench(dir: string): string {
  const bin = join(dir, 'pipit-bench');
  const r = spawnSync('go', ['build', '-o', bin, './cmd/pipit-bench'], { cwd: GO_MODULE, stdio: ['ignore', 'inherit', 'inherit'] });
  if (r.error !== undefined || r.status !== 0) throw new Error(`go build ./cmd/pipit-bench failed (${r.error?.message ?? `exit ${r.status ?? r.signal}`}); ${goUnavailable() ?? ''}`);
  return bin;
}

function spawnRole(role: 'client' | 'server', p: Params, goBin: string | undefined): Role {
  if ((role === 'client' ? goClient : goServer)(p.impl)) {
    const proc = spawn(goBin!, [role, JSON.stringify(p)], { stdio: ['pipe', 'pipe', 'inherit'] });
    const events = new EventEmitter();
    createInterface({ input: proc.stdout! }).on('line', (line) => events.emit('message', JSON.parse(line)));
    return {
      proc,
      send: (m) => proc.stdin!.write(`${JSON.stringify(m)}\n`),
      on: (l) => events.on('message', l),
      once: (l) => events.once('message', l),
    };
  }
  const prof = process.env.PIPIT_BENCH_PROF;
  const execArgv = prof ? [`--cpu-prof`, `--cpu-prof-dir=${prof}`] : [];
  const proc = fork(WORKER, [role, JSON.stringify(p)], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return {
    proc,
    send: (m) => proc.send(m),
    on: (l) => proc.on('message', l),
    once: (l) => proc.once('message', l),
  };
}

async function runCell(p: Params, goBin: string | undefined): Promise<CellResult> {
  const server = spawnRole('server', p, goBin);
  await new Promise<void>((resolve, reject) => {
    server.once(() => resolve());
    server.proc.once('exit', (code) => reject(new Error(`server exited ${code} in ${p.cell}/${p.impl}`)));
  });
  const client = spawnRole('client', p, goBin);
  const result = await new Promise<CellResult>((resolve, reject) => {
    client.on((m) => {
      if (m.ask) {
        server.once((s) => client.send(s));
        server.send({ ask: m.ask });
      } else if (m.result) resolve(m.result as CellResult);
    });
    client.proc.once('exit', (code) => {
      if (code !== 0) reject(new Error(`client exited ${code} in ${p.cell}/${p.impl}`));
    });
  });
  server.send({ ask: 'exit' });
  await Promise.all([once(server.proc), once(client.proc)]);
  return result;
}

const once = (c: ChildProcess): Promise<void> =>
  c.exitCode !== null ? Promise.resolve() : new Promise((r) => c.once('exit', () => r()));

/** The median of xs (the mean of the two middle values for an even count). */
export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface SocketBenchOptions {
  /** Every workload briefly: proves the bench runs, too short to quote. Defaults to false. */
  quick?: boolean;
  /** Repetitions of every cell. Defaults to 1 with `quick`, else 5. */
  reps?: number;
  /** Implementations to run. Defaults to raw, ts, wasm (IMPLS); GO_IMPLS are the cross-language cells. */
  impls?: readonly Impl[];
  /** Workload cells to run (W5 to W7 come from W2). Defaults to W1 to W4. */
  cells?: readonly Cell[];
  /** How the report names the command that produced it. Defaults to `npm run bench`. */
  command?: string;
  /** Called after every cell, with its result and the position in the run. */
  onCell?: (result: CellResult, done: number, total: number) => void;
  /** Called before every cell starts. */
  onStart?: (cell: Cell, impl: Impl, rep: number, done: number, total: number) => void;
}

/** One row of the summary table: the median per implementation and the comparison with raw. */
export interface ReportRow {
  workload: string;
  goal: string;
  better: 'lower' | 'higher';
  /** Median over repetitions, per implementation that ran. */
  values: Partial<Record<Impl, number>>;
  /** Per pipit implementation: `ratio` to raw (paired per repetition), `difference` (W7, MiB) or the `value` itself (W6). */
  vsRaw: Partial<Record<Impl, number>>;
  /** `difference` rows (W7): the largest difference of any repetition, since the goal holds for every run. */
  worst?: Partial<Record<Impl, number>>;
  compare: 'ratio' | 'difference' | 'value';
}

export interface SocketBenchReport {
  results: CellResult[];
  rows: ReportRow[];
  /** Which codec each implementation's client decoded with. */
  codecs: Partial<Record<Impl, string>>;
  machine: { date: string; node: string; platform: string; cpus: number; cpu: string; memGiB: number };
  reps: number;
  quick: boolean;
  seconds: number;
  /** The report as a Markdown table with its heading and notes (what `npm run bench` prints). */
  markdown: string;
}

/** Parse the bench's own arguments: --quick, --reps N, --only raw,ts,wasm,ts-go,go-ts,go-go, --cells W1,W4. */
export function parseBenchArgs(argv: readonly string[]): SocketBenchOptions {
  const value = (flag: string): string | undefined => {
    const k = argv.indexOf(flag);
    return k >= 0 ? argv[k + 1] : undefined;
  };
  const opts: SocketBenchOptions = { quick: argv.includes('--quick') };
  const reps = value('--reps');
  if (reps !== undefined) opts.reps = Number(reps);
  const only = value('--only');
  if (only !== undefined) opts.impls = only.split(',') as Impl[];
  const cells = value('--cells');
  if (cells !== undefined) opts.cells = cells.split(',') as Cell[];
  return opts;
}

/** raw-iter differs from raw only in streams: it runs the W4 cells alone. */
const runs = (impl: Impl, cell: Cell): boolean => impl !== 'raw-iter' || cell.startsWith('W4');

/** Run every cell of the bench in fresh processes and summarize. */
export async function runSocketBench(options: SocketBenchOptions = {}): Promise<SocketBenchReport> {
  const quick = options.quick === true;
  const reps = options.reps ?? (quick ? 1 : 5);
  const impls = [...(options.impls ?? IMPLS)];
  const cells = [...(options.cells ?? CELLS)];
  const known = [...IMPLS, ...EXTRA_IMPLS, ...GO_IMPLS];
  for (const i of impls) if (!known.includes(i)) throw new Error(`unknown implementation ${JSON.stringify(i)}: expected some of ${known.join(',')}`);
  for (const c of cells) if (!CELLS.includes(c)) throw new Error(`unknown cell ${JSON.stringify(c)}: expected some of ${CELLS.join(',')}`);
  if (!Number.isInteger(reps) || reps < 1) throw new Error(`reps must be a positive integer, got ${reps}`);
  const dir = mkdtempSync(join(tmpdir(), 'pipit-bench-'));
  const results: CellResult[] = [];
  let goBin: string | undefined;
  const total = reps * cells.reduce((n, c) => n + impls.filter((i) => runs(i, c)).length, 0);
  const t0 = Date.now();
  try {
    if (impls.some((i) => GO_IMPLS.includes(i))) {
      const why = goUnavailable();
      if (why !== undefined) throw new Error(`the cross-language cells (${GO_IMPLS.join(', ')}) cannot run: ${why}`);
      goBin = buildGoBench(dir);
    }
    for (let rep = 0; rep < reps; rep++) {
      for (const cell of cells) {
        // Rotate the order each repetition so no implementation always runs first.
        const order = impls.map((_, i) => impls[(i + rep) % impls.length]!);
        for (const impl of order) {
          if (!runs(impl, cell)) continue;
          options.onStart?.(cell, impl, rep, results.length, total);
          const path = join(dir, `${cell}-${impl}-${rep}.sock`);
          const r = await runCell({ quick, cell, impl, path }, goBin);
          r.rep = rep;
          results.push(r);
          options.onCell?.(r, results.length, total);
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return report(results, impls, reps, quick, (Date.now() - t0) / 1000, options.command ?? 'npm run bench');
}

/** One line per cell, as the progress output of a run shows it. */
export function describeCell(r: CellResult, reps: number): string {
  return `rep ${(r.rep ?? 0) + 1}/${reps} ${r.cell} ${r.impl.padEnd(4)} ${summary(r)}`;
}

export function summary(r: CellResult): string {
  if (r.cell === 'W1') return `p50 ${r.p50!.toFixed(1)}µs p99 ${r.p99!.toFixed(1)}µs`;
  if (r.cell === 'W2') return `${Math.round(r.callsPerSec!)} calls/s cpu ${(r.clientCpuUs! + r.serverCpuUs!).toFixed(2)}µs/call ${(r.clientBytes! + r.serverBytes!).toFixed(1)} B/call`;
  if (r.cell === 'W3') return `${r.mibPerSec!.toFixed(0)} MiB/s`;
  return `${Math.round(r.itemsPerSec!)} items/s`;
}

function report(results: CellResult[], impls: Impl[], reps: number, quick: boolean, secs: number, command: string): SocketBenchReport {
  const pick = (impl: Impl, cell: Cell, f: (r: CellResult) => number): number =>
    median(results.filter((r) => r.impl === impl && r.cell === cell).map(f));
  const specs: Array<[string, (r: CellResult) => number, Cell, 'lower' | 'higher', string, (v: number) => string]> = [
    ['W1 latency p50 (µs)', (r) => r.p50!, 'W1', 'lower', '<= 1.1x', (v) => v.toFixed(1)],
    ['W1 latency p99 (µs)', (r) => r.p99!, 'W1', 'lower', '<= 1.3x', (v) => v.toFixed(1)],
    ['W2 throughput (calls/s)', (r) => r.callsPerSec!, 'W2', 'higher', '>= 0.5x', (v) => Math.round(v).toLocaleString('en-US')],
    ['W3 bulk 64 KiB (MiB/s)', (r) => r.mibPerSec!, 'W3', 'higher', '>= 0.8x', (v) => v.toFixed(0)],
    ['W4 stream, sync producer (items/s)', (r) => r.itemsPerSec!, 'W4', 'higher', '>= 0.9x', (v) => Math.round(v).toLocaleString('en-US')],
    ['W4 CPU both processes (µs/item)', (r) => r.itemCpuUs!, 'W4', 'lower', '<= 1.3x', (v) => v.toFixed(2)],
    ['W4a stream, async producer (items/s)', (r) => r.itemsPerSec!, 'W4a', 'higher', '>= 0.7x', (v) => Math.round(v).toLocaleString('en-US')],
    ['W4a CPU both processes (µs/item)', (r) => r.itemCpuUs!, 'W4a', 'lower', '<= 1.3x', (v) => v.toFixed(2)],
    ['W4b stream, async pages + batches() (items/s)', (r) => r.itemsPerSec!, 'W4b', 'higher', '>= 0.9x', (v) => Math.round(v).toLocaleString('en-US')],
    ['W4b CPU both processes (µs/item)', (r) => r.itemCpuUs!, 'W4b', 'lower', '<= 1.3x', (v) => v.toFixed(2)],
    ['W5 CPU both processes (µs/call)', (r) => r.clientCpuUs! + r.serverCpuUs!, 'W2', 'lower', '<= 2x', (v) => v.toFixed(2)],
    ['W6 wire bytes per call+response', (r) => r.clientBytes! + r.serverBytes!, 'W2', 'lower', '<= 84 B', (v) => v.toFixed(1)],
    ['W7 peak RSS client (MiB)', (r) => r.clientRssMiB!, 'W2', 'lower', '<= raw + 2', (v) => v.toFixed(1)],
    ['W7 peak RSS server (MiB)', (r) => r.serverRssMiB!, 'W2', 'lower', '<= raw + 2', (v) => v.toFixed(1)],
    ['W7 peak less file-backed pages, client (MiB)', (r) => r.clientRssMiB! - r.clientFileMiB!, 'W2', 'lower', '<= raw + 2', (v) => v.toFixed(1)],
    ['W7 peak less file-backed pages, server (MiB)', (r) => r.serverRssMiB! - r.serverFileMiB!, 'W2', 'lower', '<= raw + 2', (v) => v.toFixed(1)],
  ];
  const codecs: Partial<Record<Impl, string>> = {};
  for (const i of impls) codecs[i] = results.find((r) => r.impl === i)?.codec ?? i;
  const pipits = impls.filter((i) => i !== 'raw');
  const head = ['workload', 'goal', ...impls.map((i) => (i === 'raw' ? 'raw' : `${LABELS[i] ?? `pipit ${i}`} (${codecs[i]})`)), ...pipits.map((i) => `${i}/raw`)];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  const rows: ReportRow[] = [];
  for (const [name, f, cell, better, goal, fmt] of specs) {
    if (!results.some((r) => r.cell === cell)) continue;
    const compare: ReportRow['compare'] = name.startsWith('W7') ? 'difference' : name.startsWith('W6') ? 'value' : 'ratio';
    // Ratios pair each pipit cell with the raw cell of the same repetition (they ran back to
    // back), then take the median over repetitions: load that comes and goes hits both sides.
    const pairs = (impl: Impl, g: (v: number, base: number) => number): number[] =>
      results
        .filter((r) => r.impl === impl && r.cell === cell)
        .map((r) => {
          const base = results.find((b) => b.impl === 'raw' && b.cell === cell && b.rep === r.rep);
          return base === undefined ? NaN : g(f(r), f(base));
        });
    const paired = (impl: Impl, g: (v: number, base: number) => number): number => median(pairs(impl, g));
    const row: ReportRow = { workload: name, goal, better, values: {}, vsRaw: {}, compare };
    for (const i of impls) row.values[i] = pick(i, cell, f);
    for (const i of pipits) {
      row.vsRaw[i] = compare === 'difference' ? paired(i, (v, b) => v - b) : compare === 'value' ? pick(i, cell, f) : paired(i, (v, b) => v / b);
      if (compare === 'difference') (row.worst ??= {})[i] = Math.max(...pairs(i, (v, b) => v - b));
    }
    rows.push(row);
    const shown = pipits.map((i) => {
      const v = row.vsRaw[i]!;
      if (Number.isNaN(v)) return '—'; // the implementation does not run this cell
      if (compare === 'difference') {
        const w = row.worst![i]!;
        return `${v >= 0 ? '+' : ''}${v.toFixed(1)} MiB (worst ${w >= 0 ? '+' : ''}${w.toFixed(1)})`;
      }
      if (compare === 'value') return `${v.toFixed(1)} B`;
      return `${v.toFixed(2)}x`;
    });
    const value = (v: number): string => (Number.isNaN(v) ? '—' : fmt(v));
    lines.push(`| ${name} | ${goal} | ${impls.map((i) => value(row.values[i]!)).join(' | ')} | ${shown.join(' | ')} |`);
  }
  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  const machine = {
    date: new Date().toISOString().slice(0, 10),
    node: process.version,
    platform: `${process.platform}/${process.arch}`,
    cpus: cpus().length,
    cpu,
    memGiB: Math.round(totalmem() / 2 ** 30),
  };
  const markdown = [
    `## pipit end-to-end over a Unix socket${quick ? ' (--quick: too short to quote)' : ''}`,
    '',
    `Command: \`${command}\`${quick && !command.includes('--quick') ? ' -- --quick' : ''} · ${machine.date} · Node ${machine.node} · ${machine.platform} · ${machine.cpus} × ${cpu} · ${machine.memGiB} GiB · ${reps} repetition(s), fresh processes per cell, medians · ${secs.toFixed(0)} s`,
    '',
    ...lines,
    '',
    ...(impls.some((i) => GO_IMPLS.includes(i))
      ? [
          'Cross-language cells, client→server: TS→Go is the TS client (ts codec) against the Go server, Go→TS the Go client against the TS server (ts codec), Go→Go both Go (go/cmd/pipit-bench, built with `go build`); the codec in brackets is the client\'s. Their ratios are to the same Node raw baseline. A Go process counts its bytes written (W6) from /proc/self/io.',
          '',
        ]
      : []),
    ...(impls.includes('raw-iter')
      ? [
          '"raw, iterated" (raw-iter) is the raw socket with the shape of pipit\'s stream API and nothing else: the same bytes, produced by the W4 cell\'s generator (sync, async, or async pages) and paced as pipit\'s producer is, read with `for await` (W4b: in batches), the items of each read copied out of the reused read buffer in one copy, as pipit copies them. It runs the stream cells only. What separates it from raw is the cost of the iteration protocol itself; what separates pipit from it is the cost of pipit.',
          '',
        ]
      : []),
    'Values are medians over repetitions. Ratios (and W7 differences) are taken per repetition between cells that ran back to back, then the median of those is shown (W7 also the worst repetition: its goal holds for every run); for W1, W4 CPU and W5 lower is better. Each W4 cell is the median of 5 streams of 100,000 items, after 4 warm-up streams on the same connection (steady state, as in a long-running daemon). W7 is VmHWM from /proc/self/status of each fresh process; its "less file-backed pages" rows subtract RssFile at the end of the cell: pages of the node executable (and other mapped files) that have run, clean and shared with every process mapping them, among them the ~1.1 MiB of V8\'s Wasm compiler that a first Wasm module pages in. W6 counts both directions; raw is 4-byte length + 4-byte id + 32-byte payload each way. Both clients read in place (net.Socket onread: raw into one reused 256 KiB buffer, a frame too large for it into its own), both servers use \'data\' events; raw coalesces writes per event-loop turn, and its stream producer writes 64 KiB at a time, waiting on writableNeedDrain, as pipit\'s producer writes 64 KiB at a time.',
    '',
  ].join('\n');
  return { results, rows, codecs, machine, reps, quick, seconds: secs, markdown };
}
