#!/usr/bin/env bash
# Run a command as ARM Linux under qemu-user emulation, on an x86-64 Debian machine.
#
#   scripts/arm/run.sh ARCH [--] COMMAND [ARGS...]
#   scripts/arm/run.sh ARCH --setup        prepare only (what CI can do up front)
#   scripts/arm/run.sh --unregister        remove this script's binfmt_misc entries (root)
#
# ARCH is arm64 (emulated as a Cortex-A72: a Raspberry Pi 4 with a 64-bit OS) or armhf
# (a Cortex-A7: a Pi 2/3 with a 32-bit OS). In COMMAND, `node` is Debian trixie's ARM
# build of Node.js 20; `uname -m` and other shell tools stay the host's x86 programs, while
# node's os.machine() says aarch64 / armv7l.
#
# What it prepares, once, under $PIPIT_ARM_CACHE (default: <repo>/.cache/arm, git-ignored):
#  - qemu-user 10 static binaries, from trixie's qemu-user .deb (bookworm's qemu 7.2 makes
#    each `new WebAssembly.Instance` cost ~42 ms on arm64);
#  - a sysroot per arch: trixie's nodejs and its dependency closure, downloaded with a
#    private apt configuration (own lists, empty dpkg status) and unpacked with dpkg-deb,
#    merged-/usr. The host's apt and dpkg state are not touched.
# As root it also registers binfmt_misc entries (pipit-aarch64, pipit-arm) pointing at those
# qemu binaries, so that processes the command starts (vitest workers, child_process.fork,
# process.execPath) run emulated too. Without root only single-process commands work.
#
# Environment: PIPIT_ARM_CACHE (cache directory), PIPIT_ARM_MIRROR (Debian archive URL;
# default: the first one in the host's apt sources), PIPIT_ARM_SUITE (default trixie),
# QEMU_CPU (overrides the CPU model).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${PIPIT_ARM_CACHE:-$ROOT/.cache/arm}"
SUITE="${PIPIT_ARM_SUITE:-trixie}"
BINFMT=/proc/sys/fs/binfmt_misc

log() { printf 'arm: %s\n' "$*" >&2; }
die() { printf 'arm: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
  exit 2
}

# --- arguments -----------------------------------------------------------------------------
[ $# -ge 1 ] || usage
if [ "$1" = --unregister ]; then
  for name in pipit-aarch64 pipit-arm; do
    if [ -e "$BINFMT/$name" ]; then echo -1 > "$BINFMT/$name"; log "removed binfmt_misc entry $name"; fi
  done
  exit 0
fi
ARCH="$1"; shift
case "$ARCH" in
  arm64) QEMU_NAME=qemu-aarch64; CPU=cortex-a72; ENTRY=pipit-aarch64
         MAGIC='\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00'
         MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff' ;;
  armhf) QEMU_NAME=qemu-arm; CPU=cortex-a7; ENTRY=pipit-arm
         MAGIC='\x7fELF\x01\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x28\x00'
         MASK='\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff' ;;
  *) usage ;;
