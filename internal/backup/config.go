package backup

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// Defaults of a database's repository.
const (
	// RetentionDays is how long full backups (and the WAL that makes them and PITR usable) are
	// kept: retention by time, 7 days.
	RetentionDays = 7
	// ArchiveTimeout is the longest time WAL waits before it is archived on plans with PITR:
	// PostgreSQL switches to a new segment at least this often when there was activity.
	ArchiveTimeout = 300
	// Binary is the pgBackRest executable in the database image.
	Binary = "pgbackrest"
)

// S3 is an S3-compatible bucket to keep the repository in instead of the database's volume.
// The key and secret come from a Secret (SecretName with keys SecretKeyID and SecretKey), never
// from the configuration itself.
type S3 struct {
	Bucket   string `json:"bucket"`
	Endpoint string `json:"endpoint"`
	Region   string `json:"region"`
	// URIStyle is "host" (the default) or "path" (MinIO and most self-hosted stores).
	URIStyle   string `json:"uriStyle,omitempty"`
	SecretName string `json:"secretName"`
	// CAFile is a CA certificate (in the container) to check the endpoint's with, for a
	// store whose certificate no public CA signed; empty: the image's CA bundle.
	CAFile string `json:"caFile,omitempty"`
}

// S3 Secret keys.
const (
	SecretKeyID = "AWS_ACCESS_KEY_ID"
	SecretKey   = "AWS_SECRET_ACCESS_KEY"
)

// Config is one database's pgBackRest configuration.
type Config struct {
	// Stanza names the database in the repository: the database's name.
	Stanza string
	// PGDataPath is PostgreSQL's data directory (pg1-path).
	PGDataPath string
	// RepoPath is the repository (repo1-path) on the backup volume, or its path in the bucket
	// with S3 (databases sharing a path are told apart by their stanzas).
	RepoPath string
	// LockPath holds pgBackRest's lock files (lock-path).
	LockPath string
	// S3, when set, keeps the repository in a bucket.
	S3 *S3
}

// Option is one pgBackRest option.
type Option struct {
	Name  string
	Value string
}

// ArchiveCommand is what PostgreSQL runs (through sh, in its data directory) for every finished
// WAL segment. The options come from the container's PGBACKREST_* environment (Env), which the
// server inherits; the stanza is named on the command line as well, and pg1-path is the server's
// own data directory, so that a server started on a restored copy archives from where it runs.
func (c Config) ArchiveCommand() string {
	return `exec ` + Binary + ` ` + Shell([]string{"--stanza=" + c.Stanza}) + ` --pg1-path="$(pwd -P)" archive-push "%p"`
}

// RestoreCommand is the restore_command a restored server fetches archived WAL with: from the
// stanza of c, which for a restore into another database is the source's.
func (c Config) RestoreCommand() string {
	return `exec ` + Binary + ` ` + Shell([]string{"--stanza=" + c.Stanza}) + ` --pg1-path="$(pwd -P)" archive-get %f "%p"`
}

// Options are the configuration's options in a fixed order. Every one is a global option, so
// that the same set configures archive-push (run by PostgreSQL), backup, info, restore and expire.
func (c Config) Options() []Option {
	o := []Option{
		{"stanza", c.Stanza},
		{"pg1-path", c.PGDataPath},
		{"repo1-path", c.RepoPath},
		{"repo1-retention-full-type", "time"},
		{"repo1-retention-full", strconv.Itoa(RetentionDays)},
		// Archived WAL follows the backups it belongs to: expire removes WAL older than the
		// oldest kept full backup, and keeps all WAL after it for PITR.
		{"archive-check", "y"},
		{"archive-async", "n"},
		{"start-fast", "y"},
		{"compress-type", "lz4"},
		{"process-max", "1"},
		{"lock-path", c.LockPath},
		// The container writes no log files: pgbackrest's output goes to the caller (kubectl
		// exec) and, for archive-push, to PostgreSQL's log.
		{"log-level-console", "info"},
		{"log-level-file", "off"},
		{"log-level-stderr", "off"},
	}
	if s := c.S3; s != nil {
		uri := s.URIStyle
		if uri == "" {
			uri = "host"
		}
		host, port := s.Endpoint, ""
		if h, p, err := net.SplitHostPort(s.Endpoint); err == nil {
			host, port = h, p
		}
		o = append(o,
			Option{"repo1-type", "s3"},
			Option{"repo1-s3-bucket", s.Bucket},
			Option{"repo1-s3-endpoint", host},
			Option{"repo1-s3-region", s.Region},
			Option{"repo1-s3-uri-style", uri},
		)
		if port != "" {
			o = append(o, Option{"repo1-storage-port", port})
		}
		if s.CAFile != "" {
			o = append(o, Option{"repo1-storage-ca-file", s.CAFile})
		}
	}
	return o
}

