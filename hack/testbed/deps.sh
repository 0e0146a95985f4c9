#!/usr/bin/env bash
# Installs what the test bed needs from the distribution's packages when it is missing:
# PostgreSQL's server and client tools (initdb, postgres, psql, pg_dump, pgbench), and tmux with
# bash-completion for the shell completion test.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
missing=()
[ -n "$(pg_bindir)" ] || missing+=(postgresql postgresql-contrib)
command -v psql >/dev/null || missing+=(postgresql-client)
id postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v tmux >/dev/null || missing+=(tmux)
command -v pgbackrest >/dev/null || missing+=(pgbackrest libfaketime)
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  log "missing packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) and run again"
  exit 1
fi
log "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The package may start a cluster of its own through the init system; the test bed does not use it.
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _; do pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true; done
fi
