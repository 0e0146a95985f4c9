// Package database is the domain layer: it knows what one StackBlaze database is in a namespace
// (its names, labels, spec, plans and the objects that make it), owns those objects (ownership is
// checked before any write: see Guard), and carries out what the commands ask of a database:
// provision, read, list, delete, scale, credentials, attach and detach, rotate the credentials,
// backups and the credentials after a restore.
//
// It sits between the commands (internal/commands/...) and the Kubernetes adapter
// (internal/kube). It takes a context and plain values and returns plain results or typed errors;
// it never imports cobra, viper or the output package. Its errors are typed values the command
// layer words, with hints; the only sentences it makes itself are what input validation says of a
// value and what is allowed instead. See docs/architecture.md.
package database
