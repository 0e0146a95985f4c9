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
# Builds (binaries, images) are cached outside the repository, keyed by version.
CACHE_ROOT=${STACKBLAZE_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/stackblaze/testbed}
# The images the node runs, imported into its container runtime (hack/testbed/images.sh).
PAUSE_IMAGE=testbed.stackblaze.local/pause:1
STACKBLAZE_IMAGE=stackblaze/stackblaze:latest
# PostgreSQL majors whose images the test bed builds and runs.
PG_MAJORS="15 17"

# pg_bindir prints the directory of the newest installed PostgreSQL server.
pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] && [ -x "$d/postgres" ] && [ -x "$d/initdb" ] && echo "$d"
}

apiserver_ready() {
  [ -f "$KUBECONFIG_PATH" ] && [ -x "$TB/bin/kubectl" ] &&
    "$TB/bin/kubectl" --kubeconfig "$KUBECONFIG_PATH" --request-timeout=3s get --raw /readyz >/dev/null 2>&1
}
