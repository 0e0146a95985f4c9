#!/usr/bin/env bash
# Says whether the test bed is up.
set -uo pipefail
source "$(dirname "$0")/lib.sh"
if apiserver_ready; then echo "control plane: up ($KUBECONFIG_PATH)"; else echo "control plane: down"; fi
if runner_alive; then echo "pod runner: up (pid $(cat "$TB/podrunner.pid"))"; else echo "pod runner: down"; fi
