/**
 * `--help` for every subcommand, and bad arguments: one line on stderr, exit 2.
 */
import { describe, expect, it } from 'vitest';
import { pipit } from './helpers.js';

const COMMANDS = ['serve', 'call', 'stream', 'ls', 'ping', 'decode', 'bench'];

describe('pipit usage', () => {
  it.each(COMMANDS)('pipit %s --help prints its usage and exits 0', async (cmd) => {
    const r = await pipit([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.toString()).toMatch(new RegExp(`^Usage: pipit ${cmd}`));
  });

  it('pipit --help lists every command; pipit --version prints the version', async () => {
    const r = await pipit(['--help']);
    expect(r.code).toBe(0);
    for (const c of COMMANDS) expect(r.stdout.toString()).toMatch(new RegExp(`^  ${c} `, 'm'));
    const v = await pipit(['--version']);
    expect(v.stdout.toString()).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('the call help carries the exit status of every status', async () => {
    const text = (await pipit(['call', '--help'])).stdout.toString();
    for (const [code, name] of [
      [0, 'OK'], [2, '-'], [11, 'CANCELLED'], [12, 'UNKNOWN_SERVICE'], [13, 'UNKNOWN_METHOD'], [14, 'INVALID_ARGUMENT'],
      [15, 'APPLICATION_ERROR'], [16, 'DEADLINE_EXCEEDED'], [17, 'RESOURCE_EXHAUSTED'], [18, 'UNAVAILABLE'],
      [19, 'PROTOCOL_ERROR'], [20, 'INTERNAL'], [21, 'CONNECTION_CLOSED'], [22, 'UNKNOWN'], [23, 'application'],
    ] as const) {
      expect(text).toMatch(new RegExp(`^ +${code}  ${name}`, 'm'));
    }
  });

  const bad: Array<[string, string[], RegExp]> = [
    ['no command', [], /^Usage: pipit/],
    ['an unknown command', ['frobnicate'], /^pipit: unknown command "frobnicate"/],
    ['serve without a mode', ['serve', '/tmp/x.sock'], /^pipit serve: choose what to serve/],
    ['serve with both modes', ['serve', '/tmp/x.sock', '--echo', '--testee'], /cannot be used together/],
    ['serve with a bad mode', ['serve', '/tmp/x.sock', '--echo', '--mode', '999'], /--mode must be octal/],
    ['call without a method', ['call', '/tmp/x.sock', 'svc'], /^pipit call: missing METHOD/],
    ['call with an unknown option', ['call', 's', 'a', 'b', '--frob'], /^pipit call: unknown option --frob/],
    ['call with a bad timeout', ['call', 's', 'a', 'b', '--timeout', 'soon'], /--timeout must be an integer/],
    ['call with a bad encoding', ['call', 's', 'a', 'b', '--out', 'morse'], /--out must be one of/],
    ['call with bad hex', ['call', 's', 'a', 'b', '--hex', 'xyz'], /DATA is not hex/],
    ['call with a missing file', ['call', 's', 'a', 'b', '@/nonexistent/file'], /cannot read \/nonexistent\/file: ENOENT/],
    ['call with bad metadata', ['call', 's', 'a', 'b', '-m', 'novalue'], /--metadata needs KEY=VALUE/],
    ['call with a long name', ['call', 's', 'a'.repeat(256), 'b'], /service name is 256 bytes/],
    ['call with too many arguments', ['call', 's', 'a', 'b', 'c', 'd'], /unexpected argument "d"/],
    ['stream with a bad credit', ['stream', 's', 'a', 'b', '--credit', '0'], /--credit must be an integer from 1/],
    ['stream with two outputs', ['stream', 's', 'a', 'b', '--raw', '--hex'], /cannot be used together/],
    ['ls without a socket', ['ls'], /^pipit ls: missing SOCKET/],
    ['ping with a bad count', ['ping', 's', '--count', '-1'], /--count needs a value|--count must be/],
    ['decode with a bad limit', ['decode', '--max-frame-bytes', '100'], /--max-frame-bytes must be an integer from 65536/],
    ['decode with odd hex', ['decode', '--hex', '/dev/null', 'extra'], /unexpected argument/],
    ['bench with an unknown cell', ['bench', '--cells', 'W9'], /--cells takes a comma-separated list/],
    ['bench with a value for a flag', ['bench', '--quick=yes'], /--quick takes no value/],
  ];
  it.each(bad)('%s: one line on stderr, exit 2', async (_what, args, re) => {
    const r = await pipit(args);
    expect(r.code).toBe(2);
    expect(r.stdout.length).toBe(0);
    if (args.length > 0) expect(r.stderr.split('\n').filter((l) => l !== '')).toHaveLength(1);
    expect(r.stderr).toMatch(re);
  });
});
