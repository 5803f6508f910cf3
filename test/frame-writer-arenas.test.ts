/**
 * Output arenas are reused only after the transport says it has written them (FrameWriter
 * `written`): never while a segment handed out may still be waiting in the socket.
 */
import { describe, expect, it } from 'vitest';
import { FrameWriter } from '../bindings/frame-writer.js';

const item = Buffer.alloc(1000, 0x61);

/** Encode enough 1 KB frames to fill `arenas` 64 KiB arenas. */
function fill(w: FrameWriter, arenas: number, byte: number): void {
  item.fill(byte);
  for (let i = 0; i < arenas * 66; i++) w.response(1, 0, item);
}

const snapshot = (segs: Uint8Array[]): Buffer => Buffer.concat(segs.map((s) => Buffer.from(s)));

describe('FrameWriter arenas', () => {
  it('bytes handed out stay as they were until `written`; then full arenas are filled again', () => {
    const w = new FrameWriter();
    fill(w, 3, 1);
    const first = w.take();
    const firstTake = w.taken;
    const copy1 = snapshot(first);
    fill(w, 6, 2);
    const second = w.take();
    const copy2 = snapshot(second);
    expect(snapshot(first)).toEqual(copy1);
    w.written(firstTake);
    fill(w, 3, 3);
    const third = w.take();
    // The first take's full arenas (all but its last, which the second take continued) came back...
    const full = new Set(first.slice(0, -1).map((s) => s.buffer));
    expect(third.some((s) => full.has(s.buffer))).toBe(true);
    // ...and the second take, never reported written, was not touched.
    expect(snapshot(second)).toEqual(copy2);
  });

  it('a writer whose transport never reports writes never overwrites what it handed out', () => {
    const w = new FrameWriter();
    const takes: Array<[Uint8Array[], Buffer]> = [];
    for (let k = 0; k < 6; k++) {
      fill(w, 2, k + 1);
      const segs = w.take();
      takes.push([segs, snapshot(segs)]);
    }
    for (const [segs, copy] of takes) expect(snapshot(segs)).toEqual(copy);
  });
});
