#!/usr/bin/env bash
# The Go implementation's checks, run by `npm test` after the TS suite: formatting, vet, the
# race-enabled tests (vectors, scenarios, constants, reliability, interop with a Go peer),
# and each fuzz target for a bounded time (PIPIT_GO_FUZZTIME, default 10s; 0 skips them).
set -euo pipefail
cd "$(dirname "$0")/../go"
if ! command -v go >/dev/null 2>&1; then
  if [ -n "${CI:-}" ]; then
    echo "test:go: go is not installed, and CI requires the Go implementation" >&2
    exit 1
  fi
  echo "test:go: go is not installed: the Go implementation and the Go side of the interop tests were skipped"
  exit 0
fi
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "test:go: gofmt would change:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -race -count=1 ./...
fuzztime=${PIPIT_GO_FUZZTIME:-10s}
if [ "$fuzztime" != "0" ]; then
  for target in $(go test -list '^Fuzz' . | grep '^Fuzz'); do
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" .
  done
fi
