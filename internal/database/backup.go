package database

import (
	"context"
	"fmt"
	"path"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	batchv1ac "k8s.io/client-go/applyconfigurations/batch/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	rbacv1ac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// DefaultBackupAt is the time of day (UTC) of the daily backup that create schedules.
const DefaultBackupAt = "03:00"

// BackupConfig is a database's pgBackRest configuration: its stanza in a repository on the
// database's own backup volume.
func BackupConfig(name string) backup.Config {
	return backup.Config{Stanza: name, PGDataPath: PGDATA, RepoPath: BackupMountPath + "/repo", LockPath: BackupMountPath + "/lock"}
}

// InitBackupRepository creates the database's stanza in its repository (pgBackRest's
// stanza-create, run in the pod; idempotent), so that WAL is archived from the start rather than
// from the first backup.
func InitBackupRepository(ctx context.Context, c *kube.Client, name string) error {
	_, err := ExecOutput(ctx, c, name, BackupConfig(name).InPod(backup.StanzaCreate()))
	return err
}

// BackupRepo says where a database's pgBackRest repository is: Type "s3" (in Bucket) or "posix"
// (on its backup volume), at Path; read from its container's PGBACKREST_* variables.
type BackupRepo struct {
	Type   string `json:"type"`
	Bucket string `json:"bucket,omitempty"`
	Path   string `json:"path"`
}

// BackupRepoOf reads where a database's repository is from its StatefulSet.
func BackupRepoOf(sts *appsv1.StatefulSet) BackupRepo {
	r := BackupRepo{Type: "posix"}
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name != ContainerName {
			continue
		}
		for _, e := range c.Env {
			switch e.Name {
			case backup.EnvName("repo1-type"):
				r.Type = e.Value
			case backup.EnvName("repo1-s3-bucket"):
				r.Bucket = e.Value
			case backup.EnvName("repo1-path"):
				r.Path = e.Value
			}
		}
	}
	return r
}

// BackupStatus is what status says about backups.
type BackupStatus struct {
	// Schedule is the daily backup's CronJob schedule ("" when it has none), in TimeZone.
	Schedule string     `json:"schedule"`
	TimeZone string     `json:"timeZone,omitempty"`
	CronJob  string     `json:"cronJob,omitempty"`
	Repo     BackupRepo `json:"repository"`
	// VolumeClaim is the backup volume's claim, for a repository on a volume.
	VolumeClaim string `json:"volumeClaim,omitempty"`
	PITR        bool   `json:"pointInTimeRecovery"`
}

// GetBackupStatus reads a database's backup schedule and repository. A schedule that cannot be
// read (for example without permission on CronJobs) is left empty rather than failing.
func GetBackupStatus(ctx context.Context, cs kubernetes.Interface, ns string, sts *appsv1.StatefulSet) *BackupStatus {
	plan, _ := LookupPlan(sts.Annotations[AnnotationPlan])
	b := &BackupStatus{Repo: BackupRepoOf(sts), PITR: plan.PITR}
	if b.Repo.Type == "posix" {
		b.VolumeClaim = BackupPVCName(sts.Name)
	}
	if cj, err := cs.BatchV1().CronJobs(ns).Get(ctx, BackupScheduleName(sts.Name), metav1.GetOptions{}); err == nil {
		sched := scheduleOf(cj)
		b.Schedule, b.TimeZone, b.CronJob = sched.Cron, sched.TimeZone, cj.Name
	}
	return b
}

// DailyAt turns a daily schedule ("30 2 * * *") back into "02:30"; any other schedule is
// returned as it is.
func DailyAt(cron string) string {
	f := strings.Fields(cron)
	if len(f) == 5 && f[2] == "*" && f[3] == "*" && f[4] == "*" {
		h, err1 := strconv.Atoi(f[1])
		m, err2 := strconv.Atoi(f[0])
		if err1 == nil && err2 == nil {
			return fmt.Sprintf("%02d:%02d", h, m)
		}
	}
	return cron
}

// S3CAMountPath is where the CA of an S3 store is mounted (from Spec.S3.CAConfigMap).
const S3CAMountPath = "/etc/stackblaze/s3-ca"

