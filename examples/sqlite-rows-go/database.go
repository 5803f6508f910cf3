package main

// The example's database: the same readings table, with the same generated rows, as the
// Node example's src/database.ts, so either server can serve a file the other made.

import (
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver: SQLite translated to Go, no cgo
)

// schemaVersion is the file's user_version; a file with another one is not used.
const schemaVersion = 1

// sensors is how many sensors the generated rows are spread over.
const sensors = 64

// t0 is the timestamp of row 0 (2026-01-01T00:00:00Z, in ms); rows are stepMs apart.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

const stepMs = 1000

const schema = `
  CREATE TABLE readings (
    id     INTEGER PRIMARY KEY,
    sensor INTEGER NOT NULL CHECK (sensor BETWEEN 1 AND 4294967295),
    ts     INTEGER NOT NULL,
    value  REAL    NOT NULL
  ) STRICT;
`

// Row i of the generated table (i from 1).
func sensorOf(i int64) uint32 { return uint32(1 + i%sensors) }
func tsOf(i int64) int64      { return t0 + i*stepMs }

// valueOf gives multiples of 1/8 between -250 and 250: they and their sums are exact in a
// double, so total(value) equals a consumer's running sum in any order.
func valueOf(i int64) float64 { return float64((i*7919)%4001-2000) / 8 }

// dsn is the driver's name for the file at path with URI parameters (mode=ro, _pragma=...).
func dsn(path, params string) string {
	u := "file:" + (&url.URL{Path: path}).EscapedPath()
	if params != "" {
		u += "?" + params
	}
	return u
}

// isReady reports whether path exists and was made by this version of the generator.
func isReady(path string) bool {
	if _, err := os.Stat(path); err != nil {
		return false
	}
	db, err := sql.Open("sqlite", dsn(path, "mode=ro"))
	if err != nil {
		return false
	}
	defer db.Close()
	var v int
	return db.QueryRow("PRAGMA user_version").Scan(&v) == nil && v == schemaVersion
}

// generate writes a table of n rows to path: into a temporary file first, renamed into
// place at the end, so an interrupted run never leaves a half-filled file that looks ready.
// One transaction and one prepared INSERT, no journal while filling a file nobody else sees.
// It returns the file's size.
func generate(path string, n int64) (int64, error) {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	os.Remove(tmp)
	err := fill(tmp, n)
	if err != nil {
		os.Remove(tmp)
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

func fill(path string, n int64) error {
	db, err := sql.Open("sqlite", dsn(path, "_pragma=journal_mode(OFF)&_pragma=synchronous(OFF)"))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // the pragmas below are per connection
	if _, err := db.Exec(schema); err != nil {
		return err
	}
	tx, err := db.Begin()
	if err != nil {
		return err
	}
	insert, err := tx.Prepare("INSERT INTO readings (id, sensor, ts, value) VALUES (?, ?, ?, ?)")
	if err != nil {
		tx.Rollback()
		return err
	}
	for i := int64(1); i <= n; i++ {
		if _, err := insert.Exec(i, int64(sensorOf(i)), tsOf(i), valueOf(i)); err != nil {
			tx.Rollback()
			return err
		}
	}
	insert.Close()
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, s := range []string{
		"CREATE INDEX readings_sensor_ts ON readings (sensor, ts)",
		fmt.Sprintf("PRAGMA user_version = %d", schemaVersion),
		"PRAGMA journal_mode = WAL", // served in WAL mode: readers go on while the writer commits
	} {
		if _, err := db.Exec(s); err != nil {
			return err
		}
	}
	return nil
}
