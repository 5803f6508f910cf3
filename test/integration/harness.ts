/**
 * Shared pieces of the integration tests: a fresh temp directory per test, child processes
 * running fixtures/*.mjs with a message inbox (wait for what a child reports, never sleep),
 * and cleanup of whatever a test left behind.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach } from 'vitest';

export const FIXTURES = join(import.meta.dirname, 'fixtures');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Msg = Record<string, any>;

const dirs: string[] = [];
/** Children still running, and every child started by the current test. */
const children = new Set<Child>();
const started: Child[] = [];

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

/** A child process with an inbox of the messages it sent over IPC. */
export class Child {
  readonly proc: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  private readonly inbox: Msg[] = [];
  private readonly waiters: Array<{ match: (m: Msg) => boolean; resolve: (m: Msg) => void; reject: (e: Error) => void; what: string }> = [];
  private exitInfo: ExitInfo | null = null;

  constructor(proc: ChildProcess) {
    this.proc = proc;
    children.add(this);
    started.push(this);
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
          w.reject(new Error(`child exited (code ${code}, signal ${signal}) while the test waited for ${w.what}`));
        }
        resolve({ code, signal });
      });
    });
  }

  /** Fork fixtures/<script> with an IPC channel. */
  static fork(script: string, args: string[] = []): Child {
    return new Child(
      fork(join(FIXTURES, script), args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] }),
    );
  }

  /** Spawn fixtures/<script> with piped stdin/stdout (no IPC). */
  static spawnPiped(script: string, args: string[] = []): Child {
    return new Child(spawn(process.execPath, [join(FIXTURES, script), ...args], { stdio: ['pipe', 'pipe', 'inherit'] }));
  }

  /** How the child ended, or null while it runs. */
  get exitStatus(): ExitInfo | null {
    return this.exitInfo;
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
    if (this.exitInfo !== null) return Promise.reject(new Error(`child already exited while the test waited for ${what}`));
    return new Promise((resolve, reject) => this.waiters.push({ match, resolve, reject, what }));
  }

  /** `n` messages with `ev`. */
  async many(ev: string, n: number, fields: Msg = {}): Promise<Msg[]> {
    const out: Msg[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(ev, fields));
    return out;
  }

  /** Send a command and wait for the matching reply. */
  async ask(cmd: Msg, ev: string, fields: Msg = {}): Promise<Msg> {
    const reply = this.next(ev, fields);
    this.send(cmd);
    return reply;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.exitInfo === null) this.proc.kill(signal);
  }
}

/** A fixture peer process serving on `path`; resolves once it listens. */
export async function serverProcess(path: string, mode?: number): Promise<Child> {
  const child = Child.fork('peer.mjs', ['listen', path, ...(mode === undefined ? [] : [mode.toString(8)])]);
  await child.next('listening');
  return child;
}

/** A fixture peer process connected to `path`; resolves once connected. */
export async function clientProcess(path: string): Promise<Child> {
  const child = Child.fork('peer.mjs', ['connect', path]);
  await child.next('connected');
  return child;
}

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

export { within } from '../helpers/within.js';

/** How the child ended, once it has. */
export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

afterEach(async () => {
  // A child that exited on its own with a failure code crashed (an uncaught exception or an
  // unhandled rejection in the fixture): that fails the test, even if the test did not wait.
  const crashed = started
    .splice(0)
    .map((c) => ({ pid: c.pid, info: c.exitStatus }))
    .filter(({ info }) => info !== null && info.signal === null && info.code !== 0);
  for (const c of [...children]) {
    c.kill('SIGKILL');
    await c.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  if (crashed.length > 0) {
    throw new Error(`child process(es) failed: ${crashed.map(({ pid, info }) => `pid ${pid} exited with code ${info!.code}`).join(', ')}`);
  }
});
