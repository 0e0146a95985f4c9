#!/usr/bin/env bash
# Says whether the test bed is up.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
source "$here/node.sh"
if apiserver_ready; then echo "control plane: up ($KUBECONFIG_PATH)"; else echo "control plane: down"; fi
for p in containerd kubelet kube-proxy coredns provisioner; do
  if node_pid_alive "$p"; then echo "$p: up (pid $(cat "$NODE/pids/$p"))"; else echo "$p: down"; fi
done
