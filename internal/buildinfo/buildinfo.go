// Package buildinfo holds what the release build injects with -ldflags -X (see .goreleaser.yaml):
//
//	-X github.com/stackblaze/stackblaze/internal/buildinfo.Version=v1.2.3
//	-X github.com/stackblaze/stackblaze/internal/buildinfo.Commit=<sha>
//	-X github.com/stackblaze/stackblaze/internal/buildinfo.Date=<RFC 3339>
//
// Empty values fall back to what the Go toolchain recorded (go install, go build).
package buildinfo

// Set at link time only; never assigned at run time.
var (
	Version string
	Commit  string
	Date    string
)
