#!/usr/bin/env bash
# Make the local PostgreSQL able to load TimescaleDB.
#
# Where the extension is already installed for this PostgreSQL, does nothing.
# Otherwise builds it from Debian's own source package (trixie) against the
# local pg_config and installs it. That build is the Apache-licensed edition.
# The machine's own apt sources are never edited: a private source list and
# private list directory are passed to apt-get for the source download only.
set -euo pipefail

PG_CONFIG="${PG_CONFIG:-$(command -v pg_config || true)}"
SUITE="${TIMESCALEDB_DEBIAN_SUITE:-trixie}"
WORK="${TIMESCALEDB_BUILD_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tsmigrate/timescaledb-build}"

say() { printf 'install-timescaledb: %s\n' "$*"; }
die() { printf 'install-timescaledb: ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@";
  else die "need root (or sudo) to run: $*"; fi
}

if [ -z "$PG_CONFIG" ]; then
  say "pg_config not found; installing postgresql-server-dev-15"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-server-dev-15 >/dev/null
  PG_CONFIG=$(command -v pg_config) || die "pg_config still missing after installing postgresql-server-dev-15"
fi

SHAREDIR=$("$PG_CONFIG" --sharedir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
PG_MAJOR=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')

if [ -f "$SHAREDIR/extension/timescaledb.control" ] && ls "$PKGLIBDIR"/timescaledb*.so >/dev/null 2>&1; then
  version=$(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$SHAREDIR/extension/timescaledb.control")
  if ls "$PKGLIBDIR"/timescaledb-tsl-*.so >/dev/null 2>&1; then edition=community; else edition=apache; fi
  say "TimescaleDB $version ($edition edition) is already installed for PostgreSQL $PG_MAJOR; nothing to do."
  exit 0
fi

say "TimescaleDB is not installed for PostgreSQL $PG_MAJOR ($PG_CONFIG); building it from Debian's source package ($SUITE)."

# Build tools and server headers (Debian packages, installed by name).
need=()
dpkg -s "postgresql-server-dev-$PG_MAJOR" >/dev/null 2>&1 || need+=("postgresql-server-dev-$PG_MAJOR")
command -v cmake >/dev/null || need+=(cmake)
command -v gcc >/dev/null || need+=(gcc)
command -v make >/dev/null || need+=(make)
command -v dpkg-source >/dev/null || need+=(dpkg-dev)
if [ ${#need[@]} -gt 0 ]; then
  say "installing build requirements: ${need[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The private source list reuses the mirror this machine already uses for Debian.
mirror=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
  | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n1 | sed 's:/*$::' || true)
[ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*; set one up, or install TimescaleDB for PostgreSQL $PG_MAJOR yourself"

mkdir -p "$WORK/lists/partial" "$WORK/src"
echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $SUITE main" > "$WORK/sources.list"
APT_OPTS=(-o "Dir::Etc::sourcelist=$WORK/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$WORK/lists" -o "APT::Get::List-Cleanup=0")
# The private lists live under our own cache directory, which apt's _apt user cannot enter.
[ "$(id -u)" = 0 ] && APT_OPTS+=(-o "APT::Sandbox::User=root")

say "fetching the source index of $SUITE (private apt configuration under $WORK)"
apt-get "${APT_OPTS[@]}" update -qq || die "apt-get update with the private source list failed"
cd "$WORK/src"
if ! ls timescaledb_*.orig.tar.* >/dev/null 2>&1; then
  apt-get "${APT_OPTS[@]}" source --download-only timescaledb >/dev/null \
    || die "apt-get source --download-only timescaledb failed"
fi
tarball=$(ls timescaledb_*.orig.tar.* | head -n1)
rm -rf build-tree && mkdir build-tree
tar -xf "$tarball" -C build-tree --strip-components=1
cd build-tree
say "building $(basename "$tarball") with APACHE_ONLY=ON against $PG_CONFIG"
./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
  -DPG_CONFIG="$PG_CONFIG" -DCMAKE_BUILD_TYPE=Release > "$WORK/bootstrap.log" 2>&1 \
  || die "cmake configuration failed; see $WORK/bootstrap.log"
make -C build -j"$(nproc)" > "$WORK/make.log" 2>&1 || die "build failed; see $WORK/make.log"
as_root make -C build install > "$WORK/install.log" 2>&1 || die "install failed; see $WORK/install.log"

version=$(sed -nE "s/^default_version *= *'([^']+)'.*/\1/p" "$SHAREDIR/extension/timescaledb.control")
say "installed TimescaleDB $version, APACHE edition, for PostgreSQL $PG_MAJOR."
say "the apache edition has hypertables, chunks and time_bucket, but NOT native compression,"
say "compression or retention policies, or continuous aggregates; tests of those features skip."
