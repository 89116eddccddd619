#!/usr/bin/env bash
# Resolve the Apache Kafka broker and its run-time dependencies (pom.xml beside this file)
# from Maven Central into one folder of jars, for infra/services.py to start a real broker.
# Default folder: .services/kafka/libs at the repository root; CELLTWIN_KAFKA_LIBS overrides.
# Idempotent: a stamp named after the pom's hash makes a second run a no-op, and a changed
# pom (a new Kafka version) fetches anew.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
libs="${CELLTWIN_KAFKA_LIBS:-$(cd "$here/../.." && pwd)/.services/kafka/libs}"
stamp="$libs/.fetched-$(sha256sum "$here/pom.xml" | cut -c1-16)"
[ -f "$stamp" ] && exit 0

command -v mvn >/dev/null 2>&1 || { echo "fetch.sh: mvn not found (Debian: apt-get install maven)" >&2; exit 1; }
# Copy into a fresh folder and swap it in only when complete, so an interrupted fetch
# never leaves a half-filled libs folder that looks usable.
tmp="$libs.partial"
log="$(mktemp)"
rm -rf "$tmp"
trap 'rm -rf "$tmp" "$log"' EXIT
# Maven's output only matters when it fails; then all of it is shown.
if ! mvn -B -f "$here/pom.xml" dependency:copy-dependencies \
     -DincludeScope=runtime -DoutputDirectory="$tmp" >"$log" 2>&1; then
  cat "$log" >&2
  echo "fetch.sh: resolving the Kafka broker from Maven Central failed" >&2
  exit 1
fi
rm -rf "$libs"
mv "$tmp" "$libs"
touch "$stamp"
echo "fetch.sh: Kafka broker jars in $libs"
