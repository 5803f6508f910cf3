import { describe, expect, it } from 'vitest';
import { clientProcess, rawServer, socketPath, within, type Msg } from '../helpers/harness.js';
import type { VFrame } from '../helpers/frames.js';

describe('§10.3 stream ends inside a frame', () => {
  it('pending calls fail CONNECTION_CLOSED with E_INCOMPLETE as the cause', async () => {
    const path = socketPath();
    const { next } = await rawServer(path);
    const child = await clientProcess(path);
    const raw = await next();
    const results = child.ask({ cmd: 'calls', id: 1, calls: [{ tag: 'a', method: 'echo', payload: 'a' }, { tag: 'b', method: 'echo', payload: 'b' }] }, 'results');
    await raw.count((f: VFrame) => f.type === 'REQUEST', 2);
    raw.socket.end(Buffer.from('0e000021010264', 'hex')); // a REQUEST cut off after 7 of its 18 bytes, then FIN
    const r = await within(results, 2000, 'results');
    console.log(JSON.stringify(r.results.map((x: Msg) => ({ code: x.code, reason: x.reason, cause: x.cause }))));
    for (const x of r.results as Msg[]) expect(x).toMatchObject({ ok: false, code: 'CONNECTION_CLOSED', cause: 'E_INCOMPLETE' });
  });
});
