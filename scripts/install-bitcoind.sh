#!/usr/bin/env bash
# Install a project-local regtest `bitcoind` (+ `bitcoin-cli`) for l402 tests.
#
# Debian 12 (bookworm) ships no Bitcoin node, so this fetches Debian trixie's
# `bitcoin-knots` (trixie-backports) plus the trixie shared libraries it needs
# with `apt-get download` under a *private* sources list / state / cache (the
# system's apt configuration is not modified), unpacks them with `dpkg-deb -x`
# and writes small wrappers that start the binaries through the unpacked
# trixie dynamic loader:
#
#   <dir>/bin/bitcoind     -> <dir>/root/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2
#                               --library-path <lib> <dir>/root/usr/bin/bitcoind "$@"
#   <dir>/bin/bitcoin-cli  -> same for bitcoin-cli
#
# If a working `bitcoind` is already on PATH, the wrappers just exec it.
#
# Install dir: $L402_BITCOIND_DIR, default <repo root>/.tools/bitcoind
# Optional:    $L402_DEBIAN_MIRROR overrides the mirror read from /etc/apt.
# Idempotent: re-running with a working install does nothing.
set -euo pipefail

die() { printf 'install-bitcoind: ERROR: %s\n' "$*" >&2; exit 1; }
log() { printf 'install-bitcoind: %s\n' "$*" >&2; }
trap 'rc=$?; printf "install-bitcoind: ERROR: command failed (exit %s) at line %s: %s\n" "$rc" "$LINENO" "$BASH_COMMAND" >&2' ERR

SCRIPT_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd -- "$SCRIPT_DIR/.." && pwd -P)
INSTALL_DIR=${L402_BITCOIND_DIR:-$REPO_ROOT/.tools/bitcoind}
mkdir -p -- "$INSTALL_DIR" || die "cannot create install dir $INSTALL_DIR"
INSTALL_DIR=$(cd -- "$INSTALL_DIR" && pwd -P)
BIN_DIR=$INSTALL_DIR/bin
STAMP=$INSTALL_DIR/.installed

# trixie packages: the node itself plus the full shared-library closure of
# bitcoind/bitcoin-cli (libzmq5 pulls in sodium, pgm, norm, bsd/md, krb5/gssapi).
PACKAGES=(
  bitcoin-knots
  libc6 libgcc-s1 libstdc++6
  libevent-core-2.1-7t64 libevent-extra-2.1-7t64 libevent-pthreads-2.1-7t64
  libsqlite3-0
  libzmq5 libsodium23 libpgm-5.3-0t64 libnorm1t64 libbsd0 libmd0
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
)
DEB_SPEC="deb-v1:trixie+trixie-backports:${PACKAGES[*]}"
KEYRING_DEFAULT=/usr/share/keyrings/debian-archive-keyring.gpg

first_line() { local out; out=$("$@" 2>&1) || return 1; printf '%s\n' "${out%%$'\n'*}"; }

report() {
  local v
  v=$(first_line "$BIN_DIR/bitcoind" -version) || die "$BIN_DIR/bitcoind -version failed"
  printf '%s\n%s\n' "$BIN_DIR/bitcoind" "$v"
}

# An install is "working" if the stamp matches and the wrappers run.
installed_ok() {
  [[ -f $STAMP && -x $BIN_DIR/bitcoind ]] || return 1
  local spec; spec=$(<"$STAMP")
  case $spec in
    deb-v1:*) [[ $spec == "$DEB_SPEC" && -x $BIN_DIR/bitcoin-cli ]] || return 1 ;;
    path:*) ;;
    *) return 1 ;;
  esac
  "$BIN_DIR/bitcoind" -version >/dev/null 2>&1 || return 1
  if [[ -x $BIN_DIR/bitcoin-cli ]]; then "$BIN_DIR/bitcoin-cli" -version >/dev/null 2>&1 || return 1; fi
}

