/**
 * The testee service (cli/testee.ts, spec/TESTEE.md) in this process, over a real socket,
 * with a client that serves `testee` too so that `callback` can call it back.
 */
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, listen, type Peer, type Server } from '../../bindings/index.js';
import { testeeService, type TesteeState } from '../../cli/testee.js';
import { tempDir } from './helpers.js';

let server: Server | null = null;
const clients: Peer[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await server?.close({ timeout: 0 });
  server = null;
});

async function setup(): Promise<{ client: Peer; state: TesteeState }> {
  const state: TesteeState = { cancellations: 0 };
  const path = join(tempDir(), 't.sock');
  server = await listen(path, { services: { testee: testeeService(state) } });
  const client = await connect(path, { services: { testee: testeeService() } });
  clients.push(client);
  return { client, state };
}

async function failure(p: Promise<unknown>): Promise<{ code: string; status: number; message: string }> {
  try {
    await p;
  } catch (e) {
    const err = e as { code: string; status: number; message: string };
    return { code: err.code, status: err.status, message: err.message };
  }
  throw new Error('expected the call to fail');
}

describe('testee', () => {
  it('echo, sha256 and cancellations answer as specified', async () => {
    const { client } = await setup();
    expect((await client.call('testee', 'echo', 'héllo')).toString()).toBe('héllo');
    expect([...(await client.call('testee', 'echo', Uint8Array.from([0, 255])))]).toEqual([0, 255]);
    expect((await client.call('testee', 'sha256', 'abc')).toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect((await client.call('testee', 'cancellations')).toString()).toBe('0');
    expect((await failure(client.call('testee', 'cancellations', 'x'))).code).toBe('INVALID_ARGUMENT');
  });

  it('rows: count messages of the index padded to size, a longer number sent whole; malformed requests refused', async () => {
    const { client } = await setup();
    const texts = async (req: string): Promise<string[]> => (await client.stream('testee', 'rows', req).toArray()).map((b) => b.toString());
    expect(await texts('3')).toEqual(['0', '1', '2']);
    expect(await texts('12 1')).toEqual(['0', '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11']);
    expect(await texts('2 3')).toEqual(['0  ', '1  ']);
    expect(await texts('0')).toEqual([]);
    for (const bad of ['', ' 3', '3 ', '+3', '-1', '3  2', '3 2 1', '4294967296', '1 16777217', 'x']) {
      const f = await failure(client.stream('testee', 'rows', bad).toArray());
      expect(f.code, JSON.stringify(bad)).toBe('INVALID_ARGUMENT');
      expect(f.message).toMatch(/^rows expects/);
    }
  });

  it('fail: the code and the message after the first space; code 0 or garbage is malformed', async () => {
    const { client } = await setup();
    expect(await failure(client.call('testee', 'fail', '7 full of  spaces '))).toEqual({ code: 'RESOURCE_EXHAUSTED', status: 7, message: 'full of  spaces ' });
    expect(await failure(client.call('testee', 'fail', '1000'))).toMatchObject({ status: 1000, message: '' });
    for (const bad of ['0', '', ' 1', 'x', '4294967296']) {
      expect((await failure(client.call('testee', 'fail', bad))).code, JSON.stringify(bad)).toBe('INVALID_ARGUMENT');
    }
  });

  it('sleep: an empty OK after the time; cancelled, past its deadline or cut off, it counts one cancellation', async () => {
    const { client, state } = await setup();
    expect((await client.call('testee', 'sleep', '1')).length).toBe(0);
    expect((await failure(client.call('testee', 'sleep', '1.5'))).code).toBe('INVALID_ARGUMENT');
    const controller = new AbortController();
    const cancelled = failure(client.call('testee', 'sleep', '4294967295', { signal: controller.signal }));
    // The server runs it once a PING sent after it has come back.
    await client.ping();
    controller.abort();
    expect((await cancelled).code).toBe('CANCELLED');
    expect((await failure(client.call('testee', 'sleep', '600000', { timeout: 20 }))).code).toBe('DEADLINE_EXCEEDED');
    while (state.cancellations < 2) await client.ping();
    expect((await client.call('testee', 'cancellations')).toString()).toBe('2');
  });

  it('callback calls testee.echo on the caller and answers with what came back', async () => {
    const { client } = await setup();
    expect((await client.call('testee', 'callback', 'round trip')).toString()).toBe('round trip');
    expect([...(await client.call('testee', 'callback', Uint8Array.from([1, 2, 3])))]).toEqual([1, 2, 3]);
  });

  it('goaway answers an empty OK, then the server closes the connection gracefully', async () => {
    const { client } = await setup();
    expect((await client.call('testee', 'goaway')).length).toBe(0);
    expect(await client.whenClosed).toBeNull();
  });

  it('$pipit/methods lists the eight methods, rows as the only stream', async () => {
    const { client } = await setup();
    const list = await client.methods();
    expect(list.map((m) => `${m.service}/${m.method}:${m.kind}`)).toEqual([
      'testee/callback:1', 'testee/cancellations:1', 'testee/echo:1', 'testee/fail:1',
      'testee/goaway:1', 'testee/rows:2', 'testee/sha256:1', 'testee/sleep:1',
    ]);
  });
});
