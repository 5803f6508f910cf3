/**
 * The whole example, end to end: generate the table if needed, start the row server as a
 * second process, then stream from it over a Unix socket and check every result.
 *
 *   node dist/run.js                    1,000,000 rows (npm start)
 *   node dist/run.js --ci               20,000 rows, quick (npm test)
 *   node dist/run.js --rows N           any size
 *   node dist/run.js --credit N         window of the slow consumer (default 16)
 *   node dist/run.js --server go        the row server is the Go one (../sqlite-rows-go), built
 *                                       here with `go build` first; this process stays the client
 *
 * Exits 0 only when every check passed.
 */
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { connect, PipitError, type Peer } from 'pipit';
import { T0, databasePath, sensorOf, tsOf, valueOf } from './database.js';
import {
  CursorState, CURSOR_STATE_NAMES, FOLD_START, ROW_BYTES, decodeCursor, decodeDigest, decodeRow, encodeQuery, encodeRow,
  foldRow, type Digest, type Query,
} from './layout.js';
import { int, mib, peakRssKiB, sayer } from './util.js';

const say = sayer('client');

// ---- options ----

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
function positiveInt(name: string, fallback: number): number {
  const raw = arg(name);
  const n = raw === undefined ? fallback : Number(raw);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got ${raw}`);
  return n;
}
const ci = process.argv.includes('--ci');
const SERVER = arg('--server') ?? 'node';
if (SERVER !== 'node' && SERVER !== 'go') throw new Error(`--server must be node or go, got ${SERVER}`);
const ROWS = positiveInt('--rows', ci ? 20_000 : 1_000_000);
const SLOW_CREDIT = positiveInt('--credit', 16);
/** Rows the slow consumer reads (one every SLOW_MS) before it stops. */
const SLOW_ROWS = 3 * SLOW_CREDIT;
const SLOW_MS = 10;
/** Rows the cancelled query reads before breaking out. */
const CANCEL_AFTER = Math.min(1000, Math.floor(ROWS / 4));

// ---- checks ----

let passed = 0;
const failures: string[] = [];
function check(what: string, ok: boolean, detail = ''): void {
  if (ok) passed++;
  else failures.push(`${what}${detail ? `: ${detail}` : ''}`);
  say(`${ok ? 'ok  ' : 'FAIL'} ${what}${detail ? ` (${detail})` : ''}`);
}

// ---- the scenarios ----

/**
 * Known rows and their bytes. A server in any language must produce exactly these; the
 * same table is in README.md.
 */
function layoutVectors(): void {
  const vectors: Array<[number, number, number, number, string]> = [
    [1, tsOf(1), valueOf(1), sensorOf(1), '0100000000000000e8abda769b0100000000000000f86d4002000000'],
    [9007199254740991, -1, -0.125, 4294967295, 'ffffffffffff1f00ffffffffffffffff000000000000c0bfffffffff'],
  ];
  for (const [id, ts, value, sensor, hex] of vectors) {
    const bytes = encodeRow(id, ts, value, sensor);
    const back = decodeRow(bytes);
    check(
      `row layout: (id ${id}, ts ${ts}, value ${value}, sensor ${sensor}) encodes to ${hex}`,
      bytes.toString('hex') === hex && back.id === id && back.ts === ts && Object.is(back.value, value) && back.sensor === sensor,
      bytes.toString('hex') === hex ? '' : `got ${bytes.toString('hex')}`,
    );
  }
}

/**
 * The server's own bytes for row 1 of the table, which is the first test vector: the server
 * must encode exactly as layout.ts does, whatever its language. One message is asked for
 * (credit 1), then the stream is cancelled.
 */
async function serverRowBytes(peer: Peer): Promise<void> {
  const hex = '0100000000000000e8abda769b0100000000000000f86d4002000000';
  let first: Buffer | undefined;
  for await (const row of peer.stream('readings', 'all', '', { credit: 1 })) {
    first = Buffer.from(row);
    break;
  }
  const got = first === undefined ? 'no row' : first.toString('hex');
  check(`row layout: the ${SERVER} server sends row 1 as ${hex}`, got === hex, got === hex ? '' : `got ${got}`);
}

/** Stream `method` and fold every row the way the server's digest does. */
interface Tally extends Digest {
  rowBytes: number;
}
function newTally(): Tally {
  return { count: 0, idSum: 0, valueTotal: 0, fold: FOLD_START, rowBytes: 0 };
}
function addRow(t: Tally, row: Buffer): ReturnType<typeof decodeRow> {
  const r = decodeRow(row);
  t.count++;
  t.idSum += r.id;
  t.valueTotal += r.value;
  t.fold = foldRow(t.fold, row);
  t.rowBytes += row.length;
  return r;
}
function sameDigest(t: Digest, d: Digest): boolean {
  return t.count === d.count && t.idSum === d.idSum && t.valueTotal === d.valueTotal && t.fold === d.fold;
}
function showDigest(d: Digest): string {
  return `count ${int(d.count)}, sum(id) ${d.idSum}, total(value) ${d.valueTotal}, fold ${d.fold.toString(16).padStart(8, '0')}`;
}

async function digest(peer: Peer, q: Query | null): Promise<Digest> {
  return decodeDigest(await peer.call('readings', 'digest', q === null ? new Uint8Array(0) : encodeQuery(q)));
}

async function cursor(peer: Peer, tag: string): Promise<ReturnType<typeof decodeCursor>> {
  return decodeCursor(await peer.call('readings', 'cursor', tag));
}

/** Poll until the server's cursor has left OPEN (its finally ran), or 2 s pass. */
async function cursorClosed(peer: Peer, tag: string): Promise<ReturnType<typeof decodeCursor>> {
  const until = performance.now() + 2000;
  for (;;) {
    const c = await cursor(peer, tag);
    if (c.state !== CursorState.OPEN || performance.now() > until) return c;
    await sleep(5);
  }
}

async function parameterQuery(peer: Peer): Promise<void> {
  // Sensor 7, the second quarter of the time span.
  const q: Query = { sensor: 7, from: tsOf(Math.floor(ROWS / 4)), to: tsOf(Math.floor(ROWS / 2)) };
  say(`→ readings.bySensor(sensor ${q.sensor}, ${new Date(q.from).toISOString()} ≤ ts < ${new Date(q.to).toISOString()})`);
  const t = newTally();
  let inRange = true;
  let ordered = true;
  let lastTs = -Infinity;
  for await (const row of peer.stream('readings', 'bySensor', encodeQuery(q))) {
    const r = addRow(t, row);
    if (r.sensor !== q.sensor || r.ts < q.from || r.ts >= q.to) inRange = false;
    if (r.ts <= lastTs) ordered = false;
    lastTs = r.ts;
  }
  const d = await digest(peer, q);
  say(`← ${int(t.count)} rows; SQLite says ${showDigest(d)}`);
  // What the generator put there, counted from its formula rather than asked of SQLite.
  let expected = 0;
  for (let i = Math.floor(ROWS / 4); i < Math.floor(ROWS / 2); i++) if (sensorOf(i) === q.sensor) expected++;
  check('parameter query: row count, sum(id), total(value) and fold match SQLite', sameDigest(t, d), showDigest(t));
  check('parameter query: only sensor 7 within the range, in ts order, as many rows as generated', inRange && ordered && t.count === expected, `${int(t.count)} rows, ${int(expected)} generated`);
}

interface FullTable {
  /** Rows/s of `all` read with for await, row by row: the first pass (cold) and the last (warm). */
  coldRowsPerSec: number;
  rowsPerSec: number;
  /** Rows/s of `allPaged` (pages on the server) read with stream.batches() (an array per read). */
  pagedRowsPerSec: number;
}

/**
 * The whole table three times, each checked against SQLite's digest: `all` row by row, then
 * `allPaged` in pages and batches, then `all` again, so that the two ways compared both run
 * on a warm JIT and a warm page cache.
 */
async function fullTable(peer: Peer): Promise<FullTable> {
  say(`→ readings.digest() (SQLite reads the whole table to compute what the stream must match)`);
  const d = await digest(peer, null);
  const pass = async (method: 'all' | 'allPaged', label: string): Promise<number> => {
    say(`→ readings.${method}(), default credit (window starts at 128 and adapts): ${label}`);
    const t = newTally();
    let arrays = 0;
    const t0 = performance.now();
    const stream = peer.stream('readings', method, '', { metadata: { cursor: `full-${method}` } });
    if (method === 'all') {
      for await (const row of stream) addRow(t, row);
    } else {
      for await (const rows of stream.batches()) {
        arrays++;
        for (const row of rows) addRow(t, row);
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const rowsPerSec = t.count / seconds;
    const inArrays = arrays > 0 ? ` in ${int(arrays)} arrays` : '';
    say(`← ${int(t.count)} rows${inArrays} in ${seconds.toFixed(2)} s: ${int(rowsPerSec)} rows/s, ${(t.rowBytes / seconds / 1048576).toFixed(1)} MiB/s of row payload`);
    check(`full table (${method}): ${int(ROWS)} rows arrived`, t.count === ROWS && d.count === ROWS, `${int(t.count)} streamed, ${int(d.count)} in SQLite`);
    check(`full table (${method}): sum(id), total(value) and fold match SQLite`, sameDigest(t, d), showDigest(t));
    return rowsPerSec;
  };
  const coldRowsPerSec = await pass('all', 'one message per row, read with for await');
  const pagedRowsPerSec = await pass('allPaged', 'the same messages, the server yielding pages of rows, read with stream.batches()');
  const rowsPerSec = await pass('all', 'row by row again, now warm');
  return { coldRowsPerSec, rowsPerSec, pagedRowsPerSec };
}

async function slowConsumer(peer: Peer): Promise<number> {
  const tag = 'slow';
  say(`→ readings.all() with credit ${SLOW_CREDIT}, read one row every ${SLOW_MS} ms; lead = rows the server produced − rows read`);
  const stream = peer.stream('readings', 'all', '', { credit: SLOW_CREDIT, metadata: { cursor: tag } });
  let read = 0;
  let maxLead = 0;
  const leads: number[] = [];
  for await (const _row of stream) {
    read++;
    await sleep(SLOW_MS);
    const { produced } = await cursor(peer, tag);
    const lead = produced - read;
    leads.push(lead);
    maxLead = Math.max(maxLead, lead);
    if (read % SLOW_CREDIT === 0 || read <= 3) say(`  read ${String(read).padStart(3)} │ produced ${String(produced).padStart(3)} │ lead ${lead}`);
    if (read === SLOW_ROWS) break;
  }
  // Credit comes back in batches of half the window, so once the window has filled the lead
  // moves between half of it and all of it.
  const settled = leads.slice(SLOW_CREDIT);
  say(`  lead after each read: ${leads.join(' ')}`);
  const c = await cursorClosed(peer, tag);
  say(`← read ${read} rows, lead ${Math.min(...settled)}..${maxLead} with window ${SLOW_CREDIT}; server stopped at ${c.produced} rows of ${int(ROWS)} (${CURSOR_STATE_NAMES[c.state]})`);
  check(`slow consumer: the producer ran ahead up to the window (${SLOW_CREDIT}) and never past it`, maxLead === SLOW_CREDIT, `max lead ${maxLead}`);
  check('slow consumer: breaking out closed the server cursor', c.state === CursorState.CLOSED_EARLY && c.produced <= SLOW_ROWS + SLOW_CREDIT, `${CURSOR_STATE_NAMES[c.state]}, ${c.produced} produced`);
  return maxLead;
}

async function cancelled(peer: Peer): Promise<void> {
  const tag = 'cancel';
  say(`→ readings.all(), default credit, break out of for await after ${int(CANCEL_AFTER)} rows`);
  let read = 0;
  for await (const _row of peer.stream('readings', 'all', '', { metadata: { cursor: tag } })) {
    if (++read === CANCEL_AFTER) break;
  }
  const c = await cursorClosed(peer, tag);
  say(`← server cursor: ${CURSOR_STATE_NAMES[c.state]} after ${int(c.produced)} rows of ${int(ROWS)}; cursors open on the server: ${c.open}`);
  check(
    'cancelled query: the server closed its cursor early and released the statement',
    c.state === CursorState.CLOSED_EARLY && c.produced >= CANCEL_AFTER && c.produced < ROWS && c.open === 0,
    `${CURSOR_STATE_NAMES[c.state]}, ${int(c.produced)} produced, ${c.open} open`,
  );
}

async function expectError(what: string, code: string, needle: string, attempt: () => Promise<unknown>): Promise<void> {
  try {
    await attempt();
    check(what, false, 'it succeeded');
  } catch (e) {
    if (!(e instanceof PipitError)) throw e;
    say(`✗ ${e.code} (status ${e.status}): ${e.message}`);
    check(what, e.code === code && e.message.includes(needle), `${e.code}: ${e.message}`);
  }
}

async function errors(peer: Peer): Promise<void> {
  say('→ readings.add(a row with id 1, which exists)');
  await expectError('constraint error: reaches the caller as INVALID_ARGUMENT with SQLite\'s message', 'INVALID_ARGUMENT', 'UNIQUE constraint failed: readings.id', () =>
    peer.call('readings', 'add', encodeRow(1, T0, 0, 1)),
  );
  say('→ readings.add(a row for sensor 0)');
  await expectError('CHECK constraint: reaches the caller as INVALID_ARGUMENT with SQLite\'s message', 'INVALID_ARGUMENT', 'CHECK constraint failed', () =>
    peer.call('readings', 'add', encodeRow(ROWS + 1, tsOf(ROWS + 1), 0, 0)),
  );
  say('→ readings.bySensor(a 3-byte query)');
  await expectError('malformed query: the stream ends with INVALID_ARGUMENT before any row', 'INVALID_ARGUMENT', 'query is 3 bytes, expected 20', async () => {
    for await (const _row of peer.stream('readings', 'bySensor', new Uint8Array(3))) throw new Error('a row arrived');
  });
  const d = await digest(peer, null);
  check('after the errors: the table is unchanged', d.count === ROWS, `${int(d.count)} rows`);
}

// ---- processes ----

const here = fileURLToPath(new URL('.', import.meta.url));
/** The Go row server's module, and where its binary is built. */
const goModule = fileURLToPath(new URL('../../sqlite-rows-go', import.meta.url));
const goBinary = join(here, 'readings-server-go');

function exitOf(child: ChildProcess): Promise<number> {
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
}

/**
 * Build the Go server once per run (`go build` reuses its cache, so only the first build
 * compiles modernc.org/sqlite, which takes a minute or two).
 */
function buildGoServer(): void {
  say(`building the Go server: go build -o ${goBinary} (in ${goModule})`);
  const t0 = performance.now();
  mkdirSync(here, { recursive: true });
  const r = spawnSync('go', ['build', '-o', goBinary, '.'], { cwd: goModule, stdio: 'inherit' });
  if (r.error !== undefined) throw new Error(`cannot run go (${r.error.message}): --server go needs Go 1.26 or newer on PATH`);
  if (r.status !== 0) throw new Error(`go build exited with ${r.status ?? r.signal}`);
  say(`built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/**
 * Start the row server as a second process, resolving once it listens. The Node server says
 * so over the IPC channel; the Go server writes "ready" to the pipe it gets as fd 3.
 */
async function startServer(socketPath: string): Promise<{ server: ChildProcess; exit: Promise<number> }> {
  const args = ['--socket', socketPath, '--rows', String(ROWS), '--once'];
  const server =
    SERVER === 'node'
      ? fork(join(here, 'server.js'), args, { stdio: 'inherit' })
      : spawn(goBinary, [...args, '--db', databasePath(ROWS), '--ready-fd', '3'], { stdio: ['ignore', 'inherit', 'inherit', 'pipe'] });
  const exit = exitOf(server);
  const ready =
    SERVER === 'node'
      ? new Promise<void>((resolve) => server.once('message', () => resolve()))
      : new Promise<void>((resolve) => server.stdio[3]!.once('data', () => resolve()));
  const first = await Promise.race([ready.then(() => 'ready'), exit.then((code) => `exited with code ${code}`)]);
  if (first !== 'ready') throw new Error(`server ${first} before it was ready`);
  return { server, exit };
}

async function main(): Promise<number> {
  say(`pipit sqlite-rows: ${int(ROWS)} rows${ci ? ' (--ci)' : ''}, node ${process.version}, ${SERVER === 'go' ? 'Go' : 'Node'} server`);
  if (SERVER === 'go') buildGoServer();
  const gen = fork(join(here, 'generate.js'), ['--rows', String(ROWS)], { stdio: 'inherit' });
  const genCode = await exitOf(gen);
  if (genCode !== 0) throw new Error(`generate exited with code ${genCode}`);

  const dir = mkdtempSync(join(tmpdir(), 'pipit-sqlite-'));
  const socketPath = join(dir, 'readings.sock');
  let server: ChildProcess | null = null;
  try {
    const started = await startServer(socketPath);
    server = started.server;
    const serverExit = started.exit;

    const peer = await connect(socketPath);
    const startKiB = { server: Number((await peer.call('proc', 'peakRss')).toString()), client: peakRssKiB() };
    say(`connected to ${socketPath}; peak RSS so far: server ${mib(startKiB.server)}, client ${mib(startKiB.client)}`);

    say('[1] row layout');
    layoutVectors();
    await serverRowBytes(peer);
    say('[2] a query with a parameter');
    await parameterQuery(peer);
    say('[3] the full table, as fast as it goes');
    const full = await fullTable(peer);
    say('[4] a slow consumer with a small credit');
    const maxLead = await slowConsumer(peer);
    say('[5] a cancelled query');
    await cancelled(peer);
    say('[6] query errors');
    await errors(peer);

    say('[7] peak RSS (VmHWM of each process, read at the end)');
    const serverKiB = Number((await peer.call('proc', 'peakRss')).toString());
    const clientKiB = peakRssKiB();
    say(`server ${mib(serverKiB)}, client ${mib(clientKiB)}`);

    await peer.close();
    const serverCode = await serverExit;
    check('server exited 0 after the graceful close', serverCode === 0, `code ${serverCode}`);

    say('');
    say(`server                ${SERVER === 'go' ? 'Go (modernc.org/sqlite)' : 'Node (better-sqlite3)'}`);
    say(`rows                  ${int(ROWS)}`);
    say(`full table            ${int(full.rowsPerSec)} rows/s row by row (first pass ${int(full.coldRowsPerSec)}), one ${ROW_BYTES}-byte message per row`);
    say(`full table, in pages  ${int(full.pagedRowsPerSec)} rows/s, the same messages: the server yields pages, the client reads batches()`);
    say(`slow consumer         lead at most ${maxLead} rows with credit ${SLOW_CREDIT}`);
    say(`peak RSS (VmHWM)      server ${mib(serverKiB)}, client ${mib(clientKiB)} (before the first query: ${mib(startKiB.server)}, ${mib(startKiB.client)})`);
    say(`${passed} passed, ${failures.length} failed`);
    for (const f of failures) say(`  failed: ${f}`);
    return failures.length === 0 ? 0 : 1;
  } finally {
    if (server !== null && server.exitCode === null && server.signalCode === null) server.kill();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
