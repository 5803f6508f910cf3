/** Small helpers shared by the example's processes. */
import { readFileSync } from 'node:fs';

/**
 * This process's peak resident set size in KiB (VmHWM), or NaN where /proc is missing.
 * Not getrusage's ru_maxrss: on Linux that value survives fork and exec, so a child would
 * report its parent's peak when the parent was larger.
 */
export function peakRssKiB(): number {
  try {
    const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

export function mib(kib: number): string {
  return Number.isNaN(kib) ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`;
}

/** 1234567 → "1,234,567". */
export function int(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

/** A line prefixed with the process's role, so the output of both processes can be told apart. */
export function sayer(role: string): (line: string) => void {
  const prefix = `${role.padEnd(6)} │ `;
  return (line) => {
    process.stdout.write(prefix + line + '\n');
  };
}
