/**
 * `pipit call` against `pipit serve --testee` (and a few hand-written raw servers for the
 * statuses a handler cannot produce): bytes in and out exactly, encodings, and the exit
 * status of every status.
 */
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Proc, pipit, serve, tempDir } from './helpers.js';

describe('pipit call', () => {
  it('carries 1 MiB of random bytes from stdin to stdout byte for byte (testee echo)', async () => {
    const { socket } = await serve();
    const data = randomBytes(1024 * 1024);
    const r = await pipit(['call', socket, 'testee', 'echo', '-'], data);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout.length).toBe(data.length);
    expect(r.stdout.equals(data)).toBe(true);
  });

  it('sends DATA as text, from @file, and in hex or base64; writes hex, base64 or text', async () => {
    const { socket } = await serve();
    expect((await pipit(['call', socket, 'testee', 'echo', 'héllo'])).stdout.toString()).toBe('héllo');
    expect((await pipit(['call', socket, 'testee', 'echo', '--hex', '00 01 fe ff'])).stdout.toString()).toBe('0001feff\n');
    expect((await pipit(['call', socket, 'testee', 'echo', '--base64', 'AAH+/w=='])).stdout.toString()).toBe('AAH+/w==\n');
    expect((await pipit(['call', socket, 'testee', 'echo', 'hi', '--out', 'text'])).stdout.toString()).toBe('hi\n');
    expect((await pipit(['call', socket, 'testee', 'echo', '@@x'])).stdout.toString()).toBe('@x');
    const file = join(tempDir(), 'in.bin');
    const bytes = randomBytes(5000);
    writeFileSync(file, bytes);
    const sha = await pipit(['call', socket, 'testee', 'sha256', `@${file}`, '--out', 'hex']);
    expect(sha.code).toBe(0);
    expect(sha.stdout.toString()).toBe(`${createHash('sha256').update(bytes).digest('hex')}\n`);
    const empty = await pipit(['call', socket, 'testee', 'cancellations', '--timeout', '5000', '-m', 'k=v', '-m', 'a=']);
    expect(empty.code).toBe(0);
    expect(empty.stdout.toString()).toMatch(/^\d+$/);
  });

  describe('exit status per status', () => {
    // Codes a handler may send reach the caller as they are (spec/PROTOCOL.md §13).
    const sendable: Array<[number, string, number]> = [
      [1, 'CANCELLED', 11],
      [4, 'INVALID_ARGUMENT', 14],
      [5, 'APPLICATION_ERROR', 15],
      [6, 'DEADLINE_EXCEEDED', 16],
      [7, 'RESOURCE_EXHAUSTED', 17],
      [10, 'INTERNAL', 20],
    ];
    it.each(sendable)('testee fail %i → %s, exit %i', async (code, name, exit) => {
      const { socket } = await serve();
      const r = await pipit(['call', socket, 'testee', 'fail', `${code} it failed`]);
      expect(r.code).toBe(exit);
      expect(r.stderr).toBe(`${name} (${code}): it failed\n`);
      expect(r.stdout.length).toBe(0);
    });

    it('an application-defined status exits 23 and names the number on stderr', async () => {
      const { socket } = await serve();
      const r = await pipit(['call', socket, 'testee', 'fail', '300 custom']);
      expect(r.code).toBe(23);
      expect(r.stderr).toBe('application status (300): custom\n');
      const max = await pipit(['call', socket, 'testee', 'fail', '4294967295']);
      expect(max.code).toBe(23);
      expect(max.stderr).toBe('application status (4294967295)\n');
    });

    // §13.2: a handler failing with a code it may not send is answered APPLICATION_ERROR
    // with the same message.
    for (const code of [2, 3, 8, 9, 11, 42]) {
      it(`testee fail ${code} arrives as APPLICATION_ERROR (§13.2), exit 15`, async () => {
        const { socket } = await serve();
        const r = await pipit(['call', socket, 'testee', 'fail', `${code} relayed`]);
        expect(r.stderr).toBe('APPLICATION_ERROR (5): relayed\n');
        expect(r.code).toBe(15);
      });
    }

    it('UNKNOWN_SERVICE exits 12, UNKNOWN_METHOD 13, a malformed request INVALID_ARGUMENT 14', async () => {
      const { socket } = await serve();
      const service = await pipit(['call', socket, 'nope', 'x']);
      expect([service.code, service.stderr]).toEqual([12, 'UNKNOWN_SERVICE (2): unknown service "nope"\n']);
      const method = await pipit(['call', socket, 'testee', 'nope']);
      expect(method.code).toBe(13);
      expect(method.stderr).toMatch(/^UNKNOWN_METHOD \(3\): /);
      const bad = await pipit(['call', socket, 'testee', 'sleep', '+5']);
      expect(bad.code).toBe(14);
      expect(bad.stderr).toMatch(/^INVALID_ARGUMENT \(4\): sleep expects/);
    });

    it('--timeout: DEADLINE_EXCEEDED exits 16, and the testee counts the stopped sleep', async () => {
      const { socket } = await serve();
      const r = await pipit(['call', socket, 'testee', 'sleep', '600000', '--timeout', '50']);
      expect(r.code).toBe(16);
      expect(r.stderr).toMatch(/^DEADLINE_EXCEEDED \(6\): /);
      // The server's deadline (or the CANCEL that follows ours) stops the handler.
      let count = '0';
      while (count === '0') count = (await pipit(['call', socket, 'testee', 'cancellations'])).stdout.toString();
      expect(count).toBe('1');
    });

    it('cannot connect: UNAVAILABLE, exit 18', async () => {
      const r = await pipit(['call', join(tempDir(), 'none.sock'), 'testee', 'echo']);
      expect(r.code).toBe(18);
      expect(r.stderr).toMatch(/^UNAVAILABLE \(8\): cannot connect to .*ENOENT/);
    });

    it('a peer that breaks the protocol: PROTOCOL_ERROR, exit 19', async () => {
      const socket = await rawServer((s) => s.write(Buffer.from('01 00 00 0b 00'.replace(/ /g, ''), 'hex')));
      const r = await pipit(['call', socket, 'testee', 'echo']);
      expect(r.code).toBe(19);
      expect(r.stderr).toMatch(/^PROTOCOL_ERROR \(9\): .*E_UNKNOWN_TYPE/);
    });

    it('the connection ends with the call open: CONNECTION_CLOSED, exit 21', async () => {
      const socket = await rawServer((s) => s.destroy());
      const r = await pipit(['call', socket, 'testee', 'echo']);
      expect(r.code).toBe(21);
      expect(r.stderr).toMatch(/^CONNECTION_CLOSED \(11\): /);
    });

    it('a reserved status number: UNKNOWN, exit 22', async () => {
      // STATUS for call 0 with code 42, then GOAWAY(N = 1, OK) so the close is clean.
      const socket = await rawServer((s) => s.end(Buffer.from('02000003002a' + '020000090100', 'hex')));
      const r = await pipit(['call', socket, 'testee', 'echo']);
      expect(r.code).toBe(22);
      expect(r.stderr).toBe('UNKNOWN (42)\n');
    });

    it('sends --timeout and --metadata in the ext block (a capture, dissected by pipit decode)', async () => {
      let captured: Buffer = Buffer.alloc(0);
      // STATUS OK for call 0, then GOAWAY(N = 1, OK).
      const socket = await rawServer((s, received) => {
        captured = received;
        s.end(Buffer.from('020000030000' + '020000090100', 'hex'));
      });
      const r = await pipit(['call', socket, 'svc', 'm', 'x', '--timeout', '5000', '-m', 'trace=abc', '--metadata', 'user=bob']);
      expect([r.code, r.stderr]).toEqual([0, '']);
      const d = JSON.parse((await pipit(['decode', '--json', '--raw', '-'], captured)).stdout.toString()) as {
        frames: Array<Record<string, unknown> & { ext?: { deadlineMs: number } }>;
      };
      expect(d.frames.map((f) => f.type)).toEqual(['HELLO', 'REQUEST']);
      const req = d.frames[1]!;
      expect(req).toMatchObject({ flags: ['TEXT', 'EXT'], id: 0, service: 'svc', method: 'm', payload: '78' });
      expect(req.ext!.deadlineMs).toBeGreaterThan(0);
      expect(req.ext!.deadlineMs).toBeLessThanOrEqual(5000);
      expect(req.ext).toMatchObject({ metadata: [['trace', 'abc'], ['user', 'bob']] });
    });

    it('Ctrl-C: the call is cancelled (CANCEL reaches the testee), exit 11', async () => {
      const { socket } = await serve();
      const p = new Proc(['call', socket, 'testee', 'sleep', '600000', '--verbose']);
      await p.stderrMatches(/^sent testee\/sleep/m);
      p.kill('SIGINT');
      const r = await p.exited;
      expect(r.code).toBe(11);
      expect(r.stderr).toMatch(/^CANCELLED \(1\): interrupted \(SIGINT\)$/m);
      expect((await pipit(['call', socket, 'testee', 'cancellations'])).stdout.toString()).toBe('1');
    });
  });
});

const rawServers: net.Server[] = [];
afterEach(() => {
  for (const s of rawServers.splice(0)) s.close();
});

/**
 * A raw socket server that waits for the client's REQUEST (after its HELLO) and then does
 * `act` to the connection.
 */
async function rawServer(act: (s: net.Socket, received: Buffer) => void): Promise<string> {
  const path = join(tempDir(), 'raw.sock');
  const server = net.createServer((s) => {
    let seen = Buffer.alloc(0);
    s.on('error', () => {});
    s.on('data', (b: Buffer) => {
      seen = Buffer.concat([seen, b]);
      // HELLO (type 0) then REQUEST (type 1): act once a REQUEST word has arrived.
      for (let p = 0; p + 4 <= seen.length; p += 4 + (seen[p]! | (seen[p + 1]! << 8) | (seen[p + 2]! << 16))) {
        if ((seen[p + 3]! & 0xf) === 1) {
          act(s, seen);
          seen = Buffer.alloc(0);
          return;
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(path, r));
  rawServers.push(server);
  return path;
}
