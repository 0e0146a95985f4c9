package cmdutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/stackblaze/stackblaze/internal/database"
)

// Config is the one typed configuration every command reads. Root fills it once from flags,
// STACKBLAZE_* environment variables, the config files and defaults, in that order of precedence.
type Config struct {
	Kubeconfig      string `mapstructure:"kubeconfig"`
	Context         string `mapstructure:"context"`
	Namespace       string `mapstructure:"namespace"`
	Output          string `mapstructure:"output"`
	NoColor         bool   `mapstructure:"no_color"`
	Verbose         bool   `mapstructure:"verbose"`
	Yes             bool   `mapstructure:"yes"`
	DNSZone         string `mapstructure:"dns_zone"`
	ImageRepository string `mapstructure:"image_repository"`
	// Database is the default database for commands whose NAME is optional (migrate).
	Database string `mapstructure:"database"`
	// Backups in an S3-compatible bucket instead of on each database's backup volume.
	BackupS3Bucket      string `mapstructure:"backup_s3_bucket"`
	BackupS3Endpoint    string `mapstructure:"backup_s3_endpoint"`
	BackupS3Region      string `mapstructure:"backup_s3_region"`
	BackupS3URIStyle    string `mapstructure:"backup_s3_uri_style"`
	BackupS3Prefix      string `mapstructure:"backup_s3_prefix"`
	BackupS3Secret      string `mapstructure:"backup_s3_secret"`
	BackupS3CAConfigMap string `mapstructure:"backup_s3_ca_configmap"`

	// Files lists the config files that were read, lowest precedence first.
	Files []string `mapstructure:"-"`
}

// ConfigKey describes one configuration key.
type ConfigKey struct {
	Key     string // in config files: dns_zone
	Flag    string // global flag, when there is one: dns-zone
	Default any
	Help    string
	// UserOnly, when set, says what the key decides that a file which came with a repository
	// must not: which cluster, which image, where data goes, whether to ask. Such a key comes
	// only from the user's own settings (a flag, STACKBLAZE_*, the user's config file); a
	// project-local .stackblaze.yaml that sets it is refused.
	UserOnly string
}

// ProjectFileName is the project-local config file, looked for in the working directory.
const ProjectFileName = ".stackblaze.yaml"

// Reasons a key is UserOnly.
const (
	decidesCluster = "which cluster the command talks to, and as whom"
	decidesImage   = "which image runs with the database's data and passwords"
	decidesHost    = "the host that applications send their password and queries to"
	decidesBackups = "where the backups and the WAL go"
	decidesAsking  = "whether destructive commands ask first"
)

// EnvName is the environment variable for a key: STACKBLAZE_DNS_ZONE.
func (k ConfigKey) EnvName() string { return "STACKBLAZE_" + strings.ToUpper(k.Key) }