# Write an executable file atomically: write_exe <path> <content>
write_exe() {
  local tmp="$1.tmp.$$"
  printf '%s' "$2" >"$tmp" && chmod 755 "$tmp" && mv -f -- "$tmp" "$1"
}

# --- fast path ------------------------------------------------------------
if installed_ok; then report; exit 0; fi

# Serialise concurrent runs (e.g. parallel test setups).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$INSTALL_DIR/.lock"
  flock 9
  if installed_ok; then report; exit 0; fi
fi

mkdir -p -- "$BIN_DIR"

# --- 1. a bitcoind already on PATH ---------------------------------------
if sys_bitcoind=$(command -v bitcoind 2>/dev/null); then
  sys_bitcoind=$(readlink -f -- "$sys_bitcoind")
  if [[ $sys_bitcoind != "$INSTALL_DIR"/* ]] && "$sys_bitcoind" -version >/dev/null 2>&1; then
    log "using bitcoind from PATH: $sys_bitcoind"
    rm -f -- "$STAMP"
    write_exe "$BIN_DIR/bitcoind" "#!/bin/sh
exec '$sys_bitcoind' \"\$@\"
"
    rm -f -- "$BIN_DIR/bitcoin-cli"
    if sys_cli=$(command -v bitcoin-cli 2>/dev/null); then
      sys_cli=$(readlink -f -- "$sys_cli")
      if [[ $sys_cli != "$INSTALL_DIR"/* ]]; then
        write_exe "$BIN_DIR/bitcoin-cli" "#!/bin/sh
exec '$sys_cli' \"\$@\"
"
      fi
    fi
    [[ -x $BIN_DIR/bitcoin-cli ]] || log "WARNING: no bitcoin-cli on PATH; only the bitcoind wrapper was written"
    printf 'path:%s\n' "$sys_bitcoind" >"$STAMP"
    installed_ok || die "wrapper around $sys_bitcoind does not work"
    report
    exit 0
  fi
fi

# --- 2. fetch trixie's bitcoin-knots with a private apt setup --------------
for c in apt-get dpkg-deb dpkg mktemp awk readlink; do
  command -v "$c" >/dev/null 2>&1 || die "required command '$c' not found"
done
arch=$(dpkg --print-architecture)
[[ $arch == amd64 ]] || die "only amd64 is supported (this machine is $arch)"
[[ -r $KEYRING_DEFAULT ]] || die "$KEYRING_DEFAULT missing (install the debian-archive-keyring package)"

codename=
if [[ -r /etc/os-release ]]; then codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}"); fi

# Debian mirror: the URI the system's own apt sources use for the host suite
# (e.g. "bookworm" or "bookworm-updates"; never the -security archive).
find_mirror() {
  local f files=()
  [[ -r /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -r $f ]] && files+=("$f")
  done
  ((${#files[@]})) || return 1
  awk -v cn="$codename" '
    function emit(uri, suite) { if (suite == cn) best[++nb] = uri; else if (suite == cn "-updates") alt[++na] = uri }
    function flush(   i, n, s, u) {
      if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no" && uris != "") {
        split(uris, u, /[ \t]+/); n = split(suites, s, /[ \t]+/)
        for (i = 1; i <= n; i++) emit(u[1], s[i])
      }
      types = ""; uris = ""; suites = ""; enabled = ""
    }
    FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
    { sub(/\r$/, "") }
    deb822 {
      if ($0 ~ /^[ \t]*$/) { flush(); next }
      if ($0 ~ /^#/) next
      if (match($0, /^[A-Za-z-]+:/)) {
        key = tolower(substr($0, 1, RLENGTH - 1)); val = substr($0, RLENGTH + 1)
        gsub(/^[ \t]+|[ \t]+$/, "", val)
        if (key == "types") types = val; else if (key == "uris") uris = val
        else if (key == "suites") suites = val; else if (key == "enabled") enabled = val
      }
      next
    }
    /^[ \t]*deb[ \t]/ {
      line = $0; sub(/#.*/, "", line); gsub(/\[[^]]*\]/, " ", line)
      n = split(line, w, /[ \t]+/); j = 0
      for (i = 1; i <= n; i++) if (w[i] != "") v[++j] = w[i]
      if (j >= 3) emit(v[2], v[3])
    }
    END { flush(); if (nb) print best[1]; else if (na) print alt[1]; else exit 1 }
  ' "${files[@]}"
}
if [[ -n ${L402_DEBIAN_MIRROR:-} ]]; then
  MIRROR=$L402_DEBIAN_MIRROR
