#!/usr/bin/env bash
# Run the TypeScript test suite (or part of it) as ARM under qemu-user emulation.
#
#   scripts/arm/test.sh [ARCHES] [VITEST ARGS...]      (npm run test:arm -- [ARCHES] [ARGS...])
#
# ARCHES: arm64, armhf, or both as "arm64,armhf" (run side by side, each one's output shown
# when it ends); default $PIPIT_ARM_ARCH or arm64. VITEST ARGS go to `vitest run`: file
# filters such as `test/codec` or `--project unit`.
#
# The build (asc, tsc) runs on the host, as Debian's ARM node runs the result the same way
# (the .wasm and generated files are byte-identical when built under emulation). Each arch
# gets a copy of the project in <cache>/work-ARCH whose node_modules come from
# `npm ci --cpu=arm64|arm`: the ARM builds of the native dev tools (rolldown, lightningcss)
# that vitest loads. The copy's node_modules are reused while package-lock.json is unchanged.
# PIPIT_ARM_NO_BUILD=1 skips the host build (when it was just done).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PIPIT_ARM_CACHE:-$ROOT/.cache/arm}"
RUN="$ROOT/scripts/arm/run.sh"

ARCHES="${PIPIT_ARM_ARCH:-arm64}"
case "${1:-}" in arm64|armhf|arm64,armhf|armhf,arm64) ARCHES="$1"; shift ;; esac
[ "${1:-}" = -- ] && shift
IFS=, read -r -a LIST <<< "$ARCHES"

cd "$ROOT"
[ -d node_modules ] || { echo "arm: run npm ci first (the build runs on the host)" >&2; exit 1; }
if [ "${PIPIT_ARM_NO_BUILD:-0}" != 1 ]; then npm run build --silent; fi
mkdir -p "$CACHE"

# Prepare emulation for each arch one after the other (they share downloads and a lock).
for arch in "${LIST[@]}"; do "$RUN" "$arch" --setup; done

# work_copy ARCH: <cache>/work-ARCH holds the project as it is now, with ARM node_modules.
work_copy() {
  local arch="$1" cpu work lock
  case "$arch" in arm64) cpu=arm64 ;; armhf) cpu=arm ;; esac
  work="$CACHE/work-$arch"
  mkdir -p "$work"
  lock="$(sha256sum package-lock.json | cut -c1-16)"
  if [ ! -f "$work/node_modules/.pipit-lock-$lock" ]; then
    echo "arm: npm ci --cpu=$cpu in $work" >&2
    rm -rf "$work/node_modules"
    cp package.json package-lock.json "$work/"
    (cd "$work" && npm ci --os=linux --cpu="$cpu" --libc=glibc --ignore-scripts --no-audit --no-fund --loglevel=error >&2)
    touch "$work/node_modules/.pipit-lock-$lock"
  fi
  # Everything but node_modules is replaced by the current tree, built files included.
  find "$work" -mindepth 1 -maxdepth 1 ! -name node_modules -exec rm -rf {} +
  tar -C "$ROOT" --exclude=./node_modules --exclude=./.cache --exclude=./.git -cf - . | tar -C "$work" -xf -
  echo "$work"
}

run_one() {
  local arch="$1"; shift
  local work t0 rc=0
  work="$(work_copy "$arch")"
  t0=$(date +%s)
  (cd "$work" && "$RUN" "$arch" -- node node_modules/vitest/vitest.mjs run "$@") || rc=$?
  echo "arm: $arch: vitest exited $rc after $(( $(date +%s) - t0 )) s" >&2
  return $rc
}

if [ "${#LIST[@]}" = 1 ]; then
  run_one "${LIST[0]}" "$@"
  exit
fi

# Several arches side by side: each one's output goes to <cache>/ARCH.log, shown when it ends.
pids=()
for arch in "${LIST[@]}"; do
  run_one "$arch" "$@" > "$CACHE/$arch.log" 2>&1 &
  pids+=($!)
done
rc=0
for k in "${!LIST[@]}"; do
  r=0; wait "${pids[$k]}" || r=$?
  echo "=== ${LIST[$k]} (exit $r) ==="
  cat "$CACHE/${LIST[$k]}.log"
  [ $r = 0 ] || rc=$r
done
exit $rc
