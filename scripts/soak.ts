/**
 * Soak: two processes over a Unix socket, each calling the other at once.
 *
 *   npm run soak                                   1,000,000 calls and streams + 1,000,000-item slow stream
 *   node --expose-gc dist/scripts/soak.js --calls 20000 --items 20000 --json
 *
 * Phase 1, calls: both processes keep `--concurrency` operations in flight towards the other
 * until `--calls` operations (split between the two directions) have been issued. An operation
 * is a unary call (payloads from empty to 300 KiB, so some are fragmented), a call to a
 * handler that answers late under a deadline that may expire first, a call cancelled by an
 * AbortSignal at a random moment, a failing call, or a stream (random length, item sizes and
 * window; some consumers break off early, some streams have deadlines). Every answer is
 * checked byte for byte. Afterwards, in both processes:
 *   - every operation settled exactly once: resolves + rejects == issued, counted per code,
 *     and only the codes the mix can produce;
 *   - the call tables are empty (session.outgoingCalls / incomingCalls) and no deadline or
 *     timer is armed (session.nextDeadline(), the peer's timer, process.getActiveResourcesInfo());
 *   - the heap after a forced GC is within 5% of the heap after warm-up (node --expose-gc).
 * Phase 2, slow consumer: this process reads a stream of `--items` items of 1 KiB from the
 * other one slowly; the producer samples its RSS, which may grow by at most 16 MiB (the
 * window is 128 items: 128 KiB), and its socket's write buffer. The producer runs with a
 * young generation of 1 MiB (--max-semi-space-size=1) so that its RSS follows what it holds:
 * with V8's default (up to 16 MiB semi-spaces) the gigabyte of short-lived frame buffers
 * passing through it shows up as tens of MiB of collectable garbage in the RSS, whatever the
 * window. --default-gc runs it with the defaults instead.
 * Then a graceful close; both processes end with no timer and no socket left.
 *
 * Prints calls/s, outcomes by code, heap start/end and RSS growth; --json prints one object.
 * Exit code 0 when every check passed.
 */
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { connect, listen, PipitError, type Peer, type Server } from '../bindings/index.js';
import type { HandlerContext } from '../bindings/routes.js';
import { Prng, freshSeed } from '../test/helpers/prng.js';