else
  [[ -n $codename ]] || die "cannot read VERSION_CODENAME from /etc/os-release; set L402_DEBIAN_MIRROR"
  MIRROR=$(find_mirror) || die "no Debian mirror for suite '$codename' found in /etc/apt sources; set L402_DEBIAN_MIRROR"
fi
MIRROR=${MIRROR%/}
log "Debian mirror: $MIRROR"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/l402-bitcoind.XXXXXX")
trap 'rm -rf -- "$WORK"' EXIT
chmod 755 "$WORK"   # let apt's unprivileged _apt user reach the download dir
mkdir -p "$WORK/debs" "$WORK/keyring"
if [[ $(id -u) == 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$WORK/debs"; fi

# apt_private <name> <keyring> <suite>... -- <apt-get args...>
# Runs apt-get with a private sources list, lists, cache and (empty) dpkg status.
apt_private() {
  local name=$1 keyring=$2; shift 2
  local suites=() s d=$WORK/apt-$name
  while [[ $1 != -- ]]; do suites+=("$1"); shift; done; shift
  if [[ ! -d $d ]]; then
    mkdir -p "$d/lists/partial" "$d/cache/archives/partial"
    : >"$d/status"
    for s in "${suites[@]}"; do
      printf 'deb [arch=amd64 signed-by=%s] %s %s main\n' "$keyring" "$MIRROR" "$s"
    done >"$d/sources.list"
  fi
  apt-get -q \
    -o Dir::Etc::sourcelist="$d/sources.list" -o Dir::Etc::sourceparts=- \
    -o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" \
    -o Dir::State::status="$d/status" \
    -o Acquire::Languages=none \
    -o Acquire::IndexTargets::deb::DEP-11::DefaultEnabled=false \
    -o Acquire::AllowInsecureRepositories=false \
    -o Acquire::AllowDowngradeToInsecureRepositories=false \
    -o APT::Get::AllowUnauthenticated=false \
    "$@"
}

# Update trixie indexes with the given keyring; signature failures are fatal
# for apt-get update (we never allow insecure repositories).
# Also fails on fetch errors (apt-get update may exit 0 on those) and when an
# index is missing afterwards.
update_trixie() {
  local s
  rm -rf -- "$WORK/apt-trixie"
  apt_private trixie "$1" trixie trixie-backports -- update >"$WORK/update.log" 2>&1 || return 1
  ! grep -qE '^E: |^W: .*(Failed to fetch|failed to download|GPG error|NO_PUBKEY|EXPKEYSIG|not signed|signatures)' "$WORK/update.log" || return 1
  for s in trixie trixie-backports; do
    compgen -G "$WORK/apt-trixie/lists/*_dists_${s}_main_binary-amd64_Packages*" >/dev/null || return 1
  done
}

# Newer debian-archive-keyring from the host's own suite (verified with the
# system keyring), extracted privately; used only if the system keyring cannot
# verify trixie.
bootstrap_keyring() {
  [[ -n $codename ]] || die "cannot bootstrap a newer keyring: unknown host codename"
  log "system keyring cannot verify trixie; fetching newer debian-archive-keyring from $codename(-updates)"
  apt_private host "$KEYRING_DEFAULT" "$codename" "$codename-updates" -- update >"$WORK/host-update.log" 2>&1 \
    || { cat "$WORK/host-update.log" >&2; die "apt-get update for $codename failed"; }
  (cd "$WORK/debs" && apt_private host "$KEYRING_DEFAULT" -- download debian-archive-keyring) >&2 \
    || die "apt-get download debian-archive-keyring failed"
  dpkg-deb -x "$WORK"/debs/debian-archive-keyring_*.deb "$WORK/keyring"
  rm -f -- "$WORK"/debs/debian-archive-keyring_*.deb
  KEYRING=$WORK/keyring/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -r $KEYRING ]] || die "debian-archive-keyring package has no $KEYRING"
}