// EnvVar is an environment variable; exactly one of Value and SecretKey is set.
type EnvVar struct {
	Name  string
	Value string
	// SecretName and SecretKey reference a Secret's key (the S3 credentials).
	SecretName string
	SecretKey  string
}

// EnvName is the environment variable pgBackRest reads an option from: PGBACKREST_REPO1_PATH.
func EnvName(option string) string {
	return "PGBACKREST_" + strings.ToUpper(strings.ReplaceAll(option, "-", "_"))
}

// Env is the configuration as the environment variables of the database container. pgBackRest
// reads PGBACKREST_* variables for every option, and PostgreSQL's archiver inherits the
// container's environment, so no configuration file is needed in the image.
func (c Config) Env() []EnvVar {
	var env []EnvVar
	for _, o := range c.Options() {
		env = append(env, EnvVar{Name: EnvName(o.Name), Value: o.Value})
	}
	if c.S3 != nil {
		env = append(env,
			EnvVar{Name: EnvName("repo1-s3-key"), SecretName: c.S3.SecretName, SecretKey: SecretKeyID},
			EnvVar{Name: EnvName("repo1-s3-key-secret"), SecretName: c.S3.SecretName, SecretKey: SecretKey},
		)
	}
	return env
}

// Environ is Env as NAME=value strings, for running pgbackrest directly (Secret references are
// left out).
func (c Config) Environ() []string {
	var out []string
	for _, e := range c.Env() {
		if e.SecretName == "" {
			out = append(out, e.Name+"="+e.Value)
		}
	}
	return out
}

// File is the same configuration as a pgbackrest.conf, for people who run pgbackrest by hand.
func (c Config) File() string {
	var b strings.Builder
	b.WriteString("# Written by stackblaze: the same options the database container has as PGBACKREST_* variables.\n")
	b.WriteString("[global]\n")
	var stanza []Option
	for _, o := range c.Options() {
		switch {
		case o.Name == "stanza":
		case strings.HasPrefix(o.Name, "pg1-"):
			stanza = append(stanza, o)
		default:
			fmt.Fprintf(&b, "%s=%s\n", o.Name, o.Value)
		}
	}
	fmt.Fprintf(&b, "\n[%s]\n", c.Stanza)
	for _, o := range stanza {
		fmt.Fprintf(&b, "%s=%s\n", o.Name, o.Value)
	}
	return b.String()
}

// ServerSettings are the PostgreSQL settings ("name=value", passed as `-c name=value`) that
// archive WAL into the repository. Every plan archives WAL, because a backup is only consistent
// with the WAL written while it ran; plans with PITR also switch segments at least every
// ArchiveTimeout seconds, so that at most that much committed work is not yet recoverable.
func (c Config) ServerSettings(pitr bool) []string {
	s := []string{
		"wal_level=replica",
		"archive_mode=on",
		"archive_command=" + c.ArchiveCommand(),
	}
	if pitr {
		s = append(s, "archive_timeout="+strconv.Itoa(ArchiveTimeout))
	}
	return s
}

// SortedEnv returns env sorted by name (for stable output).
func SortedEnv(env []EnvVar) []EnvVar {
	out := append([]EnvVar(nil), env...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