// BackupConfigFor is the pgBackRest configuration of a database as create writes it: on its
// backup volume, or in the bucket of s.S3 (and then with its lock files in /tmp).
func BackupConfigFor(s Spec) backup.Config {
	c := BackupConfig(s.Name)
	if s.S3 == nil {
		return c
	}
	c.LockPath = "/tmp/pgbackrest"
	c.RepoPath = path.Join("/", s.S3.Prefix, s.Namespace)
	c.S3 = &backup.S3{Bucket: s.S3.Bucket, Endpoint: s.S3.Endpoint, Region: s.S3.Region, URIStyle: s.S3.URIStyle,
		SecretName: s.S3.Secret}
	if s.S3.CAConfigMap != "" {
		c.S3.CAFile = S3CAMountPath + "/ca.crt"
	}
	return c
}

// backupEnv is the container's pgBackRest configuration as PGBACKREST_* variables: the server
// inherits them for archive_command, and the commands run in the pod read them.
func backupEnv(s Spec) []*corev1ac.EnvVarApplyConfiguration {
	var out []*corev1ac.EnvVarApplyConfiguration
	for _, e := range backup.SortedEnv(BackupConfigFor(s).Env()) {
		v := corev1ac.EnvVar().WithName(e.Name)
		if e.SecretName != "" {
			v.WithValueFrom(corev1ac.EnvVarSource().WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(e.SecretName).WithKey(e.SecretKey)))
		} else {
			v.WithValue(e.Value)
		}
		out = append(out, v)
	}
	return out
}

// ServerSettings are the server's own settings, passed as -c name=value before the archive's:
// client_connection_check_interval makes a backend busy in a statement notice within seconds
// that its client went away (a killed migration tool, a dropped tunnel) and end, releasing its
// locks (session advisory locks such as a migration lock included), instead of running on until
// the statement finishes. An idle backend notices at once. pg_stat_statements is loaded for db
// insights (the extension is created in the postgres database on first init). The log goes
// to standard error (the container's log), each entry's first line prefixed by LogLinePrefix, in
// UTC, so that db logs can parse it; lock waits longer than deadlock_timeout are logged.
var ServerSettings = []string{
	"client_connection_check_interval=2s",
	"shared_preload_libraries=pg_stat_statements",
	"log_line_prefix=" + LogLinePrefix,
	"log_timezone=UTC",
	"log_lock_waits=on",
}

// LogLinePrefix starts each log line of the server: time with milliseconds, [pid], SQLSTATE, and
// user@database for sessions (nothing for background processes).
const LogLinePrefix = "%m [%p] %e %q%u@%d "

// ServerArgs are the container's arguments: ServerSettings, the plan's settings and the archive
// settings (BackupServerArgs) as -c name=value, which the image's entrypoint passes on to postgres.
func ServerArgs(s Spec) []string {
	var args []string
	for _, kv := range ServerSettings {
		args = append(args, "-c", kv)
	}
	for _, kv := range s.Plan.Settings {
		args = append(args, "-c", kv)
	}
	args = append(args, BackupServerArgs(s)...)
	for _, kv := range s.Settings {
		args = append(args, "-c", kv)
	}
	return args
}

// BackupServerArgs are the archive settings as -c name=value.
func BackupServerArgs(s Spec) []string {
	var args []string
	for _, kv := range BackupConfig(s.Name).ServerSettings(s.Plan.PITR) {
		args = append(args, "-c", kv)
	}
	return args
}

// BackupScheduleName names the CronJob, its ServiceAccount, Role and RoleBinding.
func BackupScheduleName(name string) string { return name + "-backup" }

// ParseAt reads HH:MM (UTC) into a daily cron schedule.
func ParseAt(at string) (string, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(at), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || hh < 0 || hh > 23 || mm < 0 || mm > 59 || len(m) != 2 {
		return "", inputErrorf("time %q is not HH:MM (00:00 to 23:59, UTC)", at)
	}
	return fmt.Sprintf("%d %d * * *", mm, hh), nil
}

