/**
 * Generate the example's database if it is missing: `node dist/generate.js --rows N`.
 * Its own process, so the server's peak RSS measures serving rows, not filling the table.
 */
import { performance } from 'node:perf_hooks';
import { databasePath, generate, isReady } from './database.js';
import { int, sayer } from './util.js';

const say = sayer('gen');

function main(): void {
  const i = process.argv.indexOf('--rows');
  const rows = i >= 0 ? Number(process.argv[i + 1]) : 1_000_000;
  if (!Number.isSafeInteger(rows) || rows < 1) throw new Error(`--rows must be a positive integer, got ${process.argv[i + 1]}`);
  const path = databasePath(rows);
  if (isReady(path)) {
    say(`using ${path} (delete it to generate it again)`);
    return;
  }
  say(`generating ${int(rows)} rows into ${path} ...`);
  const t0 = performance.now();
  const bytes = generate(path, rows);
  const s = (performance.now() - t0) / 1000;
  say(`generated ${int(rows)} rows in ${s.toFixed(2)} s (${int(rows / s)} rows/s, one transaction), ${(bytes / 1048576).toFixed(1)} MiB on disk`);
}

main();
