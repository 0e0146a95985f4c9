#!/usr/bin/env bash
# The main job on the local test bed, on real containers: create a database, attach it to a
# service whose pod writes a row over the Service, run Prisma's migrations through a tunnel with
# `db migrate` (twice: the second has nothing to do), and query the migrated table from the app. Run through
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

step stackblaze db create shop --version 17 --storage 1Gi --plan hobby -n $ns
"$sb" db create shop --version 17 --storage 1Gi --plan hobby -n "$ns"

step stackblaze db list -n $ns
"$sb" db list -n "$ns"

# A web service to attach the database to: a real container (the database image has psql) that
# waits for DATABASE_URL, resolves the database's name, writes a row and stays up.
"$kubectl" -n "$ns" apply -f - >/dev/null <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: stackblaze/postgres:17
        command:
        - bash
        - -c
        - |
          if [ -z "${DATABASE_URL:-}" ]; then echo "waiting to be attached"; exec sleep infinity; fi
          host=$(printf '%s' "$DATABASE_URL" | sed -E 's#^[^@]*@([^:/]+).*$#\1#')
          echo "web: $host is $(getent hosts "$host" | awk '{print $1}')"
          psql "$DATABASE_URL" -X -q -c "CREATE SCHEMA IF NOT EXISTS web" -c "CREATE TABLE IF NOT EXISTS web.boot (at timestamptz DEFAULT now(), pod text)" -c "INSERT INTO web.boot (pod) VALUES ('$HOSTNAME')"
          echo "web: wrote a row"; touch /tmp/ready; exec sleep infinity
        readinessProbe: {exec: {command: [test, -f, /tmp/ready]}, periodSeconds: 1}
YAML
step stackblaze db attach shop --to deployment/web -n $ns
"$sb" db attach shop --to deployment/web -n "$ns"
"$kubectl" -n "$ns" rollout status deployment/web --timeout=3m >/dev/null
step kubectl logs deployment/web -n $ns
"$kubectl" -n "$ns" logs deployment/web

# The Prisma example (examples/prisma), installed as a developer would.
project=$(mktemp -d)
trap 'rm -rf "$project"' EXIT
cp -r "$root/examples/prisma/." "$project/"
bash "$root/hack/e2e-tools.sh" >/dev/null # fills npm's cache with the example's packages once
(cd "$project" && npm ci --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
export CHECKPOINT_DISABLE=1

step stackblaze db migrate shop -n $ns -- npx prisma migrate deploy
(cd "$project" && "$sb" db migrate shop -n "$ns" -- npx prisma migrate deploy)

step stackblaze db migrate shop -n $ns -- npx prisma migrate deploy   "# again: nothing pending"
(cd "$project" && "$sb" db migrate shop -n "$ns" -- npx prisma migrate deploy)

step kubectl exec deployment/web -n $ns -- psql '$DATABASE_URL' -c 'INSERT INTO "Visit" ...'
"$kubectl" -n "$ns" exec deployment/web -- bash -c \
  'psql "$DATABASE_URL" -X -c "INSERT INTO \"Visit\" (path) VALUES ('"'"'/'"'"') RETURNING *" -c "TABLE web.boot"'

step stackblaze db status shop -n $ns
"$sb" db status shop -n "$ns"

cat <<MSG

The database runs in a container on the local test bed's node. Try:
  export KUBECONFIG=$KUBECONFIG
  bin/stackblaze db run shop -n $ns -- psql -c 'table "Visit"'
  bin/stackblaze db backup create shop -n $ns
  bin/stackblaze db delete shop -n $ns --yes
  make testbed-down
MSG
