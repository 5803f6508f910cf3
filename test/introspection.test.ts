/**
 * Introspection (spec/PROTOCOL.md §8.11): the reserved `$pipit` service, the listing it
 * answers with, and the client-side decoder. Two sessions joined in memory.
 */
import { describe, expect, it } from 'vitest';
import { Pair } from './helpers/pair.js';
import { Tap, track } from './helpers/session-kit.js';
import { InvalidArgumentError, PipitError } from '../bindings/errors.js';
import { Session } from '../bindings/session.js';
import {
  MethodKind, decodeMethodList, encodeMethodList, methodKind, streaming, unary,
} from '../bindings/introspection.js';

async function listing(pair: Pair): Promise<Buffer> {
  const o = track(pair.a.session.call('$pipit', 'methods', new Uint8Array(0)));
  await pair.settle();
  await o.promise;
  if (o.error !== undefined) throw o.error;
  return o.value!;
}

describe('introspection', () => {
  it('encodes the example of §8.11 byte for byte', () => {
    const bytes = encodeMethodList([
      { service: 'ui', method: 'notify', kind: MethodKind.UNKNOWN },
      { service: 'db', method: 'rows', kind: MethodKind.STREAM },
      { service: 'db', method: 'query', kind: MethodKind.UNARY },
    ]);
    expect(bytes.toString('hex')).toBe('02646205717565727901' + '02646204726f777302' + '027569066e6f7469667900');
  });

  it('serves $pipit/methods by default: sorted byte-wise, bytes without TEXT, kinds where known', async () => {
    const pair = new Pair({}, {
      services: {
        zeta: { plain: () => 'x', declared: unary(() => 'x') },
        // 'é' (c3 a9) sorts after 'z' (7a) byte-wise, though not in every string order.
        é: { a: () => '' },
        Zeta: {
          *gen() {
            yield 'a';
          },
          async *agen() {
            yield 'a';
          },
          iter: streaming(() => ['a']),
        },
      },
    });
    const tapB = new Tap(pair.b.session);
    const list = decodeMethodList(await listing(pair));
    expect(list).toEqual([
      { service: 'Zeta', method: 'agen', kind: MethodKind.STREAM },
      { service: 'Zeta', method: 'gen', kind: MethodKind.STREAM },
      { service: 'Zeta', method: 'iter', kind: MethodKind.STREAM },
      { service: 'zeta', method: 'declared', kind: MethodKind.UNARY },
      { service: 'zeta', method: 'plain', kind: MethodKind.UNKNOWN },
      { service: 'é', method: 'a', kind: MethodKind.UNKNOWN },
    ]);
    const res = tapB.ofType('RESPONSE');
    expect(res.map((f) => f.flags)).toEqual([['END']]);
  });

  it('lists services added later with handle(), and an empty listing when nothing is served', async () => {
    const pair = new Pair();
    expect((await listing(pair)).length).toBe(0);
    pair.b.session.handle('s', { m: unary(() => '') });
    expect(decodeMethodList(await listing(pair))).toEqual([{ service: 's', method: 'm', kind: 1 }]);
  });

  it('refuses to register the reserved service name', () => {
    expect(() => new Session({ services: { $pipit: { methods: () => '' } } })).toThrow(InvalidArgumentError);
    const s = new Session();
    expect(() => s.handle('$pipit', { x: () => '' })).toThrow(/reserved/);
  });

  it('answers UNKNOWN_METHOD for another $pipit method, and UNKNOWN_SERVICE when switched off', async () => {
    const on = new Pair({}, { services: { s: { m: () => '' } } });
    const o1 = track(on.a.session.call('$pipit', 'other', ''));
    await on.settle();
    await o1.promise;
    expect(o1.error?.code).toBe('UNKNOWN_METHOD');

    const off = new Pair({}, { services: { s: { m: () => '' } }, introspection: false });
    const o2 = track(off.a.session.call('$pipit', 'methods', ''));
    await off.settle();
    await o2.promise;
    expect(o2.error?.code).toBe('UNKNOWN_SERVICE');
  });

  it('decodes reserved kinds as unknown and rejects entries that do not fill the message', () => {
    expect(decodeMethodList(Buffer.from('0161016207', 'hex'))).toEqual([{ service: 'a', method: 'b', kind: 0 }]);
    expect(decodeMethodList(new Uint8Array(0))).toEqual([]);
    for (const hex of ['01', '0161', '016101', '01610162', '016101620100', '05616263']) {
      let err: unknown;
      try {
        decodeMethodList(Buffer.from(hex, 'hex'));
      } catch (e) {
        err = e;
      }
      expect(err, hex).toBeInstanceOf(PipitError);
      expect((err as PipitError).code).toBe('PROTOCOL_ERROR');
    }
  });

  it('methodKind: generator functions are streams, declared handlers as declared, others unknown', () => {
    expect(methodKind(function* () {})).toBe(MethodKind.STREAM);
    expect(methodKind(async function* () {})).toBe(MethodKind.STREAM);
    expect(methodKind(async () => 'x')).toBe(MethodKind.UNKNOWN);
    expect(methodKind(() => 'x')).toBe(MethodKind.UNKNOWN);
    expect(methodKind(unary(async () => 'x'))).toBe(MethodKind.UNARY);
    expect(methodKind(streaming(() => []))).toBe(MethodKind.STREAM);
  });
});