// ConfigKeys are all the keys, in the order the docs list them.
var ConfigKeys = []ConfigKey{
	{Key: "kubeconfig", Flag: "kubeconfig", Default: "", Help: "path of the kubeconfig file (default: KUBECONFIG, then ~/.kube/config; in-cluster config inside a pod)", UserOnly: decidesCluster},
	{Key: "context", Flag: "context", Default: "", Help: "kubeconfig context to use (default: the current context)", UserOnly: decidesCluster},
	{Key: "namespace", Flag: "namespace", Default: "", Help: "namespace (the StackBlaze project; default: the context's namespace)"},
	{Key: "output", Flag: "output", Default: "text", Help: "output format: text or json"},
	{Key: "no_color", Flag: "no-color", Default: false, Help: "never use colour"},
	{Key: "verbose", Flag: "verbose", Default: false, Help: "print more detail on stderr"},
	{Key: "yes", Flag: "yes", Default: false, Help: "answer yes to every confirmation (required for destructive commands without a terminal)", UserOnly: decidesAsking},
	{Key: "dns_zone", Flag: "dns-zone", Default: "", Help: "internal DNS zone for database hosts (NAME.<zone> instead of NAME.NS.svc.cluster.local)", UserOnly: decidesHost},
	{Key: "image_repository", Flag: "", Default: database.DefaultImageRepository, Help: "PostgreSQL image repository; the tag is the major version", UserOnly: decidesImage},
	{Key: "database", Flag: "", Default: "", Help: "default database name for commands where NAME is optional"},
	{Key: "backup_s3_bucket", Flag: "", Default: "", Help: "keep backups in this S3-compatible bucket instead of on each database's backup volume (applies to databases created afterwards)", UserOnly: decidesBackups},
	{Key: "backup_s3_endpoint", Flag: "", Default: "", Help: "the S3 store's host, with :port when not 443 (required with backup_s3_bucket)", UserOnly: decidesBackups},
	{Key: "backup_s3_region", Flag: "", Default: "us-east-1", Help: "the bucket's region", UserOnly: decidesBackups},
	{Key: "backup_s3_uri_style", Flag: "", Default: "host", Help: "host (bucket.endpoint) or path (endpoint/bucket, most self-hosted stores)", UserOnly: decidesBackups},
	{Key: "backup_s3_prefix", Flag: "", Default: "stackblaze", Help: "path in the bucket; each namespace's databases share <prefix>/<namespace>", UserOnly: decidesBackups},
	{Key: "backup_s3_secret", Flag: "", Default: "stackblaze-backup-s3", Help: "Secret in the namespace with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", UserOnly: decidesBackups},
	{Key: "backup_s3_ca_configmap", Flag: "", Default: "", Help: "ConfigMap in the namespace whose ca.crt signs the store's certificate (when no public CA does)", UserOnly: decidesBackups},
}

// ConfigSources are where LoadConfig looks, so that tests can point them elsewhere.
type ConfigSources struct {
	Getenv func(string) string
	// UserFile is the user-level config file; "" means $XDG_CONFIG_HOME/stackblaze/config.yaml
	// (or ~/.config/stackblaze/config.yaml).
	UserFile string
	// Dir is where the project-local .stackblaze.yaml is looked for; "" means the working directory.
	Dir string
}

// UserConfigFile returns the path of the user-level config file.
func UserConfigFile(getenv func(string) string) string {
	if d := getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "stackblaze", "config.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "stackblaze", "config.yaml")
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "stackblaze", "config.yaml")
	}
	return ""
}

// LoadConfig resolves every key: a flag the user set, then STACKBLAZE_<KEY>, then the project-local
// .stackblaze.yaml, then the user-level file, then the default. A project-local file that sets a
// UserOnly key is refused (exit 2) before anything else happens: no client is built from it.
func LoadConfig(flags *pflag.FlagSet, src ConfigSources) (*Config, error) {
	getenv := src.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	v := viper.New()
	v.SetConfigType("yaml")
	for _, k := range ConfigKeys {
		v.SetDefault(k.Key, k.Default)
	}
	cfg := &Config{}
	userFile := src.UserFile
	if userFile == "" {
		userFile = UserConfigFile(getenv)
	}
	dir := src.Dir
	if dir == "" {
		dir, _ = os.Getwd()
	}
	projectFile := ""
	if dir != "" {
		projectFile = filepath.Join(dir, ProjectFileName)
	}
	for _, file := range []string{userFile, projectFile} {
		if file == "" {
			continue
		}
		data, err := os.ReadFile(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, UsageErrorf("read config file %s: %v", file, err)
		}
		if file == projectFile {
			if err := checkProjectFile(file, data, userFile); err != nil {
				return nil, err
			}
		}
		if err := v.MergeConfig(strings.NewReader(string(data))); err != nil {
			return nil, UsageErrorf("config file %s: %v", file, err)
		}
		cfg.Files = append(cfg.Files, file)
	}
	for _, k := range ConfigKeys {
		if k.Flag != "" && flags != nil {
			if fl := flags.Lookup(k.Flag); fl != nil && fl.Changed {
				v.Set(k.Key, fl.Value.String())
				continue
			}
		}
		if e := getenv(k.EnvName()); e != "" {
			v.Set(k.Key, e)
		}
	}
	if err := v.Unmarshal(cfg); err != nil {
		return nil, UsageErrorf("configuration: %v", err)
	}
	cfg.Output = strings.ToLower(cfg.Output)
	if cfg.Output != "text" && cfg.Output != "json" {
		return nil, UsageErrorf("output format %q is not supported: use text or json", cfg.Output)
	}
	if cfg.ImageRepository == "" {
		cfg.ImageRepository = database.DefaultImageRepository
	}
	if cfg.BackupS3Bucket != "" && cfg.BackupS3Endpoint == "" {
		return nil, UsageErrorf("backup_s3_bucket is set but backup_s3_endpoint is not: name the S3 store's host (and :port when not 443)")
	}
	if st := cfg.BackupS3URIStyle; st != "host" && st != "path" {
		return nil, UsageErrorf("backup_s3_uri_style %q is not supported: use host or path", st)
	}
	return cfg, nil
}

