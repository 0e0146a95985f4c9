// Package archtest checks that the code keeps to docs/architecture.md: which package may import
// which, no command package importing another, and no words for users in the Kubernetes adapter.
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/stackblaze/stackblaze/"

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s", root)
	}
	return root
}

// packages maps every package under cmd/ and internal/ (as "internal/kube") to the module's
// packages its non-test files import.
func packages(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, top := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") {
				return nil
			}
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			rel = filepath.ToSlash(rel)
			if _, ok := out[rel]; !ok {
				out[rel] = nil
			}
			if strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, imp := range f.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if strings.HasPrefix(p, module) {
					p = strings.TrimPrefix(p, module)
					if !slices.Contains(out[rel], p) {
						out[rel] = append(out[rel], p)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

var backticked = regexp.MustCompile("`([^`]+)`")

// documented reads the table of docs/architecture.md: package (or "dir/*" for a directory's
// packages) to the packages it may import.
func documented(t *testing.T, root string) map[string][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if len(cells) != 5 || !strings.HasPrefix(strings.TrimSpace(cells[1]), "`") {
			continue
		}
		name := backticked.FindStringSubmatch(cells[1])[1]
		var allowed []string
		for _, m := range backticked.FindAllStringSubmatch(cells[3], -1) {
			allowed = append(allowed, m[1])
		}
		rows[name] = allowed
	}
	if len(rows) < 10 {
		t.Fatalf("docs/architecture.md: found %d package rows, want the whole table", len(rows))
	}
	return rows
}

// matches tells whether pattern ("internal/kube", or "internal/commands/db/*" for the directory's
// direct subpackages) names pkg.
func matches(pattern, pkg string) bool {
	if dir, ok := strings.CutSuffix(pattern, "/*"); ok {
		return filepath.ToSlash(filepath.Dir(pkg)) == dir
	}
	return pattern == pkg
}

// rowOf is the table row of pkg: its own, or a wildcard row.
func rowOf(rows map[string][]string, pkg string) (string, bool) {
	if _, ok := rows[pkg]; ok {
		return pkg, true
	}
	for name := range rows {
		if matches(name, pkg) {
			return name, true
		}
	}
	return "", false
}

func TestImportsFollowDocsArchitecture(t *testing.T) {
	root := repoRoot(t)
	pkgs := packages(t, root)
	rows := documented(t, root)
	var names []string
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		row, ok := rowOf(rows, p)
		if !ok {
			t.Errorf("package %s is not in the table of docs/architecture.md", p)
			continue
		}
		for _, imp := range pkgs[p] {
			allowed := slices.ContainsFunc(rows[row], func(a string) bool { return matches(a, imp) })
			if !allowed {
				t.Errorf("%s imports %s, which docs/architecture.md does not allow (row %s)", p, imp, row)
			}
		}
	}
	for name := range rows {
		if strings.HasSuffix(name, "/*") {
			continue
		}
		if _, ok := pkgs[name]; !ok {
			t.Errorf("docs/architecture.md names %s, which does not exist", name)
		}
	}
}

// commandGroups only assemble their children; every other package under internal/commands/db is
// one command, and imports no other command.
var commandGroups = []string{"internal/commands", "internal/commands/db"}

func TestNoCommandImportsAnother(t *testing.T) {
	pkgs := packages(t, repoRoot(t))
	isCommand := func(p string) bool { return strings.HasPrefix(p, "internal/commands/db/") }
	n := 0
	for p, imps := range pkgs {
		if !isCommand(p) || slices.Contains(commandGroups, p) {
			continue
		}
		n++
		for _, imp := range imps {
			if isCommand(imp) {
				t.Errorf("command package %s imports command package %s: move what they share to internal/database or cmdutil", p, imp)
			}
		}
	}
	if n < 10 {
		t.Fatalf("found %d command packages; the test does not see the commands", n)
	}
}

// Words that only text meant for a user's screen has: advice, commands to run, the product.
var userWords = regexp.MustCompile("(?i)`|\\b(stackblaze db|kubectl|please|try again|run `|check that|ask |database)\\b")

// The Kubernetes adapter holds no text for users and knows no databases: its errors are typed
// values that the command layer words.
func TestKubeHasNoUserFacingStrings(t *testing.T) {
	dir := filepath.Join(repoRoot(t), "internal", "kube")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		fs := token.NewFileSet()
		f, err := parser.ParseFile(fs, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			for _, banned := range []string{"github.com/spf13/", module + "internal/output", module + "internal/database", module + "internal/commands"} {
				if strings.HasPrefix(p, banned) {
					t.Errorf("%s imports %s", fs.Position(imp.Pos()), p)
				}
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			seen++
			s, _ := strconv.Unquote(lit.Value)
			if m := userWords.FindString(s); m != "" {
				t.Errorf("%s: %q speaks to users (%q): return a typed error and word it in the command layer", fs.Position(lit.Pos()), s, m)
			}
			return true
		})
	}
	if seen == 0 {
		t.Fatal("no string literals found in internal/kube: the test reads nothing")
	}
}