// BackupRoleRules are all that `stackblaze db backup create NAME` needs, and all the
// scheduled job's ServiceAccount may do: read its database's StatefulSet (which says the
// database exists, its plan and its repository), and exec into its pod (create on pods/exec:
// kube.Exec tries a WebSocket first, which clusters since 1.35 authorize as create, and on any
// refusal falls back to SPDY, which every cluster authorizes as create; older clusters authorize
// the WebSocket as get, refuse it here, and the SPDY fallback works). It never reads the pod.
func BackupRoleRules(name string) []*rbacv1ac.PolicyRuleApplyConfiguration {
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rbacv1ac.PolicyRule().WithAPIGroups("apps").WithResources("statefulsets").WithVerbs("get").WithResourceNames(name),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods/exec").WithVerbs("create").WithResourceNames(PodName(name)),
	}
}

// BackupImage is the stackblaze image of a CLI version, which the daily backup job runs
// (goreleaser's dockers_v2 builds it).
func BackupImage(version string) string {
	v := strings.TrimPrefix(version, "v")
	if v == "" || v == "dev" || strings.Contains(v, "+") {
		v = "latest"
	}
	return "stackblaze/stackblaze:" + v
}

// BackupSchedule is a database's daily backup: when, and which stackblaze image runs it.
type BackupSchedule struct {
	// Cron is the CronJob's schedule (ParseAt).
	Cron  string
	Image string
	// TimeZone is the schedule's, as read from the cluster; ApplyBackupSchedule always writes
	// BackupTimeZone.
	TimeZone string
}

// BackupTimeZone is the time zone of every daily backup schedule.
const BackupTimeZone = "Etc/UTC"

// BackupScheduleIn is the schedule a database has, out of what Guard read; nil when it has none.
func BackupScheduleIn(found Found, name string) *BackupSchedule {
	cj, ok := found[ObjectRef{"CronJob", BackupScheduleName(name)}].(*batchv1.CronJob)
	if !ok {
		return nil
	}
	return scheduleOf(cj)
}

// scheduleOf reads a backup CronJob's schedule.
func scheduleOf(cj *batchv1.CronJob) *BackupSchedule {
	s := &BackupSchedule{Cron: cj.Spec.Schedule}
	if cj.Spec.TimeZone != nil {
		s.TimeZone = *cj.Spec.TimeZone
	}
	for _, c := range cj.Spec.JobTemplate.Spec.Template.Spec.Containers {
		s.Image = c.Image
	}
	return s
}

// backupJobLabels label the backup job's pods. They share the database's labels except the
// selector's: a job pod must never be taken for the database pod (by the Services, the
// StatefulSet or a tunnel).
func backupJobLabels(name string) map[string]string {
	l := Labels(name)
	l[LabelName] = "stackblaze-backup"
	return l
}

// ApplyBackupSchedule writes the daily backup of a database: a CronJob that runs the stackblaze
// image's `db backup create`, with a ServiceAccount bound to a Role of BackupRoleRules. before
// is what Guard read of BackupScheduleObjects. It returns the objects it created or changed.
func ApplyBackupSchedule(ctx context.Context, cs kubernetes.Interface, ns, name string, sched BackupSchedule, before Found) ([]Change, error) {
	return applyCLIJob(ctx, cs, ns, name, cliJob{
		Name: BackupScheduleName(name), Container: "backup", Cron: sched.Cron, Image: sched.Image,
		Args:  []string{"db", "backup", "create", name, "--namespace", ns},
		Rules: BackupRoleRules(name), PodLabels: backupJobLabels(name),
		StartingDeadline: 3600, ActiveDeadline: 6 * 3600, Memory: "128Mi",
	}, before)
}

// cliJob is a CronJob of the stackblaze image that runs one command on one database, as a
// ServiceAccount of its own bound to a Role of Rules.
type cliJob struct {
	// Name is the CronJob's, its ServiceAccount's, Role's and RoleBinding's.
	Name, Container, Cron, Image string
	Args                         []string
	Rules                        []*rbacv1ac.PolicyRuleApplyConfiguration
	// PodLabels label the job's pods (never the database's selector).
	PodLabels map[string]string
	// StartingDeadline and ActiveDeadline are in seconds; Memory is the container's limit.
	StartingDeadline, ActiveDeadline int64
	Memory                           string
}