// ProjectKeys are the keys a project-local .stackblaze.yaml may set, in the docs' order.
func ProjectKeys() []string {
	var keys []string
	for _, k := range ConfigKeys {
		if k.UserOnly == "" {
			keys = append(keys, k.Key)
		}
	}
	return keys
}

// checkProjectFile refuses a project-local file that sets a UserOnly key, whatever its value (even
// empty or null). The file is decoded as viper decodes it, with the same YAML package, and keys are
// compared without case as viper compares them, so that what is checked is what would be merged.
func checkProjectFile(file string, data []byte, userFile string) error {
	top := map[string]any{}
	if err := yaml.Unmarshal(data, &top); err != nil {
		return UsageErrorf("config file %s: %v", file, err)
	}
	set := map[string]bool{}
	for k := range top {
		set[strings.ToLower(k)] = true
	}
	var refused []ConfigKey
	for _, k := range ConfigKeys {
		if k.UserOnly != "" && set[k.Key] {
			refused = append(refused, k)
		}
	}
	if len(refused) == 0 {
		return nil
	}
	var what, instead []string
	for _, k := range refused {
		what = append(what, fmt.Sprintf("%s (%s)", k.Key, k.UserOnly))
		alt := k.EnvName()
		if k.Flag != "" {
			alt += " or --" + k.Flag
		}
		instead = append(instead, alt)
	}
	names := make([]string, len(refused))
	for i, k := range refused {
		names[i] = k.Key
	}
	them := "it"
	if len(refused) > 1 {
		them = "them"
	}
	where := "your own config file"
	if userFile != "" {
		where += " " + userFile
	}
	return UsageErrorf("%s sets %s, which a project-local config file may not set: a file that comes with a repository must not decide %s",
		file, strings.Join(what, ", "), them).
		WithHint("put %s in %s, or use %s; and remove %s from %s\n"+
			"a project-local %s may set only %s",
			strings.Join(names, ", "), where, strings.Join(instead, ", "), them, file,
			ProjectFileName, strings.Join(ProjectKeys(), ", "))
}

// String shows a config for --verbose.
func (c *Config) String() string {
	return fmt.Sprintf("kubeconfig=%q context=%q namespace=%q output=%s dns_zone=%q image_repository=%q files=%v",
		c.Kubeconfig, c.Context, c.Namespace, c.Output, c.DNSZone, c.ImageRepository, c.Files)
}

// BackupS3 is the S3 setting for new databases; nil when backups stay on the backup volumes.
func (c *Config) BackupS3() *database.S3Settings {
	if c == nil || c.BackupS3Bucket == "" {
		return nil
	}
	return &database.S3Settings{Bucket: c.BackupS3Bucket, Endpoint: c.BackupS3Endpoint, Region: c.BackupS3Region,
		URIStyle: c.BackupS3URIStyle, Prefix: c.BackupS3Prefix, Secret: c.BackupS3Secret, CAConfigMap: c.BackupS3CAConfigMap}
}
