/**
 * End to end over a Unix socket: pipit (TS codec, Wasm codec) against a raw length-prefixed
 * socket. The workloads and the report live in socket-workloads.ts (shared with `pipit bench`).
 *
 *   node dist/bench/socket.bench.js [--quick] [--reps N] [--only raw,ts,wasm,ts-go,go-ts,go-go] [--cells W1,W4]
 * (`npm run bench` runs it with the codec and floor benches and writes bench/RESULTS.md.)
 * Without --only it runs raw, ts and wasm, raw-iter in the stream cells (raw bytes read and
 * written through generators and `for await`, as pipit's API is), and the cross-language
 * cells ts-go, go-ts and go-go (pipit's Go implementation as server, client or both) where Go
 * is installed.
 *   PIPIT_BENCH_PROF=dir writes a --cpu-prof profile of every process into dir.
 */
import { EXTRA_IMPLS, GO_IMPLS, IMPLS, describeCell, goUnavailable, parseBenchArgs, runSocketBench } from './socket-workloads.js';

const options = parseBenchArgs(process.argv.slice(2));
if (options.impls === undefined) {
  const why = goUnavailable();
  options.impls = [...IMPLS, ...EXTRA_IMPLS, ...(why === undefined ? GO_IMPLS : [])];
  if (why !== undefined) process.stderr.write(`socket bench: ${why}: the cross-language cells (${GO_IMPLS.join(', ')}) were skipped\n`);
}
const reps = options.reps ?? (options.quick ? 1 : 5);
runSocketBench({ ...options, onCell: (r) => process.stderr.write(`  ${describeCell(r, reps)}\n`) }).then(
  (report) => console.log(report.markdown),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