interface Config {
  /** Run the other process with V8's default young generation (see the header). */
  defaultGc: boolean;
  calls: number;
  items: number;
  itemBytes: number;
  concurrency: number;
  seed: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
/** Codes the operation mix can produce; anything else is a failure. */
const EXPECTED = new Set(['OK', 'CANCELLED', 'DEADLINE_EXCEEDED', 'APPLICATION_ERROR']);

// ---- deterministic randomness ---------------------------------------------------

/** Numbers in [0, 1) from the tests' seeded generator (test/helpers/prng.ts). */
function rng(seed: number): () => number {
  const prng = new Prng(seed);
  return () => prng.float();
}

/** Payload sizes: mostly small, some up to 64 KiB, a few up to 300 KiB (fragmented: the frame limit is 256 KiB). */
function payloadSize(r: () => number, bigAllowed: boolean): number {
  const p = r();
  if (p < 0.6 || (!bigAllowed && p >= 0.9)) return Math.floor(r() * 100);
  if (p < 0.9) return 100 + Math.floor(r() * 4000);
  if (p < 0.999) return 4 * KiB + Math.floor(r() * 60 * KiB);
  return 64 * KiB + Math.floor(r() * 236 * KiB);
}

/**
 * Payloads over 4 KiB in flight per side. With up to `concurrency` small ones besides, the
 * bytes queued in each direction (requests one way, echoes the other) stay well under the
 * default maxWriteBufferBytes of 4 MiB.
 */
const MAX_BIG_IN_FLIGHT = 4;

/** Payload bytes a receiver can check: length and a pattern seeded by the first byte. */
function makePayload(n: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (seed + i * 7) & 0xff;
  return b;
}

function checkPayload(b: Buffer, n: number, seed: number): boolean {
  if (b.length !== n) return false;
  // Spot checks: first, last and a few in between.
  for (const i of [0, n - 1, n >> 1, n >> 2, (3 * n) >> 2]) {
    if (i >= 0 && i < n && b[i] !== ((seed + i * 7) & 0xff)) return false;
  }
  return true;
}

// ---- timers of our own -----------------------------------------------------------

/**
 * Timers the soak itself sets (late answers, slow rows, delayed aborts), counted so that the
 * leftovers check can wait until every one has fired instead of sleeping: after that, any
 * timer still armed in the process is pipit's.
 */
let ownTimers = 0;
const idleWaiters: Array<() => void> = [];

function soakTimer(ms: number, f: () => void): void {
  ownTimers++;
  setTimeout(() => {
    ownTimers--;
    f();
    if (ownTimers === 0) for (const w of idleWaiters.splice(0)) w();
  }, ms);
}

/** Resolves once none of our own timers is pending. */
function timersIdle(): Promise<void> {
  return ownTimers === 0 ? Promise.resolve() : new Promise((resolve) => idleWaiters.push(resolve));
}

// ---- services (both processes serve the same) -------------------------------------

let sampledProduced = 0;

function services(itemBytes: number): Record<string, Record<string, (p: Buffer, ctx: HandlerContext) => unknown>> {
  const item = Buffer.alloc(itemBytes, 0x69);
  return {
    soak: {
      echo: (p) => p,
      /** Answers after p[0] ms (a deadline may expire first: the late answer is dropped). */
      late: (p) => new Promise((resolve) => soakTimer(p[0] ?? 0, () => resolve(p))),
      fail: (p) => {
        throw new Error(`fail ${p.length}`);
      },
      /** Items "0".."n-1", each padded to a size from the request. */
      *rows(p) {
        const n = p.readUInt16LE(0);
        const pad = p.readUInt16LE(2);
        for (let i = 0; i < n; i++) yield `${i}:${'r'.repeat(pad)}`;
      },
      /** Rows that take time: a deadline may end them midway. */
      async *slowRows(p, ctx) {
        const n = p.readUInt16LE(0);
        for (let i = 0; i < n && !ctx.signal.aborted; i++) {
          await new Promise<void>((r) => soakTimer(1, r));
          yield `${i}:`;
        }
      },
      /** The slow-consumer stream: n items of itemBytes (one buffer, copied into each frame). */
      *bulk(p) {
        const n = p.readUInt32LE(0);
        for (let i = 0; i < n; i++) {
          sampledProduced = i + 1;
          yield item;
        }
      },
    },
  };
}

// ---- the operation driver -----------------------------------------------------------

interface DriveResult {
  issued: number;
  resolves: number;
  rejects: number;
  byCode: Record<string, number>;
  byKind: Record<string, number>;
  /** Operations whose outcome arrived other than exactly once, and wrong answers. */
  notOnce: number;
  wrong: number;
  unexpected: string[];
  /** Why the run was abandoned: no call settled for STALL_SECONDS. */
  stalled: string | null;
  ms: number;
}

const STALL_SECONDS = 15;

/** Keep `concurrency` operations in flight on `peer` until `total` were issued and all settled. */
async function drive(peer: Peer, total: number, concurrency: number, seed: number): Promise<DriveResult> {
  const r = rng(seed);
  const res: DriveResult = { issued: 0, resolves: 0, rejects: 0, byCode: {}, byKind: {}, notOnce: 0, wrong: 0, unexpected: [], stalled: null, ms: 0 };
  const settledCount = new Uint8Array(total);
  const t0 = performance.now();
  const bump = (o: Record<string, number>, k: string): void => {
    o[k] = (o[k] ?? 0) + 1;
  };

  const settle = (idx: number, ok: boolean, code: string, right = true): void => {
    if (settledCount[idx]! > 0) res.notOnce++;
    settledCount[idx] = settledCount[idx]! + 1;
    if (ok) res.resolves++;
    else res.rejects++;
    bump(res.byCode, code);
    if (!right) res.wrong++;
    if (!EXPECTED.has(code) && res.unexpected.length < 10) res.unexpected.push(code);
  };
  const failure = (e: unknown): string => (e instanceof PipitError ? e.code : `not a PipitError: ${String(e)}`);

  let bigInFlight = 0;
  const one = async (idx: number): Promise<void> => {
    const p = r();
    if (p < 0.62) {
      bump(res.byKind, 'echo');
      const n = payloadSize(r, bigInFlight < MAX_BIG_IN_FLIGHT);
      const big = n > 4 * KiB;
      if (big) bigInFlight++;
      const seedByte = idx & 0xff;
      try {
        const v = await peer.call('soak', 'echo', makePayload(n, seedByte));
        settle(idx, true, 'OK', checkPayload(v, n, seedByte));
      } catch (e) {
        settle(idx, false, failure(e));
      } finally {
        if (big) bigInFlight--;
      }
    } else if (p < 0.72) {
      bump(res.byKind, 'late+deadline');
      const delay = Math.floor(r() * 12);
      const timeout = 2 + Math.floor(r() * 14);
      try {
        const v = await peer.call('soak', 'late', Uint8Array.of(delay, idx & 0xff), { timeout });
        settle(idx, true, 'OK', v.length === 2 && v[1] === (idx & 0xff));
      } catch (e) {
        settle(idx, false, failure(e));
      }
    } else if (p < 0.77) {
      bump(res.byKind, 'cancelled');
      const ac = new AbortController();
      const when = r();
      const call = peer.call('soak', r() < 0.5 ? 'late' : 'echo', Uint8Array.of(Math.floor(r() * 5), 1), { signal: ac.signal });
      if (when < 0.3) ac.abort();
      else if (when < 0.6) setImmediate(() => ac.abort());
      else soakTimer(Math.floor(r() * 4), () => ac.abort());
      try {
        await call;
        settle(idx, true, 'OK');
      } catch (e) {
        settle(idx, false, failure(e));
      }
    } else if (p < 0.79) {
      bump(res.byKind, 'fail');
      try {
        await peer.call('soak', 'fail', 'x');
        settle(idx, true, 'OK', false);
      } catch (e) {
        settle(idx, false, failure(e));
      }
    } else if (p < 0.97) {
      bump(res.byKind, 'stream');
      const n = Math.floor(r() * 40);
      const pad = r() < 0.95 ? Math.floor(r() * 64) : Math.floor(r() * 2000);
      const credit = 1 + Math.floor(r() * 16);
      const stopAfter = r() < 0.1 ? Math.floor(r() * n) : Infinity;
      const args = Buffer.alloc(4);
      args.writeUInt16LE(n, 0);
      args.writeUInt16LE(pad, 2);
      let k = 0;
      let right = true;
      try {
        for await (const item of peer.stream('soak', 'rows', args, { credit })) {
          if (item.toString() !== `${k}:${'r'.repeat(pad)}`) right = false;
          if (++k >= stopAfter) break;
        }
        settle(idx, true, 'OK', right && (k === n || stopAfter <= n));
      } catch (e) {
        settle(idx, false, failure(e));
      }
    } else {
      bump(res.byKind, 'stream+deadline');
      const args = Buffer.alloc(2);
      args.writeUInt16LE(1 + Math.floor(r() * 10), 0);
      try {
        for await (const _ of peer.stream('soak', 'slowRows', args, { timeout: 2 + Math.floor(r() * 10), credit: 4 })) {
          // read them all
        }
        settle(idx, true, 'OK');
      } catch (e) {
        settle(idx, false, failure(e));
      }
    }
  };

  const debug = process.env.PIPIT_SOAK_DEBUG !== undefined
    ? setInterval(() => {
        const pr = peer as unknown as { pausedForWrites: boolean; flushScheduled: boolean };
        const t = peer.transport as unknown as { isPaused(): boolean; writableLength: number; readableLength: number };
        console.error(`[${process.argv[2] === '--child' ? 'child' : 'main'}] issued ${res.issued} settled ${res.resolves + res.rejects} out ${peer.session.outgoingCalls} in ${peer.session.incomingCalls} ` +
          `writable ${t.writableLength} readable ${t.readableLength} paused ${t.isPaused()} pausedForWrites ${pr.pausedForWrites} flushScheduled ${pr.flushScheduled} hasOutput ${peer.session.hasOutput()} fragments ${peer.session.fragmentsPending}`);
      }, 1000)
    : null;
  // A run that stops making progress is a failure, reported with the state of the connection.
  let lastSettled = -1;
  let stalledFor = 0;
  const watchdog = setInterval(() => {
    const settledNow = res.resolves + res.rejects;
    stalledFor = settledNow === lastSettled ? stalledFor + 1 : 0;
    lastSettled = settledNow;
    if (stalledFor === STALL_SECONDS) {
      const t = peer.transport as unknown as { isPaused(): boolean; writableLength: number };
      res.stalled = `no call settled for ${STALL_SECONDS} s: ${res.issued} issued, ${settledNow} settled; session out ${peer.session.outgoingCalls} in ${peer.session.incomingCalls}; ` +
        `write buffer ${t.writableLength} B, reading paused ${t.isPaused()}`;
      stop();
    }
  }, 1000);
  let stop: () => void = () => {};
  await new Promise<void>((resolveAll) => {
    stop = resolveAll;
    let inFlight = 0;
    const startMore = (): void => {
      while (inFlight < concurrency && res.issued < total) {
        const idx = res.issued++;
        inFlight++;
        void one(idx).finally(() => {
          inFlight--;
          if (res.issued < total) startMore();
          else if (inFlight === 0) resolveAll();
        });
      }
    };
    if (total === 0) resolveAll();
    else startMore();
  });
  clearInterval(watchdog);
  if (debug !== null) clearInterval(debug);
  if (res.stalled !== null) {
    res.ms = performance.now() - t0;
    return res;
  }
  for (let i = 0; i < total; i++) if (settledCount[i] !== 1) res.notOnce++;
  res.ms = performance.now() - t0;
  return res;
}

// ---- measurements ----------------------------------------------------------------

function gcHeap(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error('run node with --expose-gc');
  for (let i = 0; i < 4; i++) gc();
  return process.memoryUsage().heapUsed;
}

async function settledHeap(): Promise<number> {
  // Let finished work release its objects (timers that just fired, socket callbacks) first.
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  gcHeap();
  await new Promise((r) => setTimeout(r, 20));
  return gcHeap();
}

interface Leftovers {
  outgoing: number;
  incoming: number;
  /** session.nextDeadline(), as text ('Infinity' when none: JSON has no Infinity). */
  nextDeadline: string;
  peerTimer: boolean;
  timers: number;
}

function leftovers(peer: Peer): Leftovers {
  return {
    outgoing: peer.session.outgoingCalls,
    incoming: peer.session.incomingCalls,
    nextDeadline: String(peer.session.nextDeadline()),
    peerTimer: (peer as unknown as { timer: unknown }).timer != null,
    timers: process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length,
  };
}

// ---- child process ----------------------------------------------------------------

type Msg = Record<string, unknown> & { cmd?: string; ev?: string };

async function child(path: string, cfg: Config): Promise<void> {
  const send = (m: Msg): void => {
    process.send!(m);
  };
  const peer = await connect(path, { services: services(cfg.itemBytes) });
  const closed = peer.whenClosed;
  let sampler: NodeJS.Timeout | null = null;
  let rssBase = 0;
  let rssMax = 0;
  let writableMax = 0;
  let buffersBase = 0;
  let buffersMax = 0;
  process.on('message', (m: Msg) => {
    void (async () => {
      switch (m.cmd) {
        case 'drive': {
          const r = await drive(peer, m.total as number, cfg.concurrency, m.seed as number);
          send({ ev: 'driven', phase: m.phase, result: r });
          break;
        }
        case 'heap':
          send({ ev: 'heap', heap: await settledHeap(), rss: process.memoryUsage().rss });
          break;
        case 'leftovers':
          send({ ev: 'leftovers', ...leftovers(peer) });
          break;
        case 'quiet':
          // Our timers have all fired, and everything we sent before has reached the other side.
          await timersIdle();
          await peer.ping();
          send({ ev: 'quiet' });
          break;
        case 'bulk-start':
          await settledHeap();
          rssBase = rssMax = process.memoryUsage().rss;
          buffersBase = buffersMax = process.memoryUsage().arrayBuffers;
          writableMax = 0;
          sampledProduced = 0;
          sampler = setInterval(() => {
            const m = process.memoryUsage();
            writableMax = Math.max(writableMax, peer.transport.writableLength);
            buffersMax = Math.max(buffersMax, m.arrayBuffers);
            if (m.rss > rssMax) {
              rssMax = m.rss;
              if (process.env.PIPIT_SOAK_DEBUG !== undefined) console.error(`[child] rss ${(m.rss / MiB).toFixed(1)} heapTotal ${(m.heapTotal / MiB).toFixed(1)} heapUsed ${(m.heapUsed / MiB).toFixed(1)} external ${(m.external / MiB).toFixed(1)} arrayBuffers ${(m.arrayBuffers / MiB).toFixed(1)} writable ${peer.transport.writableLength}`);
            }
          }, 10);
          send({ ev: 'bulk-ready', rss: rssBase });
          break;
        case 'bulk-end':
          clearInterval(sampler!);
          sampler = null;
          rssMax = Math.max(rssMax, process.memoryUsage().rss);
          send({ ev: 'bulk-rss', base: rssBase, max: rssMax, produced: sampledProduced, writableMax, buffersGrowth: buffersMax - buffersBase });
          break;
      }
    })();
  });
  send({ ev: 'ready' });
  const error = await closed;
  // Closed: nothing of ours may keep running (the IPC channel aside).
  await new Promise((r) => setImmediate(r));
  const resources = process.getActiveResourcesInfo();
  send({ ev: 'closed', error: error === null ? null : error.code, resources, ...leftovers(peer) });
  process.disconnect();
}

// ---- main process -----------------------------------------------------------------

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

function parse(argv: string[]): { cfg: Config; json: boolean } {
  const cfg: Config = { defaultGc: false, calls: 1_000_000, items: 1_000_000, itemBytes: 1024, concurrency: 256, seed: freshSeed() };
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): number => Number(argv[++i]);
    if (a === '--calls') cfg.calls = v();
    else if (a === '--items') cfg.items = v();
    else if (a === '--item-bytes') cfg.itemBytes = v();
    else if (a === '--concurrency') cfg.concurrency = v();
    else if (a === '--seed') cfg.seed = v();
    else if (a === '--json') json = true;
    else if (a === '--default-gc') cfg.defaultGc = true;
    else throw new Error(`unknown option ${a}`);
  }
  return { cfg, json };
}

