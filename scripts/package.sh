#!/usr/bin/env bash
# Builds floodguard's Debian package for closed networks (no internet at the
# command center): target/debian/floodguard_<version>-1_<arch>.deb, the binary
# stripped, its debug info in floodguard-dbgsym_<…>.ddeb beside it. Install
# with `dpkg -i` (docs/operations.md, "Install offline from the .deb").
#
#   scripts/package.sh            # cargo-deb is installed when missing
set -euo pipefail
cd "$(dirname "$0")/.."

if ! cargo deb --version >/dev/null 2>&1; then
  echo "== cargo install cargo-deb"
  cargo install --locked cargo-deb
fi

# The packaged config is the sample with data_dir where the unit keeps it,
# the unit with the binary where the package puts it.
assets=target/deb-assets
rm -rf "$assets" && mkdir -p "$assets"
sed 's|^data_dir = "var"|data_dir = "/var/lib/floodguard"|' config/floodguard.toml >"$assets/floodguard.toml"
grep -q '^data_dir = "/var/lib/floodguard"' "$assets/floodguard.toml" \
  || { echo "config/floodguard.toml: no data_dir = \"var\" line to point at /var/lib/floodguard" >&2; exit 1; }
sed 's|/usr/local/bin/floodguard|/usr/bin/floodguard|g' deploy/floodguard.service >"$assets/floodguard.service"

echo "== cargo deb"
cargo deb --locked
ls -l target/debian/
