/**
 * Peer over any Duplex: a child process's stdin/stdout joined with Duplex.from.
 */
import { describe, expect, it } from 'vitest';
import { Duplex } from 'node:stream';
import { Peer } from '../../bindings/index.js';
import { Child } from '../helpers/harness.js';

function stdioPeer(child: Child, notes: string[]): Peer {
  return new Peer(Duplex.from({ readable: child.proc.stdout!, writable: child.proc.stdin! }), {
    services: {
      ui: {
        notify(p: Buffer) {
          notes.push(p.toString());
          return `ack:${p}`;
        },
      },
    },
  });
}

describe('Peer over a child process’s stdio', () => {
  it('carries calls, streams and callbacks both ways, then closes gracefully', async () => {
    const child = Child.spawnPiped('stdio-peer.mjs');
    const notes: string[] = [];
    const peer = stdioPeer(child, notes);

    expect((await peer.call('db', 'query', 'x')).toString()).toBe('q:x');
    const rows = (await peer.stream('db', 'rows', '1000', { credit: 10 }).toArray()).map(String);
    expect(rows.length).toBe(1000);
    expect(rows[999]).toBe('row 999');
    const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => peer.call('db', 'callback', String(i))));
    expect(answers.map(String)).toEqual(Array.from({ length: 50 }, (_, i) => `cb:ack:${i}`));
    expect(notes).toContain(`hello from ${child.pid}`);
    expect(notes.length).toBe(51);

    await peer.close();
    expect(await peer.whenClosed).toBeNull();
    // The child saw a graceful close too (it exits 0 only then).
    expect(await child.exited).toEqual({ code: 0, signal: null });
  });

  it('fails pending calls with CONNECTION_CLOSED when the child dies', async () => {
    const child = Child.spawnPiped('stdio-peer.mjs');
    const peer = stdioPeer(child, []);
    expect((await peer.call('db', 'query', 'x')).toString()).toBe('q:x');
    const stream = peer.stream('db', 'rows', '1000000', { credit: 4 });
    await stream.next();
    child.kill('SIGKILL');
    await expect(stream.toArray()).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    expect((await peer.whenClosed)?.code).toBe('CONNECTION_CLOSED');
  });
});
