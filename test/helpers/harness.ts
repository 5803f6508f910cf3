/**
 * The process harness of the integration and reliability suites: fresh temp directories and
 * socket paths, child processes running test/fixtures/*.mjs with an inbox of the messages
 * they send over IPC (a test waits for what a child reports, never sleeps), raw Unix sockets
 * that speak hand-encoded frames, the compiled scripts run to completion, and cleanup of
 * whatever a test left behind. A fixture that crashes (exits non-zero by itself) fails the
 * test that started it, even if the test did not wait for it.
 *
 * The fixtures import dist/bindings/index.js: `npm test` builds it first.
 */
import { execFile, fork, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach } from 'vitest';
import { tsCodec } from '../../bindings/codec-ts.js';
import type { Decoder } from '../../bindings/codec.js';
import { MAX_FRAME_BYTES_LIMIT } from '../../bindings/constants.js';
import { encodeFrames, rowToFrame, type VFrame } from './frames.js';

export const ROOT = join(import.meta.dirname, '..', '..');
export const FIXTURES = join(ROOT, 'test', 'fixtures');
export const DIST = join(ROOT, 'dist');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Msg = Record<string, any>;

/** How a child ended. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const dirs: string[] = [];
/** Children still running, and every child started by the current test. */
const children = new Set<Child>();
const started: Child[] = [];
const sockets = new Set<net.Socket>();
const servers = new Set<net.Server>();

// ---- temp dirs -------------------------------------------------------------------

/** A fresh, short temp directory (Unix socket paths are limited to 107 bytes). */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'pp-'));
  dirs.push(dir);
  return dir;
}

/** A socket path in a fresh temp directory. */
export function socketPath(name = 's.sock'): string {
  return join(tempDir(), name);
}

// ---- child processes ------------------------------------------------------------------

/** A child process with an inbox of the messages it sent over IPC (if it has the channel). */
export class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  private readonly inbox: Msg[] = [];
  private readonly waiters: Array<{ match: (m: Msg) => boolean; resolve: (m: Msg) => void; reject: (e: Error) => void; what: string }> = [];
  private exitInfo: ExitInfo | null = null;
  /** The end of what it wrote to stderr, for the message when it exits unexpectedly. */
  private stderr = '';

  constructor(
    proc: ChildProcess,
    readonly name: string,
  ) {
    this.proc = proc;
    children.add(this);
    started.push(this);
    proc.stderr?.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
      process.stderr.write(d);
    });
    proc.on('message', (m: Msg) => {
      const k = this.waiters.findIndex((w) => w.match(m));
      if (k >= 0) this.waiters.splice(k, 1)[0]!.resolve(m);
      else this.inbox.push(m);
    });
    this.exited = new Promise((resolve) => {
      proc.on('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        children.delete(this);
        for (const w of this.waiters.splice(0)) {
          w.reject(new Error(`${name} exited (code ${code}, signal ${signal}) while the test waited for ${w.what}\n${this.stderr.slice(-2000)}`));
        }
        resolve({ code, signal });
      });
    });
  }

  /** Fork fixtures/<script> with an IPC channel (`execArgv`: node flags such as --expose-gc). */
  static fork(script: string, args: string[] = [], execArgv: string[] = []): Child {
    return new Child(fork(join(FIXTURES, script), args, { stdio: ['ignore', 'inherit', 'pipe', 'ipc'], execArgv }), script);
  }

  /** Spawn fixtures/<script> with piped stdin/stdout (no IPC). */
  static spawnPiped(script: string, args: string[] = []): Child {
    return new Child(spawn(process.execPath, [join(FIXTURES, script), ...args], { stdio: ['pipe', 'pipe', 'pipe'] }), script);
  }

  /** How the child ended, or null while it runs. */
  get exitStatus(): ExitInfo | null {
    return this.exitInfo;
  }

  get alive(): boolean {
    return this.exitInfo === null;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  send(msg: Msg): void {
    this.proc.send(msg);
  }

  /** The next (or an already received) message with `ev` matching and every field in `fields` equal. */
  next(ev: string, fields: Msg = {}): Promise<Msg> {
    const match = (m: Msg): boolean => m.ev === ev && Object.entries(fields).every(([k, v]) => m[k] === v);
    const k = this.inbox.findIndex(match);
    if (k >= 0) return Promise.resolve(this.inbox.splice(k, 1)[0]!);
    const what = `${ev} ${JSON.stringify(fields)}`;
    if (this.exitInfo !== null) return Promise.reject(new Error(`${this.name} already exited while the test waited for ${what}`));
    return new Promise((resolve, reject) => this.waiters.push({ match, resolve, reject, what }));
  }

  /** `n` messages with `ev`. */
  async many(ev: string, n: number, fields: Msg = {}): Promise<Msg[]> {
    const out: Msg[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(ev, fields));
    return out;
  }

  /** Send a command and wait for the matching reply. */
  ask(cmd: Msg, ev: string, fields: Msg = {}): Promise<Msg> {
    const reply = this.next(ev, fields);
    this.send(cmd);
    return reply;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitInfo === null) this.proc.kill(signal);
  }
}

/** Options for fixtures/peer.mjs: what it passes to listen()/connect(). */
export type PeerOptions = Record<string, unknown>;

/** A fixture peer process (fixtures/peer.mjs) serving on `path`; resolves once it listens. */
export async function serverProcess(path: string, options: PeerOptions = {}, execArgv: string[] = []): Promise<Child> {
  const child = Child.fork('peer.mjs', ['listen', path, JSON.stringify(options)], execArgv);
  await child.next('listening');
  return child;
}

