/**
 * `pipit bench --quick`: runs every workload against the raw socket and both codecs, with a
 * progress line per cell on stderr and every row of the table on stdout. Nothing is asserted
 * about speed.
 */
import { describe, expect, it } from 'vitest';
import { pipit } from './helpers.js';

const ROWS = [
  'W1 latency p50 (µs)', 'W1 latency p99 (µs)', 'W2 throughput (calls/s)', 'W3 bulk 64 KiB (MiB/s)',
  'W4 stream, sync producer (items/s)', 'W4 CPU both processes (µs/item)', 'W4a stream, async producer (items/s)',
  'W4a CPU both processes (µs/item)', 'W4b stream, async pages + batches() (items/s)', 'W4b CPU both processes (µs/item)',
  'W5 CPU both processes (µs/call)', 'W6 wire bytes per call+response',
  'W7 peak RSS client (MiB)', 'W7 peak RSS server (MiB)',
  'W7 peak less file-backed pages, client (MiB)', 'W7 peak less file-backed pages, server (MiB)',
];

describe('pipit bench', () => {
  it('--quick completes and prints every row', { timeout: 180_000 }, async () => {
    const r = await pipit(['bench', '--quick']);
    expect(r.code, r.stderr).toBe(0);
    const out = r.stdout.toString();
    expect(out).toContain('| workload | goal | raw | pipit ts (ts) | pipit wasm (wasm) | ts/raw | wasm/raw |');
    for (const row of ROWS) expect(out).toMatch(new RegExp(`^\\| ${row.replace(/[()+]/g, '\\$&')} \\|( [^|]+ \\|){6}$`, 'm'));
    // A progress line per cell: 6 workloads x 3 implementations.
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(18);
    expect(r.stderr).toMatch(/^\[18\/18\] rep 1\/1 W4b /m);
  });

  it('--json gives the rows and every measurement', { timeout: 60_000 }, async () => {
    const r = await pipit(['bench', '--quick', '--json', '--cells', 'W1', '--only', 'raw,ts']);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout.toString()) as { rows: Array<{ workload: string; values: Record<string, number>; vsRaw: Record<string, number> }>; results: unknown[] };
    expect(report.rows.map((x) => x.workload)).toEqual(ROWS.slice(0, 2));
    expect(report.results).toHaveLength(2);
    for (const row of report.rows) {
      expect(row.values.raw).toBeGreaterThan(0);
      expect(row.values.ts).toBeGreaterThan(0);
      expect(row.vsRaw.ts).toBeGreaterThan(0);
    }
  });
});
