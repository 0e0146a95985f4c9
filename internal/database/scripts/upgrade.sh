#!/bin/bash
# Major version upgrades with pg_upgrade, run by `stackblaze db upgrade` in pods of its own (the
# binary carries this script and gives it to the pod as its command, so that the steps are those
# of the stackblaze that drives them; the database image only needs patchelf and socat):
#
#   upgrade.sh export DIR   (in the old major's image) copies this image's PostgreSQL into DIR
#                           with every library it loads, its loader and rpath pointed there, so
#                           that its binaries run in the new major's image, whatever Debian
#                           release that image is built from
#   upgrade.sh check        (in the new major's image, beside the running database) runs
#                           pg_upgrade --check against the live server and the checks pg_upgrade
#                           does not make; prints one "finding" line per problem (see finding)
#   upgrade.sh run          (in the new major's image, with the database stopped) upgrades PGDATA
#                           in place with pg_upgrade --link; rerun after any failure or kill, it
#                           either finishes or puts the old data back first and starts again
#   upgrade.sh undo         puts the old data directory back after a run that did not finish
#   upgrade.sh restore SET  restores pgBackRest backup SET into PGDATA (the way back after the
#                           new major has run), keeping the data it replaces beside it
#
# OLD_BINARIES is where `export` put the old binaries (a volume both containers mount).
# Findings are tab-separated lines: "finding", severity (blocker or warning), a code, the
# database (or -), and the text; the command renders them.
set -Eeuo pipefail
# As the pod's first process, bash would ignore the SIGTERM of a pod deletion.
trap 'exit 143' TERM
log() { echo "upgrade: $*" >&2; }
new_bindir=/usr/lib/postgresql/current/bin
new_major=$(basename "$(readlink -f /usr/lib/postgresql/current)")
: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
parent=$(dirname "$PGDATA")
staging="$PGDATA.upgrade"
work=${UPGRADE_WORK:-/tmp/stackblaze-upgrade}

