// Package docgen writes what is generated from the command tree: the markdown command reference
// (docs/reference/), man pages (docs/man/) and shell completion scripts (completions/). Generated
// files are checked in; a test fails when they are stale, and `make docs` rewrites them.
package docgen

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/output"
)

// manDate is fixed so that the man pages do not change with the day they were generated.
var manDate = time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC)

// Root builds the command tree the way the binary does, on streams that go nowhere.
func Root() *cobra.Command {
	ios := output.Test(nil, &bytes.Buffer{}, &bytes.Buffer{})
	root := commands.NewCmdRoot(commands.NewFactory(ios))
	root.DisableAutoGenTag = true
	return root
}

// Generate writes every generated file below dir (the repository root).
func Generate(dir string) error {
	root := Root()
	ref := filepath.Join(dir, "docs", "reference")
	man := filepath.Join(dir, "docs", "man")
	comp := filepath.Join(dir, "completions")
	for _, d := range []string{ref, man, comp} {
		if err := os.RemoveAll(d); err != nil {
			return err
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if err := doc.GenMarkdownTree(root, ref); err != nil {
		return fmt.Errorf("markdown reference: %w", err)
	}
	header := &doc.GenManHeader{Title: "STACKBLAZE", Section: "1", Source: "StackBlaze", Manual: "StackBlaze Manual", Date: &manDate}
	if err := doc.GenManTree(root, header, man); err != nil {
		return fmt.Errorf("man pages: %w", err)
	}
	scripts := map[string]func(*bytes.Buffer) error{
		"stackblaze.bash": func(b *bytes.Buffer) error { return root.GenBashCompletionV2(b, true) },
		"stackblaze.zsh":  func(b *bytes.Buffer) error { return root.GenZshCompletion(b) },
		"stackblaze.fish": func(b *bytes.Buffer) error { return root.GenFishCompletion(b, true) },
		"stackblaze.ps1":  func(b *bytes.Buffer) error { return root.GenPowerShellCompletionWithDesc(b) },
	}
	for name, gen := range scripts {
		var b bytes.Buffer
		if err := gen(&b); err != nil {
			return fmt.Errorf("completion %s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(comp, name), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	return nil
}
