#!/usr/bin/env bash
# Installs the distribution's packages that the test bed and the test suite need when they are
# missing: for the real node, runc, the CNI plugins, iptables and conntrack (kube-proxy), openssl
# (the node's certificate), mmdebstrap (the database images) and xfsprogs (the volumes' filesystems,
# hack/testbed/provisioner); PostgreSQL's server and client
# tools (psql, pg_dump, pgbench on this machine, and the loopback backup tests' servers),
# pgBackRest and libfaketime (backups, and backdating them honestly in the retention test), tmux
# with bash-completion (the shell completion test types TAB in a real bash), iproute2 and procps
# (ip, ss and pgrep, for the test bed's own tests), python3 (the benchmark, and a listener in a
# network namespace of the drop-rule test) and npm (node-pg-migrate, Prisma).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
missing=()
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || missing+=(containernetworking-plugins)
command -v iptables >/dev/null || missing+=(iptables)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v openssl >/dev/null || missing+=(openssl)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
command -v mkfs.xfs >/dev/null && command -v xfs_growfs >/dev/null || missing+=(xfsprogs)
[ -n "$(pg_bindir)" ] || missing+=(postgresql postgresql-contrib)
command -v psql >/dev/null || missing+=(postgresql-client)
id postgres >/dev/null 2>&1 || missing+=(postgresql)
command -v tmux >/dev/null || missing+=(tmux)
command -v pgbackrest >/dev/null || missing+=(pgbackrest)
ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1 || missing+=(libfaketime)
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
command -v ss >/dev/null || missing+=(iproute2)
command -v pgrep >/dev/null || missing+=(procps)
command -v npm >/dev/null || missing+=(nodejs npm)
command -v python3 >/dev/null || missing+=(python3)
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