finding() { printf 'finding\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$(echo "$4" | tr '\t\n' '  ')"; }

export_binaries() {
  local dest=${1:?usage: upgrade.sh export DIR} major f interp
  major=$new_major
  log "exporting PostgreSQL $major to $dest"
  rm -rf "${dest:?}/usr" "$dest/lib" "$dest/MAJOR"
  mkdir -p "$dest/usr/lib/postgresql" "$dest/usr/share/postgresql" "$dest/lib"
  cp -a "/usr/lib/postgresql/$major" "$dest/usr/lib/postgresql/"
  cp -a "/usr/share/postgresql/$major" "$dest/usr/share/postgresql/"
  # JIT is never used by pg_upgrade, and its library alone weighs more than the rest.
  rm -rf "$dest/usr/lib/postgresql/$major/lib/llvmjit"* "$dest/usr/lib/postgresql/$major/lib/bitcode"
  interp=$(patchelf --print-interpreter "/usr/lib/postgresql/$major/bin/postgres")
  cp -L "$interp" "$dest/lib/"
  for f in "$dest/usr/lib/postgresql/$major"/bin/* "$dest/usr/lib/postgresql/$major"/lib/*.so; do
    is_elf "$f" || continue
    ldd "$f" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | while read -r l; do
      [ -e "$dest/lib/$(basename "$l")" ] || cp -L "$l" "$dest/lib/"
    done
  done
  for f in "$dest/usr/lib/postgresql/$major"/bin/*; do
    is_elf "$f" || continue
    patchelf --set-interpreter "$dest/lib/$(basename "$interp")" --force-rpath --set-rpath "$dest/lib" "$f"
  done
  for f in "$dest/usr/lib/postgresql/$major"/lib/*.so; do
    patchelf --force-rpath --set-rpath "$dest/lib" "$f"
  done
  echo "$major" >"$dest/MAJOR"
  "$dest/usr/lib/postgresql/$major/bin/postgres" -V >&2
}

is_elf() { [ -f "$1" ] && [ "$(head -c 4 "$1" | tr -d '\0')" = $'\x7fELF' ]; }

old_bindir() {
  local m
  m=$(cat "${OLD_BINARIES:?}/MAJOR")
  echo "$OLD_BINARIES/usr/lib/postgresql/$m/bin"
}

# initdb_new makes the new cluster in $1 with the old one's encoding, locales and checksums
# (pg_upgrade requires them to match): OLD_ENCODING, OLD_COLLATE, OLD_CTYPE, OLD_CHECKSUMS.
initdb_new() {
  local dir=$1 args=()
  args+=(--username=postgres --auth-local=trust --auth-host=scram-sha-256)
  args+=("--encoding=${OLD_ENCODING:-UTF8}" "--lc-collate=${OLD_COLLATE:-C.UTF-8}" "--lc-ctype=${OLD_CTYPE:-C.UTF-8}")
  if [ "${OLD_CHECKSUMS:-off}" = on ]; then
    args+=(--data-checksums)
  elif [ "$new_major" -ge 18 ]; then
    args+=(--no-data-checksums)
  fi
  rm -rf "$dir"
  "$new_bindir/initdb" "${args[@]}" -D "$dir" >/dev/null
}

# A forwarder from the Unix socket the live server's postmaster.pid names to the server's
# address, so that pg_upgrade --check, which reaches a live server by its socket, reaches it from
# this pod.
forward() {
  local sock
  sock=$(sed -n 5p "$PGDATA/postmaster.pid")
  [ -n "$sock" ] || { log "the database server has no Unix socket directory"; exit 1; }
  socat "UNIX-LISTEN:$sock/.s.PGSQL.5432,fork,mode=700" "TCP:${DB_HOST:?}:5432" &
  for _ in $(seq 50); do [ -S "$sock/.s.PGSQL.5432" ] && return 0; sleep 0.1; done
  log "the socket forwarder did not start"; exit 1
}

sql() { psql -X -At -v ON_ERROR_STOP=1 -U postgres -h /var/run/postgresql "$@"; }

check() {
  [ -f "$PGDATA/postmaster.pid" ] || { log "the database is not running: the check reads the live server"; exit 1; }
  forward
  local old_major old_bin new db out status=0 names
  old_major=$(cat "$PGDATA/PG_VERSION")
  old_bin=$(old_bindir)
  read -r OLD_ENCODING OLD_COLLATE OLD_CTYPE < <(sql -d postgres -F ' ' -c \
    "select pg_encoding_to_char(encoding), datcollate, datctype from pg_database where datname = 'template0'")
  OLD_CHECKSUMS=$(sql -d postgres -c 'show data_checksums')
  new="$work/new"
  mkdir -p "$work/sock"
  initdb_new "$new"
  log "pg_upgrade --check from $old_major to $new_major"
  cd "$work"
  set +e
  out=$("$new_bindir/pg_upgrade" --check -b "$old_bin" -B "$new_bindir" -d "$PGDATA" -D "$new" \
    -U postgres --socketdir="$work/sock" -p 5432 -P 50432 2>&1)
  status=$?
  set -e
  echo "$out" | sed 's/^/pg_upgrade: /' >&2
  if [ "$status" -ne 0 ]; then
    local why detail
    # pg_upgrade's words: what it printed after its last passed check, without the names of its
    # report files (inside this pod); their content follows.
    why=$(echo "$out" | awk '/ ok *$/ {buf = ""; next} {buf = buf "\n" $0} END {print buf}' |
      grep -vE '^ *$|^Failure, exiting|^ +/|is in the file:$' | sed -E 's/ +fatal *$/:/; s/^ +//' | tr '\n' ' ' | tr -s ' ' || true)
    detail=$(find "$new" -path '*pg_upgrade_output.d*' -name '*.txt' -exec cat {} + 2>/dev/null | head -n 20 | sed -E 's/^ +//' | tr '\n' ' ' || true)
    finding blocker pg_upgrade - "pg_upgrade: ${why:-the check failed}${detail:+ Found: ${detail}}"
  fi
  # What pg_upgrade does not check.
  # Settings the old major knows and the new one does not (removed or renamed).
  names=$(comm -23 <("$old_bin/postgres" --describe-config 2>/dev/null | cut -f1 | sort -u) \
    <("$new_bindir/postgres" --describe-config 2>/dev/null | cut -f1 | sort -u))
  for db in $(sql -d postgres -c "select datname from pg_database where datallowconn order by 1"); do
    while IFS='|' read -r ext ver; do
      [ -n "$ext" ] || continue
      if [ ! -f "/usr/share/postgresql/$new_major/extension/$ext.control" ]; then
        finding blocker extension "$db" "extension $ext $ver has no build for PostgreSQL $new_major"
      fi
    done < <(sql -d "$db" -c "select extname, extversion from pg_extension")
  done
  while IFS='|' read -r slot type; do
    [ -n "$slot" ] || continue
    finding warning replication-slot - "replication slot $slot ($type) is not carried over to PostgreSQL $new_major: drop it, and create it again after the upgrade"
  done < <(sql -d postgres -c "select slot_name, slot_type from pg_replication_slots")
  while read -r role; do
    [ -n "$role" ] || continue
    finding warning md5-password - "role $role has an MD5 password, which PostgreSQL deprecates: set it again with password_encryption = scram-sha-256"
  done < <(sql -d postgres -c "select rolname from pg_authid where rolpassword like 'md5%'")
  while IFS='|' read -r setting where; do
    [ -n "$setting" ] || continue
    if grep -qxF "$setting" <<<"$names"; then
      finding blocker setting - "setting $setting ($where) does not exist in PostgreSQL $new_major: reset it"
    fi
  done < <(sql -d postgres -c "select distinct split_part(s, '=', 1), concat_ws(' ', 'database ' || d.datname, 'role ' || r.rolname)
      from pg_db_role_setting x cross join unnest(x.setconfig) s
      left join pg_database d on d.oid = x.setdatabase left join pg_roles r on r.oid = x.setrole
    union select name, 'ALTER SYSTEM' from pg_file_settings where sourcefile like '%postgresql.auto.conf'")
  echo "check done" >&2
}

# undo puts the old data directory back as it was before pg_upgrade linked it: valid as long as
# the upgraded cluster was never started by the database (pg_upgrade's own starts aside). When
# the run had already put the new major in place, it changes nothing and says "upgraded": the
# old data is gone then, and only the backup gives the old major back.
undo() {
  if [ -f "$PGDATA/PG_VERSION" ] && [ "$(cat "$PGDATA/PG_VERSION")" = "$new_major" ]; then
    rm -rf "$staging" "$parent/pgdata.pre-upgrade"
    echo "upgraded: PGDATA is PostgreSQL $new_major already"
    return 0
  fi
  if [ ! -e "$PGDATA/PG_VERSION" ] && [ -d "$parent/pgdata.pre-upgrade" ]; then
    rm -rf "$PGDATA"
    mv "$parent/pgdata.pre-upgrade" "$PGDATA"
  fi
  if [ -f "$PGDATA/global/pg_control.old" ] && [ ! -f "$PGDATA/global/pg_control" ]; then
    mv "$PGDATA/global/pg_control.old" "$PGDATA/global/pg_control"
  fi
  rm -rf "$staging" "$parent/pgdata.pre-upgrade"
  log "PGDATA is PostgreSQL $(cat "$PGDATA/PG_VERSION") again"
}

# archive_last pushes the finished WAL segments the stopped server had not archived yet (those
# waiting in archive_status; the archiver would push the same bytes, so a later push of them is
# no conflict). The segment it was writing is not finished: pushing it would clash with the
# finished one the old server archives if it runs on (after undo); keep_last_wal keeps it instead.
archive_last() {
  local f
  for f in "$PGDATA"/pg_wal/archive_status/*.ready; do
    [ -e "$f" ] || continue
    f=$(basename "$f" .ready)
    pgbackrest --stanza="${STANZA:?}" --pg1-path="$PGDATA" archive-push "$PGDATA/pg_wal/$f" >&2
    mv "$PGDATA/pg_wal/archive_status/$f.ready" "$PGDATA/pg_wal/archive_status/$f.done"
  done
}

# keep_last_wal copies, once pg_upgrade has succeeded and before the old data directory goes,
# the old server's WAL from segment $1 (its last checkpoint's) on to upgrade-wal beside PGDATA:
# the way back (restore_set) replays it after the archive, so that it loses no commit of the old
# major. It stays until the upgrade is finished or reverted.
keep_last_wal() {
  local first=$1 f
  rm -rf "$parent/upgrade-wal"
  mkdir -m 700 "$parent/upgrade-wal.tmp"
  for f in "$PGDATA"/pg_wal/*; do
    f=$(basename "$f")
    case "$f" in *[!0-9A-F]*) continue ;; esac
    [ ${#f} -eq 24 ] && [[ ! "$f" < "$first" ]] || continue
    cp "$PGDATA/pg_wal/$f" "$parent/upgrade-wal.tmp/"
  done
  mv "$parent/upgrade-wal.tmp" "$parent/upgrade-wal"
}

run() {
  local old_bin old_major state last
  if [ -f "$PGDATA/PG_VERSION" ] && [ "$(cat "$PGDATA/PG_VERSION")" = "$new_major" ]; then
    rm -rf "$parent/pgdata.pre-upgrade" "$staging"
    log "PGDATA is PostgreSQL $new_major already"
    stanza_upgrade
    return 0
  fi
  # What needs no stopped database is done before the stop, out of the write outage: the old
  # binaries (the init container), a clean slate and the new cluster's initdb. (undo only touches
  # what a run left, never the data of a running server.)
  undo
  old_major=$(cat "$PGDATA/PG_VERSION")
  old_bin=$(old_bindir)
  [ "$(cat "$OLD_BINARIES/MAJOR")" = "$old_major" ] || { log "PGDATA is PostgreSQL $old_major, the old binaries are $(cat "$OLD_BINARIES/MAJOR")"; exit 1; }
  mkdir -p "$work"
  initdb_new "$staging"
  # Then the pod is ready (its readiness probe reads this file) and waits until the command has
  # stopped the database and says so (the second file).
  touch "$work/prepared"
  log "prepared: waiting for the database to stop"
  while [ ! -e "$work/stopped" ]; do sleep 0.1; done
  state=$("$old_bin/pg_controldata" -D "$PGDATA" | sed -n 's/^Database cluster state: *//p')
  if [ "$state" != "shut down" ]; then
    # A server that did not stop cleanly (killed) recovers first: pg_upgrade needs a clean stop.
    log "the old server did not shut down cleanly ($state): recovering it first"
    "$old_bin/pg_ctl" -s -D "$PGDATA" -w -t 600 -o "-c listen_addresses='' -c unix_socket_directories=$work -c archive_mode=off" start
    "$old_bin/pg_ctl" -s -D "$PGDATA" -m fast -w -t 600 stop
  fi
  archive_last
  last=$("$old_bin/pg_controldata" -D "$PGDATA" | sed -n "s/^Latest checkpoint's REDO WAL file: *//p")
  [ -n "$last" ] || { log "cannot read the old server's last WAL segment"; exit 1; }
  log "pg_upgrade --link from $old_major to $new_major"
  cd "$work"
  if ! "$new_bindir/pg_upgrade" --link -b "$old_bin" -B "$new_bindir" -d "$PGDATA" -D "$staging" \
    -U postgres --socketdir="$work" -p 50431 -P 50432 >&2; then
    find "$staging" -path '*pg_upgrade_output.d*' -name '*.log' -exec tail -n 20 {} + >&2 2>/dev/null || true
    undo
    log "pg_upgrade failed; the old data directory is back in place"
    exit 1
  fi
  # The configuration the database had: who may log in from where, what ALTER SYSTEM set, and
  # listening on every address.
  cp "$PGDATA/pg_hba.conf" "$PGDATA/pg_ident.conf" "$staging/"
  [ ! -f "$PGDATA/postgresql.auto.conf" ] || cp "$PGDATA/postgresql.auto.conf" "$staging/"
  echo "listen_addresses = '*'" >>"$staging/postgresql.conf"
  rm -rf "$staging/pg_upgrade_output.d" "$work/delete_old_cluster.sh"
  keep_last_wal "$last"
  sync
  mv "$PGDATA" "$parent/pgdata.pre-upgrade"
  mv "$staging" "$PGDATA"
  sync
  rm -rf "$parent/pgdata.pre-upgrade"
  log "PGDATA is PostgreSQL $new_major"
  stanza_upgrade
}

# stanza_upgrade makes the pgBackRest stanza follow PGDATA's version and system identifier, so
# that the server archives from its first start (nothing to do when they match).
stanza_upgrade() {
  pgbackrest --stanza="${STANZA:?}" --pg1-path="$PGDATA" --no-online stanza-upgrade >&2
}

# restore_set restores backup set $1 into a new directory and puts it in place of PGDATA,
# keeping what it replaces as pgdata.before-revert (the command removes it once the old major
# runs again). The WAL keep_last_wal kept goes into the restored pg_wal: recovery replays the
# archive, then it, up to the moment the old major stopped. Run again after it put the data in
# place (PGDATA is no longer this image's major), it changes nothing.
restore_set() {
  local set=${1:?usage: upgrade.sh restore SET} dir="$PGDATA.revert"
  if [ -d "$parent/pgdata.before-revert" ] && [ -f "$PGDATA/PG_VERSION" ] && [ "$(cat "$PGDATA/PG_VERSION")" != "$new_major" ]; then
    log "PGDATA is PostgreSQL $(cat "$PGDATA/PG_VERSION") already: restored by an earlier run"
    return 0
  fi
  rm -rf "$dir"
  mkdir -m 700 "$dir"
  pgbackrest --stanza="${STANZA:?}" --pg1-path="$dir" --set="$set" \
    "--recovery-option=restore_command=exec pgbackrest --stanza=$STANZA --pg1-path=\"\$(pwd -P)\" archive-get %f \"%p\"" \
    restore >&2
  if [ -d "$parent/upgrade-wal" ]; then
    cp "$parent"/upgrade-wal/* "$dir/pg_wal/" 2>/dev/null || true
  fi
  if [ -f "$PGDATA/PG_VERSION" ]; then
    rm -rf "$parent/pgdata.before-revert"
    mv "$PGDATA" "$parent/pgdata.before-revert"
  fi
  mv "$dir" "$PGDATA"
  stanza_upgrade
  log "PGDATA is backup $set (PostgreSQL $(cat "$PGDATA/PG_VERSION")), recovering to the end of its WAL"
}

case "${1:-}" in
  export) export_binaries "${2:-}" ;;
  check) check ;;
  run) run ;;
  undo) undo ;;
  restore) restore_set "${2:-}" ;;
  *) echo "usage: upgrade.sh export DIR | check | run | undo | restore SET" >&2; exit 2 ;;
esac
