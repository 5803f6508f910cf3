/**
 * Running the built `pipit` command (dist/cli/main.js, built by `npm test`'s pretest) as child
 * processes over real sockets in temp directories. Tests wait for what a process prints or
 * for its exit, never for time to pass.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

export const MAIN = join(import.meta.dirname, '..', '..', 'dist', 'cli', 'main.js');

const dirs: string[] = [];
const running = new Set<Proc>();

/** A fresh short temp directory (socket paths are limited to 107 bytes). */
export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ppc-'));
  dirs.push(dir);
  return dir;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** A running `pipit` process with its output collected. */
export class Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<Exit>;
  private out: Buffer[] = [];
  private err = '';
  private readonly watchers: Array<() => void> = [];

  constructor(args: string[], options: { input?: Buffer | string; stdin?: 'pipe' | 'ignore' } = {}) {
    this.child = spawn(process.execPath, [MAIN, ...args], {
      stdio: [options.input !== undefined || options.stdin === 'pipe' ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    });
    running.add(this);
    this.child.stdout!.on('data', (b: Buffer) => {
      this.out.push(b);
      this.poke();
    });
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (s: string) => {
      this.err += s;
      this.poke();
    });
    if (options.input !== undefined) {
      this.child.stdin!.on('error', () => {});
      this.child.stdin!.end(options.input);
    }
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        running.delete(this);
        this.poke();
        resolve({ code, signal, stdout: Buffer.concat(this.out), stderr: this.err });
      });
    });
  }

  get stdout(): Buffer {
    return Buffer.concat(this.out);
  }

  get stderr(): string {
    return this.err;
  }

  private poke(): void {
    for (const w of this.watchers.splice(0)) w();
  }

  /** Resolves once `test` holds for the output so far; rejects if the process exits first. */
  waitFor(what: string, test: (p: this) => boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (test(this)) resolve();
        else if (this.child.exitCode !== null || this.child.signalCode !== null) {
          reject(new Error(`pipit exited (${this.child.exitCode ?? this.child.signalCode}) before ${what}; stderr: ${this.err}`));
        } else this.watchers.push(check);
      };
      check();
    });
  }

  /** Resolves once stderr matches `re`. */
  stderrMatches(re: RegExp): Promise<void> {
    return this.waitFor(`stderr matching ${re}`, (p) => re.test(p.stderr));
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

/** Run `pipit args...` to its end. */
export function pipit(args: string[], input?: Buffer | string): Promise<Exit> {
  return new Proc(args, input === undefined ? {} : { input }).exited;
}

/** A `pipit serve SOCKET ...` process that has printed its `listening` line. */
export async function serve(mode: string[] = ['--testee']): Promise<{ socket: string; proc: Proc }> {
  const socket = join(tempDir(), 't.sock');
  const proc = new Proc(['serve', socket, ...mode]);
  await proc.waitFor('the listening line', (p) => p.stdout.toString().includes('\n'));
  return { socket, proc };
}

afterEach(async () => {
  for (const p of [...running]) {
    p.kill('SIGKILL');
    await p.exited;
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
