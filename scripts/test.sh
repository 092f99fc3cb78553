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
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/packages.sh
ensure_packages mosquitto:mosquitto mosquitto_pub:mosquitto-clients influxd:influxdb \
  victoria-metrics:victoria-metrics promtool:prometheus aiosmtpd:python3-aiosmtpd \
  systemd-analyze:systemd chromium:chromium node:nodejs npm:npm
# playwright-core only (no browser download: the test uses /usr/bin/chromium),
# pinned by the committed lock; installed once, from npm's cache when offline.
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "== npm ci (tests/browser)"
  npm ci --prefix tests/browser --prefer-offline --no-audit --no-fund
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
# A hung test must fail the run, not hold CI until its own limit: each
# cargo invocation gets a generous bound (a full run here takes ~15 min).
echo "== unit, property and integration tests (the storm suite apart)"
timeout --kill-after=30s 45m cargo test --locked -- --skip stages::
# The storm tests load both cores for minutes; beside the timing-sensitive
# tests they would make those flaky, so they run on their own, after.
echo "== the storm suite"
timeout --kill-after=30s 20m cargo test --locked --test integration stages::
echo "== benchmarks compile and run once"
timeout --kill-after=30s 20m cargo test --locked --benches
