#!/usr/bin/env bash
# The test command: installs the services the tests need when they are
# missing (Debian packages; nothing is started here — each test starts its
# own instances on free loopback ports and stops them), then runs every test.
#
#   mosquitto, mosquitto-clients  MQTT broker + mosquitto_pub/mosquitto_passwd
#   influxdb                      InfluxDB 1.6.7 (v1 write API, InfluxQL)
#   victoria-metrics              a real server for the InfluxDB v2 write path
#   prometheus                    promtool, to check /metrics
#   python3-aiosmtpd              a real SMTP server (plain, STARTTLS, TLS, AUTH)
#   systemd                       systemd-analyze, to verify deploy/floodguard.service
#   chromium, nodejs, npm         the live page's browser test (headless Chromium
#                                 driven by playwright-core from tests/browser/)
#   python3-venv                  a venv (target/pyenv) for pymodbus from PyPI: a
#                                 real Modbus TCP server for the Modbus polling test
#   binutils                      objcopy/strip/readelf for the .deb (cargo-deb splits
#                                 the debug info off; scripts/test-deb.sh checks it)
#   postgresql                    PostgreSQL 15: the shared state of a two-node cluster
#                                 (each test makes its own cluster with initdb as user
#                                 postgres on a free port; Debian's own cluster is unused)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/packages.sh
ensure_packages mosquitto:mosquitto mosquitto_pub:mosquitto-clients influxd:influxdb \
  victoria-metrics:victoria-metrics promtool:prometheus aiosmtpd:python3-aiosmtpd \
  systemd-analyze:systemd chromium:chromium node:nodejs npm:npm py.ensurepip:python3-venv \
  readelf:binutils /usr/lib/postgresql/15/bin/initdb:postgresql
# playwright-core only (no browser download: the test uses /usr/bin/chromium),
# pinned by the committed lock; installed once, from npm's cache when offline.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "== npm ci (tests/browser)"
  npm ci --prefix tests/browser --prefer-offline --no-audit --no-fund
fi

# pymodbus 3.x in a venv of Debian's Python (tests/integration/support/modbus.rs
# runs target/pyenv/bin/python); made once, kept until target/ is cleaned.
if ! target/pyenv/bin/python -c 'import pymodbus' 2>/dev/null; then
  echo "== pymodbus (target/pyenv)"
  [ -x target/pyenv/bin/python ] || /usr/bin/python3 -m venv target/pyenv
  target/pyenv/bin/pip install --quiet --disable-pip-version-check 'pymodbus>=3.6,<4'
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
# Lints before the long runs, so a warning fails in minutes; the two style
# lints allowed crate-wide are in Cargo.toml's [lints.clippy], with why.
echo "== cargo clippy"
timeout --kill-after=30s 20m cargo clippy --locked --all-targets -- -D warnings
# A hung test must fail the run, not hold CI until its own limit: each
# cargo invocation gets a generous bound (a full run here takes ~15 min).
# tests/fuzz.rs runs 2,000 cases per property here; FLOODGUARD_FUZZ_CASES=100000
# for a nightly-length run (docs/architecture.md, "Tests").
echo "== unit, property and integration tests (the storm suite apart)"
timeout --kill-after=30s 45m cargo test --locked -- --skip stages::
# The storm tests load both cores for minutes; beside the timing-sensitive
# tests they would make those flaky, so they run on their own, after.
echo "== the storm suite"
# One at a time: two storms at once on two cores measure the machine, not
# floodguard (a restart's catch-up ran past its bound beside another storm).
timeout --kill-after=30s 20m cargo test --locked --test integration stages:: -- --test-threads=1
# The .deb for closed networks (a release build; cargo-deb is installed with
# `cargo install --locked cargo-deb` when missing), installed with dpkg on
# this machine, check-config run on the installed files, removed again.
echo "== the .deb: build, install, check-config, remove"
timeout --kill-after=30s 30m scripts/package.sh
scripts/test-deb.sh
echo "== benchmarks compile and run once"
timeout --kill-after=30s 20m cargo test --locked --benches
