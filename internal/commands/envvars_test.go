package commands_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
)

var (
	envName      = regexp.MustCompile(`^STACKBLAZE_[A-Z0-9]+(_[A-Z0-9]+)*$`)
	envMentioned = regexp.MustCompile(`STACKBLAZE_[A-Z0-9]+(_[A-Z0-9]+)*`)
)

// productEnv returns the STACKBLAZE_* variables the product can read: every config key's, and every
// Go string literal that is such a name in the non-test code under cmd/ and internal/ (the test bed,
// internal/testbed, is code for tests only). mentioned are the names that the product's other
// strings (help, hints) speak of.
func productEnv(t *testing.T, root string) (read, mentioned map[string][]string) {
	t.Helper()
	read, mentioned = map[string][]string{}, map[string][]string{}
	for _, k := range cmdutil.ConfigKeys {
		read[k.EnvName()] = append(read[k.EnvName()], "config key "+k.Key)
	}
	fset := token.NewFileSet()
	for _, top := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, path)
			rel = filepath.ToSlash(rel)
			if d.IsDir() {
				if rel == "internal/testbed" || d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				if p, _ := strconv.Unquote(imp.Path.Value); strings.HasSuffix(p, "/internal/testbed") {
					t.Errorf("%s imports the test bed, which is code for tests only", rel)
				}
			}
			ast.Inspect(f, func(n ast.Node) bool {
				lit, ok := n.(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				s, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Errorf("%s: %v", fset.Position(lit.Pos()), err)
					return true
				}
				where := rel + ":" + strconv.Itoa(fset.Position(lit.Pos()).Line)
				if envName.MatchString(s) {
					read[s] = append(read[s], where)
					return true
				}
				for _, m := range envMentioned.FindAllString(s, -1) {
					mentioned[m] = append(mentioned[m], where)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return read, mentioned
}

// documentedEnv returns the variables in the env column of docs/commands.md's settings table, and
// for each config key there, whether the table says a project's .stackblaze.yaml may set it.
func documentedEnv(t *testing.T, root string) (env map[string]bool, project map[string]bool) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, "docs", "commands.md"))
	if err != nil {
		t.Fatal(err)
	}
	const heading = "## Global flags and settings"
	text := string(data)
	i := strings.Index(text, heading)
	if i < 0 {
		t.Fatalf("docs/commands.md has no %q section", heading)
	}
	section := text[i+len(heading):]
	if j := strings.Index(section, "\n## "); j >= 0 {
		section = section[:j]
	}
	env, project = map[string]bool{}, map[string]bool{}
	var header []string
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "|") {
			if header != nil {
				break // the end of the table
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if header == nil {
			header = cells
			continue
		}
		if strings.HasPrefix(cells[0], "---") {
			continue
		}
		if len(cells) != len(header) {
			t.Fatalf("settings table row with %d cells, want %d: %s", len(cells), len(header), line)
		}
		col := func(name string) string {
			k := slices.Index(header, name)
			if k < 0 {
				t.Fatalf("the settings table has no %q column: %v", name, header)
			}
			return cells[k]
		}
		envCell := col("env")
		if strings.Contains(envCell, "STACKBLAZE_*") || regexp.MustCompile(`STACKBLAZE_[A-Z0-9_]*\*`).MatchString(envCell) {
			t.Errorf("the settings table names variables by a wildcard (%s): list each one", envCell)
		}
		for _, m := range envMentioned.FindAllString(envCell, -1) {
			env[m] = true
		}
		key := strings.Trim(col("config key"), "`")
		switch col("in `.stackblaze.yaml`") {
		case "yes":
			project[key] = true
		case "no":
			project[key] = false
		default:
			t.Errorf("settings table, %s: the .stackblaze.yaml column says neither yes nor no", key)
		}
	}
	if header == nil {
		t.Fatal("no settings table in docs/commands.md")
	}
	return env, project
}

// The STACKBLAZE_* variables the binary reads are exactly those docs/commands.md lists, and the
// table says truly which settings a project's .stackblaze.yaml may set.
func TestEnvironmentVariablesAreDocumented(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	read, mentioned := productEnv(t, root)
	documented, project := documentedEnv(t, root)

	if len(read) < len(cmdutil.ConfigKeys) || len(documented) == 0 {
		t.Fatalf("read %d, documented %d: the test found nothing", len(read), len(documented))
	}
	for _, name := range sortedKeys(read) {
		if strings.HasPrefix(name, "STACKBLAZE_TESTBED_") {
			t.Errorf("the product reads %s (at %v): test-bed variables are for tests only", name, read[name])
		}
		if !documented[name] {
			t.Errorf("%s is read (%s) but not in docs/commands.md's settings table", name, strings.Join(read[name], ", "))
		}
	}
	for _, name := range sortedKeys(documented) {
		if _, ok := read[name]; !ok {
			t.Errorf("%s is in docs/commands.md's settings table but the product never reads it", name)
		}
	}
	for _, name := range sortedKeys(mentioned) {
		if _, ok := read[name]; !ok {
			t.Errorf("%s is mentioned (%s) but the product never reads it", name, strings.Join(mentioned[name], ", "))
		}
	}

	for _, k := range cmdutil.ConfigKeys {
		may, ok := project[k.Key]
		switch {
		case !ok:
			t.Errorf("config key %s is not in the settings table", k.Key)
		case may != (k.UserOnly == ""):
			t.Errorf("the settings table says a .stackblaze.yaml may set %s: %v; the code: %v", k.Key, may, k.UserOnly == "")
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
