#!/usr/bin/env bash
# Installs the .deb that scripts/package.sh built on this machine (root),
# checks what it put where, runs `floodguard check-config` on the installed
# configuration as the service would, and removes and purges it again.
set -euo pipefail
cd "$(dirname "$0")/.."

deb=$(ls -t target/debian/floodguard_*.deb | head -1)
[ -n "$deb" ] || { echo "no target/debian/floodguard_*.deb: run scripts/package.sh" >&2; exit 1; }
fail() { echo "test-deb: $*" >&2; exit 1; }
if dpkg -s floodguard >/dev/null 2>&1; then
  fail "floodguard is installed on this machine already; not touching it"
fi

echo "== dpkg -i $deb"
dpkg -i "$deb"
trap 'dpkg --purge floodguard >/dev/null 2>&1 || true' EXIT

# The binary: stripped, small, working.
file=/usr/bin/floodguard
[ -x "$file" ] || fail "no $file"
if readelf -S "$file" | grep -qE '\.debug_(info|line|str)'; then fail "$file still has debug info"; fi
readelf -S "$file" | grep -q '\.gnu_debuglink' || fail "$file has no link to its debug file (floodguard-dbgsym)"
size=$(stat -c %s "$file")
echo "installed binary: $((size / 1024 / 1024)) MiB (stripped)"
[ "$size" -lt $((60 * 1024 * 1024)) ] || fail "$file is $size bytes"
floodguard --version
[ "$(floodguard gen-secret | tr -d '\n' | wc -c)" = 64 ] || fail "gen-secret"

# Configuration as conffiles, data under /var/lib/floodguard, the unit, the user.
# Every file the sample configuration has (config/*.toml) is shipped: plan.toml
# names materials.toml's items, so a package without it fails check-config.
for f in $(cd config && ls *.toml) floodguard.env; do
  dpkg-query --control-show floodguard conffiles | grep -qx "/etc/floodguard/$f" \
    || fail "/etc/floodguard/$f is not a conffile"
done
grep -q '^data_dir = "/var/lib/floodguard"' /etc/floodguard/floodguard.toml || fail "data_dir"
[ "$(stat -c '%a %G' /etc/floodguard/floodguard.env)" = "640 floodguard" ] || fail "floodguard.env mode"
getent passwd floodguard >/dev/null || fail "no user floodguard"
[ "$(stat -c '%U %a' /var/lib/floodguard)" = "floodguard 750" ] || fail "/var/lib/floodguard"
grep -q '^ExecStart=/usr/bin/floodguard run -c /etc/floodguard/floodguard.toml$' /lib/systemd/system/floodguard.service \
  || fail "the unit's ExecStart"
if command -v systemd-analyze >/dev/null; then
  out=$(systemd-analyze verify --man=no /lib/systemd/system/floodguard.service 2>&1 || true)
  if echo "$out" | grep -q 'floodguard.service'; then fail "systemd-analyze verify: $out"; fi
fi

echo "== floodguard check-config on the installed configuration (as the service runs it)"
# The secrets file as installed: every example commented out.
set -a; . /etc/floodguard/floodguard.env; set +a
runuser -u floodguard -- floodguard check-config -c /etc/floodguard/floodguard.toml | tail -5

echo "== dpkg -r, dpkg --purge"
dpkg -r floodguard
[ ! -e /usr/bin/floodguard ] || fail "the binary stayed after remove"
[ -e /etc/floodguard/floodguard.toml ] || fail "remove must keep the conffiles"
dpkg --purge floodguard
[ ! -e /etc/floodguard/floodguard.toml ] || fail "purge must remove the conffiles"
[ ! -e /var/lib/floodguard ] || fail "purge must remove /var/lib/floodguard"
trap - EXIT
echo "test-deb: ok"
