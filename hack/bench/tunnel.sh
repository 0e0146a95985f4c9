#!/usr/bin/env bash
# Tunnel benchmark: stackblaze's tunnel (db proxy) against kubectl port-forward, on the same test
# bed, in the same run, with a direct connection from this machine to the pod's address (over the
# node's bridge, no tunnel) as the ceiling. Both tunnels go through the API server, the kubelet and
# containerd into the pod's network namespace, as on any cluster. Prints a markdown table.
# Usage: make bench-tunnel   (SECONDS_PER_RUN=10 COPY_ROWS=300000 to change the load)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export KUBECONFIG="$root/.testbed/kubeconfig"
sb="$root/bin/stackblaze"
kubectl="$root/.testbed/bin/kubectl"
secs=${SECONDS_PER_RUN:-10}
rows=${COPY_ROWS:-300000}
ns=bench-tunnel
hz=$(getconf CLK_TCK)

"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
"$sb" db create bench --storage 1Gi -n "$ns" >/dev/null 2>&1
export PGUSER=bench PGDATABASE=bench PGSSLMODE=disable
PGPASSWORD=$("$kubectl" get secret bench-credentials -n "$ns" -o jsonpath='{.data.password}' | base64 -d)
export PGPASSWORD
pod_ip=$("$kubectl" get pod bench-0 -n "$ns" -o jsonpath='{.status.podIP}')

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
p_sb=$(free_port); p_kc=$(free_port)
"$sb" db proxy bench --port "$p_sb" -n "$ns" >/dev/null 2>&1 &
pid_sb=$!
"$kubectl" port-forward -n "$ns" pod/bench-0 "$p_kc:5432" >/dev/null 2>&1 &
pid_kc=$!
trap 'kill $pid_sb $pid_kc 2>/dev/null || true' EXIT
for p in "$p_sb" "$p_kc"; do
  for _ in $(seq 1 100); do pg_isready -q -h 127.0.0.1 -p "$p" && break; sleep 0.1; done
done

pgbench -q -i -s 5 -h "$pod_ip" -p 5432 >/dev/null 2>&1

cpu_ms() { # user+system CPU of a process, in ms
  [ -z "$1" ] && { echo 0; return; }
  awk -v hz="$hz" '{ print ($14 + $15) * 1000 / hz }' "/proc/$1/stat"
}

row() {
  local label=$1 host=$2 port=$3 pid=$4
  local t0 t1 copy_mbs lat1 tps8 txns cpu0 cpu1 cpu10k conn_rate
  t0=$(date +%s%N)
  psql -q -h "$host" -p "$port" -c "\\copy (SELECT repeat('x', 1000) FROM generate_series(1, $rows)) TO '/dev/null'"
  t1=$(date +%s%N)
  copy_mbs=$(awk -v b=$((rows * 1001)) -v ns=$((t1 - t0)) 'BEGIN { printf "%.0f", b / (ns / 1e9) / 1e6 }')
  lat1=$(pgbench -n -S -c 1 -j 1 -T "$secs" -h "$host" -p "$port" 2>/dev/null | awk -F'= ' '/latency average/ { print $2 }')
  cpu0=$(cpu_ms "$pid")
  out8=$(pgbench -n -S -c 8 -j 2 -T "$secs" -h "$host" -p "$port" 2>/dev/null)
  cpu1=$(cpu_ms "$pid")
  tps8=$(echo "$out8" | awk '/^tps/ { printf "%.0f", $3 }')
  txns=$(echo "$out8" | awk -F': ' '/number of transactions actually processed/ { split($2, a, "/"); print a[1] }')
  if [ -n "$pid" ]; then
    cpu10k=$(awk -v c=$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN{print b-a}') -v n="$txns" 'BEGIN { printf "%.0f", c / n * 10000 }')
  else
    cpu10k="-"
  fi
  conn_rate=$(pgbench -n -S -C -c 1 -j 1 -T "$secs" -h "$host" -p "$port" 2>/dev/null | awk '/^tps/ { printf "%.0f", $3 }')
  printf '| %-26s | %8s | %12s | %8s | %14s | %16s |\n' "$label" "$copy_mbs" "$lat1" "$tps8" "$conn_rate" "$cpu10k"
}

echo "| path | COPY MB/s | latency 1 client (-S) | tps 8 clients (-S) | new connections/s (-C) | tunnel CPU ms per 10k txns |"
echo "| --- | --- | --- | --- | --- | --- |"
row "direct to the pod (ceiling)" "$pod_ip" 5432 ""
row "stackblaze db proxy" 127.0.0.1 "$p_sb" "$pid_sb"
row "kubectl port-forward" 127.0.0.1 "$p_kc" "$pid_kc"
"$sb" db delete bench -n "$ns" --yes --delete-data >/dev/null 2>&1 || true
