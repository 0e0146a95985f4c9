#!/usr/bin/env bash
# Stops the test bed and removes its state: no process of it is left and none of its ports listens.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[ -d "$TB" ] || { log "not up"; exit 0; }

if runner_alive; then
  pid=$(cat "$TB/podrunner.pid")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 400); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
fi
rm -f "$TB/podrunner.pid"

if [ -x "$TB/bin/kwokctl" ] && [ -d "$KWOK_WORKDIR/clusters/$CLUSTER" ]; then
  "$TB/bin/kwokctl" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1 || true
fi

data=$(cat "$TB/data-root" 2>/dev/null || echo "$TB")
# Anything still running from this test bed: its command line names the state directory.
leftover() { { pgrep -f -- "$TB/" || true; pgrep -f -- "$data/" || true; } | sort -u; }
pids=$(leftover)
if [ -n "$pids" ]; then
  kill -INT $pids 2>/dev/null || true
  for _ in $(seq 1 100); do [ -z "$(leftover)" ] && break; sleep 0.1; done
  pids=$(leftover); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
fi
rm -rf "$TB" "$data"
log "down"
