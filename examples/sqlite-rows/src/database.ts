/**
 * The example's database: one `readings` table in a SQLite file next to the example,
 * generated on first use, one file per table size (readings-<rows>.db).
 */
import { existsSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

/** Bumped when the schema or the generated data change: older files are regenerated. */
export const SCHEMA_VERSION = 1;
/** Sensors the generated rows are spread over. */
export const SENSORS = 64;
/** Timestamp of row 0 (2026-01-01T00:00:00Z) and the step between consecutive rows. */
export const T0 = Date.UTC(2026, 0, 1);
export const STEP_MS = 1000;

/**
 * STRICT makes SQLite refuse values of the wrong type, so every row fits the fixed binary
 * layout (layout.ts): integers stay integers, `value` is always a REAL, and the CHECK keeps
 * `sensor` within a u32.
 */
const SCHEMA = `
  CREATE TABLE readings (
    id     INTEGER PRIMARY KEY,
    sensor INTEGER NOT NULL CHECK (sensor BETWEEN 1 AND 4294967295),
    ts     INTEGER NOT NULL,
    value  REAL    NOT NULL
  ) STRICT;
`;

/** Row i of the generated table (i from 1): deterministic, so a run can be checked. */
export function sensorOf(i: number): number {
  return 1 + (i % SENSORS);
}
export function tsOf(i: number): number {
  return T0 + i * STEP_MS;
}
/**
 * Multiples of 1/8 between -250 and 250: they and every partial sum of them are exact in a
 * double, so total(value) in SQLite equals the consumer's running sum whatever the order.
 */
export function valueOf(i: number): number {
  return (((i * 7919) % 4001) - 2000) / 8;
}

const exampleDir = fileURLToPath(new URL('..', import.meta.url));

export function databasePath(rows: number): string {
  return join(exampleDir, `readings-${rows}.db`);
}

/** The file exists and was made by this version of the generator. */
export function isReady(path: string): boolean {
  if (!existsSync(path)) return false;
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return db.pragma('user_version', { simple: true }) === SCHEMA_VERSION;
  } finally {
    db.close();
  }
}

/**
 * Write a table of `rows` rows to `path`: into a temporary file first, renamed into place at
 * the end, so an interrupted run never leaves a half-filled database that looks ready.
 * One transaction and one prepared INSERT; no journal while filling a file nobody else sees.
 * @returns the file size in bytes.
 */
export function generate(path: string, rows: number): number {
  const tmp = `${path}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  const db = new Database(tmp);
  try {
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.exec(SCHEMA);
    const insert = db.prepare('INSERT INTO readings (id, sensor, ts, value) VALUES (?, ?, ?, ?)');
    db.transaction(() => {
      for (let i = 1; i <= rows; i++) insert.run(i, sensorOf(i), tsOf(i), valueOf(i));
    })();
    db.exec('CREATE INDEX readings_sensor_ts ON readings (sensor, ts)');
    db.pragma(`user_version = ${SCHEMA_VERSION}`);
    // Served in WAL mode: readers keep reading while the writer commits.
    db.pragma('journal_mode = WAL');
  } catch (e) {
    db.close();
    rmSync(tmp, { force: true });
    throw e;
  }
  db.close();
  renameSync(tmp, path);
  return statSync(path).size;
}
