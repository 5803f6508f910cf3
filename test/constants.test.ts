/**
 * Every wire number of the TS implementation and of the AssemblyScript scanner, checked
 * against spec/constants.json, the one table both implementations read. The AssemblyScript
 * values are read from a module compiled here from assembly/layout.ts and assembly/errors.ts,
 * so what is checked is what the scanner is built with.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as C from '../bindings/constants.js';
import { PipitError, statusName } from '../bindings/errors.js';
import { Session } from '../bindings/session.js';

const ROOT = join(import.meta.dirname, '..');

interface Spec {
  protocolVersion: number;
  word: { bytes: number; maxLength: number; maxFrameBytes: number; minMaxFrameBytes: number };
  varint: { maxBytes: number; maxLastByte: number };
  frameTypes: { types: Array<{ name: string; code: number; flags: string[] | 'any' }>; reserved: number[] };
  flags: { values: Record<string, number>; vectorOrder: string[] };
  extTags: { tags: Array<{ name: string; tag: number }> };
  helloSettings: { settings: Array<{ name: string; key: number; default: number; min: number; max: number }> };
  credit: { defaultInitial: number; max: number };
  names: { maxBytes: number };
  statusMessage: { maxBytes: number };
  statusCodes: {
    codes: Array<{ name: string; code: number; handlerMaySend: boolean; notProcessed: boolean; localOnly?: boolean }>;
    reserved: { from: number; to: number };
    applicationMin: number;
    applicationMax: number;
    handlerFallback: string;
  };
  codecErrors: { errors: Array<{ name: string; code: number; atEndOnly?: boolean }> };
  sessionViolations: { names: string[] };
  implementationDefaults: Record<string, number | string>;
}

interface AscApi {
  main(
    argv: string[],
    io: {
      readFile(name: string, base: string): string | null;
      writeFile(name: string, contents: Uint8Array | string): void;
      listFiles(): string[];
    },
  ): Promise<{ error: Error | null; stderr: { toString(): string } }>;
}

const spec = JSON.parse(readFileSync(join(ROOT, 'spec/constants.json'), 'utf8')) as Spec;
const consts = C as unknown as Record<string, unknown>;

describe('bindings/constants.ts against spec/constants.json', () => {
  it('protocol version, word and varint', () => {
    expect(C.PROTOCOL_VERSION).toBe(spec.protocolVersion);
    expect(C.WORD_BYTES).toBe(spec.word.bytes);
    expect(C.MAX_LENGTH_FIELD).toBe(spec.word.maxLength);
    expect(C.MAX_FRAME_BYTES_LIMIT).toBe(spec.word.maxFrameBytes);
    expect(C.DEFAULT_MAX_FRAME_BYTES).toBe(spec.word.minMaxFrameBytes);
    expect(C.MAX_VARINT_BYTES).toBe(spec.varint.maxBytes);
  });

  it('frame types, their names and the flags each may carry', () => {
    for (const t of spec.frameTypes.types) {
      expect(consts[`T_${t.name}`], t.name).toBe(t.code);
      expect(C.TYPE_NAMES[t.code]).toBe(t.name);
      const allowed = t.flags === 'any' ? 0xf : t.flags.reduce((m, f) => m | spec.flags.values[f]!, 0);
      expect(C.ALLOWED_FLAGS[t.code], t.name).toBe(allowed);
    }
    for (const r of spec.frameTypes.reserved) expect(C.ALLOWED_FLAGS[r]).toBe(0);
    expect(C.TYPE_NAMES).toHaveLength(16);
  });

  it('flags', () => {
    for (const [name, value] of Object.entries(spec.flags.values)) expect(consts[`F_${name}`], name).toBe(value);
  });

  it('ext tags', () => {
    for (const t of spec.extTags.tags) expect(consts[`EXT_${t.name}`], t.name).toBe(t.tag);
  });

  it('HELLO settings: keys and defaults', () => {
    const defaults: Record<string, number> = {
      MAX_FRAME_BYTES: C.DEFAULT_MAX_FRAME_BYTES,
      MAX_MESSAGE_BYTES: C.DEFAULT_MAX_MESSAGE_BYTES,
      MAX_INFLIGHT: C.DEFAULT_MAX_INFLIGHT,
    };
    for (const s of spec.helloSettings.settings) {
      expect(consts[`S_${s.name}`], s.name).toBe(s.key);
      expect(defaults[s.name], s.name).toBe(s.default);
    }
  });

  it('credit, names and status messages', () => {
    expect(C.DEFAULT_WIRE_CREDIT).toBe(spec.credit.defaultInitial);
    expect(C.MAX_CREDIT).toBe(spec.credit.max);
    expect(C.MAX_NAME_BYTES).toBe(spec.names.maxBytes);
    expect(C.MAX_STATUS_MESSAGE_BYTES).toBe(spec.statusMessage.maxBytes);
  });

  it('status codes: numbers, names, local-only, what a handler may send', () => {
    const status = C.Status as Record<string, number>;
    expect(Object.keys(status)).toHaveLength(spec.statusCodes.codes.length);
    for (const s of spec.statusCodes.codes) {
      expect(status[s.name], s.name).toBe(s.code);
      expect(C.handlerMaySend(s.code), s.name).toBe(s.handlerMaySend);
      if (s.localOnly) {
        // Never read off the wire as itself (spec §13.1), yet the API gives it its number.
        expect(statusName(s.code)).toBe('UNKNOWN');
        expect(new PipitError(s.name as 'CONNECTION_CLOSED').status).toBe(s.code);
      } else if (s.code !== 0) {
        expect(statusName(s.code)).toBe(s.name);
        expect(C.STATUS_NAMES[s.code]).toBe(s.name);
      }
    }
    for (const code of [spec.statusCodes.reserved.from, 200, spec.statusCodes.reserved.to]) {
      expect(statusName(code)).toBe('UNKNOWN');
      expect(C.handlerMaySend(code)).toBe(false);
    }
    expect(C.APP_STATUS_MIN).toBe(spec.statusCodes.applicationMin);
    for (const code of [spec.statusCodes.applicationMin, spec.statusCodes.applicationMax]) {
      expect(statusName(code)).toBe('APPLICATION_ERROR');
      expect(C.handlerMaySend(code)).toBe(true);
    }
    expect(C.Status[spec.statusCodes.handlerFallback as 'APPLICATION_ERROR']).toBe(5);
  });

  it('codec errors and session violation names', () => {
    for (const e of spec.codecErrors.errors) {
      expect(consts[e.name], e.name).toBe(e.code);
      expect(C.CODEC_ERROR_NAMES[e.code]).toBe(e.name);
    }
    expect(C.CODEC_ERROR_NAMES).toHaveLength(spec.codecErrors.errors.length + 1); // + E_OK
    expect([...C.SESSION_VIOLATIONS]).toEqual(spec.sessionViolations.names);
  });

  it('implementation defaults are the options a Session gets when none are given', () => {
    const d = spec.implementationDefaults;
    const s = new Session();
    for (const key of ['maxFrameBytes', 'maxMessageBytes', 'maxInflight', 'maxQueuedCalls', 'maxReassemblyBytes', 'initialCredit', 'maxStreamWindowBytes', 'maxWriteBufferBytes']) {
      expect((s as unknown as Record<string, number>)[key], key).toBe(d[key]);
    }
  });
});

describe('assembly/ (the Wasm scanner) against spec/constants.json', () => {
  let exported: Record<string, bigint | number> = {};

  beforeAll(async () => {
    // A module that re-exports the scanner's constants as globals, compiled in memory.
    const entry = `export * from './assembly/layout';\nexport * from './assembly/errors';\n`;
    let wasm: Uint8Array | null = null;
    // Imported by name at run time: asc's type declarations replace the global ones (console,
    // WebAssembly) of the whole program when the module is imported statically.
    const ascModule = 'assemblyscript/asc';
    const asc = (await import(ascModule)) as { default: AscApi };
    const { error, stderr } = await asc.default.main(['pipit-constants.ts', '--outFile', 'pipit-constants.wasm', '--runtime', 'stub', '--config', 'none'], {
      readFile: (name: string, base: string) => {
        if (name === 'pipit-constants.ts') return entry;
        try {
          return readFileSync(join(ROOT, base ?? '', name), 'utf8');
        } catch {
          return null;
        }
      },
      writeFile: (name: string, contents: Uint8Array | string) => {
        if (name.endsWith('.wasm') && typeof contents !== 'string') wasm = contents;
      },
      listFiles: () => [],
    });
    if (error || wasm === null) throw new Error(`asc: ${error?.message ?? 'no output'}\n${stderr.toString()}`);
    // lib.dom is not in the tsconfig: the one call used here, typed by hand.
    const WA = (globalThis as unknown as {
      WebAssembly: { instantiate(b: Uint8Array): Promise<{ instance: { exports: Record<string, unknown> } }> };
    }).WebAssembly;
    const { instance } = await WA.instantiate(wasm as Uint8Array);
    for (const [k, v] of Object.entries(instance.exports)) {
      // Globals (the constants) have a .value; functions and the memory do not.
      const value = (v as { value?: unknown }).value;
      if (typeof value === 'number' || typeof value === 'bigint') exported[k] = value;
    }
  }, 60_000);

  const num = (name: string): number => {
    const v = exported[name];
    if (v === undefined) throw new Error(`assembly/ exports no ${name}`);
    return Number(v);
  };

  it('word, types and flags', () => {
    expect(num('WORD_BYTES')).toBe(spec.word.bytes);
    expect(num('MAX_LENGTH_FIELD')).toBe(spec.word.maxLength);
    for (const t of spec.frameTypes.types) expect(num(`T_${t.name}`), t.name).toBe(t.code);
    for (const [name, value] of Object.entries(spec.flags.values)) expect(num(`F_${name}`), name).toBe(value);
    expect(num('T_LAST')).toBe(Math.min(...spec.frameTypes.reserved) - 1);
  });

  it('the packed allowed-flags table gives each type exactly its flags', () => {
    const packed = BigInt.asUintN(64, BigInt(exported.ALLOWED_FLAGS_PACKED!));
    for (let type = 0; type < 16; type++) {
      const t = spec.frameTypes.types.find((x) => x.code === type);
      const want = t === undefined ? 0 : t.flags === 'any' ? 0xf : t.flags.reduce((m, f) => m | spec.flags.values[f]!, 0);
      expect(Number((packed >> BigInt(4 * type)) & 0xfn), `type ${type}`).toBe(want);
    }
  });

  it('ext tags and the codec error codes it returns', () => {
    for (const t of spec.extTags.tags) expect(num(`EXT_${t.name}`), t.name).toBe(t.tag);
    // E_INCOMPLETE is reported by TS at the end of the stream, never by the scanner.
    for (const e of spec.codecErrors.errors.filter((x) => !x.atEndOnly)) expect(num(e.name), e.name).toBe(e.code);
    expect(exported.E_INCOMPLETE).toBeUndefined();
  });
});
