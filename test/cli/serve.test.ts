/**
 * `pipit serve`, `ls` and `ping`: the listening line, graceful exit on SIGINT/SIGTERM, the
 * echo server, introspection of the testee, round trips.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Proc, pipit, serve } from './helpers.js';

const TESTEE_METHODS = [
  ['callback', 'unary'],
  ['cancellations', 'unary'],
  ['echo', 'unary'],
  ['fail', 'unary'],
  ['goaway', 'unary'],
  ['rows', 'stream'],
  ['sha256', 'unary'],
  ['sleep', 'unary'],
];

describe('pipit serve', () => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`prints "listening SOCKET", serves, and on ${signal} closes gracefully and exits 0`, async () => {
      const { socket, proc } = await serve();
      expect(proc.stdout.toString()).toBe(`listening ${socket}\n`);
      expect((await pipit(['call', socket, 'testee', 'echo', 'hi'])).stdout.toString()).toBe('hi');
      proc.kill(signal);
      const r = await proc.exited;
      expect([r.code, r.signal, r.stderr]).toEqual([0, null, '']);
      expect(existsSync(socket)).toBe(false);
    });
  }

  it('lets a call in flight finish before exiting on SIGTERM', async () => {
    const { socket, proc } = await serve(['--testee', '--verbose']);
    const call = new Proc(['call', socket, 'testee', 'sleep', '300', '-v']);
    // The server runs the request: it is accepted, so it finishes before the server exits.
    await proc.stderrMatches(/^connection 1: testee\/sleep$/m);
    proc.kill('SIGTERM');
    const c = await call.exited;
    expect([c.code, c.stderr.includes('OK: 0 bytes')]).toEqual([0, true]);
    expect((await proc.exited).code).toBe(0);
  });

  it('--echo answers every service and method with its request', async () => {
    const { socket } = await serve(['--echo']);
    expect((await pipit(['call', socket, 'any', 'thing', 'héllo'])).stdout.toString()).toBe('héllo');
    expect((await pipit(['call', socket, 'x', 'y', '--hex', '00ff'])).stdout.toString()).toBe('00ff\n');
    expect((await pipit(['stream', socket, 'a', 'b', 'one'])).stdout.toString()).toBe('one\n');
    const ls = await pipit(['ls', socket]);
    expect([ls.code, ls.stdout.toString()]).toEqual([0, '']);
    const reserved = await pipit(['call', socket, '$pipit', 'other']);
    expect(reserved.code).toBe(13);
  });

  it('the testee goaway method closes the connection gracefully after its answer', async () => {
    const { socket } = await serve();
    const r = await pipit(['call', socket, 'testee', 'goaway']);
    expect([r.code, r.stdout.length, r.stderr]).toEqual([0, 0, '']);
  });
});

describe('pipit ls', () => {
  it('lists exactly the eight testee methods with their kinds', async () => {
    const { socket } = await serve();
    const r = await pipit(['ls', socket]);
    expect(r.code).toBe(0);
    const lines = r.stdout.toString().trimEnd().split('\n').map((l) => l.split(/\s+/));
    expect(lines).toEqual(TESTEE_METHODS.map(([m, k]) => ['testee', m, k]));
    const json = await pipit(['ls', socket, '--json']);
    expect(JSON.parse(json.stdout.toString())).toEqual(TESTEE_METHODS.map(([method, kind]) => ({ service: 'testee', method, kind })));
  });

  it('a server with introspection off answers UNKNOWN_SERVICE: exit 12', async () => {
    const { socket } = await serve(['--testee', '--no-introspection']);
    const r = await pipit(['ls', socket]);
    expect(r.code).toBe(12);
    expect(r.stderr).toMatch(/^UNKNOWN_SERVICE \(2\): /);
  });
});

describe('pipit ping', () => {
  it('prints one line per round trip, then min / median / max', async () => {
    const { socket } = await serve();
    const r = await pipit(['ping', socket, '--count', '3', '--interval', '0']);
    expect(r.code).toBe(0);
    const lines = r.stdout.toString().trimEnd().split('\n');
    expect(lines).toHaveLength(4);
    for (let i = 0; i < 3; i++) expect(lines[i]).toMatch(new RegExp(`^pong ${i + 1}: \\d+\\.\\d{3} ms$`));
    expect(lines[3]).toMatch(/^3 round trips to .*: min [\d.]+ \/ median [\d.]+ \/ max [\d.]+ ms$/);
  });
});
