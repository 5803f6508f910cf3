/** `pipit ls SOCKET`: the services and methods a peer serves, from its `$pipit`/`methods`. */
import { MethodKind, type Peer } from '../bindings/index.js';
import { parseArgs, positionalsOf } from './args.js';
import { CALL_OPTION_HELP, CALL_OPTION_SPEC, callSettings, cancelOnInterrupt, failed, open, shut } from './client.js';
import type { Command } from './command.js';
import { Output, quote } from './render.js';

const HELP = `Usage: pipit ls SOCKET [options]

List the services and methods the pipit peer at SOCKET serves, with their kind:
unary (one result), stream, or unknown (the peer cannot tell before running it).
Asks the reserved method $pipit/methods (spec/PROTOCOL.md §8.11); a peer with
introspection off answers UNKNOWN_SERVICE (exit 12).

Output: one method per line, "SERVICE METHOD KIND", sorted; names that are empty or
hold spaces or control characters are written as JSON strings.
  --json              a JSON array of {"service", "method", "kind"} instead
${CALL_OPTION_HELP}
  -h, --help          this help

Exit status as for pipit call (see pipit call --help).

Example:
  pipit ls /tmp/t.sock
`;

const KIND_NAMES: Record<number, string> = {
  [MethodKind.UNKNOWN]: 'unknown',
  [MethodKind.UNARY]: 'unary',
  [MethodKind.STREAM]: 'stream',
};

function name(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s === '' || /[\s\u0000-\u001f\u007f-\u009f"]/.test(s) ? quote(s) : s;
}

async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, { ...CALL_OPTION_SPEC, json: { type: 'boolean' } });
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [socket] = positionalsOf(args, ['SOCKET'], 1) as [string];
  const settings = callSettings(args.options);
  const controller = new AbortController();
  const restore = cancelOnInterrupt(controller);
  const out = new Output(process.stdout);
  let peer: Peer | undefined;
  try {
    peer = await open(socket, settings);
    const list = await peer.methods({ timeout: settings.timeout, metadata: settings.metadata, signal: controller.signal });
    if (args.options.json === true) {
      await out.write(`${JSON.stringify(list.map((m) => ({ service: m.service, method: m.method, kind: KIND_NAMES[m.kind] })))}\n`);
    } else {
      const rows = list.map((m) => [name(m.service), name(m.method), KIND_NAMES[m.kind]!]);
      const w0 = Math.max(0, ...rows.map((r) => r[0]!.length));
      const w1 = Math.max(0, ...rows.map((r) => r[1]!.length));
      await out.write(rows.map((r) => `${r[0]!.padEnd(w0)}  ${r[1]!.padEnd(w1)}  ${r[2]}\n`).join(''));
    }
    await out.flushed();
    return 0;
  } catch (e) {
    return failed(e);
  } finally {
    restore();
    await shut(peer);
  }
}

export const ls: Command = { name: 'ls', help: HELP, run };
