#!/usr/bin/env bash
# Write outage of a PostgreSQL major version upgrade (15 to 17), two ways, on the same data in the
# same run: `stackblaze db upgrade` (pg_upgrade --link in a pod) against what a user has without
# it, a dump of the old database streamed into a new one on 17. Prints a markdown table.
# Usage: make bench-upgrade   (SIZE_MB=1024: the data to load; STORAGE=2Gi: each volume;
#                              NS=bench-upgrade: the namespace, which must not exist yet)
#
# The dump and restore is `pg_dump | psql`, plain SQL through two `db run` tunnels: the pipe the
# PostgreSQL manual gives for an upgrade by dump (pg_dumpall | psql), with ON_ERROR_STOP so that a
# failed statement ends it. Its outage runs from the start of pg_dump (the app stopped writing)
# to the end of psql (the new database holds everything); the new database is created before.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
testbed=${STACKBLAZE_TESTBED_DIR:-$root/.testbed}
export KUBECONFIG="$testbed/kubeconfig"
sb="$root/bin/stackblaze"
kubectl="$testbed/bin/kubectl"
ns=${NS:-bench-upgrade}
size_mb=${SIZE_MB:-1024}
storage=${STORAGE:-2Gi}

now() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1e9 }'; }
log() { echo "# $*" >&2; }

if "$kubectl" get namespace "$ns" >/dev/null 2>&1; then
  echo "namespace $ns exists (a previous run's?): delete it first" >&2
  exit 1
fi
"$kubectl" create namespace "$ns" >/dev/null
# The CLI's progress and the clients' messages go to a log, shown if the run fails.
cli_log=$(mktemp)
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ]; then
    echo "failed (exit $rc); the end of the CLI's log:" >&2
    tail -n 40 "$cli_log" >&2
  fi
  rm -f "$cli_log"
  log "cleaning up: deleting the databases and the namespace $ns"
  for db in big big17; do "$sb" db delete "$db" -n "$ns" --delete-data --yes >/dev/null 2>&1 || true; done
  "$kubectl" delete namespace "$ns" --wait=true --timeout=5m >/dev/null 2>&1 || true
}
trap cleanup EXIT

sql() { # sql DB: run the SQL on stdin in DB through a tunnel, stop at the first error
  "$sb" db run "$1" -n "$ns" -- psql -X -q -v ON_ERROR_STOP=1 "${@:2}" 2>>"$cli_log"
}

# 1. The database to upgrade, on 15, with about SIZE_MB of data (pg_database_size): orders (a
# primary key and an index on account_id), two events per order (a primary key and an index on
# order_id) and accounts. An order and its two events take about 375 bytes with their indexes;
# an empty database about 8 MB.
log "creating big on PostgreSQL 15 and loading about $size_mb MB"
"$sb" db create big --version 15 --storage "$storage" -n "$ns" >/dev/null 2>>"$cli_log"
orders=$(( (size_mb - 8) * 1024 * 1024 / 375 ))
events=$(( orders * 2 ))
accounts=$(( orders / 50 + 1 ))
t0=$(now)
sql big <<SQL
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
bytes=$(sql big -At -c 'SELECT pg_database_size(current_database())')
size=$(awk -v b="$bytes" 'BEGIN { printf "%.2f GiB", b / 1073741824 }')
log "loaded in $(secs "$t0" "$(now)") s: pg_database_size(big) = $bytes bytes ($size)"
"$sb" db run big -n "$ns" -- psql -X -c "SELECT relname AS relation, pg_size_pretty(pg_total_relation_size(oid)) AS \"size with indexes\"
  FROM pg_class WHERE relname IN ('accounts', 'orders', 'events') ORDER BY 1" >&2 2>>"$cli_log"

# 2. Without pg_upgrade: a new database on 17, made beforehand, filled by a dump of big.
log "creating big17 on PostgreSQL 17 (before the outage)"
t_create=$(now)
"$sb" db create big17 --version 17 --storage "$storage" -n "$ns" >/dev/null 2>>"$cli_log"
log "dump and restore: pg_dump of big (15) | psql into big17 (17)"
t0=$(now)
"$sb" db run big -n "$ns" -- pg_dump --no-owner --no-privileges 2>>"$cli_log" |
  "$sb" db run big17 -n "$ns" -- psql -X -q -v ON_ERROR_STOP=1 >/dev/null 2>>"$cli_log"
t1=$(now)
dump_outage=$(secs "$t0" "$t1")
dump_total=$(secs "$t_create" "$t1") # with the creation of big17
check=$(sql big17 -At -c "SELECT (SELECT count(*) FROM orders) || ' ' || (SELECT count(*) FROM events)")
[ "$check" = "$orders $events" ] || { echo "big17 holds $check rows of orders and events, not $orders $events" >&2; exit 1; }
log "dump and restore: ${dump_outage} s; big17 holds all $orders orders and $events events"

# 3. With pg_upgrade: the outage is the CLI's own figure, from stopping the database to the new
# major accepting connections. The total also holds the check, the backups before and after, and
# the statistics rebuilt while the database serves.
log "upgrading big to 17 with stackblaze db upgrade"
t0=$(now)
out=$("$sb" db upgrade big --version 17 --yes -n "$ns" -o json 2>>"$cli_log")
t1=$(now)
upgrade_total=$(secs "$t0" "$t1")
upgrade_outage=$(jq -r '.outageSeconds' <<<"$out")
log "upgrade: stopped $(jq -r '.upgrade.stopped' <<<"$out"), up $(jq -r '.upgrade.up' <<<"$out")"
check=$(sql big -At -c "SELECT current_setting('server_version_num')::int / 10000 || ' ' || (SELECT count(*) FROM orders)")
[ "$check" = "17 $orders" ] || { echo "big after the upgrade: major and orders $check, not 17 $orders" >&2; exit 1; }

# 4. The table.
echo "| method | data size | write outage (s) | total time (s) |"
echo "| --- | --- | --- | --- |"
printf '| %s | %s | %s | %s |\n' "pg_dump \| psql into a new database on 17" "$size" "$dump_outage" "$dump_total"
printf '| %s | %s | %.1f | %s |\n' "stackblaze db upgrade (pg_upgrade --link)" "$size" "$upgrade_outage" "$upgrade_total"
