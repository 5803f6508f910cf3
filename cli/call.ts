/**
 * `pipit call SOCKET SERVICE METHOD [DATA]`: one unary call; the answer on stdout, a failure's
 * status on stderr and in the exit status.
 */
import { performance } from 'node:perf_hooks';
import type { Peer } from '../bindings/index.js';
import { choiceOption, nameArg, oneOf, parseArgs, positionalsOf } from './args.js';
import { CALL_OPTION_HELP, CALL_OPTION_SPEC, callSettings, cancelOnInterrupt, failed, ms, open, shut } from './client.js';
import type { Command } from './command.js';
import { INPUT_ENCODINGS, readPayload } from './payload.js';
import { Output, hexDump, isBrokenPipe, isPrintable } from './render.js';
import { exitTableText } from './status.js';

const OUTPUT_ENCODINGS = ['auto', 'raw', 'text', 'hex', 'base64'] as const;
type OutputEncoding = (typeof OUTPUT_ENCODINGS)[number];

const HELP = `Usage: pipit call SOCKET SERVICE METHOD [DATA] [options]

Make one unary call on the pipit peer at SOCKET and write the answer to stdout.

DATA is the request: the argument itself (sent as text, with the TEXT flag), @FILE
(the file's bytes), or - (stdin's bytes). No DATA sends an empty request. A literal
argument starting with @ is written @@ (@@x sends "@x").

Encodings (--text, --hex and --base64 set both sides; --in and --out set one):
  --text              DATA is text (TEXT flag); the answer is written as text + newline
  --hex               DATA is hex (whitespace allowed); the answer is written as hex
  --base64            DATA is base64; the answer is written as base64
  --in ENC            DATA encoding: text, hex, base64, raw (bytes without TEXT)
  --out ENC           answer encoding: auto, raw, text, hex, base64. auto (default):
                      raw bytes when stdout is not a terminal (so > out.bin is
                      byte-exact), readable on a terminal (text, or a hex dump)
${CALL_OPTION_HELP}
  -h, --help          this help

On success the exit status is 0. A failed call prints its status name, number and
message on stderr and exits with the status's own code:
${exitTableText()}

Ctrl-C cancels the call (CANCEL on the wire) and exits 11 (CANCELLED).

Examples:
  pipit call /tmp/t.sock testee echo hello
  pipit call /tmp/t.sock testee sha256 @photo.jpg --out hex
  head -c 1048576 /dev/urandom | pipit call /tmp/t.sock testee echo - > copy.bin
  pipit call /tmp/t.sock testee sleep 5000 --timeout 100   # exits 16
`;

async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    ...CALL_OPTION_SPEC,
    text: { type: 'boolean' },
    hex: { type: 'boolean' },
    base64: { type: 'boolean' },
    in: { type: 'string' },
    out: { type: 'string' },
  });
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [socket, service, method, data] = positionalsOf(args, ['SOCKET', 'SERVICE', 'METHOD', 'DATA'], 3) as [string, string, string, string | undefined];
  nameArg(service, 'service');
  nameArg(method, 'method');
  const both = oneOf(args.options, ['text', 'hex', 'base64']) as 'text' | 'hex' | 'base64' | undefined;
  const inEnc = choiceOption(args.options, 'in', INPUT_ENCODINGS) ?? both;
  const outEnc: OutputEncoding = choiceOption(args.options, 'out', OUTPUT_ENCODINGS) ?? both ?? 'auto';
  const settings = callSettings(args.options);
  const payload = await readPayload(data, inEnc);

  const out = new Output(process.stdout);
  const controller = new AbortController();
  const restore = cancelOnInterrupt(controller);
  let peer: Peer | undefined;
  try {
    peer = await open(socket, settings);
    const t0 = performance.now();
    const answer = peer.call(service, method, payload, {
      timeout: settings.timeout,
      metadata: settings.metadata,
      signal: controller.signal,
    });
    if (settings.verbose) {
      const size = typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
      process.stderr.write(`sent ${service}/${method}: ${size} bytes${typeof payload === 'string' ? ' (text)' : ''}\n`);
    }
    const result = await answer;
    if (settings.verbose) process.stderr.write(`OK: ${result.length} bytes in ${ms(performance.now() - t0)} ms\n`);
    await write(out, result, outEnc);
    await out.flushed();
    return 0;
  } catch (e) {
    // The reader of stdout went away: nothing to report to anyone.
    if (out.failed !== null && isBrokenPipe(out.failed)) return 0;
    return failed(e);
  } finally {
    restore();
    await shut(peer);
  }
}

async function write(out: Output, b: Buffer, enc: OutputEncoding): Promise<void> {
  switch (enc) {
    case 'auto':
      if (!out.isTTY) return out.write(b);
      if (b.length === 0) return;
      if (isPrintable(b)) return out.write(b[b.length - 1] === 0x0a ? b : Buffer.concat([b, Buffer.from('\n')]));
      return out.write(`${hexDump(b)}\n`);
    case 'raw':
      return out.write(b);
    case 'text':
      return out.write(Buffer.concat([b, Buffer.from('\n')]));
    case 'hex':
      return out.write(`${b.toString('hex')}\n`);
    case 'base64':
      return out.write(`${b.toString('base64')}\n`);
  }
}

export const call: Command = { name: 'call', help: HELP, run };
