# Shared settings of the test bed scripts. Sourced, not run.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/hack/testbed"
# shellcheck source=versions.env
source "$here/versions.env"
TB="${STACKBLAZE_TESTBED_DIR:-$root/.testbed}"
CLUSTER=stackblaze
export KWOK_WORKDIR="$TB/kwok"
KUBECONFIG_PATH="$TB/kubeconfig"
log() { echo "testbed: $*" >&2; }

# pg_bindir prints the directory of the newest installed PostgreSQL server.
pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && echo "$d"
}

runner_alive() {
  [ -f "$TB/podrunner.pid" ] && kill -0 "$(cat "$TB/podrunner.pid")" 2>/dev/null
}

apiserver_ready() {
  [ -f "$KUBECONFIG_PATH" ] && [ -x "$TB/bin/kubectl" ] &&
    "$TB/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}
