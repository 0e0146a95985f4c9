#!/usr/bin/env bash
# The main job on the local test bed: create a database, list it, show its status, attach it to
# a service, and run a migration through a tunnel with `db migrate`; then a backup. Run through
# `make demo` (which brings the test bed up and builds bin/stackblaze first).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tb="${STACKBLAZE_TESTBED_DIR:-$root/.testbed}"
export KUBECONFIG="$tb/kubeconfig"
sb="$root/bin/stackblaze"
kubectl="$tb/bin/kubectl"
ns=demo
if [ -t 1 ]; then step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }; else step() { printf '\n$ %s\n' "$*"; }; fi

"$kubectl" create namespace "$ns" --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null

step stackblaze db create shop --version 16 --storage 1Gi --plan hobby -n $ns
"$sb" db create shop --version 16 --storage 1Gi --plan hobby -n "$ns"

step stackblaze db list -n $ns
"$sb" db list -n "$ns"

step stackblaze db status shop -n $ns
"$sb" db status shop -n "$ns"

# A web service to attach the database to (on the test bed its pod does not really run).
"$kubectl" -n "$ns" create deployment web --image=example/web:1 --dry-run=client -o yaml | "$kubectl" apply -f - >/dev/null
step stackblaze db attach shop --to deployment/web -n $ns
"$sb" db attach shop --to deployment/web -n "$ns"
step kubectl get deployment web -n $ns -o jsonpath='{.spec.template.spec.containers[0].env}'
"$kubectl" -n "$ns" get deployment web -o jsonpath='{.spec.template.spec.containers[0].env}'
echo

migrations=$(mktemp -d)
trap 'rm -rf "$migrations"' EXIT
cat > "$migrations/001_create_orders.sql" <<'SQL'
CREATE TABLE IF NOT EXISTS orders (id serial PRIMARY KEY, total_cents integer NOT NULL, created_at timestamptz DEFAULT now());
SQL
# A migration "tool" any machine has: psql applying the files in order, recorded in a table of
# the dbmate/Rails shape so that migrate can say what this run applied.
cat > "$migrations/migrate.sh" <<'SH'
set -e
export PGOPTIONS='-c client_min_messages=warning'
psql -q -v ON_ERROR_STOP=1 -c 'CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY)'
for f in "$(dirname "$0")"/*.sql; do
  v=$(basename "$f" .sql)
  if [ -z "$(psql -Atc "SELECT 1 FROM schema_migrations WHERE version = '$v'")" ]; then
    echo "applying $v"
    psql -q -v ON_ERROR_STOP=1 -f "$f"
    psql -q -c "INSERT INTO schema_migrations VALUES ('$v')"
  fi
done
SH

step stackblaze db migrate shop -n $ns -- sh migrate.sh
"$sb" db migrate shop -n "$ns" -- sh "$migrations/migrate.sh"

step stackblaze db migrate shop -n $ns -- sh migrate.sh   "# again: nothing to apply"
"$sb" db migrate shop -n "$ns" -- sh "$migrations/migrate.sh"

step stackblaze db backup create shop -n $ns
"$sb" db backup create shop -n "$ns"

cat <<MSG

The database runs on the local test bed. Try:
  export KUBECONFIG=$KUBECONFIG
  bin/stackblaze db run shop -n $ns -- psql -c 'table orders'
  bin/stackblaze db delete shop -n $ns --yes
  make testbed-down
MSG
