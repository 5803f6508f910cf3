/**
 * `npm run bench`: the end-to-end socket bench (pipit vs a raw length-prefixed socket,
 * separate processes), the codec bench (TS vs Wasm scanner, same process), then the floors
 * (what async iteration and the Wasm engine cost before any protocol).
 *
 *   npm run bench                 full run; writes bench/RESULTS.md
 *   npm run bench -- --quick      every workload briefly (proves the benches run; CI uses it)
 * Other arguments are passed to the socket bench (--reps N, --only raw,ts, --cells W1,W4).
 * Where Go is installed the socket bench also runs the cross-language cells ts-go, go-ts and
 * go-go (client-server, go/cmd/pipit-bench); without Go it says so in one line and skips them.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const here = (f: string): string => fileURLToPath(new URL(f, import.meta.url));

function run(script: string, argv: string[], env: Record<string, string>): string {
  const r = spawnSync(process.execPath, [here(script), ...argv], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  process.stdout.write(r.stdout);
  if (r.status !== 0) {
    console.error(`${script} failed with ${r.status ?? r.signal}`);
    process.exit(1);
  }
  return r.stdout;
}

const socket = run('./socket.bench.js', args, {});
const short: Record<string, string> = quick ? { BENCH_ROUNDS: '1', BENCH_TIME_MS: '15' } : {};
const codec = run('./codec.bench.js', [], short);
const floor = run('./floor.bench.js', [], short);
if (!quick && !args.includes('--only') && !args.includes('--cells')) {
  const out = fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url));
  writeFileSync(out, `# pipit benchmark results\n\n${socket.trim()}\n\n## Codec: pure TS vs Wasm scanner\n\nCommand: \`npm run bench\` (also \`npm run bench:codec\`)\n${codec.trim()}\n\n## Floors: what the platform costs before any protocol\n\nCommand: \`npm run bench\` (also \`npm run bench:floor\`)\n${floor.trim()}\n`);
  console.log(`wrote ${out}`);
}
