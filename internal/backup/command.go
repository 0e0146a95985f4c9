package backup

import (
	"fmt"
	"strings"
	"time"
)

// Backup types.
const (
	TypeFull = "full"
	TypeDiff = "diff"
)

// StanzaCreate creates the stanza, or checks that it matches the database when it exists.
func StanzaCreate() []string { return []string{"stanza-create"} }

// BackupCmd takes a backup of the running database: full or diff.
func BackupCmd(typ string) []string { return []string{"backup", "--type=" + typ} }

// InfoCmd describes the repository as JSON (see ParseInfo).
func InfoCmd() []string { return []string{"info", "--output=json"} }

// ExpireCmd applies the retention (7 days of full backups and the WAL they need).
func ExpireCmd() []string { return []string{"expire"} }

// RestoreBackup restores backup set id, recovering only as far as the backup's consistent point
// and then promoting: the data the backup held, nothing later. See Config.Restore.
func RestoreBackup(id string) []string {
	return []string{"restore", "--set=" + id, "--type=immediate", "--target-action=promote"}
}

// RestoreTime restores by replaying archived WAL up to t and then promoting; pgBackRest picks
// the newest backup that ended before t.
func RestoreTime(t time.Time) []string {
	return []string{"restore", "--type=time", "--target=" + FormatTarget(t), "--target-action=promote"}
}

// FormatTarget writes t as PostgreSQL's recovery_target_time reads it, in UTC with microseconds.
func FormatTarget(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
}

