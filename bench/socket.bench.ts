/**
 * End to end over a Unix socket: pipit (TS codec, Wasm codec) against a raw length-prefixed
 * socket. The workloads and the report live in socket-workloads.ts (shared with `pipit bench`).
 *
 *   node dist/bench/socket.bench.js [--quick] [--reps N] [--only raw,ts,wasm] [--cells W1,W4]
 * (`npm run bench` runs it with the codec bench and writes bench/RESULTS.md.)
 *   PIPIT_BENCH_PROF=dir writes a --cpu-prof profile of every process into dir.
 */
import { describeCell, parseBenchArgs, runSocketBench } from './socket-workloads.js';

const options = parseBenchArgs(process.argv.slice(2));
const reps = options.reps ?? (options.quick ? 1 : 5);
runSocketBench({ ...options, onCell: (r) => process.stderr.write(`  ${describeCell(r, reps)}\n`) }).then(
  (report) => console.log(report.markdown),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
