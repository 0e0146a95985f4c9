#!/usr/bin/env bash
# Stops the test bed and puts the machine back as up.sh found it: no process, mount, interface,
# iptables rule, cgroup or directory of it is left, and the sysctls it changed have their old values.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$here/node.sh"
[ -d "$TB" ] || [ -d "$RUNDIR" ] || { log "not up"; exit 0; }

# Best effort: a step that fails is said and the rest still runs, so that one failure does not
# leave the control plane running (the down/up cycle test checks what is left).
node_down || log "the node's teardown failed part-way; going on"

if [ -x "$TB/bin/kwokctl" ] && [ -d "$KWOK_WORKDIR/clusters/$CLUSTER" ]; then
  "$TB/bin/kwokctl" delete cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_PATH" >/dev/null 2>&1 || true
fi

# Anything still running from this test bed: its command line names the state directory.
leftover() { pgrep -f -- "$TB/" || true; }
pids=$(leftover)
if [ -n "$pids" ]; then
  kill -INT $pids 2>/dev/null || true
  for _ in $(seq 1 100); do [ -z "$(leftover)" ] && break; sleep 0.1; done
  pids=$(leftover); [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
fi
node_remove_host_dirs
rm -rf "$TB"
log "down"