KEYRING=$KEYRING_DEFAULT
if [[ ! -e /usr/share/keyrings/debian-archive-trixie-stable.gpg ]]; then
  bootstrap_keyring
fi
log "apt-get update (private: trixie, trixie-backports)"
if ! update_trixie "$KEYRING"; then
  if [[ $KEYRING == "$KEYRING_DEFAULT" ]] && grep -qE 'NO_PUBKEY|EXPKEYSIG|signature' "$WORK/update.log"; then
    bootstrap_keyring
    update_trixie "$KEYRING" || { cat "$WORK/update.log" >&2; die "apt-get update for trixie failed (signature verification)"; }
  else
    cat "$WORK/update.log" >&2; die "apt-get update for trixie failed"
  fi
fi

log "apt-get download ${#PACKAGES[@]} packages"
(cd "$WORK/debs" && apt_private trixie "$KEYRING" -- download "${PACKAGES[@]}") >&2 \
  || die "apt-get download failed"

# --- 3. unpack and verify -------------------------------------------------
NEW=$INSTALL_DIR/root.new
rm -rf -- "$NEW"
mkdir -p -- "$NEW"
for deb in "$WORK"/debs/*.deb; do
  dpkg-deb -x "$deb" "$NEW" || die "dpkg-deb -x $deb failed"
done
LIBREL=usr/lib/x86_64-linux-gnu
LOADERREL=$LIBREL/ld-linux-x86-64.so.2
[[ -x $NEW/$LOADERREL ]] || die "unpacked loader $NEW/$LOADERREL missing"
[[ -x $NEW/usr/bin/bitcoind ]] || die "bitcoin-knots did not ship usr/bin/bitcoind"

# Every shared library must resolve inside the unpacked tree (never from the host).
TOOLS=(bitcoind)
[[ -x $NEW/usr/bin/bitcoin-cli ]] && TOOLS+=(bitcoin-cli)
for t in "${TOOLS[@]}"; do
  deps=$("$NEW/$LOADERREL" --library-path "$NEW/$LIBREL" --list "$NEW/usr/bin/$t") \
    || die "cannot resolve libraries of $t"
  bad=$(printf '%s\n' "$deps" | awk -v lib="$NEW/$LIBREL/" '
    /not found/ { print; next }
    /=>/ { p = $3; if (substr(p, 1, length(lib)) != lib) print }')
  [[ -z $bad ]] || die "$t needs libraries not in the unpacked packages (add their packages to PACKAGES):
$bad"
done

rm -f -- "$STAMP"
rm -rf -- "$INSTALL_DIR/root"
mv -- "$NEW" "$INSTALL_DIR/root"

# --- 4. wrappers ----------------------------------------------------------
rm -f -- "$BIN_DIR/bitcoin-cli"
for t in "${TOOLS[@]}"; do
  write_exe "$BIN_DIR/$t" "#!/bin/sh
# Generated by scripts/install-bitcoind.sh: run Debian trixie's $t through
# the unpacked trixie loader and libraries (no host libraries are used).
root=\$(dirname -- \"\$(readlink -f -- \"\$0\")\")/../root
exec \"\$root/$LOADERREL\" --library-path \"\$root/$LIBREL\" --argv0 \"\$0\" \"\$root/usr/bin/$t\" \"\$@\"
"
done
printf '%s\n' "$DEB_SPEC" >"$STAMP"
installed_ok || { rm -f -- "$STAMP"; die "installed wrapper $BIN_DIR/bitcoind does not run"; }
log "installed into $INSTALL_DIR"
report