esac
SETUP_ONLY=0
if [ "${1:-}" = --setup ]; then SETUP_ONLY=1; shift; fi
[ "${1:-}" = -- ] && shift
[ $SETUP_ONLY = 1 ] || [ $# -ge 1 ] || usage

mkdir -p "$CACHE"
# Two runs (say arm64 and armhf in parallel) share the qemu download: one prepares at a time.
exec 9>"$CACHE/.lock"

# --- a private apt configuration for one architecture of $SUITE -----------------------------
mirror() {
  if [ -n "${PIPIT_ARM_MIRROR:-}" ]; then echo "$PIPIT_ARM_MIRROR"; return; fi
  local uri
  uri="$( (grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources || true) | awk '{print $2}' | grep -v -- '-security' | head -n1)"
  [ -n "$uri" ] || uri="$( (grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list || true) | sed 's/\[[^]]*\]//' | awk '{print $2}' | grep -v -- '-security' | head -n1)"
  echo "${uri:-http://deb.debian.org/debian}"
}

# apt_for ARCH: prints the path of an apt.conf whose lists are up to date for ARCH.
apt_for() {
  local arch="$1" dir="$CACHE/apt/$1"
  local conf="$dir/apt.conf"
  if [ ! -f "$dir/.updated" ]; then
    rm -rf "$dir"
    mkdir -p "$dir/state/lists/partial" "$dir/cache/archives/partial" "$dir/etc/apt.conf.d" "$dir/etc/preferences.d" "$dir/etc/sources.list.d" "$dir/log"
    : > "$dir/state/status"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -f "$keyring" ] || die "$keyring is missing (package debian-archive-keyring)"
    echo "deb [arch=$arch signed-by=$keyring] $(mirror) $SUITE main" > "$dir/etc/sources.list"
    cat > "$conf" <<EOF
APT::Architecture "$arch";
APT::Architectures { "$arch"; };
APT::Install-Recommends "false";
APT::Get::Assume-Yes "true";
Dir::State "$dir/state";
Dir::State::status "$dir/state/status";
Dir::Cache "$dir/cache";
Dir::Etc::main "/dev/null";
Dir::Etc::parts "$dir/etc/apt.conf.d";
Dir::Etc::sourcelist "$dir/etc/sources.list";
Dir::Etc::sourceparts "$dir/etc/sources.list.d";
Dir::Etc::preferences "$dir/etc/preferences";
Dir::Etc::preferencesparts "$dir/etc/preferences.d";
Dir::Log "$dir/log";
Debug::NoLocking "true";
APT::Sandbox::User "root";
Acquire::Languages "none";
Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";
Acquire::Check-Valid-Until "false";
Acquire::Check-Date "false";
EOF
    log "apt-get update ($SUITE, $arch)"
    APT_CONFIG="$conf" apt-get -q update >"$dir/log/update.log" 2>&1 || { cat "$dir/log/update.log" >&2; die "apt-get update failed for $arch"; }
    touch "$dir/.updated"
  fi
  echo "$conf"
}

# Unpack .debs into a directory whose /bin, /sbin and /lib are links into /usr.
unpack() {
  local into="$1"; shift
  mkdir -p "$into/usr/bin" "$into/usr/sbin" "$into/usr/lib"
  for d in bin sbin lib; do [ -e "$into/$d" ] || ln -s "usr/$d" "$into/$d"; done
  local deb
  for deb in "$@"; do
    dpkg-deb --fsys-tarfile "$deb" | tar -x --keep-directory-symlink -C "$into"
  done
}

# --- qemu 10 -------------------------------------------------------------------------------
QEMU_DIR="$CACHE/qemu"
QEMU="$QEMU_DIR/usr/bin/$QEMU_NAME"
prepare_qemu() {
  [ -f "$QEMU_DIR/.complete" ] && return
  local conf tmp
  conf="$(apt_for amd64)"
  tmp="$(mktemp -d "$CACHE/qemu.XXXXXX")"
  log "downloading $SUITE's qemu-user (static binaries)"
  (cd "$tmp" && APT_CONFIG="$conf" apt-get -q download qemu-user >/dev/null)
  rm -rf "$QEMU_DIR"
  mkdir -p "$tmp/root"
  dpkg-deb --fsys-tarfile "$tmp"/qemu-user_*.deb | tar -x -C "$tmp/root" ./usr/bin/qemu-aarch64 ./usr/bin/qemu-arm
  mkdir -p "$QEMU_DIR/usr/bin"
  mv "$tmp/root/usr/bin/qemu-aarch64" "$tmp/root/usr/bin/qemu-arm" "$QEMU_DIR/usr/bin/"
  basename "$tmp"/qemu-user_*.deb > "$QEMU_DIR/.complete"
  rm -rf "$tmp"
  "$QEMU_DIR/usr/bin/qemu-aarch64" --version | head -n1 >&2
}

