/**
 * `pipit stream` against `pipit serve --testee`: the output formats parse back into the
 * messages sent, Ctrl-C cancels, and a reader that goes away ends the call quietly.
 */
import { describe, expect, it } from 'vitest';
import { Proc, pipit, serve } from './helpers.js';

/** Split `--raw` output: 4-byte little-endian length, then that many bytes, repeated. */
function parseRaw(b: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let p = 0;
  while (p < b.length) {
    expect(b.length - p).toBeGreaterThanOrEqual(4);
    const n = b.readUInt32LE(p);
    expect(b.length - p - 4).toBeGreaterThanOrEqual(n);
    out.push(b.subarray(p + 4, p + 4 + n));
    p += 4 + n;
  }
  return out;
}

const rows = (count: number, size = 0): string[] => Array.from({ length: count }, (_, i) => String(i).padEnd(size, ' '));

describe('pipit stream', () => {
  it('--raw output parses back into exactly the messages sent (testee rows)', async () => {
    const { socket } = await serve();
    const r = await pipit(['stream', socket, 'testee', 'rows', '3000 7', '--raw']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(parseRaw(r.stdout).map((m) => m.toString())).toEqual(rows(3000, 7));
    // Empty messages and a small window.
    const empty = await pipit(['stream', socket, 'testee', 'rows', '5 0', '--raw', '--credit', '1']);
    expect(empty.code).toBe(0);
    expect(parseRaw(empty.stdout).map((m) => m.toString())).toEqual(rows(5, 0));
  });

  it('text lines by default, one line of hex or base64 per message with --hex / --base64', async () => {
    const { socket } = await serve();
    const text = await pipit(['stream', socket, 'testee', 'rows', '4']);
    expect(text.stdout.toString()).toBe('0\n1\n2\n3\n');
    const hex = await pipit(['stream', socket, 'testee', 'rows', '--out', 'hex', '2 3']);
    expect(hex.stdout.toString()).toBe('302020\n312020\n');
    const b64 = await pipit(['stream', socket, 'testee', 'rows', '--base64', '--in', 'text', '2']);
    expect(b64.stdout.toString()).toBe('MA==\nMQ==\n');
    const none = await pipit(['stream', socket, 'testee', 'rows', '0']);
    expect([none.code, none.stdout.length]).toEqual([0, 0]);
  });

  it('a unary method called as a stream answers one message; failures exit with their status', async () => {
    const { socket } = await serve();
    const one = await pipit(['stream', socket, 'testee', 'echo', 'x']);
    expect([one.code, one.stdout.toString()]).toEqual([0, 'x\n']);
    const bad = await pipit(['stream', socket, 'testee', 'rows', 'many']);
    expect(bad.code).toBe(14);
    expect(bad.stderr).toMatch(/^INVALID_ARGUMENT \(4\): rows expects/);
  });

  it('Ctrl-C cancels the call: CANCEL reaches the testee, exit 11', async () => {
    const { socket } = await serve();
    const p = new Proc(['stream', socket, 'testee', 'sleep', '600000', '-v']);
    await p.stderrMatches(/^sent testee\/sleep/m);
    p.kill('SIGINT');
    const r = await p.exited;
    expect(r.code).toBe(11);
    expect(r.stderr).toMatch(/^CANCELLED \(1\): interrupted \(SIGINT\)$/m);
    expect((await pipit(['call', socket, 'testee', 'cancellations'])).stdout.toString()).toBe('1');
  });

  it('Ctrl-C in the middle of a long stream stops the output and exits 11', async () => {
    const { socket } = await serve();
    const p = new Proc(['stream', socket, 'testee', 'rows', '4294967295', '--credit', '1']);
    await p.waitFor('some rows', (x) => x.stdout.length > 100);
    p.kill('SIGINT');
    const r = await p.exited;
    expect(r.code).toBe(11);
    const lines = r.stdout.toString().split('\n');
    expect(lines.at(-1)).toBe('');
    expect(lines.slice(0, -1)).toEqual(rows(lines.length - 1));
  });

  it('a reader that goes away (EPIPE) cancels the call and exits 0 quietly', async () => {
    const { socket } = await serve();
    const p = new Proc(['stream', socket, 'testee', 'rows', '4294967295']);
    await p.waitFor('the first line', (x) => x.stdout.includes('\n'));
    p.child.stdout!.destroy();
    const r = await p.exited;
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    // The testee is fine afterwards.
    expect((await pipit(['call', socket, 'testee', 'echo', 'ok'])).stdout.toString()).toBe('ok');
  });
});
