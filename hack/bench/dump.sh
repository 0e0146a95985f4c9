#!/usr/bin/env bash
# Dumping a database to a file on this machine, three ways, on the same data in the same run:
# `stackblaze db dump` (the server's pg_dump in its pod, streamed through the Kubernetes API),
# `kubectl exec ... pg_dump > file` (the same stream, by hand), and this machine's pg_dump through
# `kubectl port-forward`. Custom format each time (db dump's default gzip level 1; the others
# pg_dump's default, 6, as a user types them); ROUNDS rounds, the median shown.
# Prints a markdown table.
# Usage: make bench-dump   (SIZE_MB=1024: the data to load; STORAGE=3Gi: the volume; ROUNDS=3;
#                           NS=bench-dump: the namespace, which must not exist yet)
#
# The database runs PostgreSQL 15, the major of this machine's pg_dump (Debian bookworm's): a
# local pg_dump refuses a newer server, which is what db dump avoids.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
testbed=${STACKBLAZE_TESTBED_DIR:-$root/.testbed}
export KUBECONFIG="$testbed/kubeconfig"
sb="$root/bin/stackblaze"
kubectl="$testbed/bin/kubectl"
ns=${NS:-bench-dump}
size_mb=${SIZE_MB:-1024}
storage=${STORAGE:-3Gi}
rounds=${ROUNDS:-3}

now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
log() { echo "# $*" >&2; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

if "$kubectl" get namespace "$ns" >/dev/null 2>&1; then
  echo "namespace $ns exists (a previous run's?): delete it first" >&2
  exit 1
fi
"$kubectl" create namespace "$ns" >/dev/null
cli_log=$(mktemp)
out=$(mktemp -d)
pf_pid=""
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    echo "failed (exit $rc); the end of the CLI's log:" >&2
    tail -n 40 "$cli_log" >&2
  fi
  [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null || true
  rm -rf "$cli_log" "$out"
  log "cleaning up: deleting the database and the namespace $ns"
  "$sb" db delete big -n "$ns" --delete-data --yes >/dev/null 2>&1 || true
  "$kubectl" delete namespace "$ns" --wait=true --timeout=5m >/dev/null 2>&1 || true
}
trap cleanup EXIT

# 1. The database, on 15, with about SIZE_MB of data (the tables of bench-upgrade).
log "creating big on PostgreSQL 15 and loading about $size_mb MB"
"$sb" db create big --version 15 --storage "$storage" -n "$ns" >/dev/null 2>>"$cli_log"
orders=$(( (size_mb - 8) * 1024 * 1024 / 375 ))
events=$(( orders * 2 ))
accounts=$(( orders / 50 + 1 ))
"$sb" db run big -n "$ns" -- psql -X -q -v ON_ERROR_STOP=1 2>>"$cli_log" <<SQL
CREATE TABLE accounts (id int PRIMARY KEY, email text NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE orders (id bigint PRIMARY KEY, account_id int NOT NULL, amount numeric(12,2) NOT NULL,
  status text NOT NULL, created_at timestamptz NOT NULL, note text);
CREATE TABLE events (id bigint PRIMARY KEY, order_id bigint NOT NULL, kind text NOT NULL,
  at timestamptz NOT NULL);
INSERT INTO accounts SELECT i, 'user' || i || '@example.com', now() - i * interval '1 minute'
  FROM generate_series(1, $accounts) i;
INSERT INTO orders SELECT i, 1 + i % $accounts, (i % 100000) / 100.0,
  (ARRAY['new','paid','shipped','done'])[1 + i % 4], now() - i * interval '1 second', md5(i::text) || md5((i + 1)::text)
  FROM generate_series(1, $orders) i;
INSERT INTO events SELECT i, 1 + i / 2, (ARRAY['created','paid','shipped'])[1 + i % 3], now() - i * interval '1 second'
  FROM generate_series(1, $events) i;
CREATE INDEX orders_account_id ON orders (account_id);
CREATE INDEX events_order_id ON events (order_id);
VACUUM ANALYZE;
SQL
bytes=$("$sb" db run big -n "$ns" -- psql -X -At -c 'SELECT pg_database_size(current_database())' 2>>"$cli_log")
size=$(awk -v b="$bytes" 'BEGIN { printf "%.2f GiB", b / 1073741824 }')
log "pg_database_size(big) = $bytes bytes ($size)"
user=$("$kubectl" get secret big-credentials -n "$ns" -o jsonpath='{.data.username}' | base64 -d)
PGPASSWORD=$("$kubectl" get secret big-credentials -n "$ns" -o jsonpath='{.data.password}' | base64 -d)
export PGPASSWORD

# 2. The three ways, in turn, ROUNDS times.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$kubectl" port-forward -n "$ns" pod/big-0 "$port:5432" >>"$cli_log" 2>&1 &
pf_pid=$!
for _ in $(seq 100); do
  pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.1
done
declare -A times
for r in $(seq "$rounds"); do
  t0=$(now); "$sb" db dump big -n "$ns" -f "$out/ours.dump" 2>>"$cli_log"; t1=$(now)
  a=$(secs "$t0" "$t1"); times[ours]+="$a "
  t0=$(now); "$kubectl" exec -n "$ns" big-0 -c postgres -- pg_dump --format=custom --dbname=big >"$out/exec.dump" 2>>"$cli_log"; t1=$(now)
  b=$(secs "$t0" "$t1"); times[exec]+="$b "
  t0=$(now); pg_dump --format=custom -h 127.0.0.1 -p "$port" -U "$user" -d big -f "$out/pf.dump" 2>>"$cli_log"; t1=$(now)
  c=$(secs "$t0" "$t1"); times[pf]+="$c "
  log "round $r: db dump $a s, kubectl exec $b s, pg_dump through port-forward $c s"
done
for f in ours exec pf; do
  pg_restore --list "$out/$f.dump" >/dev/null || { echo "$f.dump is not a dump pg_restore reads" >&2; exit 1; }
done

# 3. The table.
echo "| method | data size | dump size | median time (s) | times (s) | MB/s of data |"
echo "| --- | --- | --- | --- | --- | --- |"
declare -A names=([ours]="stackblaze db dump -f FILE" [exec]="kubectl exec ... pg_dump > FILE" [pf]="pg_dump (local) through kubectl port-forward")
for f in ours exec pf; do
  name=${names[$f]}
  m=$(tr ' ' '\n' <<<"${times[$f]}" | grep . | median)
  dump_mb=$(awk -v b="$(stat -c %s "$out/$f.dump")" 'BEGIN { printf "%.0f MB", b / 1e6 }')
  printf '| %s | %s | %s | %s | %s | %s |\n' "$name" "$size" "$dump_mb" "$m" "${times[$f]% }" \
    "$(awk -v b="$bytes" -v s="$m" 'BEGIN { printf "%.0f", b / 1e6 / s }')"
done