# --- the sysroot: trixie's nodejs for ARCH ---------------------------------------------------
SYSROOT="$CACHE/sysroot-$ARCH"
prepare_sysroot() {
  [ -f "$SYSROOT/.complete" ] && return
  local conf
  conf="$(apt_for "$ARCH")"
  log "downloading $SUITE's nodejs for $ARCH and what it depends on"
  APT_CONFIG="$conf" apt-get -q install --download-only nodejs >"$CACHE/apt/$ARCH/log/install.log" 2>&1 \
    || { cat "$CACHE/apt/$ARCH/log/install.log" >&2; die "could not download nodejs for $ARCH"; }
  rm -rf "$SYSROOT"
  unpack "$SYSROOT" "$CACHE/apt/$ARCH/cache/archives/"*.deb
  (cd "$CACHE/apt/$ARCH/cache/archives" && ls -1 ./*.deb | sed 's|^\./||') > "$SYSROOT/.complete"
  [ -e "$SYSROOT/usr/bin/node" ] || [ -e "$SYSROOT/usr/bin/nodejs" ] || die "no node in the $ARCH sysroot"
  [ -e "$SYSROOT/usr/bin/node" ] || ln -s nodejs "$SYSROOT/usr/bin/node"
  rm -f "$CACHE/apt/$ARCH/cache/archives/"*.deb
  log "$ARCH sysroot: $(wc -l < "$SYSROOT/.complete") packages, $(du -sh "$SYSROOT" | cut -f1)"
}

# --- binfmt_misc -----------------------------------------------------------------------------
# Prints "yes" when ARM executables started by any process run under our qemu.
register_binfmt() {
  local entry="$BINFMT/$ENTRY" current
  if [ -e "$entry" ] && grep -qx enabled "$entry"; then
    # Another checkout's entry with the same qemu binary will do: replacing it would leave a
    # moment without one, when a run of that checkout could fail to start a child process.
    current="$(sed -n 's/^interpreter //p' "$entry")"
    if [ "$current" = "$QEMU" ] || { [ -n "$current" ] && cmp -s "$current" "$QEMU"; }; then echo yes; return; fi
  fi
  if [ "$(id -u)" != 0 ]; then echo no; return; fi
  if [ ! -e "$BINFMT/register" ]; then
    mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null || { echo no; return; }
  fi
  [ -e "$entry" ] && echo -1 > "$entry"
  # O: qemu gets an open file of the binary; P: argv[0] is kept; F: the interpreter is
  # opened now, so it works in any mount namespace. The newest matching entry wins.
  echo ":$ENTRY:M::$MAGIC:$MASK:$QEMU:OPF" > "$BINFMT/register" || { echo no; return; }
  echo 1 > "$BINFMT/status" 2>/dev/null || true
  echo yes
}

flock 9
prepare_qemu
prepare_sysroot
HAVE_BINFMT="$(register_binfmt)"
exec 9>&-

# A bin directory that puts the ARM node first on PATH.
BIN="$CACHE/bin-$ARCH"
mkdir -p "$BIN"
if [ "$HAVE_BINFMT" = yes ]; then
  ln -sfn "$SYSROOT/usr/bin/node" "$BIN/node"
else
  log "binfmt_misc is not available (run as root to register it): processes that start other node processes will fail"
  rm -f "$BIN/node"
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$QEMU" "$SYSROOT/usr/bin/node" > "$BIN/node"
  chmod +x "$BIN/node"
fi

export QEMU_LD_PREFIX="$SYSROOT"
export QEMU_CPU="${QEMU_CPU:-$CPU}"
export PATH="$BIN:$PATH"
if [ $SETUP_ONLY = 1 ]; then
  log "$ARCH ready (binfmt_misc: $HAVE_BINFMT): $(node -p 'process.version + " " + process.arch + " " + require("os").machine()' 2>&1)"
  exit 0
fi
exec "$@"
