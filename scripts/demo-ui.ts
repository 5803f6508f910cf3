/**
 * The second process of the demo (see demo.ts): connects to the db process, serves `ui`,
 * calls `db`, then closes the connection gracefully.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, PipitError } from '../bindings/index.js';

const say = (line: string): void => {
  process.stdout.write(`ui │ ${line}\n`);
};
const ms = (t0: number): string => `${(performance.now() - t0).toFixed(1)} ms`;

const ROWS = 5000;
const WINDOW = 8;
const SLOW_ROWS = 12;

async function main(): Promise<void> {
  const path = process.argv[2]!;
  let notified!: () => void;
  const welcomed = new Promise<void>((resolve) => (notified = resolve));
  const peer = await connect(path, {
    services: {
      ui: {
        notify(payload: Buffer): string {
          say(`notify: ${payload.toString()}`);
          notified();
          return 'shown';
        },
      },
    },
  });
  await welcomed;

  // A unary call.
  say('→ db.lookup("ada")');
  let t0 = performance.now();
  say(`← ${(await peer.call('db', 'lookup', 'ada')).toString()} (${ms(t0)})`);

  // Two deliberate errors: the handler throws, and a method that does not exist.
  for (const [method, arg] of [['lookup', 'bob'], ['drop', 'users']] as const) {
    say(`→ db.${method}("${arg}")`);
    try {
      await peer.call('db', method, arg);
      say('← unexpectedly succeeded');
    } catch (e) {
      const err = e as PipitError;
      say(`✗ ${err.code} (status ${err.status}): ${err.message}`);
    }
  }

  // A deadline: the timeout travels with the request, and the handler's signal aborts.
  say('→ db.slowReport() with timeout 100 ms');
  t0 = performance.now();
  try {
    await peer.call('db', 'slowReport', '', { timeout: 100 });
  } catch (e) {
    say(`✗ ${(e as PipitError).code} after ${ms(t0)}`);
  }

  // A stream with a small credit window and a consumer that is slow at first: the producer
  // stays at most WINDOW rows ahead of what has been read, and waits for credit.
  say(`→ db.rows(${ROWS}) with credit ${WINDOW}; the first ${SLOW_ROWS} rows are read slowly (30 ms each)`);
  t0 = performance.now();
  let read = 0;
  let last = '';
  let maxBuffered = 0;
  const rows = peer.stream('db', 'rows', String(ROWS), { credit: WINDOW });
  for await (const row of rows) {
    read++;
    last = row.toString();
    maxBuffered = Math.max(maxBuffered, rows.buffered);
    if (read <= SLOW_ROWS) {
      await sleep(30);
      const produced = Number((await peer.call('db', 'progress')).toString());
      say(`read ${String(read).padStart(2)} | producer has generated ${String(produced).padStart(2)} | ${produced - read} ahead`);
      if (read === SLOW_ROWS) say('reading the rest at full speed');
    }
  }
  say(`← ${read} rows in ${ms(t0)}; last ${last}`);
  say(`  at most ${maxBuffered} rows were ever waiting unread here (window ${WINDOW})`);

  say('closing gracefully');
  await peer.close();
  say(`closed: ${(await peer.whenClosed) === null ? 'clean' : 'with an error'}`);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