/** A fixture peer process (fixtures/peer.mjs) connected to `path`; resolves once connected. */
export async function clientProcess(path: string, options: PeerOptions = {}, execArgv: string[] = []): Promise<Child> {
  const child = Child.fork('peer.mjs', ['connect', path, JSON.stringify(options)], execArgv);
  await child.next('connected');
  return child;
}

// ---- the compiled scripts -----------------------------------------------------------------

/** Fail with a clear message when `npm run build` has not produced `file` (npm test builds first). */
export function built(file: string): string {
  const path = join(DIST, file);
  if (!existsSync(path)) throw new Error(`${path} is missing: run npm run build (npm test does)`);
  return path;
}

export interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run `node [execArgv] <script> [args]` to completion (killed after `timeoutMs`). */
export function runNode(script: string, args: string[], opts: { execArgv?: string[]; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<RunResult> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...(opts.execArgv ?? []), script, ...args],
      { timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...opts.env } },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null;
        resolve({ code, stdout, stderr, ms: performance.now() - t0 });
      },
    );
  });
}

// ---- raw sockets ------------------------------------------------------------------

/** A raw Unix socket playing a (mis)behaving peer: writes frames or bytes, collects frames. */
export class RawPeer {
  readonly frames: VFrame[] = [];
  /** Bytes received in total. */
  received = 0;
  readonly closed: Promise<void>;
  /** The other side ended its half (FIN). */
  readonly ended: Promise<void>;
  private readonly decoder: Decoder = tsCodec.createDecoder(MAX_FRAME_BYTES_LIMIT);
  private waiters: Array<() => void> = [];
  /** Decode what arrives (false: only count bytes). */
  decode = true;

  constructor(readonly socket: net.Socket) {
    sockets.add(socket);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', () => {});
    this.ended = new Promise((resolve) => socket.once('end', () => resolve()));
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        sockets.delete(socket);
        for (const w of this.waiters.splice(0)) w();
        resolve();
      }),
    );
  }

  static async connect(path: string, options: { allowHalfOpen?: boolean } = {}): Promise<RawPeer> {
    const socket = net.connect({ path, allowHalfOpen: options.allowHalfOpen ?? false });
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    return new RawPeer(socket);
  }

  private onData(chunk: Buffer): void {
    this.received += chunk.length;
    if (this.decode) {
      const batch = this.decoder.push(chunk);
      for (let i = 0; i < batch.count; i++) this.frames.push(rowToFrame(batch, i));
      if (batch.error !== null) throw new Error(`the peer under test wrote an undecodable stream: ${batch.error.message}`);
    }
    for (const w of this.waiters.splice(0)) w();
  }

  write(frames: VFrame[] | Uint8Array): boolean {
    return this.socket.write(frames instanceof Uint8Array ? frames : encodeFrames(frames));
  }

  /** The first frame matching `match`, waiting for it. */
  async frame(match: (f: VFrame) => boolean, what = 'a frame'): Promise<VFrame> {
    for (;;) {
      const f = this.frames.find(match);
      if (f !== undefined) return f;
      if (this.socket.destroyed) throw new Error(`the connection closed before ${what} arrived`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }

  /** Wait until `n` frames matching `match` arrived. */
  async count(match: (f: VFrame) => boolean, n: number, what = 'frames'): Promise<VFrame[]> {
    for (;;) {
      const got = this.frames.filter(match);
      if (got.length >= n) return got;
      if (this.socket.destroyed) throw new Error(`the connection closed with ${got.length} of ${n} ${what}`);
      await new Promise<void>((r) => this.waiters.push(r));
    }
  }
}

/** A raw server on `path`: each connection becomes a RawPeer, handed out in order by `next()`. */
export async function rawServer(path: string): Promise<{ server: net.Server; next: () => Promise<RawPeer> }> {
  const waiting: Array<(p: RawPeer) => void> = [];
  const ready: RawPeer[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const peer = new RawPeer(socket);
    const w = waiting.shift();
    if (w) w(peer);
    else ready.push(peer);
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  servers.add(server);
  return { server, next: () => (ready.length > 0 ? Promise.resolve(ready.shift()!) : new Promise((r) => waiting.push(r))) };
}

export const hex = (s: string | Uint8Array): string => Buffer.from(s).toString('hex');

// ---- outcomes and bounds ------------------------------------------------------------

/** How a promise settled, and when (performance.now()). */
export interface Outcome<T> {
  ok: boolean;
  value?: T;
  error?: { code?: string; message?: string } & Error;
  at: number;
}

export function outcome<T>(p: Promise<T>): Promise<Outcome<T>> {
  return p.then(
    (value) => ({ ok: true, value, at: performance.now() }),
    (error: Error & { code?: string }) => ({ ok: false, error, at: performance.now() }),
  );
}

export { within } from './within.js';

// ---- cleanup ------------------------------------------------------------------------

afterEach(async () => {
  // A child that exited on its own with a failure code crashed (an uncaught exception or an
  // unhandled rejection in the fixture): that fails the test, even if the test did not wait.
  const crashed = started
    .splice(0)
    .map((c) => ({ name: c.name, pid: c.pid, info: c.exitStatus }))
    .filter(({ info }) => info !== null && info.signal === null && info.code !== 0);
  for (const s of sockets) s.destroy();
  sockets.clear();
  for (const s of servers) if (s.listening) s.close();
  servers.clear();
  for (const c of [...children]) {
    c.kill('SIGKILL');
    await c.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  if (crashed.length > 0) {
    throw new Error(`child process(es) failed: ${crashed.map(({ name, pid, info }) => `${name} (pid ${pid}) exited with code ${info!.code}`).join(', ')}`);
  }
});
