#!/usr/bin/env bash
# Build InfluxDB OSS 1.13 (influxd, MIT) from the Go module proxy, once, into a cache outside
# the repository, for infra/services.py to start a real InfluxDB (Flux and InfluxQL).
# Default: ${CELLTWIN_CACHE:-$HOME/.cache/celltwin}/influxdb-1.13.2/influxd; CELLTWIN_INFLUXD
# names the binary instead. Idempotent: an existing binary makes this a no-op. The first build
# takes 15-25 minutes on two cores (Go's module and build caches make a rebuild faster).
set -euo pipefail
version=1.13.2
cache="${CELLTWIN_CACHE:-$HOME/.cache/celltwin}"
binary="${CELLTWIN_INFLUXD:-$cache/influxdb-$version/influxd}"
[ -x "$binary" ] && exit 0

# Go 1.23+ and a Rust toolchain build influxd; Debian's packages do on a fresh machine.
missing=""
command -v go >/dev/null 2>&1 || missing="$missing golang-go"
command -v cargo >/dev/null 2>&1 || missing="$missing cargo"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "influxdb/build.sh: building influxd $version (15-25 min the first time), log: $work/build.log"
# Flux's parser is Rust, built by cargo through InfluxData's pkg-config wrapper, which must come
# first on PATH. libflux pins a Rust toolchain that need not be installed: build with `stable`.
export GOBIN="$work/bin"
if ! { PATH="$GOBIN:$PATH" go install github.com/influxdata/pkg-config@v0.2.7 &&
       PATH="$GOBIN:$PATH" RUSTUP_TOOLCHAIN=stable \
         go install "github.com/influxdata/influxdb/cmd/influxd@v$version"; } >"$work/build.log" 2>&1; then
  tail -n 60 "$work/build.log" >&2
  echo "influxdb/build.sh: building influxd $version failed" >&2
  exit 1
fi
# Moved in whole only when complete, so an interrupted build never leaves a binary that looks usable.
mkdir -p "$(dirname "$binary")"
cp "$GOBIN/influxd" "$binary.partial"
mv -f "$binary.partial" "$binary"
echo "influxdb/build.sh: influxd in $binary"
