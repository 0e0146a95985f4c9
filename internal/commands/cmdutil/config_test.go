package cmdutil

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
	write(filepath.Join(project, ".stackblaze.yaml"), "namespace: from-project\nverbose: true\n")

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
	if cfg.Namespace != "from-project" || !cfg.Verbose || cfg.Context != "user-ctx" || cfg.DNSZone != "user.zone" || cfg.ImageRepository != "registry.example/pg" || cfg.Output != "json" {
		t.Errorf("files: %+v", cfg)
	}

	env["STACKBLAZE_NAMESPACE"] = "from-env"
	env["STACKBLAZE_DNS_ZONE"] = "postgres.internal"
	cfg, err = LoadConfig(newFlags(), src)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "from-env" || cfg.DNSZone != "postgres.internal" || cfg.Context != "user-ctx" {
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

// The keys a repository's .stackblaze.yaml may set. Every other key decides which cluster, which
// image, where data goes or whether to ask. A new key is refused in a project-local file unless
// it is added here, after deciding that a cloned repository may choose it.
func TestProjectKeysAreTheReviewedOnes(t *testing.T) {
	t.Parallel()
	want := []string{"namespace", "output", "no_color", "verbose", "database"}
	if got := ProjectKeys(); !slices.Equal(got, want) {
		t.Errorf("keys a project-local file may set: %v, want %v", got, want)
	}
	for _, k := range ConfigKeys {
		if (k.UserOnly == "") != slices.Contains(want, k.Key) {
			t.Errorf("%s: UserOnly %q", k.Key, k.UserOnly)
		}
	}
}

func TestProjectFileRefusesUserOnlyKeys(t *testing.T) {
	t.Parallel()
	values := map[string]string{"yes": "true"}
	for _, k := range ConfigKeys {
		if k.UserOnly == "" {
			continue
		}
		t.Run(k.Key, func(t *testing.T) {
			t.Parallel()
			home := t.TempDir()
			project := t.TempDir()
			user := filepath.Join(home, "stackblaze", "config.yaml")
			value := values[k.Key]
			if value == "" {
				value = "from-the-repository"
			}
			// Set in the user's file and the environment as well: the project file is refused all the same.
			if err := os.MkdirAll(filepath.Dir(user), 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, user, k.Key+": "+value+"\n")
			writeFile(t, filepath.Join(project, ".stackblaze.yaml"), "namespace: shop\n"+k.Key+": "+value+"\n")
			env := map[string]string{"XDG_CONFIG_HOME": home, k.EnvName(): value}
			_, err := LoadConfig(nil, ConfigSources{Dir: project, Getenv: func(n string) string { return env[n] }})
			if ExitCode(err) != ExitUsage {
				t.Fatalf("exit %d, want %d: %v", ExitCode(err), ExitUsage, err)
			}
			msg := err.Error()
			for _, want := range []string{filepath.Join(project, ".stackblaze.yaml"), " sets " + k.Key + " (" + k.UserOnly + ")", "may not set"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message does not say %q:\n%s", want, msg)
				}
			}
			hint := Hint(err)
			for _, want := range []string{"put " + k.Key + " in your own config file " + user, k.EnvName(), "may set only namespace, output, no_color, verbose, database"} {
				if !strings.Contains(hint, want) {
					t.Errorf("hint does not say %q:\n%s", want, hint)
				}
			}
			if k.Flag != "" && !strings.Contains(hint, "--"+k.Flag) {
				t.Errorf("hint does not name --%s:\n%s", k.Flag, hint)
			}
		})
	}
}

func TestProjectFileRefusalNamesEveryKeyWhateverItsCase(t *testing.T) {
	t.Parallel()
	project := t.TempDir()
	writeFile(t, filepath.Join(project, ".stackblaze.yaml"), "Namespace: shop\nKubeConfig: /tmp/evil\nBACKUP_S3_BUCKET: theirs\nbackup_s3_endpoint: s3.example\nYes: true\n")
	_, err := LoadConfig(nil, ConfigSources{UserFile: filepath.Join(project, "none.yaml"), Dir: project, Getenv: func(string) string { return "" }})
	if ExitCode(err) != ExitUsage {
		t.Fatalf("exit %d: %v", ExitCode(err), err)
	}
	for _, key := range []string{"kubeconfig", "yes", "backup_s3_bucket", "backup_s3_endpoint"} {
		if !strings.Contains(err.Error(), key+" (") {
			t.Errorf("the message does not name %s:\n%s", key, err)
		}
	}
	if h := Hint(err); !strings.Contains(h, "put kubeconfig, yes, backup_s3_bucket, backup_s3_endpoint in your own config file "+filepath.Join(project, "none.yaml")) ||
		!strings.Contains(h, "STACKBLAZE_KUBECONFIG or --kubeconfig, STACKBLAZE_YES or --yes, STACKBLAZE_BACKUP_S3_BUCKET, STACKBLAZE_BACKUP_S3_ENDPOINT; and remove them") {
		t.Errorf("hint:\n%s", h)
	}
}

func TestProjectFileAllowedKeys(t *testing.T) {
	t.Parallel()
	project := t.TempDir()
	user := filepath.Join(t.TempDir(), "config.yaml")
	writeFile(t, user, "namespace: user-ns\noutput: text\ndatabase: userdb\nkubeconfig: /home/me/.kube/work\nyes: true\nbackup_s3_bucket: mine\nbackup_s3_endpoint: s3.mine\n")
	writeFile(t, filepath.Join(project, ".stackblaze.yaml"), "namespace: shop\noutput: json\nno_color: true\nverbose: true\ndatabase: orders\n")
	cfg, err := LoadConfig(nil, ConfigSources{UserFile: user, Dir: project, Getenv: func(string) string { return "" }})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Namespace != "shop" || cfg.Output != "json" || !cfg.NoColor || !cfg.Verbose || cfg.Database != "orders" {
		t.Errorf("the project file's keys were not taken: %+v", cfg)
	}
	if cfg.Kubeconfig != "/home/me/.kube/work" || !cfg.Yes || cfg.BackupS3Bucket != "mine" || cfg.BackupS3Endpoint != "s3.mine" {
		t.Errorf("the user's own keys were lost: %+v", cfg)
	}
	if len(cfg.Files) != 2 {
		t.Errorf("files read: %v", cfg.Files)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Any value counts, even none: an empty kubeconfig or context would also change the cluster.
func TestProjectFileRefusesUserOnlyKeysWhateverTheValue(t *testing.T) {
	t.Parallel()
	for _, body := range []string{"kubeconfig:\n", "kubeconfig: \"\"\n", "kubeconfig: ~\n", "kubeconfig: {}\n", "context: []\n", "\"yes\": false\n"} {
		project := t.TempDir()
		writeFile(t, filepath.Join(project, ".stackblaze.yaml"), body)
		_, err := LoadConfig(nil, ConfigSources{UserFile: filepath.Join(project, "none.yaml"), Dir: project, Getenv: func(string) string { return "" }})
		if ExitCode(err) != ExitUsage || !strings.Contains(fmt.Sprint(err), "which a project-local config file may not set") {
			t.Errorf("%q: %v", body, err)
		}
	}
}
