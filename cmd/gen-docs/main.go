// Command gen-docs writes docs/reference/, docs/man/ and completions/ from the command tree.
// Run it from the repository root: `make docs`.
package main

import (
	"fmt"
	"os"

	"github.com/stackblaze/stackblaze/internal/docgen"
)

func main() {
	dir := "."
	if len(os.Args) > 1 {
		dir = os.Args[1]
	}
	if err := docgen.Generate(dir); err != nil {
		fmt.Fprintln(os.Stderr, "gen-docs:", err)
		os.Exit(1)
	}
}
