#!/usr/bin/env bash
# Run the Go module's tests as ARM under qemu-user: cross-compiled test binaries (static,
# CGO_ENABLED=0, so no sysroot is needed) for
#   arm64  GOARCH=arm64         on a Cortex-A72 (Raspberry Pi 4/5, 64-bit OS)
#   armv7  GOARCH=arm GOARM=7   on a Cortex-A7  (Pi 2/3, 32-bit OS)
#   armv6  GOARCH=arm GOARM=6   on an ARM1176   (Pi Zero / Pi 1, where Node has no build)
#
#   scripts/arm/go-test.sh [arm64,armv7,armv6] [go test flags...]
#
# The qemu binaries come from scripts/arm/run.sh's cache (it prepares them on first use).
# Arches run one after another; each prints its own result line. Extra flags go to the test
# binary (e.g. -test.run TestScenarios); -test.short is always set (it skips the stress test,
# which measures nothing an emulator can answer).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PIPIT_ARM_CACHE:-$ROOT/.cache/arm}"
arches="${1:-arm64,armv7,armv6}"
[ $# -gt 0 ] && shift
# qemu-aarch64 and qemu-arm, from the same download as the Node runs.
"$ROOT/scripts/arm/run.sh" arm64 --setup >/dev/null 2>&1 || "$ROOT/scripts/arm/run.sh" arm64 --setup
QEMU_DIR="$CACHE/qemu/usr/bin"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
status=0
for arch in ${arches//,/ }; do
  case "$arch" in
    arm64) env=(GOARCH=arm64); qemu="$QEMU_DIR/qemu-aarch64"; cpu=cortex-a72 ;;
    armv7) env=(GOARCH=arm GOARM=7); qemu="$QEMU_DIR/qemu-arm"; cpu=cortex-a7 ;;
    armv6) env=(GOARCH=arm GOARM=6); qemu="$QEMU_DIR/qemu-arm"; cpu=arm1176 ;;
    *) echo "go-test: unknown arch $arch (arm64, armv7, armv6)" >&2; exit 2 ;;
  esac
  (cd "$ROOT/go" && env CGO_ENABLED=0 GOOS=linux "${env[@]}" go test -c -o "$out/pipit-$arch.test" .)
  start=$(date +%s)
  # The test binary reads spec/ relative to its package directory, as `go test` runs it.
  if (cd "$ROOT/go" && "$qemu" -cpu "$cpu" "$out/pipit-$arch.test" -test.v -test.short -test.count=1 "$@" > "$out/$arch.log" 2>&1); then
    echo "go-test: $arch ($cpu): PASS, $(grep -c "^--- PASS" "$out/$arch.log" || true) tests, in $(( $(date +%s) - start )) s"
  else
    status=1
    cat "$out/$arch.log"
    echo "go-test: $arch ($cpu): FAIL after $(( $(date +%s) - start )) s"
  fi
done
exit $status