function merge(a: DriveResult, b: DriveResult): DriveResult {
  const byCode = { ...a.byCode };
  for (const [k, n] of Object.entries(b.byCode)) byCode[k] = (byCode[k] ?? 0) + n;
  const byKind = { ...a.byKind };
  for (const [k, n] of Object.entries(b.byKind)) byKind[k] = (byKind[k] ?? 0) + n;
  return {
    issued: a.issued + b.issued,
    resolves: a.resolves + b.resolves,
    rejects: a.rejects + b.rejects,
    byCode,
    byKind,
    notOnce: a.notOnce + b.notOnce,
    wrong: a.wrong + b.wrong,
    unexpected: [...a.unexpected, ...b.unexpected],
    stalled: a.stalled ?? b.stalled,
    ms: Math.max(a.ms, b.ms),
  };
}

async function main(argv: string[]): Promise<number> {
  const { cfg, json } = parse(argv);
  // The seed fixes the operation mix and its sizes; when each call settles still depends on timing.
  const replay = `npm run soak -- --seed ${cfg.seed} --calls ${cfg.calls} --items ${cfg.items}${cfg.defaultGc ? ' --default-gc' : ''}`;
  gcHeap(); // fails early without --expose-gc
  const say = (s: string): void => {
    if (!json) console.log(s);
  };
  const dir = mkdtempSync(join(tmpdir(), 'soak-'));
  const path = join(dir, 's.sock');
  const checks: Check[] = [];
  const check = (name: string, ok: boolean, detail: string): void => {
    checks.push({ name, ok, detail });
    say(`${ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  };

  let server: Server | null = null;
  const inbox: Msg[] = [];
  const waiters: Array<{ ev: string; resolve: (m: Msg) => void }> = [];
  const proc = fork(fileURLToPath(import.meta.url), ['--child', path, JSON.stringify(cfg)], { execArgv: ['--expose-gc', ...(cfg.defaultGc ? [] : ['--max-semi-space-size=1'])], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const childExit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  proc.on('message', (m: Msg) => {
    const k = waiters.findIndex((w) => w.ev === m.ev);
    if (k >= 0) waiters.splice(k, 1)[0]!.resolve(m);
    else inbox.push(m);
  });
  const next = (ev: string): Promise<Msg> => {
    const k = inbox.findIndex((m) => m.ev === ev);
    if (k >= 0) return Promise.resolve(inbox.splice(k, 1)[0]!);
    return new Promise((resolve, reject) => {
      waiters.push({ ev, resolve });
      void childExit.then((code) => reject(new Error(`the child exited (code ${code}) while waiting for ${ev}`)));
    });
  };
  const ask = (cmd: Msg, ev: string): Promise<Msg> => {
    const reply = next(ev);
    proc.send(cmd);
    return reply;
  };

  try {
    server = await listen(path, { services: services(cfg.itemBytes) });
    const connected = new Promise<Peer>((resolve) => server!.once('connection', resolve));
    const peer = await connected;
    await next('ready');
    say(`soak: ${cfg.calls.toLocaleString('en-US')} calls and streams in both directions, concurrency ${cfg.concurrency} per side, seed ${cfg.seed}`);

    // Warm-up: both directions, so that code is compiled and caches are full before measuring.
    const warm = Math.min(20_000, Math.max(10_000, Math.floor(cfg.calls / 10)));
    const [wMain, wChild] = await Promise.all([drive(peer, warm, cfg.concurrency, cfg.seed ^ 1), ask({ cmd: 'drive', total: warm, seed: cfg.seed ^ 2, phase: 'warm' }, 'driven')]);
    const warmStall = wMain.stalled ?? (wChild.result as DriveResult).stalled;
    if (warmStall !== null) throw new Error(`warm-up stalled: ${warmStall}`);
    const heapStart = { main: await settledHeap(), child: (await ask({ cmd: 'heap' }, 'heap')).heap as number };
    const rssStart = { main: process.memoryUsage().rss };

    // The soak proper.
    const half = Math.ceil(cfg.calls / 2);
    const t0 = performance.now();
    const [mine, theirs] = await Promise.all([
      drive(peer, half, cfg.concurrency, cfg.seed),
      ask({ cmd: 'drive', total: cfg.calls - half, seed: cfg.seed ^ 0x5a5a, phase: 'soak' }, 'driven').then((m) => m.result as DriveResult),
    ]);
    const seconds = (performance.now() - t0) / 1000;
    const all = merge(mine, theirs);
    say(`${all.issued.toLocaleString('en-US')} operations in ${seconds.toFixed(1)} s: ${Math.round(all.issued / seconds).toLocaleString('en-US')} calls/s`);
    for (const [dir2, r] of [['main -> child', mine], ['child -> main', theirs]] as const) {
      say(`  ${dir2}: ${r.issued} issued, ${r.resolves} resolved, ${r.rejects} rejected; ${Object.entries(r.byCode).map(([k, n]) => `${k} ${n}`).join(', ')}`);
    }

    check('no stall', all.stalled === null, all.stalled ?? `every call settled; the longest side took ${(all.ms / 1000).toFixed(1)} s`);
    if (all.stalled !== null) throw new Error(`soak stalled: ${all.stalled}`);
    check('issued', all.issued === cfg.calls, `${all.issued} of ${cfg.calls}`);
    check('settled exactly once', all.resolves + all.rejects === all.issued && all.notOnce === 0, `resolves ${all.resolves} + rejects ${all.rejects} = ${all.resolves + all.rejects}, issued ${all.issued}, not exactly once ${all.notOnce}`);
    const codeSum = Object.values(all.byCode).reduce((a, b) => a + b, 0);
    check('outcomes by code add up', codeSum === all.issued, `${JSON.stringify(all.byCode)} (sum ${codeSum})`);
    check('only expected codes', all.unexpected.length === 0, all.unexpected.length === 0 ? [...EXPECTED].join(', ') : `unexpected: ${all.unexpected.join(', ')}`);
    check('answers correct', all.wrong === 0, `${all.wrong} wrong answers`);
    check('every kind of outcome happened', ['OK', 'CANCELLED', 'DEADLINE_EXCEEDED', 'APPLICATION_ERROR'].every((c) => (all.byCode[c] ?? 0) > 0), JSON.stringify(all.byKind));

    // Tables and timers, once both directions are done: the late handlers of expired calls
    // have finished and the delayed aborts fired (our timers are idle on both sides), and the
    // CANCELs and answers in flight have arrived (a PING each way).
    await Promise.all([timersIdle().then(() => peer.ping()), ask({ cmd: 'quiet' }, 'quiet')]);
    const lm = leftovers(peer);
    const lc = await ask({ cmd: 'leftovers' }, 'leftovers');
    check('call tables empty', lm.outgoing === 0 && lm.incoming === 0 && lc.outgoing === 0 && lc.incoming === 0, `main ${lm.outgoing}/${lm.incoming}, child ${lc.outgoing}/${lc.incoming} (outgoing/incoming)`);
    check('no deadline or timer armed', lm.nextDeadline === 'Infinity' && !lm.peerTimer && lm.timers === 0 && lc.nextDeadline === 'Infinity' && !lc.peerTimer && lc.timers === 0,
      `main: deadline ${lm.nextDeadline}, peer timer ${lm.peerTimer}, timers ${lm.timers}; child: deadline ${lc.nextDeadline}, peer timer ${lc.peerTimer}, timers ${lc.timers}`);

    const heapEnd = { main: await settledHeap(), child: (await ask({ cmd: 'heap' }, 'heap')).heap as number };
    const within5 = (a: number, b: number): boolean => b <= a * 1.05;
    const fmtHeap = (n: number): string => `${(n / MiB).toFixed(2)} MiB`;
    check('heap after GC within 5% of the start', within5(heapStart.main, heapEnd.main) && within5(heapStart.child, heapEnd.child),
      `main ${fmtHeap(heapStart.main)} -> ${fmtHeap(heapEnd.main)} (${(((heapEnd.main / heapStart.main) - 1) * 100).toFixed(1)}%), child ${fmtHeap(heapStart.child)} -> ${fmtHeap(heapEnd.child)} (${(((heapEnd.child / heapStart.child) - 1) * 100).toFixed(1)}%)`);
    const rssEnd = process.memoryUsage().rss;
    say(`  main RSS ${fmtHeap(rssStart.main)} -> ${fmtHeap(rssEnd)}`);

    // Phase 2: a slow consumer of a long stream; the producer is the child.
    await ask({ cmd: 'bulk-start' }, 'bulk-ready');
    const args = Buffer.alloc(4);
    args.writeUInt32LE(cfg.items);
    const tb = performance.now();
    let got = 0;
    let bytes = 0;
    let pauses = 0;
    for await (const item of peer.stream('soak', 'bulk', args)) {
      got++;
      bytes += item.length;
      // Slow: a timer turn every 64 items, far slower than the producer could go.
      if ((got & 63) === 0) {
        pauses++;
        await new Promise((r) => setTimeout(r, 1));
      }
    }
    const bulkSeconds = (performance.now() - tb) / 1000;
    const bulk = await ask({ cmd: 'bulk-end' }, 'bulk-rss');
    const growth = (bulk.max as number) - (bulk.base as number);
    check('slow stream complete', got === cfg.items && bytes === cfg.items * cfg.itemBytes, `${got} items, ${bytes} bytes in ${bulkSeconds.toFixed(1)} s (${pauses} pauses)`);
    // RSS alone can hide buffering: pages the allocator kept from phase 1 are reused without
    // growing it. So the Buffer memory and the socket's write buffer are held to the same bound.
    const buffersGrowth = bulk.buffersGrowth as number;
    const writableMax = bulk.writableMax as number;
    check('producer memory growth under 16 MiB (RSS, Buffers, write buffer)', growth < 16 * MiB && buffersGrowth < 16 * MiB && writableMax < 16 * MiB,
      `RSS +${fmtHeap(growth)} (${fmtHeap(bulk.base as number)} -> ${fmtHeap(bulk.max as number)}, young generation ${cfg.defaultGc ? 'V8 default' : '1 MiB'}), ` +
        `Buffers +${fmtHeap(buffersGrowth)}, peak write buffer ${fmtHeap(writableMax)}; window 128 x ${cfg.itemBytes} B = ${fmtHeap(128 * cfg.itemBytes)}`);

    // Graceful close: both sides end with nothing left.
    const closedChild = next('closed');
    await server.close();
    const cc = await closedChild;
    const code = await childExit;
    await new Promise((r) => setImmediate(r));
    const mainResources = process.getActiveResourcesInfo();
    const lm2 = leftovers(peer);
    check('graceful close', (await peer.whenClosed) === null && cc.error === null && code === 0, `main ${String(await peer.whenClosed)}, child ${String(cc.error)}, child exit ${code}`);
    const childLeft = (cc.resources as string[]).filter((r) => r !== 'PipeWrap');
    check('nothing left running after close', lm2.timers === 0 && !lm2.peerTimer && mainResources.every((r) => r !== 'Timeout' && r !== 'PipeServerWrap') && childLeft.length === 0 && !(cc.peerTimer as boolean),
      `main resources [${mainResources.join(', ')}], child resources [${(cc.resources as string[]).join(', ')}] (the IPC channel is a PipeWrap)`);

    const failed = checks.filter((c) => !c.ok);
    const summary = {
      config: cfg,
      seconds,
      callsPerSecond: all.issued / seconds,
      issued: all.issued,
      resolves: all.resolves,
      rejects: all.rejects,
      byCode: all.byCode,
      byKind: all.byKind,
      directions: { mainToChild: mine, childToMain: theirs },
      heapStart,
      heapEnd,
      rssMain: { start: rssStart.main, end: rssEnd },
      slowStream: { items: got, seconds: bulkSeconds, producerRssBase: bulk.base, producerRssMax: bulk.max, producerRssGrowth: growth, producerBuffersGrowth: buffersGrowth, producerWriteBufferMax: writableMax, defaultGc: cfg.defaultGc },
      checks,
      ok: failed.length === 0,
      replay,
    };
    if (json) console.log(JSON.stringify(summary));
    else say(failed.length === 0 ? '\nall checks passed' : `\n${failed.length} checks FAILED: ${failed.map((c) => c.name).join(', ')} (seed ${cfg.seed}; replay: ${replay})`);
    return failed.length === 0 ? 0 : 1;
  } catch (e) {
    console.error(`soak failed (seed ${cfg.seed}; replay: ${replay})`);
    throw e;
  } finally {
    proc.kill('SIGKILL');
    if (server !== null) await server.close({ timeout: 100 }).catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  child(process.argv[3]!, JSON.parse(process.argv[4]!) as Config).catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(2);
    },
  );
}
