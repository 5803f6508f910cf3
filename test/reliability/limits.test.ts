/**
 * A misbehaving peer cannot grow the other's memory without bound. This process plays the
 * peer with a raw socket writing hand-encoded frames; the pipit server runs in a second
 * process (test/fixtures/peer.mjs, --expose-gc) that reports its memory, call table and peak
 * write buffer. Each limit is pushed far past its value:
 *  - calls in flight (maxInflight), flooded again and again;
 *  - one request's reassembly (maxMessageBytes) and all requests' together (maxReassemblyBytes);
 *  - output queued for a peer that never reads (maxWriteBufferBytes: the server stops reading);
 *  - stream items for a consumer that never reads (the credit window).
 */
import { describe, expect, it } from 'vitest';
import { connect } from '../../bindings/index.js';
import type { VFrame } from '../helpers/frames.js';
import { Child, RawPeer, hex, serverProcess, socketPath, within, type Msg, type PeerOptions } from '../helpers/harness.js';

const MiB = 1024 * 1024;

/** A fixture server process on a fresh socket path, able to collect garbage on request. */
async function server(options: PeerOptions): Promise<{ child: Child; path: string }> {
  const path = socketPath();
  return { child: await serverProcess(path, options, ['--expose-gc']), path };
}

const stats = (child: Child, gc = true): Promise<Msg> => within(child.ask({ cmd: 'stats', gc }, 'stats'), 10_000, 'the server reporting its stats (it is not answering)');
const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

/** A PING round trip: everything the server wrote before answering it has arrived. */
async function roundTrip(raw: RawPeer, id: number): Promise<void> {
  raw.write([{ type: 'PING', flags: [], id }]);
  await within(raw.frame((f) => f.type === 'PONG' && f.id === id, 'PONG'), 10_000, `PONG ${id} (the server is not answering)`);
}

const request = (id: number, method: string, payload = '', flags: string[] = []): VFrame => ({ type: 'REQUEST', flags, id, service: 'svc', method, payload });

describe('calls in flight', () => {
  it('beyond maxInflight are refused RESOURCE_EXHAUSTED at once and never run; repeated floods hold no more', async () => {
    const { child, path } = await server({ maxInflight: 64 });
    const raw = await RawPeer.connect(path);
    await child.next('connection');
    const base = await stats(child);
    let peak = 0;
    for (let round = 0; round < 5; round++) {
      raw.frames.length = 0;
      raw.write(Array.from({ length: 64 + 2000 }, (_, id) => request(id, 'hang')));
      await roundTrip(raw, 10 + round);
      const refused = raw.frames.filter((f) => f.type === 'STATUS');
      expect(refused.length).toBe(2000);
      expect(refused.every((f) => f.code === 7 && f.id >= 64)).toBe(true);
      const s = await stats(child, false);
      peak = Math.max(peak, s.incoming);
      expect(s.incoming).toBe(64);
      expect(s.counts.hang).toBe(64 * (round + 1));
      raw.write(Array.from({ length: 64 }, (_, id): VFrame => ({ type: 'CANCEL', flags: [], id })));
      await roundTrip(raw, 20 + round);
      const cancelled = raw.frames.filter((f) => f.type === 'STATUS' && f.code === 1);
      expect(cancelled.map((f) => f.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 64 }, (_, i) => i));
    }
    const end = await stats(child);
    expect(end.incoming).toBe(0);
    expect(end.counts.hang).toBe(320);
    expect(end.heapUsed - base.heapUsed).toBeLessThan(8 * MiB);
    console.log(`maxInflight 64: 5 floods of 2,064 requests, peak table ${peak}, heap ${mib(base.heapUsed)} -> ${mib(end.heapUsed)}`);
  });
});

