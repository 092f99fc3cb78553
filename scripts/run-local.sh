#!/usr/bin/env bash
# Runs floodguard on the sample district against a local Mosquitto and
# InfluxDB 1.6.7, started here on loopback (installed with apt-get when
# missing), and feeds it sample readings. Ctrl-C stops everything.
#
#   MQTT      127.0.0.1:18830       (mosquitto_pub -p 18830 -t flood/CD-JS-01/telemetry -m '{"water_depth_cm":12}')
#   InfluxDB  http://127.0.0.1:18086, database "flood"
#   floodguard http://127.0.0.1:8080/metrics, /readyz
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib/packages.sh
ensure_packages mosquitto:mosquitto mosquitto_pub:mosquitto-clients influxd:influxdb

run=$(mktemp -d /tmp/floodguard-local.XXXXXX)
chmod 777 "$run"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  echo "stopped; logs and data were in $run"
}
trap cleanup EXIT INT TERM

cat >"$run/mosquitto.conf" <<CONF
listener 18830 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 100000
CONF
mosquitto -c "$run/mosquitto.conf" >"$run/mosquitto.log" 2>&1 & pids+=($!)

mkdir -p "$run/influxdb"
cat >"$run/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:18088"
[meta]
  dir = "$run/influxdb/meta"
[data]
  dir = "$run/influxdb/data"
  wal-dir = "$run/influxdb/wal"
  query-log-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:18086"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
influxd -config "$run/influxdb.conf" >"$run/influxdb.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do curl -sf http://127.0.0.1:18086/ping >/dev/null && break; sleep 0.1; done

cargo build --release --quiet
export FLOODGUARD__MQTT__URL=mqtt://127.0.0.1:18830
export FLOODGUARD__INFLUXDB__URL=http://127.0.0.1:18086
export FLOODGUARD__INFLUXDB__API=v1
export FLOODGUARD__DAEMON__DATA_DIR="$run/var"
target/release/floodguard run -c config/floodguard.toml & pids+=($!)

# Sample readings every 5 s: a slowly filling underpass and the river.
(
  depth=2
  while sleep 5; do
    depth=$(( depth < 45 ? depth + 1 : 2 ))
    mosquitto_pub -p 18830 -q 1 -t flood/CD-JS-01/telemetry -m "{\"water_depth_cm\": $depth, \"battery_v\": 3.6}"
    mosquitto_pub -p 18830 -q 1 -t flood/BH-SW-01/telemetry -m "{\"level_m\": 4.1$(( depth % 10 ))}"
  done
) & pids+=($!)

echo "floodguard runs: http://127.0.0.1:8080/readyz  — Ctrl-C stops everything"
echo "query: curl -G http://127.0.0.1:18086/query --data-urlencode db=flood --data-urlencode 'q=SELECT * FROM telemetry ORDER BY time DESC LIMIT 5'"
wait
