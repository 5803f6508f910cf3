#!/usr/bin/env node
/**
 * The `pipit` command: one subcommand per file in cli/. Bad arguments print one line on
 * stderr and exit 2; each subcommand's `--help` says what it does and how it exits.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';
import type { Command } from './command.js';

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

/** Each command's module is loaded only when it runs (startup time of every invocation). */
const COMMANDS: ReadonlyArray<{ name: string; summary: string; load: () => Promise<Command> }> = [
  { name: 'serve', summary: 'serve the testee or an echo service on a Unix socket', load: async () => (await import('./serve.js')).serve },
  { name: 'call', summary: 'make one unary call and print the answer', load: async () => (await import('./call.js')).call },
  { name: 'stream', summary: 'make one stream call and print every message', load: async () => (await import('./stream.js')).stream },
  { name: 'ls', summary: 'list the services and methods a peer serves', load: async () => (await import('./ls.js')).ls },
  { name: 'ping', summary: 'measure round trips (PING/PONG) to a peer', load: async () => (await import('./ping.js')).ping },
  { name: 'decode', summary: 'dissect a captured byte stream frame by frame', load: async () => (await import('./decode.js')).decode },
  { name: 'bench', summary: 'benchmark pipit against a raw socket on this machine', load: async () => (await import('./bench.js')).bench },
];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

function usage(): string {
  const w = Math.max(...COMMANDS.map((c) => c.name.length));
  return `Usage: pipit COMMAND [arguments] [options]

pipit: framed calls and credit-paced streams between two processes over a Unix socket.

Commands:
${COMMANDS.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

Run pipit COMMAND --help for the arguments, options and exit statuses of each.
  -h, --help     this help
  --version      the package version
`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(usage());
    return EXIT_USAGE;
  }
  if (name === '-h' || name === '--help') {
    process.stdout.write(usage());
    return 0;
  }
  if (name === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (name === 'help') {
    const target = COMMANDS.find((c) => c.name === rest[0]);
    process.stdout.write(target === undefined ? usage() : (await target.load()).help);
    return 0;
  }
  const entry = COMMANDS.find((c) => c.name === name);
  if (entry === undefined) {
    process.stderr.write(`pipit: unknown command ${JSON.stringify(name)} (commands: ${COMMANDS.map((c) => c.name).join(', ')}; see pipit --help)\n`);
    return EXIT_USAGE;
  }
  const command = await entry.load();
  try {
    return await command.run(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`pipit ${command.name}: ${e.message} (see pipit ${command.name} --help)\n`);
      return EXIT_USAGE;
    }
    if (e instanceof Error && e.name === 'PipitError') {
      // A status outside a call (listen refused, say): reported like a call's.
      const { describeFailure, exitCodeFor } = await import('./status.js');
      process.stderr.write(`pipit ${command.name}: ${describeFailure(e)}\n`);
      return exitCodeFor(e);
    }
    process.stderr.write(`pipit ${command.name}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    return EXIT_FAILURE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`pipit: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = EXIT_FAILURE;
  },
);
