/**
 * `pipit decode` on every shared vector (spec/vectors/*.json): the frames in the vector form
 * with --json, and the readable form names every frame and the error with its offset.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { pipit, tempDir, type Exit } from './helpers.js';
import { scaled } from '../helpers/slow.js';

interface Vector {
  name: string;
  hex: string;
  maxFrameBytes?: number;
  frames: Array<Record<string, unknown>>;
  error: { code: string; offset: number } | null;
}

const DIR = join(import.meta.dirname, '..', '..', 'spec', 'vectors');
const vectors: Vector[] = readdirSync(DIR)
  .filter((f) => f.endsWith('.json'))
  .flatMap((f) => (JSON.parse(readFileSync(join(DIR, f), 'utf8')) as { cases: Vector[] }).cases);

/** Run `fn` over `items`, `n` at a time (each is a process). */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: n }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

const TYPES = ['HELLO', 'REQUEST', 'RESPONSE', 'STATUS', 'CANCEL', 'CREDIT', 'DATA', 'PING', 'PONG', 'GOAWAY', 'ERROR'];

/** Each whole frame before the vector's error: where it starts and its type (from its word). */
function placed(v: Vector): Array<{ offset: number; type: string }> {
  const b = Buffer.from(v.hex, 'hex');
  const end = v.error?.offset ?? b.length;
  const out: Array<{ offset: number; type: string }> = [];
  for (let p = 0; p + 4 <= end; p += 4 + b.readUIntLE(p, 3)) {
    out.push({ offset: p, type: TYPES[b[p + 3]! & 0xf] ?? 'EXTENSION' });
  }
  return out;
}

const limit = (v: Vector): string[] => (v.maxFrameBytes === undefined ? [] : ['--max-frame-bytes', String(v.maxFrameBytes)]);

describe('pipit decode', () => {
  it(`--json gives every vector's frames and error (${vectors.length} vectors)`, { timeout: scaled(120_000) }, async () => {
    expect(vectors.length).toBeGreaterThan(100);
    const failures: string[] = [];
    await pool(vectors, 4, async (v) => {
      // Spaced hex, as a capture pasted by hand would be.
      const spaced = v.hex.replace(/(..)/g, '$1 ');
      const r = await pipit(['decode', '--json', '--hex', ...limit(v)], spaced);
      if (r.code !== (v.error === null ? 0 : 1)) failures.push(`${v.name}: exit ${r.code} ${r.stderr}`);
      const got = JSON.parse(r.stdout.toString()) as { frames: Array<Record<string, unknown>>; error: { code: string; offset: number } | null };
      const frames = got.frames.map(({ offset: _o, size: _s, ...f }) => f);
      try {
        expect(frames).toEqual(v.frames);
        expect(got.error === null ? null : { code: got.error.code, offset: got.error.offset }).toEqual(v.error);
      } catch (e) {
        failures.push(`${v.name}: ${(e as Error).message}`);
      }
    });
    expect(failures).toEqual([]);
  });

  it('the readable form names every frame at its offset, then the error name and offset or "no error"', { timeout: scaled(120_000) }, async () => {
    const failures: string[] = [];
    const dir = tempDir();
    await pool(vectors, 4, async (v) => {
      // Raw bytes from a file this time, detected as raw unless they happen to look like hex.
      const file = join(dir, `${v.name}.bin`);
      writeFileSync(file, Buffer.from(v.hex, 'hex'));
      const r: Exit = await pipit(['decode', file, '--raw', ...limit(v)]);
      const text = r.stdout.toString();
      const check = (ok: boolean, what: string): void => {
        if (!ok) failures.push(`${v.name}: ${what}\n${text}`);
      };
      for (const f of placed(v)) check(text.includes(`@${f.offset} ${f.type} (type `), `no line for ${f.type} at ${f.offset}`);
      if (v.error === null) check(/, no error\n$/.test(text), 'no "no error" line');
      else check(text.includes(`error ${v.error.code} at offset ${v.error.offset}:`), `no error line for ${v.error.code}`);
      check(r.code === (v.error === null ? 0 : 1), `exit ${r.code}`);
    });
    expect(failures).toEqual([]);
  });

  it('names the fields of each frame type', async () => {
    const hex = [
      '0d00000001018080040280808008038008', // HELLO
      '18000091020264620577617463680c010288270201200303016b762a', // REQUEST with ext
      '0500003201706f6e67', // RESPONSE END|TEXT
      '0a000003010' + '36e6f207175657279', // STATUS 3
      '03000005 02c801', // CREDIT 200
      '060000' + '09ac0200627965', // GOAWAY
    ].join('');
    const r = await pipit(['decode'], hex);
    const text = r.stdout.toString();
    for (const s of [
      'setting   MAX_FRAME_BYTES (1) = 65536', 'setting   MAX_INFLIGHT (3) = 1024',
      'flags 0x9 STREAM|EXT', 'service   "db" (2 bytes)', 'method    "watch" (5 bytes)',
      'DEADLINE (0x01) 5000 ms', 'CREDIT (0x02) 32', 'METADATA (0x03) "k" = "v"', 'payload   1 byte, text "*"',
      'flags 0x3 END|TEXT', 'payload   4 bytes, text "pong"',
      'code      3 UNKNOWN_METHOD', 'message   "no query"',
      'credit    200 more messages',
      'id        300 (last accepted request sequence number)', 'code      0 OK', 'message   "bye"',
    ]) {
      expect(text).toContain(s);
    }
    expect(r.code).toBe(0);
  });
});
