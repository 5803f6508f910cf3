/**
 * The row server: serves the `readings` table of a SQLite file over a Unix socket.
 *
 *   node dist/server.js --socket /tmp/readings.sock --rows 1000000 [--once]
 *
 * Service `readings` (message layouts in layout.ts):
 *   all       stream  every row in id order, one 28-byte message per row
 *   allPaged  stream  the same rows and messages, the generator yielding pages of PAGE_ROWS
 *                     rows (arrays: each row is still its own message on the wire)
 *   bySensor  stream  rows of one sensor in a time range (a 20-byte query), in ts order
 *   add       unary   insert one row (28 bytes); a broken constraint is INVALID_ARGUMENT
 *   digest    unary   count, sum(id), total(value) and the fold of the rows `all` (empty
 *                     payload) or `bySensor` (a query) would stream, to check a stream against
 *   cursor    unary   where the stream tagged with metadata `cursor: <tag>` is (payload: the tag)
 * Service `proc`:
 *   peakRss   unary   this process's VmHWM in KiB, as decimal text
 *
 * With --once it exits after its first connection closes.
 */
import { performance } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { listen, PipitError, type HandlerContext } from 'pipit';
import { databasePath, generate, isReady } from './database.js';
import {
  CursorState, CURSOR_STATE_NAMES, FOLD_START, decodeQuery, decodeRow, encodeCursor, encodeDigest, encodeRow, foldRow,
  type Query, type RawRow,
} from './layout.js';
import { int, mib, peakRssKiB, sayer } from './util.js';

const say = sayer('server');

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const socketPath = arg('--socket') ?? '/tmp/pipit-readings.sock';
const rows = Number(arg('--rows') ?? 1_000_000);
const once = process.argv.includes('--once');

const dbPath = databasePath(rows);
if (!isReady(dbPath)) {
  say(`${dbPath} is missing: generating it here (this process's peak RSS will include that)`);
  generate(dbPath, rows);
}
// Two connections. A connection with a cursor open refuses writes ("This database connection
// is busy executing a query"), and streams keep cursors open for as long as their consumer
// takes, so writes go through their own connection. WAL mode lets both work at once.
const writer = new Database(dbPath, { fileMustExist: true });
const reader = new Database(dbPath, { readonly: true, fileMustExist: true });
const insert = writer.prepare('INSERT INTO readings (id, sensor, ts, value) VALUES (?, ?, ?, ?)');

/** The SELECT a stream runs: columns in the order RawRow names them. */
function select(q: Query | null): { sql: string; params: number[] } {
  const columns = 'SELECT id, ts, value, sensor FROM readings';
  if (q === null) return { sql: `${columns} ORDER BY id`, params: [] };
  return { sql: `${columns} WHERE sensor = ? AND ts >= ? AND ts < ? ORDER BY ts`, params: [q.sensor, q.from, q.to] };
}

// ---- cursors: what each stream is doing, for the `cursor` method and the log ----

interface Cursor {
  produced: number;
  state: CursorState;
}
const cursors = new Map<string, Cursor>();
/** Finished cursors kept for `cursor` (the oldest go first); untagged ones are not kept. */
const KEEP_CURSORS = 256;
/** Rows per page of `allPaged`. */
const PAGE_ROWS = 256;
let openCursors = 0;
let untagged = 0;

/**
 * Stream the rows of one query, one message per row. The statement is prepared per call: a
 * better-sqlite3 Statement runs one iterator at a time, and two callers may stream the same
 * query at once. pipit pulls the next row only while the caller's credit allows, so however
 * large the table, at most a window of rows is read ahead of the consumer. When the caller
 * stops early, pipit calls this generator's return(): the for-of below then calls the
 * cursor's return() (SQLite's statement is reset) and the finally block runs. Nothing here
 * needs ctx.signal: the generator is simply not resumed again.
 */
