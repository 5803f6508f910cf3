/**
 * What `call`, `stream`, `ls` and `ping` share: the connection, call options from the command
 * line, Ctrl-C, and reporting a failed call (status on stderr, exit status from status.ts).
 */
import { connect, PipitError, type Peer } from '../bindings/index.js';
import { UsageError, intOption, type OptionSpec, type OptionValues } from './args.js';
import { describeFailure, exitCodeFor } from './status.js';

/** Options every call-making command takes. */
export const CALL_OPTION_SPEC: Record<string, OptionSpec> = {
  timeout: { type: 'string', short: 't' },
  metadata: { type: 'list', short: 'm' },
  verbose: { type: 'boolean', short: 'v' },
};

export const CALL_OPTION_HELP = `  -t, --timeout MS    deadline of the call in milliseconds, sent to the peer
                      (DEADLINE_EXCEEDED when it passes); also bounds the connect
  -m, --metadata K=V  metadata entry sent with the request (repeatable)
  -v, --verbose       connection, timing and sizes on stderr`;

/** Exit status of a second Ctrl-C: whatever was running is abandoned. */
export const EXIT_INTERRUPTED = 130;

export interface CallSettings {
  timeout: number | undefined;
  metadata: Record<string, string> | undefined;
  verbose: boolean;
}

export function callSettings(options: OptionValues): CallSettings {
  const timeout = intOption(options, 'timeout', 0, 0xffffffff);
  let metadata: Record<string, string> | undefined;
  for (const kv of (options.metadata as string[] | undefined) ?? []) {
    const eq = kv.indexOf('=');
    if (eq < 0) throw new UsageError(`--metadata needs KEY=VALUE, got ${JSON.stringify(kv)}`);
    const key = kv.slice(0, eq);
    if (Buffer.byteLength(key) > 255) throw new UsageError(`metadata key ${JSON.stringify(key.slice(0, 20))}… is over 255 bytes`);
    (metadata ??= {})[key] = kv.slice(eq + 1);
  }
  return { timeout, metadata, verbose: options.verbose === true };
}

/** Connect to SOCKET; a failure is an UNAVAILABLE PipitError. */
export async function open(socket: string, settings: CallSettings): Promise<Peer> {
  let peer: Peer;
  try {
    peer = await connect(socket, settings.timeout === undefined ? {} : { timeout: settings.timeout });
  } catch (e) {
    if (e instanceof PipitError && e.code === 'INVALID_ARGUMENT') throw new UsageError(e.message);
    throw e;
  }
  if (settings.verbose) process.stderr.write(`connected to ${socket} (codec ${peer.codec})\n`);
  return peer;
}

/** Close gracefully, giving the other side a moment; then cut. */
export async function shut(peer: Peer | undefined): Promise<void> {
  if (peer !== undefined) await peer.close({ timeout: 2000 });
}

/**
 * Ctrl-C aborts `controller` (the call is cancelled: CANCEL on the wire); a second Ctrl-C
 * exits at once. Returns the function that removes the handler.
 */
export function cancelOnInterrupt(controller: AbortController): () => void {
  let count = 0;
  const onSigint = (): void => {
    count++;
    if (count === 1) controller.abort(new PipitError('CANCELLED', 'interrupted (SIGINT)'));
    else process.exit(EXIT_INTERRUPTED);
  };
  process.on('SIGINT', onSigint);
  return () => process.off('SIGINT', onSigint);
}

/** Print a failure on stderr and return its exit status. */
export function failed(err: unknown): number {
  process.stderr.write(`${describeFailure(err)}\n`);
  return exitCodeFor(err);
}

/** Milliseconds with three decimals. */
export function ms(v: number): string {
  return v.toFixed(3);
}
