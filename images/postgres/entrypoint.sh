#!/bin/bash
# The database container's entrypoint. On the first start (no PG_VERSION in PGDATA) it
# initialises the data directory: initdb with POSTGRES_USER and the password from
# POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (given to initdb in a file, never in argv),
# POSTGRES_DB, then the scripts in /docker-entrypoint-initdb.d (*.sh run with bash, *.sql with
# psql) against a server that listens on the Unix socket only. Then it runs postgres as PID 1, so
# that the container's stop signal (SIGINT: a fast shutdown) reaches it and the data directory is
# left consistent. Arguments that start with '-' are postgres options (-c name=value). The
# passwords of the environment are removed before postgres starts, so that neither it nor what it
# runs (archive_command) inherits them.
set -Eeuo pipefail

log() { echo "entrypoint: $*" >&2; }

if [ $# -eq 0 ] || [ "${1:0:1}" = "-" ]; then
  set -- postgres "$@"
fi
if [ "$1" != postgres ]; then
  exec "$@"
fi
if [ "$(id -u)" = 0 ]; then
  log "refusing to run PostgreSQL as root: run the container as uid 999"
  exit 1
fi

: "${PGDATA:?PGDATA must be set}"
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
socket_dir=/var/run/postgresql

# init makes the data directory in a sibling directory and moves it into place only once every
# step succeeded: a first start that fails half-way (a script error, the pod deleted) leaves no
# PGDATA that a later start would take for a finished one.
init() {
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD=$(<"$POSTGRES_PASSWORD_FILE")
  fi
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE) is not set: a new database needs a superuser password"
    exit 1
  fi
  local tmp="$PGDATA.initialising"
  rm -rf "$tmp"
  if [ -d "$PGDATA" ]; then
    rmdir "$PGDATA" 2>/dev/null || { log "$PGDATA exists without PG_VERSION and is not empty: not initialising over it"; exit 1; }
  fi
  log "initialising $PGDATA"
  # initdb reads the password from a file descriptor, so it appears in no process's argv.
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 \
    ${POSTGRES_INITDB_ARGS:-} -D "$tmp" >/dev/null
  unset POSTGRES_PASSWORD
  {
    echo
    echo "# stackblaze: TCP logins need a password (SCRAM); the Unix socket is the container's own."
    echo "host all all 0.0.0.0/0 scram-sha-256"
    echo "host all all ::/0 scram-sha-256"
  } >>"$tmp/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$tmp/postgresql.conf"

  # The first start's server logs as the database will (the log_* settings among the arguments),
  # so that what the initialisation sends is in the same log; nothing it sends holds a password.
  local opts="-c listen_addresses='' -c unix_socket_directories=$socket_dir" prev="" a
  for a in "$@"; do
    if [ "$prev" = -c ]; then
      case "$a" in log_*=*) opts+=" -c $(printf '%q' "$a")" ;; esac
    fi
    prev=$a
  done
  # The server logs to standard error, like the database it becomes; pg_ctl says nothing (-s).
  pg_ctl -s -D "$tmp" -w -t 60 -o "$opts" start >&2
  export PGHOST=$socket_dir PGUSER=$POSTGRES_USER
  if [ "$POSTGRES_DB" != postgres ]; then
    psql -X -v ON_ERROR_STOP=1 --dbname postgres --set db="$POSTGRES_DB" -q <<<'CREATE DATABASE :"db"'
  fi
  local f
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) log "running $f"; bash "$f" ;;
      *.sql) log "running $f"; psql -X -v ON_ERROR_STOP=1 --dbname "$POSTGRES_DB" -q -f "$f" ;;
      *) ;;
    esac
  done
  pg_ctl -s -D "$tmp" -m fast -w -t 60 stop
  mv "$tmp" "$PGDATA"
  log "initialised"
}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  # A major version upgrade or its way back (upgrade.sh) moves PGDATA aside for a moment: a
  # database that starts then must not initialise an empty one in its place.
  for d in "$PGDATA.upgrade" "$PGDATA.revert" "$(dirname "$PGDATA")/pgdata.pre-upgrade"; do
    if [ -e "$d" ]; then
      log "$PGDATA is missing and $d exists: a major version upgrade did not finish; run stackblaze db upgrade again"
      exit 1
    fi
  done
  init "$@"
fi
# A volume whose ownership the kubelet sets for fsGroup on every mount (fsGroupChangePolicy
# Always) leaves PGDATA group-writable, which PostgreSQL refuses: put its mode back.
chmod 0700 "$PGDATA"
unset POSTGRES_PASSWORD APP_PASSWORD_VERIFIER
exec "$@"
