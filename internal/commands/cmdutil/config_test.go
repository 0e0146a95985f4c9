package cmdutil

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
)

func TestConfigPrecedence(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	user := filepath.Join(dir, "user.yaml")
	project := filepath.Join(dir, "project")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(user, "namespace: from-user\ncontext: user-ctx\ndns_zone: user.zone\nimage_repository: registry.example/pg\noutput: json\n")
	write(filepath.Join(project, ".stackblaze.yaml"), "namespace: from-project\ncontext: project-ctx\n")

	newFlags := func(args ...string) *pflag.FlagSet {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.StringP("namespace", "n", "", "")
		fs.String("context", "", "")
		fs.StringP("output", "o", "text", "")
		fs.String("dns-zone", "", "")
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return fs
	}
	env := map[string]string{}
	src := ConfigSources{UserFile: user, Dir: project, Getenv: func(k string) string { return env[k] }}

	cfg, err := LoadConfig(newFlags(), src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "from-project" || cfg.Context != "project-ctx" || cfg.DNSZone != "user.zone" || cfg.ImageRepository != "registry.example/pg" || cfg.Output != "json" {
		t.Errorf("files: %+v", cfg)
	}

	env["STACKBLAZE_NAMESPACE"] = "from-env"
	env["STACKBLAZE_DNS_ZONE"] = "postgres.internal"
	cfg, err = LoadConfig(newFlags(), src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "from-env" || cfg.DNSZone != "postgres.internal" || cfg.Context != "project-ctx" {
		t.Errorf("env over files: %+v", cfg)
	}

	cfg, err = LoadConfig(newFlags("-n", "from-flag", "-o", "text"), src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "from-flag" || cfg.Output != "text" {
		t.Errorf("flag over env: %+v", cfg)
	}

	cfg, err = LoadConfig(newFlags(), ConfigSources{UserFile: filepath.Join(dir, "missing.yaml"), Dir: dir, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Output != "text" || cfg.ImageRepository != "stackblaze/postgres" || cfg.Namespace != "" || len(cfg.Files) != 0 {
		t.Errorf("defaults: %+v", cfg)
	}

	write(filepath.Join(dir, ".stackblaze.yaml"), "output: [broken\n")
	if _, err := LoadConfig(newFlags(), ConfigSources{UserFile: user, Dir: dir, Getenv: func(string) string { return "" }}); ExitCode(err) != ExitUsage {
		t.Errorf("broken config file: %v", err)
	}
}

func TestUserConfigFile(t *testing.T) {
	t.Parallel()
	env := map[string]string{"XDG_CONFIG_HOME": "/x", "HOME": "/h"}
	if got := UserConfigFile(func(k string) string { return env[k] }); got != "/x/stackblaze/config.yaml" {
		t.Errorf("XDG: %s", got)
	}
	delete(env, "XDG_CONFIG_HOME")
	if got := UserConfigFile(func(k string) string { return env[k] }); got != "/h/.config/stackblaze/config.yaml" {
		t.Errorf("HOME: %s", got)
	}
}
