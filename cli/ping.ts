/** `pipit ping SOCKET`: PING/PONG round trips, then min, median and max. */
import { PipitError, type Peer } from '../bindings/index.js';
import { intOption, parseArgs, positionalsOf } from './args.js';
import { callSettings, failed, ms, open, shut } from './client.js';
import type { Command } from './command.js';

const HELP = `Usage: pipit ping SOCKET [options]

Measure round trips to the pipit peer at SOCKET with PING frames (answered by the
peer's session, no handler involved), one line per PONG, then min/median/max.

  -c, --count N       round trips (default 5)
  -i, --interval MS   pause between them in milliseconds (default 200; 0 for none)
  -t, --timeout MS    give up on a PONG after MS milliseconds (exit 16)
  -h, --help          this help

Ctrl-C stops early and prints the summary of the round trips so far. Exit status 0,
or as for pipit call when the connection fails (see pipit call --help).

Example:
  pipit ping /tmp/t.sock --count 10 --interval 0
`;

async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    count: { type: 'string', short: 'c' },
    interval: { type: 'string', short: 'i' },
    timeout: { type: 'string', short: 't' },
  });
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [socket] = positionalsOf(args, ['SOCKET'], 1) as [string];
  const count = intOption(args.options, 'count', 1, 1_000_000, 5);
  const interval = intOption(args.options, 'interval', 0, 3_600_000, 200);
  const settings = callSettings({ timeout: args.options.timeout });
  let stop = false;
  let wake: (() => void) | null = null;
  const onSigint = (): void => {
    stop = true;
    wake?.();
  };
  process.on('SIGINT', onSigint);
  let peer: Peer | undefined;
  const rtts: number[] = [];
  try {
    peer = await open(socket, settings);
    for (let i = 1; i <= count && !stop; i++) {
      const rtt = await withTimeout(peer.ping(), settings.timeout);
      rtts.push(rtt);
      process.stdout.write(`pong ${i}: ${ms(rtt)} ms\n`);
      if (i < count && interval > 0 && !stop) {
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, interval);
          wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
        wake = null;
      }
    }
    if (rtts.length === 0) {
      process.stderr.write('no round trip completed\n');
      return 1;
    }
    const sorted = [...rtts].sort((a, b) => a - b);
    const median = sorted.length % 2 ? sorted[sorted.length >> 1]! : (sorted[sorted.length / 2 - 1]! + sorted[sorted.length / 2]!) / 2;
    process.stdout.write(`${rtts.length} round trips to ${socket}: min ${ms(sorted[0]!)} / median ${ms(median)} / max ${ms(sorted[sorted.length - 1]!)} ms\n`);
    return 0;
  } catch (e) {
    return failed(e);
  } finally {
    process.off('SIGINT', onSigint);
    await shut(peer);
  }
}

async function withTimeout<T>(p: Promise<T>, timeout: number | undefined): Promise<T> {
  if (timeout === undefined) return p;
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new PipitError('DEADLINE_EXCEEDED', `no PONG within ${timeout} ms`)), timeout);
  });
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

export const ping: Command = { name: 'ping', help: HELP, run };