// applyCLIJob writes a cliJob of database name (server-side apply; before is what Guard read of
// its objects) and returns the objects it created or changed.
func applyCLIJob(ctx context.Context, cs kubernetes.Interface, ns, name string, j cliJob, before Found) ([]Change, error) {
	n := j.Name
	labels := Labels(name)
	var changes []Change
	sas := cs.CoreV1().ServiceAccounts(ns)
	sa := corev1ac.ServiceAccount(n, ns).WithLabels(labels).WithAutomountServiceAccountToken(false)
	if err := applyObject(ctx, &changes, before, "ServiceAccount", n, sas.Apply, sa); err != nil {
		return changes, err
	}
	roles := cs.RbacV1().Roles(ns)
	role := rbacv1ac.Role(n, ns).WithLabels(labels).WithRules(j.Rules...)
	if err := applyObject(ctx, &changes, before, "Role", n, roles.Apply, role); err != nil {
		return changes, err
	}
	rbs := cs.RbacV1().RoleBindings(ns)
	rb := rbacv1ac.RoleBinding(n, ns).WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(n)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(n).WithNamespace(ns))
	if err := applyObject(ctx, &changes, before, "RoleBinding", n, rbs.Apply, rb); err != nil {
		return changes, err
	}

	container := corev1ac.Container().WithName(j.Container).WithImage(j.Image).
		WithImagePullPolicy(corev1.PullIfNotPresent).
		WithArgs(j.Args...).
		WithEnv(corev1ac.EnvVar().WithName("CI").WithValue("true")).
		WithResources(corev1ac.ResourceRequirements().WithRequests(corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(j.Memory)})).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).WithRunAsUser(65532).WithRunAsGroup(65532).
			WithReadOnlyRootFilesystem(true).
			WithAllowPrivilegeEscalation(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))
	cj := batchv1ac.CronJob(n, ns).WithLabels(labels).
		WithSpec(batchv1ac.CronJobSpec().
			WithSchedule(j.Cron).WithTimeZone(BackupTimeZone).
			WithConcurrencyPolicy(batchv1.ForbidConcurrent).
			WithStartingDeadlineSeconds(j.StartingDeadline).
			WithSuccessfulJobsHistoryLimit(3).WithFailedJobsHistoryLimit(3).
			WithJobTemplate(batchv1ac.JobTemplateSpec().WithLabels(j.PodLabels).
				WithSpec(batchv1ac.JobSpec().WithBackoffLimit(2).WithActiveDeadlineSeconds(j.ActiveDeadline).
					WithTemplate(corev1ac.PodTemplateSpec().WithLabels(j.PodLabels).
						WithSpec(corev1ac.PodSpec().
							WithServiceAccountName(n).
							// The token is mounted here only: the job talks to the API server.
							WithAutomountServiceAccountToken(true).
							WithRestartPolicy(corev1.RestartPolicyNever).
							WithSecurityContext(corev1ac.PodSecurityContext().WithRunAsNonRoot(true).
								WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
							WithContainers(container))))))
	cjs := cs.BatchV1().CronJobs(ns)
	err := applyObject(ctx, &changes, before, "CronJob", n, cjs.Apply, cj)
	return changes, err
}

// RestartPod deletes a database's pod and watches until its StatefulSet's replacement (another
// UID) is Ready.
func RestartPod(ctx context.Context, cs kubernetes.Interface, ns, pod string) error {
	old, err := cs.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get pod %s: %w", pod, err)
	}
	if err := cs.CoreV1().Pods(ns).Delete(ctx, pod, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete pod %s: %w", pod, err)
	}
	_, err = watchtools.UntilWithSync(ctx, kube.PodListWatch(cs, ns, pod), &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		return ok && ev.Type != watch.Deleted && p.UID != old.UID && kube.PodReady(p), nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("watch pod %s: %w", pod, err)
	}
	return nil
}
