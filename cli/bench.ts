/**
 * `pipit bench`: the end-to-end socket workloads W1-W7 (bench/socket-workloads.ts, the same
 * code `npm run bench` runs) on this machine: pipit with both codecs against a raw
 * length-prefixed socket.
 */
import { CELLS, IMPLS, describeCell, runSocketBench, type Cell, type Impl } from '../bench/socket-workloads.js';
import { UsageError, intOption, parseArgs, positionalsOf } from './args.js';
import type { Command } from './command.js';
import { EXIT_FAILURE } from './status.js';

const HELP = `Usage: pipit bench [options]

Run the end-to-end benchmark over Unix sockets on this machine: pipit (TS codec and
Wasm codec) against a raw length-prefixed socket, every cell in fresh processes.
  W1 latency p50/p99   sequential unary calls, 32-byte payload
  W2 throughput        64 unary calls in flight, 32-byte payload
  W3 bulk              64 KiB echo, 8 in flight
  W4 stream            one call answered by 100,000 messages of 32 bytes (sync generator)
  W4a stream           the same from an async generator, as a DB cursor is read
  W4b stream           the async generator yielding pages of 64, read with batches()
  W5 CPU, W6 wire bytes, W7 peak RSS (VmHWM, and VmHWM less file-backed pages):
                       measured in the W2 cells
Progress goes to stderr, the table (Markdown) to stdout. A full run takes a few
minutes; --quick takes seconds and is too short to quote.

  --quick             every workload briefly, one repetition
  --reps N            repetitions of every cell (default 5, 1 with --quick)
  --only LIST         implementations, from raw,ts,wasm (default all three)
  --cells LIST        workloads, from W1,W2,W3,W4,W4a,W4b (default all)
  --json              the rows and every cell's measurements as JSON on stdout
  -h, --help          this help

Examples:
  pipit bench --quick
  pipit bench --cells W1,W4 --reps 3
`;

function list<T extends string>(raw: unknown, name: string, allowed: readonly T[]): T[] | undefined {
  if (raw === undefined) return undefined;
  const items = String(raw).split(',');
  for (const i of items) {
    if (!allowed.includes(i as T)) throw new UsageError(`--${name} takes a comma-separated list from ${allowed.join(',')}, got ${JSON.stringify(i)}`);
  }
  return items as T[];
}

async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    quick: { type: 'boolean' },
    json: { type: 'boolean' },
    reps: { type: 'string' },
    only: { type: 'string' },
    cells: { type: 'string' },
  });
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  positionalsOf(args, [], 0);
  const quick = args.options.quick === true;
  const reps = intOption(args.options, 'reps', 1, 1000, quick ? 1 : 5);
  const impls = list<Impl>(args.options.only, 'only', IMPLS);
  const cells = list<Cell>(args.options.cells, 'cells', CELLS);
  const tty = process.stderr.isTTY === true;
  const command = ['pipit bench', ...argv.filter((a) => a !== '--json')].join(' ');
  try {
    const report = await runSocketBench({
      quick,
      reps,
      ...(impls === undefined ? {} : { impls }),
      ...(cells === undefined ? {} : { cells }),
      command,
      onStart: (cell, impl, rep, done, total) => {
        if (tty) process.stderr.write(`\r\x1b[K[${done + 1}/${total}] rep ${rep + 1}/${reps} ${cell} ${impl} …`);
      },
      onCell: (r, done, total) => {
        const line = `[${done}/${total}] ${describeCell(r, reps)}`;
        process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
      },
    });
    if (tty) process.stderr.write('\r\x1b[K');
    if (args.options.json === true) {
      const { markdown: _markdown, ...data } = report;
      process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
    } else {
      process.stdout.write(`${report.markdown}\n`);
    }
    return 0;
  } catch (e) {
    if (tty) process.stderr.write('\n');
    process.stderr.write(`bench failed: ${e instanceof Error ? e.message : String(e)}\n`);
    return EXIT_FAILURE;
  }
}

export const bench: Command = { name: 'bench', help: HELP, run };
