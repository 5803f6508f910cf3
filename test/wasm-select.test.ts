/**
 * Codec selection: the 'auto' rule, the PIPIT_CODEC override, and the fallback to TS when
 * WebAssembly is missing (`node --jitless`, checked in a child process on dist/).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { explainCodecChoice, selectCodec } from '../bindings/codec-select.js';

const ROOT = join(import.meta.dirname, '..');

describe('selectCodec', () => {
  const saved = process.env.PIPIT_CODEC;
  afterEach(() => {
    if (saved === undefined) delete process.env.PIPIT_CODEC;
    else process.env.PIPIT_CODEC = saved;
  });

  it('auto: Wasm for in-place reads, TS for chunks from data events', () => {
    delete process.env.PIPIT_CODEC;
    expect(selectCodec().kind).toBe('ts');
    expect(selectCodec('auto', { inPlace: true }).kind).toBe('wasm');
    expect(explainCodecChoice('auto', { inPlace: true })).toMatch(/^wasm: auto/);
    expect(explainCodecChoice()).toMatch(/^ts: auto/);
  });

  it('explicit choices, and every in-place codec can read in place', () => {
    delete process.env.PIPIT_CODEC;
    expect(selectCodec('wasm').kind).toBe('wasm');
    expect(selectCodec('ts').kind).toBe('ts');
    for (const choice of ['auto', 'wasm', 'ts'] as const) {
      const dec = selectCodec(choice, { inPlace: true }).createDecoder(65536);
      dec.readBuffer().set([1, 0, 0, 7, 5]);
      expect(dec.commit(5).id(0)).toBe(5);
    }
  });

  it('PIPIT_CODEC overrides the argument', () => {
    process.env.PIPIT_CODEC = 'ts';
    expect(selectCodec('wasm').kind).toBe('ts');
    expect(explainCodecChoice('wasm')).toBe('ts: asked for (PIPIT_CODEC)');
    process.env.PIPIT_CODEC = 'wasm';
    expect(selectCodec('ts').kind).toBe('wasm');
    process.env.PIPIT_CODEC = 'auto';
    expect(selectCodec('wasm').kind).toBe('ts');
    process.env.PIPIT_CODEC = 'bogus';
    expect(selectCodec('wasm').kind).toBe('wasm');
  });

  it('node --jitless (no WebAssembly) falls back to TS', () => {
    const url = pathToFileURL(join(ROOT, 'dist/bindings/codec-select.js')).href;
    const script = `
      const { selectCodec, explainCodecChoice } = await import(${JSON.stringify(url)});
      const dec = selectCodec('wasm', { inPlace: true }).createDecoder(65536);
      dec.readBuffer().set([1, 0, 0, 7, 9]);
      console.log(JSON.stringify({
        wasm: typeof WebAssembly,
        kinds: ['auto', 'wasm', 'ts'].map((c) => selectCodec(c).kind),
        why: explainCodecChoice('wasm'),
        id: dec.commit(5).id(0),
      }));`;
    const env = { ...process.env };
    delete env.PIPIT_CODEC;
    const out = execFileSync(process.execPath, ['--jitless', '--input-type=module', '-e', script], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe'] });
    const got = JSON.parse(out) as { wasm: string; kinds: string[]; why: string; id: number };
    expect(got.wasm).toBe('undefined');
    expect(got.kinds).toEqual(['ts', 'ts', 'ts']);
    expect(got.why).toMatch(/^ts: wasm unavailable \(WebAssembly is not available/);
    expect(got.id).toBe(9);
  });
});