// Shell quotes argv for sh -c.
func Shell(argv []string) string {
	q := make([]string, len(argv))
	for i, a := range argv {
		q[i] = shellQuote(a)
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=./:,+@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}

// InPod is the command line that runs pgbackrest command cmd (StanzaCreate, BackupCmd, ...) in
// the database container, as the postgres user, through the pods/exec subresource. The options
// are the container's PGBACKREST_* environment (Env); the stanza and the data directory
// come from the command line and PGDATA (as a variable: pgBackRest refuses a pg1-path flag on
// commands that do not use it, such as info). pgBackRest does not read libpq's PGHOST and PGPORT: when they
// are set (the test bed's servers listen on their own socket and port) they become
// pg1-socket-path and pg1-port; otherwise pgBackRest's defaults match the official image.
func (c Config) InPod(cmd []string) []string {
	return []string{"sh", "-c", prelude + `exec ` + Binary + " " + Shell([]string{"--stanza=" + c.Stanza}) + " " + Shell(cmd)}
}

// prelude checks the environment and creates the repository and lock directories on the backup
// volume the first time (pgBackRest expects them to exist).
const prelude = `set -e; : "${PGDATA:?}" "${PGBACKREST_LOCK_PATH:?the container has no pgBackRest configuration}"; ` +
	`export PGBACKREST_PG1_PATH="$PGDATA"; ` +
	`if [ -n "${PGHOST:-}" ]; then export PGBACKREST_PG1_SOCKET_PATH="$PGHOST"; fi; ` +
	`if [ -n "${PGPORT:-}" ]; then export PGBACKREST_PG1_PORT="$PGPORT"; fi; ` +
	`mkdir -p -m 700 "$PGBACKREST_LOCK_PATH"; ` +
	`if [ -z "${PGBACKREST_REPO1_TYPE:-}" ]; then mkdir -p -m 700 "${PGBACKREST_REPO1_PATH:?}"; fi; `

// StagingSuffix is appended to PGDATA for the directory a restore writes into while the
// database keeps running on PGDATA.
const StagingSuffix = ".restore"

// RestoreInPod runs restore (RestoreBackup or RestoreTime) of c's stanza into "$PGDATA.restore",
// emptied first, so that the database keeps running until SwapInPod. The restored server fetches
// WAL from the same stanza with RestoreCommand.
func (c Config) RestoreInPod(restore []string) []string {
	return []string{"sh", "-c", prelude +
		`S="$PGDATA` + StagingSuffix + `"; rm -rf "$S"; mkdir -m 700 "$S"; ` +
		`exec ` + Binary + " " + Shell([]string{"--stanza=" + c.Stanza}) + ` --pg1-path="$S" ` + Shell(restore) + " " +
		Shell([]string{"--recovery-option=restore_command=" + c.RestoreCommand()})}
}

// SwapInPod puts the restored directory in place of PGDATA and stops the running server at
// once (moveAndStop), so that the next server starts on the restored data. The old directory
// (which recovers from the stop like from a crash) is kept as "$PGDATA.old-<stamp>" until
// CleanupInPod. In a pod, the container exits with its server and restarts on the restored
// data, and the exec may end with it: see SwappedInPod.
func SwapInPod(stamp string) []string {
	return []string{"sh", "-c", fmt.Sprintf(`set -e; test -f "$PGDATA%[1]s/PG_VERSION"; `, StagingSuffix) +
		moveAndStop(fmt.Sprintf(`mv "$PGDATA" "$PGDATA.old-%[2]s"; mv "$PGDATA%[1]s" "$PGDATA"`, StagingSuffix, stamp))}
}

// SwappedInPod prints "yes" when SwapInPod(stamp) has put the restored data in place.
func SwappedInPod(stamp string) []string {
	return []string{"sh", "-c", fmt.Sprintf(`if [ -d "$PGDATA.old-%s" ]; then echo yes; else echo no; fi`, stamp)}
}

// UnswapInPod undoes SwapInPod when the restored data does not start (or not in time). A server
// may be running on the restored data by then (the container restarted after the swap): it is
// stopped the same way (moveAndStop), or its shutdown would write into the original data.
func UnswapInPod(stamp string) []string {
	return []string{"sh", "-c", fmt.Sprintf(`set -e; test -d "$PGDATA.old-%[1]s"; `, stamp) +
		moveAndStop(fmt.Sprintf(`rm -rf "$PGDATA.failed"; mv "$PGDATA" "$PGDATA.failed"; mv "$PGDATA.old-%[1]s" "$PGDATA"`, stamp))}
}

// moveAndStop is the shell that runs moves (which change what directory PGDATA is) and then stops
// at once the server that was running on PGDATA, if one was. The stop must be immediate
// (SIGQUIT: no shutdown checkpoint): a server writes its control file and pages by PGDATA's
// absolute path, and a clean shutdown would write into whatever directory is there after the
// moves. A CHECKPOINT just before makes a timed checkpoint during the moves unlikely. A pid file
// whose process is not a postgres (stale) names nothing to stop.
func moveAndStop(moves string) string {
	return `pid=""; if [ -f "$PGDATA/postmaster.pid" ]; then pid=$(head -n 1 "$PGDATA/postmaster.pid"); ` +
		`case "$(tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline")" in *postgres*) psql -X -q -d postgres -c CHECKPOINT >/dev/null 2>&1 || true;; *) pid="";; esac; fi; ` +
		moves + `; if [ -n "$pid" ]; then kill -QUIT "$pid" 2>/dev/null || true; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; fi`
}

// CleanupInPod removes what a finished restore left beside PGDATA.
func CleanupInPod() []string {
	return []string{"sh", "-c", `rm -rf "$PGDATA".old-* "$PGDATA` + StagingSuffix + `" "$PGDATA.failed"`}
}

// LastArchived asks the server when it last archived a WAL segment (the latest recoverable
// time): one line, empty when nothing was archived yet.
func LastArchived() []string {
	return []string{"psql", "-X", "-At", "-d", "postgres", "-c",
		"select coalesce(to_char(last_archived_time at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '') from pg_stat_archiver"}
}

// PackStanzaInPod writes a stanza's part of the repository (its backups and archived WAL) to
// stdout as a tar stream: restore --into carries it to the new database's backup volume.
func PackStanzaInPod(stanza string) []string {
	s := Shell([]string{stanza})
	return []string{"sh", "-c", `set -e; cd "${PGBACKREST_REPO1_PATH:?}"; exec tar -cf - backup/` + s + ` archive/` + s}
}

// UnpackStanzaInPod reads what PackStanzaInPod wrote into the repository, replacing that
// stanza's part. tar stops at the archive's end, without waiting for stdin to close.
func UnpackStanzaInPod(stanza string) []string {
	s := Shell([]string{stanza})
	return []string{"sh", "-c", `set -e; mkdir -p -m 700 "${PGBACKREST_REPO1_PATH:?}"; cd "$PGBACKREST_REPO1_PATH"; ` +
		`rm -rf backup/` + s + ` archive/` + s + `; exec tar -xf -`}
}

// DropStanzaInPod removes a stanza's part of the repository.
func DropStanzaInPod(stanza string) []string {
	s := Shell([]string{stanza})
	return []string{"sh", "-c", `set -e; cd "${PGBACKREST_REPO1_PATH:?}"; rm -rf backup/` + s + ` archive/` + s}
}
