package database

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Limits on the input of create.
const (
	// MaxNameLength keeps every derived name valid: the Service NAME-headless and the pods'
	// controller-revision-hash label (NAME-<hash of up to 10 characters>) must fit in 63
	// characters, which allows 52; 40 leaves room for the names later commands derive
	// (NAME-migrate-lock, NAME-backup-YYYYMMDDHHMMSS) and for the application role, a PostgreSQL
	// identifier of at most 63 bytes.
	MaxNameLength = 40
	MinStorageGi  = 1
	MaxStorageGi  = 500
	DefaultPlan   = "hobby"
	// DefaultVersion is the PostgreSQL major version when --version is not given.
	DefaultVersion = 17
	// DefaultImageRepository is the database image the release publishes (images/postgres): one
	// tag per supported major, PostgreSQL with pgBackRest and our entrypoint, running as uid 999.
	DefaultImageRepository = "stackblaze/postgres"
	// DefaultStorage is the volume size when --storage is not given.
	DefaultStorage = "1Gi"
	Port           = 5432
)

// Versions are the supported PostgreSQL major versions.
var Versions = []int{15, 16, 17, 18}

// VersionList says the supported versions in words: "15, 16, 17 or 18".
func VersionList() string {
	s := make([]string, len(Versions))
	for i, v := range Versions {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// Plan is a size of database: what its pod requests and may use.
type Plan struct {
	Name          string `json:"name"`
	CPURequest    string `json:"cpuRequest"`
	CPULimit      string `json:"cpuLimit"`
	MemoryRequest string `json:"memoryRequest"`
	MemoryLimit   string `json:"memoryLimit"`
	// SharedMemory sizes the emptyDir mounted at /dev/shm.
	SharedMemory string `json:"sharedMemory"`
	Backups      string `json:"backups"`
	PITR         bool   `json:"pitr"`
	// Settings are the server settings sized for the plan's memory (name=value): a quarter of
	// it for shared_buffers, three quarters as the cache the planner may count on.
	Settings []string `json:"settings"`
}

// Plans are the documented plans, smallest first. docs/commands.md lists the same figures.
var Plans = []Plan{
	{Name: "hobby", CPURequest: "250m", CPULimit: "1", MemoryRequest: "512Mi", MemoryLimit: "512Mi", SharedMemory: "128Mi", Backups: "daily, kept 7 days",
		Settings: []string{"shared_buffers=128MB", "effective_cache_size=384MB", "maintenance_work_mem=32MB", "work_mem=4MB"}},
	{Name: "standard", CPURequest: "1", CPULimit: "2", MemoryRequest: "2Gi", MemoryLimit: "2Gi", SharedMemory: "512Mi", Backups: "daily, kept 7 days", PITR: true,
		Settings: []string{"shared_buffers=512MB", "effective_cache_size=1536MB", "maintenance_work_mem=128MB", "work_mem=8MB"}},
	{Name: "pro", CPURequest: "2", CPULimit: "4", MemoryRequest: "8Gi", MemoryLimit: "8Gi", SharedMemory: "2Gi", Backups: "daily, kept 7 days", PITR: true,
		Settings: []string{"shared_buffers=2GB", "effective_cache_size=6GB", "maintenance_work_mem=512MB", "work_mem=16MB"}},
}

// PlanNames lists the plan names.
func PlanNames() []string {
	n := make([]string, len(Plans))
	for i, p := range Plans {
		n[i] = p.Name
	}
	return n
}

// LookupPlan finds a plan by name.
func LookupPlan(name string) (Plan, bool) {
	for _, p := range Plans {
		if p.Name == name {
			return p, true
		}
	}
	return Plan{}, false
}

// InputError is a bad value the user gave; nothing was sent to the cluster.
type InputError struct{ Msg string }

func (e *InputError) Error() string { return e.Msg }

func inputErrorf(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// ValidateName checks a database name: a DNS-1035 label (a DNS-1123 label that starts with a
// letter, because Services require it) of at most MaxNameLength characters.
func ValidateName(name string) error {
	switch {
	case name == "":
		return inputErrorf("database name is empty: use lowercase letters, digits and '-', starting with a letter, at most %d characters", MaxNameLength)
	case len(name) > MaxNameLength:
		return inputErrorf("database name %q is %d characters long: at most %d are allowed (derived names such as %s-credentials must stay valid)", name, len(name), MaxNameLength, name)
	case !nameRE.MatchString(name):
		return inputErrorf("database name %q is not valid: use lowercase letters, digits and '-', starting with a letter and ending with a letter or digit (like my-db)", name)
	}
	return nil
}

// ParseVersion checks a PostgreSQL major version.
func ParseVersion(s string) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err == nil {
		for _, ok := range Versions {
			if v == ok {
				return v, nil
			}
		}
	}
	return 0, inputErrorf("version %q is not supported: use %s", s, VersionList())
}

// ValidatePlan checks a plan name.
func ValidatePlan(s string) (Plan, error) {
	if p, ok := LookupPlan(s); ok {
		return p, nil
	}
	return Plan{}, inputErrorf("plan %q does not exist: use one of %s", s, strings.Join(PlanNames(), ", "))
}

var storageRE = regexp.MustCompile(`^([0-9]+)(Gi|G|GB|gi|g|gb)$`)

// ParseStorage reads a volume size in whole GiB. 10Gi is taken as it is; 10G and 10GB are taken
// as 10Gi, and note says so.
func ParseStorage(s string) (q resource.Quantity, note string, err error) {
	m := storageRE.FindStringSubmatch(strings.TrimSpace(s))
	allowed := fmt.Sprintf("use a whole number of GiB from %dGi to %dGi, like 10Gi (10G and 10GB are taken as 10Gi)", MinStorageGi, MaxStorageGi)
	if m == nil {
		return q, "", inputErrorf("storage %q is not a size: %s", s, allowed)
	}
	n, err := strconv.Atoi(m[1])
	if err != nil || n < MinStorageGi || n > MaxStorageGi {
		return q, "", inputErrorf("storage %q is out of range: %s", s, allowed)
	}
	q = resource.MustParse(fmt.Sprintf("%dGi", n))
	if m[2] != "Gi" {
		note = fmt.Sprintf("storage: %s taken as %dGi", s, n)
	}
	return q, note, nil
}

// Spec is what create asks for.
type Spec struct {
	Name      string
	Namespace string
	Version   int
	Storage   resource.Quantity
	Plan      Plan
	// ImageRepository is the repository of the image; the tag is the version.
	ImageRepository string
	// DNSZone, when set, makes the host NAME.<zone> instead of NAME.NS.svc.cluster.local.
	DNSZone string
	// S3, when set, keeps the backups in a bucket instead of on a backup volume.
	S3 *S3Settings
	// Settings are more server settings (name=value), after the product's own (ServerSettings);
	// the server has them from its first start.
	Settings []string
}

// S3Settings say where backups go when they do not stay on the database's backup volume: an
// S3-compatible bucket (the backup_s3_* settings). The databases of one namespace share one
// repository path in it, <Prefix>/<namespace>, one pgBackRest stanza each.
type S3Settings struct {
	Bucket string
	// Endpoint is the store's host, with ":port" when it is not 443.
	Endpoint string
	Region   string
	// URIStyle is host (the default) or path.
	URIStyle string
	Prefix   string
	// Secret names the Secret in the namespace that holds AWS_ACCESS_KEY_ID and
	// AWS_SECRET_ACCESS_KEY.
	Secret string
	// CAConfigMap, when set, names a ConfigMap in the namespace whose key ca.crt signs the
	// endpoint's certificate.
	CAConfigMap string
}

// Image is the container image.
func (s Spec) Image() string {
	repo := s.ImageRepository
	if repo == "" {
		repo = DefaultImageRepository
	}
	return fmt.Sprintf("%s:%d", repo, s.Version)
}

// Host is the DNS name applications use.
func (s Spec) Host() string { return HostFor(s.Name, s.Namespace, s.DNSZone) }

// HostFor is the DNS name of a database's Service.
func HostFor(name, namespace, zone string) string {
	zone = strings.Trim(zone, ".")
	if zone != "" {
		return name + "." + zone
	}
	return fmt.Sprintf("%s.%s.svc.cluster.local", name, namespace)
}

// RoleName is the application role's (and database's) name: NAME with '-' replaced by '_', so
// that it needs no quoting in SQL.
func RoleName(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Derived object names.
func CredentialsSecretName(name string) string { return name + "-credentials" }
func SuperuserSecretName(name string) string   { return name + "-superuser" }
func HeadlessServiceName(name string) string   { return name + "-headless" }
func InitConfigMapName(name string) string     { return name + "-init" }
func PodName(name string) string               { return name + "-0" }
func PVCName(name string) string               { return "data-" + name + "-0" }
func BackupPVCName(name string) string         { return "backup-" + name + "-0" }

// SpecOf validates a database's inputs (as create takes them) and returns its spec, and what
// ParseStorage says it took the size for; every problem is named in one *InputError.
func SpecOf(name, version, storage, plan string) (spec Spec, storageNote string, err error) {
	var problems []string
	if err := ValidateName(name); err != nil {
		problems = append(problems, err.Error())
	}
	v, err := ParseVersion(version)
	if err != nil {
		problems = append(problems, err.Error())
	}
	q, note, err := ParseStorage(storage)
	if err != nil {
		problems = append(problems, err.Error())
	}
	p, err := ValidatePlan(plan)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return Spec{}, "", &InputError{Msg: strings.Join(problems, "\n")}
	}
	return Spec{Name: name, Version: v, Storage: q, Plan: p}, note, nil
}

// LockName is the lease of one database's operation ("migrate", "rotate").
func LockName(database, operation string) string {
	return "stackblaze-" + operation + "-" + database
}
