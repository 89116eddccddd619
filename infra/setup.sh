#!/usr/bin/env bash
# Install what celltwin and its tests need on a fresh Debian machine:
# the Python package (editable, with test extras), VictoriaMetrics (the InfluxDB-v2
# write-compatible store used in integration tests) and the Apache Kafka broker jars.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet --disable-pip-version-check -e ".[dev]"

# Debian packages: VictoriaMetrics for the store, Chromium to open the HTML report in tests,
# mdbtools to read Arbin .res files (Access databases).
missing=""
command -v victoria-metrics >/dev/null 2>&1 || missing="$missing victoria-metrics"
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v mdb-export >/dev/null 2>&1 || missing="$missing mdbtools"
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

bash infra/kafka/fetch.sh
bash infra/influxdb/build.sh   # InfluxDB OSS 1.13 for the dashboard and alert-rule query tests