describe('reassembly', () => {
  it('a request growing past maxMessageBytes is refused and its later fragments are dropped, not buffered', async () => {
    const { child, path } = await server({ maxMessageBytes: 1 * MiB });
    const raw = await RawPeer.connect(path);
    await child.next('connection');
    const base = await stats(child);
    const frag = hex(Buffer.alloc(60_000, 0x41));
    // 8 MiB announced as one message, never finished.
    raw.write([request(0, 'echo', frag, ['FOLLOWS'])]);
    for (let i = 0; i < 140; i++) raw.write([{ type: 'DATA', flags: ['FOLLOWS'], id: 0, payload: frag }]);
    await roundTrip(raw, 1);
    const refusal = raw.frames.filter((f) => f.type === 'STATUS');
    expect(refusal).toMatchObject([{ id: 0, code: 7 }]);
    const s = await stats(child);
    expect(s.counts.echo ?? 0).toBe(0);
    expect(s.incoming).toBe(0);
    expect(s.arrayBuffers - base.arrayBuffers).toBeLessThan(2 * MiB);
    // Control: a message of exactly maxMessageBytes is accepted and served on the same connection.
    const exact = Buffer.alloc(MiB, 0x42);
    raw.write([request(3, 'echo', hex(exact.subarray(0, 60_000)), ['FOLLOWS'])]);
    for (let p = 60_000; p < MiB; p += 60_000) {
      const part = exact.subarray(p, Math.min(MiB, p + 60_000));
      raw.write([{ type: 'DATA', flags: p + 60_000 < MiB ? ['FOLLOWS'] : [], id: 3, payload: hex(part) }]);
    }
    const answer = await raw.frame((f) => f.id === 3 && (f.type === 'STATUS' || (f.type === 'RESPONSE' && !f.flags.includes('FOLLOWS'))), 'the answer');
    expect(answer.type).toBe('RESPONSE');
    expect((await stats(child, false)).counts.echo).toBe(1);
    console.log(`maxMessageBytes 1 MiB: 8.1 MiB pushed as one request, refused; server buffers ${mib(base.arrayBuffers)} -> ${mib(s.arrayBuffers)}`);
  });

  it('partial requests together stay within maxReassemblyBytes: 64 MiB of unfinished requests, about 4 MiB held', async () => {
    const { child, path } = await server({ maxMessageBytes: 4 * MiB, maxReassemblyBytes: 4 * MiB });
    const raw = await RawPeer.connect(path);
    await child.next('connection');
    const base = await stats(child);
    const frag = hex(Buffer.alloc(64 * 1024 - 64, 0x43));
    const calls = 64;
    raw.write(Array.from({ length: calls }, (_, id) => request(id, 'echo', frag, ['FOLLOWS'])));
    for (let round = 0; round < 15; round++) {
      raw.write(Array.from({ length: calls }, (_, id): VFrame => ({ type: 'DATA', flags: ['FOLLOWS'], id, payload: frag })));
    }
    await roundTrip(raw, 1000);
    const during = await stats(child);
    const refused = raw.frames.filter((f) => f.type === 'STATUS' && f.code === 7).map((f) => f.id);
    const held = calls - refused.length;
    // Each call grew to about 1 MiB: a budget of 4 MiB holds at most 4 of them at a time.
    expect(held).toBeLessThanOrEqual(4);
    expect(during.incoming).toBe(held);
    expect(during.arrayBuffers - base.arrayBuffers).toBeLessThan(12 * MiB);
    expect(during.counts.echo ?? 0).toBe(0);
    raw.write(Array.from({ length: calls }, (_, id): VFrame => ({ type: 'CANCEL', flags: [], id })));
    await roundTrip(raw, 1001);
    const after = await stats(child);
    expect(after.incoming).toBe(0);
    expect(after.arrayBuffers - base.arrayBuffers).toBeLessThan(2 * MiB);
    console.log(`maxReassemblyBytes 4 MiB: 64 MiB of partial requests, ${held} held, ${refused.length} refused; server buffers ${mib(base.arrayBuffers)} -> ${mib(during.arrayBuffers)} -> ${mib(after.arrayBuffers)}`);
  });
});

