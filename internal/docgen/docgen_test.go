package docgen

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stackblaze/stackblaze/internal/commands"
	"github.com/stackblaze/stackblaze/internal/output"
)

// TestGeneratedFilesAreFresh fails when docs/reference, docs/man or completions/ differ from
// what the command tree generates now: run `make docs` and commit the result.
func TestGeneratedFilesAreFresh(t *testing.T) {
	fresh := t.TempDir()
	if err := Generate(fresh); err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"docs/reference", "docs/man", "completions"} {
		want := files(t, filepath.Join(fresh, sub))
		got := files(t, filepath.Join(root, sub))
		if len(want) == 0 {
			t.Fatalf("%s: nothing generated", sub)
		}
		for name, content := range want {
			have, ok := got[name]
			switch {
			case !ok:
				t.Errorf("%s/%s is missing: run `make docs`", sub, name)
			case !bytes.Equal(have, content):
				t.Errorf("%s/%s is stale: run `make docs`", sub, name)
			}
		}
		var extra []string
		for name := range got {
			if _, ok := want[name]; !ok {
				extra = append(extra, name)
			}
		}
		sort.Strings(extra)
		for _, name := range extra {
			t.Errorf("%s/%s is no longer generated: run `make docs`", sub, name)
		}
	}
}

func files(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		out[rel] = b
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return out
}

// TestCompletionCommandPrintsTheCheckedInScripts: what users install with `stackblaze completion
// SHELL` is exactly what completions/ ships in the release archives.
func TestCompletionCommandPrintsTheCheckedInScripts(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	for shell, file := range map[string]string{"bash": "stackblaze.bash", "zsh": "stackblaze.zsh", "fish": "stackblaze.fish", "powershell": "stackblaze.ps1"} {
		var out, errOut bytes.Buffer
		ios := output.Test(nil, &out, &errOut)
		if code := commands.Run(context.Background(), commands.NewFactory(ios), []string{"completion", shell}); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errOut.String())
		}
		want, err := os.ReadFile(filepath.Join(root, "completions", file))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out.Bytes(), want) {
			t.Errorf("`stackblaze completion %s` differs from completions/%s: run `make docs`", shell, file)
		}
	}
}
