/**
 * `pipit serve SOCKET --testee | --echo`: serve on a Unix socket until SIGINT or SIGTERM, then
 * close gracefully (GOAWAY on every connection, calls in flight finish) and exit 0. Prints
 * `listening SOCKET` on stdout once the socket accepts connections (spec/TESTEE.md).
 */
import { listen, type Handler, type HandlerContext, type Peer, type Services } from '../bindings/index.js';
import { UsageError, oneOf, parseArgs, positionalsOf } from './args.js';
import type { Command } from './command.js';
import { testeeService } from './testee.js';
import { utf8OrNull } from './render.js';

const HELP = `Usage: pipit serve SOCKET (--testee | --echo) [options]

Serve pipit on the Unix socket SOCKET until SIGINT or SIGTERM, then close gracefully
(GOAWAY on every connection, calls in flight finish) and exit 0. A second signal cuts
the calls still running and exits 1. Prints "listening SOCKET" on stdout once the
socket accepts connections. Exits 18 (UNAVAILABLE) when SOCKET is in use by a
running server or cannot be created; a stale socket file is replaced.

  --testee            serve the testee service of spec/TESTEE.md (echo, sha256, rows,
                      fail, sleep, cancellations, callback, goaway)
  --echo              every service and method answers with its request (TEXT kept)
  --mode OCTAL        permissions of the socket file (default 600: owner only)
  --no-introspection  do not serve $pipit/methods (pipit ls then gets UNKNOWN_SERVICE)
  -v, --verbose       on stderr: connections opened and closed, and every request
                      a connection runs (SERVICE/METHOD)
  -h, --help          this help

Examples:
  pipit serve /tmp/t.sock --testee
  pipit serve /tmp/e.sock --echo --mode 660
`;

/** Echo handler for every route: the request back, TEXT as it came (when it is UTF-8). */
const echo: Handler = (payload: Buffer, ctx: HandlerContext) => (ctx.text ? utf8OrNull(payload) ?? payload : payload);

async function run(argv: string[]): Promise<number> {
  const args = parseArgs(argv, {
    testee: { type: 'boolean' },
    echo: { type: 'boolean' },
    mode: { type: 'string' },
    'no-introspection': { type: 'boolean' },
    verbose: { type: 'boolean', short: 'v' },
  });
  if (args.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [socket] = positionalsOf(args, ['SOCKET'], 1) as [string];
  const what = oneOf(args.options, ['testee', 'echo']);
  if (what === undefined) throw new UsageError('choose what to serve: --testee or --echo');
  let mode = 0o600;
  if (args.options.mode !== undefined) {
    const m = String(args.options.mode);
    if (!/^[0-7]{3,4}$/.test(m)) throw new UsageError(`--mode must be octal permissions such as 600, got ${JSON.stringify(m)}`);
    mode = parseInt(m, 8);
  }
  const verbose = args.options.verbose === true;
  const services: Services = what === 'testee' ? { testee: testeeService() } : {};
  const server = await listen(socket, { services, mode, introspection: args.options['no-introspection'] !== true });
  let connections = 0;
  server.on('connection', (peer: Peer) => {
    const n = ++connections;
    if (what === 'echo') echoEverything(peer);
    if (verbose) {
      process.stderr.write(`connection ${n} opened (codec ${peer.codec})\n`);
      logRequests(peer, n);
    }
    peer.once('close', (error) => {
      if (verbose) process.stderr.write(`connection ${n} closed${error ? `: ${error.code} ${error.message}` : ''}\n`);
    });
  });
  process.stdout.write(`listening ${socket}\n`);

  return new Promise<number>((resolve) => {
    let signals = 0;
    const onSignal = (): void => {
      signals++;
      if (signals === 1) {
        void server.close().then(() => resolve(0));
        return;
      }
      // Second signal: cut whatever is still running.
      for (const peer of server.peers) peer.destroy();
      void server.close().then(() => resolve(1));
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

/**
 * `--echo`: answer every (service, method) with the echo handler. Routes are per connection,
 * so the connection's route table is given a fallback: what it does not know (the reserved
 * `$pipit` aside) echoes.
 */
function echoEverything(peer: Peer): void {
  const routes = peer.session.routes;
  const find = routes.find.bind(routes);
  routes.find = (service: string, method: string) => (service === '$pipit' ? find(service, method) : find(service, method) ?? echo);
}

/** `--verbose`: a line for every request the connection runs (looked up in its route table). */
function logRequests(peer: Peer, n: number): void {
  const routes = peer.session.routes;
  const find = routes.find.bind(routes);
  routes.find = (service: string, method: string) => {
    process.stderr.write(`connection ${n}: ${service}/${method}\n`);
    return find(service, method);
  };
}

export const serve: Command = { name: 'serve', help: HELP, run };
