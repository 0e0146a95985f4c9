// Package backup is the pgBackRest side of stackblaze's backups: the configuration of a
// database's stanza (as PGBACKREST_* environment variables, which the database container and
// every pgbackrest command run in it share, or as a pgbackrest.conf for people), the PostgreSQL
// settings that archive WAL into it, the exact pgbackrest command lines of backup, info, restore
// and expire, and the parsing of `pgbackrest info --output=json` into backups and the
// recoverable window. It runs nothing itself: the commands run in the database's pod.
package backup
