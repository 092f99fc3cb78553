# Sourced by the scripts: `ensure_packages PROBE:PACKAGE …` installs, with
# apt-get, the Debian package of every probe that fails. A probe is a
# command (`mosquitto`), or `py.MODULE` for a module Debian's /usr/bin/python3
# must import (`py.ensurepip`: python3-venv, which has no command).
probe_ok() {
  case "$1" in
    py.*) [ -x /usr/bin/python3 ] && /usr/bin/python3 -c "import ${1#py.}" 2>/dev/null ;;
    *) command -v "$1" >/dev/null ;;
  esac
}

ensure_packages() {
  local need=() pair
  for pair in "$@"; do
    probe_ok "${pair%%:*}" || need+=("${pair#*:}")
  done
  ((${#need[@]})) || return 0
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  echo "== installing: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
