/**
 * `pipit stream SOCKET SERVICE METHOD [DATA]`: one stream call; every message on stdout as it
 * arrives, paced by credit (a slow reader of stdout slows the producer, nothing piles up).
 */
import { performance } from 'node:perf_hooks';
import { PipitError, type Peer } from '../bindings/index.js';
import { choiceOption, intOption, nameArg, oneOf, parseArgs, positionalsOf } from './args.js';
import { CALL_OPTION_HELP, CALL_OPTION_SPEC, callSettings, cancelOnInterrupt, failed, ms, open, shut } from './client.js';
import type { Command } from './command.js';
import { INPUT_ENCODINGS, readPayload } from './payload.js';
import { Output, isBrokenPipe, isPrintable } from './render.js';

const OUTPUT_ENCODINGS = ['text', 'hex', 'base64', 'raw'] as const;
type OutputEncoding = (typeof OUTPUT_ENCODINGS)[number];

const HELP = `Usage: pipit stream SOCKET SERVICE METHOD [DATA] [options]

Make one stream call on the pipit peer at SOCKET and write every message to stdout
as it arrives.

DATA is the request, as for pipit call: the argument (text), @FILE or - (stdin).

Output, one of:
  (default)           text: each message followed by a newline (on a terminal, a
                      message that is not printable text is shown as hex:...)
  --hex               each message as one line of hex
  --base64            each message as one line of base64
  --raw               length-prefixed, for programs: each message is a 4-byte
                      little-endian length, then that many bytes; nothing else
--hex, --base64 and --text also set the encoding of DATA; --in ENC (text, hex,
base64, raw) and --out ENC (text, hex, base64, raw) set one side only.

  --credit N          stream window: messages the peer may send ahead of what has
                      been written (default: adaptive, starting at 128)
${CALL_OPTION_HELP}
  -h, --help          this help

Ctrl-C cancels the call (CANCEL on the wire) and exits 11 (CANCELLED). When the
reader of stdout goes away (| head), the call is cancelled and pipit exits 0
quietly. Other failures exit with the codes listed in pipit call --help.

Examples:
  pipit stream /tmp/t.sock testee rows 5
  pipit stream /tmp/t.sock testee rows "1000 64" --raw | my-consumer
  pipit stream /tmp/t.sock testee rows 1000000 | head -3
`;

async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    ...CALL_OPTION_SPEC,
    text: { type: 'boolean' },
    hex: { type: 'boolean' },
    base64: { type: 'boolean' },
    raw: { type: 'boolean' },
    in: { type: 'string' },
    out: { type: 'string' },
    credit: { type: 'string' },
  });
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [socket, service, method, data] = positionalsOf(args, ['SOCKET', 'SERVICE', 'METHOD', 'DATA'], 3) as [string, string, string, string | undefined];
  nameArg(service, 'service');
  nameArg(method, 'method');
  const both = oneOf(args.options, ['text', 'hex', 'base64', 'raw']) as OutputEncoding | undefined;
  const inEnc = choiceOption(args.options, 'in', INPUT_ENCODINGS) ?? (both === 'raw' ? undefined : both);
  const outEnc: OutputEncoding = choiceOption(args.options, 'out', OUTPUT_ENCODINGS) ?? both ?? 'text';
  const credit = intOption(args.options, 'credit', 1, 0x7fffffff);
  const settings = callSettings(args.options);
  const payload = await readPayload(data, inEnc);

  const out = new Output(process.stdout);
  const controller = new AbortController();
  const restore = cancelOnInterrupt(controller);
  // The reader went away: cancel the call, then leave quietly.
  out.onError(() => controller.abort(new PipitError('CANCELLED', 'stdout closed')));
  let peer: Peer | undefined;
  let count = 0;
  try {
    peer = await open(socket, settings);
    const t0 = performance.now();
    const stream = peer.stream(service, method, payload, {
      timeout: settings.timeout,
      metadata: settings.metadata,
      signal: controller.signal,
      ...(credit === undefined ? {} : { credit }),
    });
    if (settings.verbose) process.stderr.write(`sent ${service}/${method} as a stream call\n`);
    // A reader that stops reading (without going away) must not keep Ctrl-C from working.
    const aborted = new Promise<void>((resolve) => controller.signal.addEventListener('abort', () => resolve(), { once: true }));
    for await (const message of stream) {
      // Messages that arrived before a cancel stay readable: stop at once instead.
      if (controller.signal.aborted) break;
      const written = write(out, message, outEnc);
      written.catch(() => {}); // a write error is seen through out.failed
      await Promise.race([written, aborted]);
      count++;
    }
    if (controller.signal.aborted) throw controller.signal.reason;
    await out.flushed();
    if (settings.verbose) process.stderr.write(`OK: ${count} messages in ${ms(performance.now() - t0)} ms\n`);
    return 0;
  } catch (e) {
    if (out.failed !== null && isBrokenPipe(out.failed)) return 0;
    if (settings.verbose) process.stderr.write(`after ${count} messages:\n`);
    return failed(e);
  } finally {
    restore();
    await shut(peer);
  }
}

const NEWLINE = Buffer.from('\n');

function write(out: Output, m: Buffer, enc: OutputEncoding): Promise<void> {
  switch (enc) {
    case 'text':
      if (out.isTTY && !isPrintable(m)) return out.write(`hex:${m.toString('hex')}\n`);
      return out.write(Buffer.concat([m, NEWLINE]));
    case 'hex':
      return out.write(`${m.toString('hex')}\n`);
    case 'base64':
      return out.write(`${m.toString('base64')}\n`);
    case 'raw': {
      const head = Buffer.allocUnsafe(4);
      head.writeUInt32LE(m.length, 0);
      if (m.length < 4096) return out.write(Buffer.concat([head, m]));
      out.write(head).catch(() => {}); // a failure shows on the next write
      return out.write(m);
    }
  }
}

export const stream: Command = { name: 'stream', help: HELP, run };