async function* streamRows(ctx: HandlerContext, q: Query | null, page = 1): AsyncGenerator<Buffer | Buffer[]> {
  const tagged = ctx.metadata.cursor !== undefined;
  const tag = ctx.metadata.cursor ?? `${ctx.method}#${++untagged}`;
  const cursor: Cursor = { produced: 0, state: CursorState.OPEN };
  cursors.set(tag, cursor);
  openCursors++;
  const t0 = performance.now();
  const { sql, params } = select(q);
  let stmt: Database.Statement<number[], RawRow> | null = null;
  try {
    stmt = reader.prepare<number[], RawRow>(sql).raw();
    if (page === 1) {
      for (const [id, ts, value, sensor] of stmt.iterate(...params)) {
        cursor.produced++;
        yield encodeRow(id, ts, value, sensor);
      }
    } else {
      // A page is one step of this generator, so one await serves PAGE_ROWS rows. The
      // caller's credit still paces the messages; the page itself is read ahead of it.
      let rows: Buffer[] = [];
      for (const [id, ts, value, sensor] of stmt.iterate(...params)) {
        cursor.produced++;
        rows.push(encodeRow(id, ts, value, sensor));
        if (rows.length === page) {
          yield rows;
          rows = [];
        }
      }
      if (rows.length > 0) yield rows;
    }
    cursor.state = CursorState.DONE;
  } catch (e) {
    cursor.state = CursorState.FAILED;
    throw sqliteStatus(e);
  } finally {
    openCursors--;
    const busy = stmt?.busy === true;
    if (cursor.state === CursorState.OPEN) cursor.state = busy ? CursorState.LEAKED : CursorState.CLOSED_EARLY;
    else if (busy) cursor.state = CursorState.LEAKED;
    const s = ((performance.now() - t0) / 1000).toFixed(2);
    const how =
      cursor.state === CursorState.CLOSED_EARLY
        ? `closed early by the caller after ${int(cursor.produced)} rows: the for-of called the cursor's return(), statement busy=${busy}`
        : `${CURSOR_STATE_NAMES[cursor.state]} after ${int(cursor.produced)} rows in ${s} s, statement busy=${busy}`;
    say(`cursor "${tag}" (${ctx.method}) ${how}`);
    if (!tagged) cursors.delete(tag);
    while (cursors.size > KEEP_CURSORS) cursors.delete(cursors.keys().next().value!);
  }
}

/**
 * What a SQLite failure becomes on the wire: SQLite's code and message travel in the status
 * message. A broken constraint is the caller's data, INVALID_ARGUMENT; any other SQLite
 * error is APPLICATION_ERROR. Anything else is left to pipit (APPLICATION_ERROR with the
 * error's message).
 */
function sqliteStatus(e: unknown): unknown {
  if (!(e instanceof Database.SqliteError)) return e;
  return new PipitError(e.code.startsWith('SQLITE_CONSTRAINT') ? 'INVALID_ARGUMENT' : 'APPLICATION_ERROR', `${e.code}: ${e.message}`);
}

/** Decode a request; a malformed one (wrong size, out of range) is INVALID_ARGUMENT. */
function parse<T>(decode: (bytes: Uint8Array) => T, payload: Buffer): T {
  try {
    return decode(payload);
  } catch (e) {
    throw new PipitError('INVALID_ARGUMENT', e instanceof Error ? e.message : String(e));
  }
}

const readings = {
  all(_payload: Buffer, ctx: HandlerContext): AsyncGenerator<Buffer | Buffer[]> {
    return streamRows(ctx, null);
  },

  allPaged(_payload: Buffer, ctx: HandlerContext): AsyncGenerator<Buffer | Buffer[]> {
    return streamRows(ctx, null, PAGE_ROWS);
  },

  bySensor(payload: Buffer, ctx: HandlerContext): AsyncGenerator<Buffer | Buffer[]> {
    return streamRows(ctx, parse(decodeQuery, payload));
  },

  add(payload: Buffer): void {
    const r = parse(decodeRow, payload);
    try {
      insert.run(r.id, r.sensor, r.ts, r.value);
    } catch (e) {
      throw sqliteStatus(e);
    }
  },

  /** Reads every row it describes, synchronously: a check for the example, not a fast path. */
  digest(payload: Buffer): Buffer {
    const q = payload.length === 0 ? null : parse(decodeQuery, payload);
    const { sql, params } = select(q);
    const where = q === null ? '' : 'WHERE sensor = ? AND ts >= ? AND ts < ?';
    try {
      const [count, idSum, valueTotal] = reader
        .prepare<number[], [number, number, number]>(`SELECT count(*), coalesce(sum(id), 0), total(value) FROM readings ${where}`)
        .raw()
        .get(...params)!;
      let fold = FOLD_START;
      for (const [id, ts, value, sensor] of reader.prepare<number[], RawRow>(sql).raw().iterate(...params)) {
        fold = foldRow(fold, encodeRow(id, ts, value, sensor));
      }
      return encodeDigest({ count, idSum, valueTotal, fold });
    } catch (e) {
      throw sqliteStatus(e);
    }
  },

  cursor(payload: Buffer): Buffer {
    const c = cursors.get(payload.toString());
    return encodeCursor(c?.produced ?? 0, c?.state ?? CursorState.UNKNOWN, openCursors);
  },
};

const proc = {
  peakRss(): string {
    return String(peakRssKiB());
  },
};

async function main(): Promise<void> {
  const server = await listen(socketPath, { services: { readings, proc } });
  say(`serving ${dbPath} on ${socketPath} (pid ${process.pid})`);
  process.send?.('ready');

  const stop = async (code: number): Promise<never> => {
    await server.close({ timeout: 1000 });
    reader.close();
    writer.close();
    say(`peak RSS (VmHWM) ${mib(peakRssKiB())}`);
    process.exit(code);
  };
  server.on('disconnect', (_peer, error) => {
    say(error === null ? 'client disconnected gracefully' : `client connection failed: ${error.code} ${error.message}`);
    if (once) void stop(error === null ? 0 : 1);
  });
  process.once('SIGINT', () => void stop(0));
  process.once('SIGTERM', () => void stop(0));
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
