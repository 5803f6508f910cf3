/**
 * Starting a testee server (spec/TESTEE.md) of either implementation as a child process on a
 * Unix socket in a temp directory: TS from dist/, Go from a binary built once per test run.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const ROOT = join(import.meta.dirname, '..', '..');

export type Impl = 'ts' | 'go';

/** Whether `go` can be run; in CI (CI set) its absence is a failure, elsewhere a skip. */
export function goAvailable(): boolean {
  const r = spawnSync('go', ['version'], { encoding: 'utf8' });
  if (r.status === 0) return true;
  if (process.env.CI) throw new Error('go is required in CI for the interop tests, and `go version` failed');
  return false;
}

let goBinary: string | null = null;

/** Why a spawnSync did not exit 0: its error (it never ran), its signal, or its exit code and stderr. */
export function spawnFailure(r: SpawnSyncReturns<string>): string {
  if (r.error) return `${r.error.message}`;
  if (r.signal) return `killed by ${r.signal}\n${r.stderr}`;
  return `exit ${r.status}\n${r.stderr}`;
}

/** `go build` the pipit command once per process; the path of the binary. */
export function goPipit(): string {
  if (goBinary !== null && existsSync(goBinary)) return goBinary;
  const dir = mkdtempSync(join(tmpdir(), 'pipit-go-'));
  const out = join(dir, 'pipit');
  const r = spawnSync('go', ['build', '-o', out, './cmd/pipit'], { cwd: join(ROOT, 'go'), encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`go build ./cmd/pipit failed: ${spawnFailure(r)}`);
  goBinary = out;
  return out;
}

/** The command line that runs `pipit ARGS...` of an implementation. */
export function pipitCommand(impl: Impl, args: string[]): [string, string[]] {
  return impl === 'ts' ? [process.execPath, [join(ROOT, 'dist/cli/main.js'), ...args]] : [goPipit(), args];
}

export interface Testee {
  path: string;
  proc: ChildProcess;
  /** SIGTERM, then the exit code (a graceful close exits 0). */
  stop(): Promise<number | null>;
}

/** Start `pipit serve --testee` and wait for its `listening` line. */
export async function startTestee(impl: Impl): Promise<Testee> {
  const dir = mkdtempSync(join(tmpdir(), 'pt-'));
  const path = join(dir, 't.sock');
  const [cmd, args] = pipitCommand(impl, ['serve', '--testee', path]);
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const onData = (b: Buffer): void => {
      out += b.toString();
      if (out.includes(`listening ${path}`)) {
        proc.stdout!.off('data', onData);
        resolve();
      }
    };
    proc.stdout!.on('data', onData);
    void exited.then((code) => reject(new Error(`${impl} testee exited (${code}) before listening; stdout: ${out}`)));
  });
  return {
    path,
    proc,
    async stop() {
      proc.kill('SIGTERM');
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
}
