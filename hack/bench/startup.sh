#!/usr/bin/env bash
# Process wall time of commands that must never touch the cluster, beside kubectl measured the
# same way: N runs each, median and mean in milliseconds. Used by `make bench`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
n=${N:-30}
sb="$root/bin/stackblaze"
kubectl="$root/.testbed/bin/kubectl"
[ -x "$kubectl" ] || kubectl=$(command -v kubectl)

measure() {
  local label=$1; shift
  local times=()
  "$@" >/dev/null 2>&1 # warm the page cache
  for _ in $(seq 1 "$n"); do
    local s e
    s=$(date +%s%N); "$@" >/dev/null 2>&1; e=$(date +%s%N)
    times+=($(( (e - s) / 1000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v label="$label" -v n="$n" '
    { v[NR] = $1; sum += $1 }
    END { printf "| %-34s | %8.1f | %8.1f |\n", label, v[int((n + 1) / 2)] / 1000, sum / n / 1000 }'
}

echo "| command ($n runs each) | median ms | mean ms |"
echo "| --- | --- | --- |"
# An unreadable kubeconfig proves these never load one.
export KUBECONFIG=/nonexistent/kubeconfig
measure "stackblaze version" "$sb" version
measure "stackblaze --help" "$sb" --help
measure "stackblaze version -o json" "$sb" version -o json
measure "kubectl version --client" "$kubectl" version --client
