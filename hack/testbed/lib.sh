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

# data_root prints where volumes and per-pod state live: inside $TB when the postgres user can
# reach it, otherwise (a checkout under a private home directory) a directory under /var/tmp that
# belongs to this test bed alone. down.sh removes it either way.
data_root() {
  if [ -f "$TB/data-root" ]; then cat "$TB/data-root"; return; fi
  local d="$TB"
  if id postgres >/dev/null 2>&1 && ! su -s /bin/sh postgres -c "test -x '$TB'" 2>/dev/null; then
    d="/var/tmp/stackblaze-testbed-$(printf '%s' "$TB" | sha256sum | cut -c1-12)"
  fi
  echo "$d" > "$TB/data-root"
  echo "$d"
}

runner_alive() {
  [ -f "$TB/podrunner.pid" ] && kill -0 "$(cat "$TB/podrunner.pid")" 2>/dev/null
}

apiserver_ready() {
  [ -f "$KUBECONFIG_PATH" ] && [ -x "$TB/bin/kubectl" ] &&
    "$TB/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}
