#!/usr/bin/env bash
# Makes a Docker-Engine-API-compatible engine answer on a unix socket: Podman (Debian) as root with runc.
# Idempotent: installs only what is missing, edits containers.conf only when it lacks the settings,
# starts the service only when nothing answers on the socket. Prints DOCKER_HOST=unix://$SOCK on stdout.
# Recipe and reasons: docs/podman-notes.md.
set -euo pipefail

SOCK="${AIDHUB_ENGINE_SOCK:-/run/aidhub/podman.sock}"
CONF=/etc/containers/containers.conf
LOG="${AIDHUB_ENGINE_LOG:-$(dirname "$SOCK")/podman-service.log}"

ping_ok() {
  [ -S "$SOCK" ] && [ "$(curl -s -m 2 --unix-socket "$SOCK" http://d/_ping 2>/dev/null)" = "OK" ]
}

# Something already answers (started by us earlier or by someone else): nothing to do, root or not.
if ping_ok; then
  echo "DOCKER_HOST=unix://$SOCK"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if [ -S "$SOCK" ] && [ ! -w "$SOCK" ]; then
    echo "$SOCK exists but this user may not use it (root's Podman service): run as root, or give" >&2
    echo "this user access to the socket." >&2
    exit 1
  fi
  echo "No container engine answers on $SOCK and this script needs root to install and start one." >&2
  echo "Run 'sudo scripts/container-engine.sh' (or set AIDHUB_ENGINE_SOCK to a socket where a" >&2
  echo "Docker-compatible engine already answers, e.g. /var/run/docker.sock)." >&2
  exit 1
fi

# 1. Packages.
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v curl >/dev/null 2>&1 || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "installing: ${need[*]}" >&2
  apt-get update -q >&2
  apt-get install -y -q "${need[@]}" >&2
fi

# 2. containers.conf: runc instead of crun (crun fails here on cgroups), no default rlimits.
#    Only add what is missing; keep every other setting.
mkdir -p "$(dirname "$CONF")"
touch "$CONF"
# ensure_key SECTION KEY LINE: add LINE under [SECTION] unless KEY is already set in that section.
ensure_key() {
  local section="$1" key="$2" line="$3" tmp
  if awk -v s="[$section]" -v k="$key" '
      /^[[:space:]]*\[/ { gsub(/[[:space:]]/, ""); insec = ($0 == s); next }
      insec && $0 ~ "^[[:space:]]*" k "[[:space:]]*=" { found = 1 }
      END { exit !found }' "$CONF"; then
    return 0
  fi
  tmp="$(mktemp)"
  if grep -Eq "^[[:space:]]*\[$section\][[:space:]]*$" "$CONF"; then
    awk -v s="[$section]" -v l="$line" '
      { print }
      /^[[:space:]]*\[/ { t = $0; gsub(/[[:space:]]/, "", t); if (t == s && !done) { print l; done = 1 } }' \
      "$CONF" >"$tmp"
  else
    { cat "$CONF"; [ -s "$CONF" ] && echo; echo "[$section]"; echo "$line"; } >"$tmp"
  fi
  cat "$tmp" >"$CONF"
  rm -f "$tmp"
  echo "containers.conf: set [$section] $line" >&2
}
ensure_key engine runtime 'runtime = "runc"'
ensure_key containers default_ulimits 'default_ulimits = []'
if grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"crun"' "$CONF"; then
  echo "warning: $CONF sets runtime = \"crun\"; crun fails on cgroups/rlimits here, runc is needed." >&2
fi

# 3. Service.
mkdir -p "$(dirname "$SOCK")"
if [ -e "$SOCK" ]; then
  rm -f "$SOCK"   # stale socket: nothing answered on it above
fi
echo "starting: podman system service --time=0 unix://$SOCK (log: $LOG)" >&2
# From /, so that a checkout deleted later cannot leave the service without a working directory.
(cd / && exec nohup setsid podman system service --time=0 "unix://$SOCK" >>"$LOG" 2>&1 </dev/null) &
pid=$!
for _ in $(seq 1 150); do
  if ping_ok; then
    echo "$pid" >"$(dirname "$SOCK")/podman-service.pid"
    echo "DOCKER_HOST=unix://$SOCK"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "podman system service exited early; last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
  sleep 0.2
done
echo "podman system service did not answer on $SOCK within 30 s; see $LOG" >&2
exit 1
