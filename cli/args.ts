/**
 * Command-line arguments: a small strict parser, so every mistake becomes one clear line
 * (`UsageError`, exit 2) rather than a parser's paragraph.
 *
 * Accepted forms: `--name value`, `--name=value`, `-x value` for options with a short name,
 * `--` to end options, and `-` as an ordinary argument (stdin). `-h` and `--help` are always
 * known.
 */

/** Bad arguments: main.ts prints `pipit <command>: <message>` and exits 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface OptionSpec {
  /** boolean: a flag; string: one value (the last given wins); list: repeatable. */
  type: 'boolean' | 'string' | 'list';
  short?: string;
}

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface ParsedArgs {
  positionals: string[];
  options: OptionValues;
  help: boolean;
}

export function parseArgs(argv: readonly string[], spec: Record<string, OptionSpec>): ParsedArgs {
  const positionals: string[] = [];
  const options: OptionValues = {};
  let help = false;
  const byShort = new Map<string, string>();
  for (const [name, s] of Object.entries(spec)) if (s.short !== undefined) byShort.set(s.short, name);
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    if (arg === '-' || !arg.startsWith('-')) {
      positionals.push(arg);
      continue;
    }
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    } else {
      const long = arg.length === 2 ? byShort.get(arg[1]!) : undefined;
      if (long === undefined) throw new UsageError(`unknown option ${arg}`);
      name = long;
    }
    const s = spec[name];
    if (s === undefined) throw new UsageError(`unknown option --${name}`);
    if (s.type === 'boolean') {
      if (inline !== undefined) throw new UsageError(`--${name} takes no value`);
      options[name] = true;
      continue;
    }
    let value = inline;
    if (value === undefined) {
      if (i + 1 >= argv.length) throw new UsageError(`--${name} needs a value`);
      value = argv[++i]!;
    }
    if (s.type === 'list') ((options[name] ??= []) as string[]).push(value);
    else options[name] = value;
  }
  return { positionals, options, help };
}

/** Exactly `min` to `max` positional arguments, named for the message. */
export function positionalsOf(args: ParsedArgs, names: readonly string[], required: number): Array<string | undefined> {
  const { positionals } = args;
  if (positionals.length < required) throw new UsageError(`missing ${names.slice(positionals.length, required).join(' ')}`);
  if (positionals.length > names.length) throw new UsageError(`unexpected argument ${JSON.stringify(positionals[names.length])}`);
  return names.map((_, i) => positionals[i]);
}

/** An integer option within [min, max], or `fallback` when absent. */
export function intOption(options: OptionValues, name: string, min: number, max: number, fallback: number): number;
export function intOption(options: OptionValues, name: string, min: number, max: number): number | undefined;
export function intOption(options: OptionValues, name: string, min: number, max: number, fallback?: number): number | undefined {
  const raw = options[name];
  if (raw === undefined) return fallback;
  const text = String(raw);
  if (!/^[0-9]+$/.test(text) || Number(text) < min || Number(text) > max) {
    throw new UsageError(`--${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(text)}`);
  }
  return Number(text);
}

/** One of `choices` for a string option, or undefined when absent. */
export function choiceOption<T extends string>(options: OptionValues, name: string, choices: readonly T[]): T | undefined {
  const raw = options[name];
  if (raw === undefined) return undefined;
  if (!choices.includes(raw as T)) throw new UsageError(`--${name} must be one of ${choices.join(', ')}, got ${JSON.stringify(raw)}`);
  return raw as T;
}

/** At most one of these boolean flags; returns the one given, if any. */
export function oneOf(options: OptionValues, names: readonly string[]): string | undefined {
  const given = names.filter((n) => options[n] === true);
  if (given.length > 1) throw new UsageError(`--${given[0]} and --${given[1]} cannot be used together`);
  return given[0];
}

/** A service or method name: at most 255 bytes of UTF-8 (spec/PROTOCOL.md §7.2). */
export function nameArg(value: string, what: string): string {
  const n = Buffer.byteLength(value);
  if (n > 255) throw new UsageError(`${what} name is ${n} bytes; names are at most 255`);
  return value;
}