describe('output for a peer that never reads', () => {
  it('the server holds work, then stops reading, once its output passes maxWriteBufferBytes; every request is answered once the peer reads', async () => {
    const { child, path } = await server({ maxWriteBufferBytes: 1 * MiB });
    const raw = await RawPeer.connect(path);
    await child.next('connection');
    const base = await stats(child);
    raw.socket.pause(); // never read
    const N = 16384;
    const size = Buffer.alloc(4);
    size.writeUInt32LE(512);
    // Distinct ids (an id is reused only after its terminal frame, spec/PROTOCOL.md §4): requests
    // that would provoke 8 MiB of responses, far more than maxInflight (1024) of them.
    for (let i = 0; i < N; i += 4096) {
      raw.write(Array.from({ length: 4096 }, (_, k) => request(i + k, 'blob', hex(size))));
    }
    // Wait until the server has stalled: it stops reading (it reads again only once its
    // output drains, which this peer never lets happen), so its count stops moving.
    const stalled = await within(child.ask({ cmd: 'when', pauses: 1 }, 'reached'), 10_000, 'the server to stop reading');
    expect((await stats(child, false)).counts.blob).toBe(stalled.counts.blob);
    const stalledGc = await stats(child);
    // Congested at 1 MiB: later requests are held (at most maxInflight), refused beyond that,
    // and once the peer keeps pushing, the server stops reading. Output stays near the limit.
    expect(stalled.counts.blob).toBeLessThan(N / 4);
    expect(stalled.maxWritable).toBeLessThan(4 * MiB);
    expect(stalledGc.rss - base.rss).toBeLessThan(48 * MiB);
    // Now read: every request gets exactly one terminal frame, the buffer stayed bounded.
    raw.socket.resume();
    const terminals = await raw.count((f) => (f.type === 'RESPONSE' && f.flags.includes('END')) || f.type === 'STATUS', N, 'answers');
    const ids = new Set(terminals.map((f) => f.id));
    expect(ids.size).toBe(N);
    const refused = terminals.filter((f) => f.type === 'STATUS' && f.code === 7).length;
    const end = await stats(child, false);
    expect(end.counts.blob + refused).toBe(N);
    expect(end.counts.blob).toBeGreaterThan(1024);
    expect(end.maxWritable).toBeLessThan(4 * MiB);
    console.log(
      `maxWriteBufferBytes 1 MiB: stalled after ${stalled.counts.blob} of ${N} requests (${mib(N * 517)} of responses asked for), ` +
        `peak write buffer ${mib(stalled.maxWritable)}, server RSS ${mib(base.rss)} -> ${mib(stalledGc.rss)}; ` +
        `once the peer read: ${end.counts.blob} answered, ${refused} refused RESOURCE_EXHAUSTED (beyond maxInflight), peak ${mib(end.maxWritable)}`,
    );
  });
});

describe('stream items for a consumer that never reads', () => {
  it('a raw caller that never grants more credit gets exactly its window, then exactly each grant', async () => {
    const { child, path } = await server({});
    const raw = await RawPeer.connect(path);
    await child.next('connection');
    raw.write([{ ...request(0, 'ticks', hex('100'), ['STREAM', 'EXT']), ext: { credit: 10 } }]);
    await raw.count((f) => f.type === 'RESPONSE', 10, 'the window');
    await roundTrip(raw, 1);
    await roundTrip(raw, 2);
    expect(raw.frames.filter((f) => f.type === 'RESPONSE').length).toBe(10);
    expect((await stats(child, false)).produced).toBe(10);
    raw.write([{ type: 'CREDIT', flags: [], id: 0, credit: 5 }]);
    await raw.count((f) => f.type === 'RESPONSE', 15, 'the grant');
    await roundTrip(raw, 3);
    expect(raw.frames.filter((f) => f.type === 'RESPONSE').length).toBe(15);
    expect((await stats(child, false)).produced).toBe(15);
    raw.write([{ type: 'CANCEL', flags: [], id: 0 }]);
    expect(await raw.frame((f) => f.type === 'STATUS' && f.id === 0)).toMatchObject({ code: 1 });
    const s = await stats(child, false);
    expect(s).toMatchObject({ incoming: 0, produced: 15 });
    expect(s.counts['ticks-closed']).toBe(1);
  });

  it('a pipit consumer that never reads buffers exactly its window of 1 KiB items; the producer waits', async () => {
    const { child, path } = await server({});
    const peer = await connect(path);
    const stream = peer.stream('svc', 'ticks', '1024', { credit: 32 });
    const ping = (): Promise<number> => within(peer.ping(), 10_000, 'PONG (the server is not answering)');
    // The server has produced the window; a PING sent after that is answered behind it.
    await child.ask({ cmd: 'when', produced: 32 }, 'reached');
    await ping();
    expect(stream.buffered).toBe(32);
    // However many turns the server's loop takes from here, its producer waits for credit.
    const s = await child.ask({ cmd: 'turns', n: 500 }, 'turned');
    await ping();
    expect(stream.buffered).toBe(32);
    expect(s.produced).toBe(32);
    expect(s.maxWritable).toBeLessThan(64 * 1024);
    await stream.return();
    await peer.ping();
    expect((await stats(child, false)).incoming).toBe(0);
    await peer.close();
  });
});
