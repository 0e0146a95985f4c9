package kube

import (
	"context"
	"fmt"
	"strconv"
	"strings"

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
)

// DefaultBackupAt is the time of day (UTC) of the daily backup that create schedules.
const DefaultBackupAt = "03:00"

// BackupConfig is a database's pgBackRest configuration: its stanza in a repository beside
// PGDATA on the database's volume.
func BackupConfig(name string) backup.Config {
	return backup.Config{Stanza: name, PGDataPath: PGDATA, RepoPath: DataMountPath + "/pgbackrest/repo", LockPath: DataMountPath + "/pgbackrest/lock"}
}

// BackupServerArgs are the container's arguments: the archive settings as -c name=value.
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
// scheduled job's ServiceAccount may do: read its database's StatefulSet and pod, and exec into
// that pod (get for the WebSocket upgrade, create for SPDY).
func BackupRoleRules(name string) []*rbacv1ac.PolicyRuleApplyConfiguration {
	return []*rbacv1ac.PolicyRuleApplyConfiguration{
		rbacv1ac.PolicyRule().WithAPIGroups("apps").WithResources("statefulsets").WithVerbs("get").WithResourceNames(name),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods").WithVerbs("get").WithResourceNames(PodName(name)),
		rbacv1ac.PolicyRule().WithAPIGroups("").WithResources("pods/exec").WithVerbs("get", "create").WithResourceNames(PodName(name)),
	}
}

// ApplyBackupSchedule writes the daily backup of a database: a CronJob that runs the stackblaze
// image's `db backup create`, with a ServiceAccount bound to a Role of BackupRoleRules.
func ApplyBackupSchedule(ctx context.Context, cs kubernetes.Interface, ns, name, at, image string) error {
	sched, err := ParseAt(at)
	if err != nil {
		return err
	}
	n := BackupScheduleName(name)
	labels := Labels(name)
	opts := metav1.ApplyOptions{FieldManager: FieldManager, Force: true}
	sa := corev1ac.ServiceAccount(n, ns).WithLabels(labels).WithAutomountServiceAccountToken(false)
	if _, err := cs.CoreV1().ServiceAccounts(ns).Apply(ctx, sa, opts); err != nil {
		return fmt.Errorf("apply ServiceAccount %s: %w", n, err)
	}
	role := rbacv1ac.Role(n, ns).WithLabels(labels).WithRules(BackupRoleRules(name)...)
	if _, err := cs.RbacV1().Roles(ns).Apply(ctx, role, opts); err != nil {
		return fmt.Errorf("apply Role %s: %w", n, err)
	}
	rb := rbacv1ac.RoleBinding(n, ns).WithLabels(labels).
		WithRoleRef(rbacv1ac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(n)).
		WithSubjects(rbacv1ac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(n).WithNamespace(ns))
	if _, err := cs.RbacV1().RoleBindings(ns).Apply(ctx, rb, opts); err != nil {
		return fmt.Errorf("apply RoleBinding %s: %w", n, err)
	}
	container := corev1ac.Container().WithName("backup").WithImage(image).
		WithImagePullPolicy(corev1.PullIfNotPresent).
		WithArgs("db", "backup", "create", name, "--namespace", ns).
		WithEnv(corev1ac.EnvVar().WithName("CI").WithValue("true")).
		WithResources(corev1ac.ResourceRequirements().WithRequests(corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")}).
			WithLimits(corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")})).
		WithSecurityContext(corev1ac.SecurityContext().
			WithRunAsNonRoot(true).WithRunAsUser(65532).WithRunAsGroup(65532).
			WithReadOnlyRootFilesystem(true).
			WithAllowPrivilegeEscalation(false).
			WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault)))
	cj := batchv1ac.CronJob(n, ns).WithLabels(labels).
		WithSpec(batchv1ac.CronJobSpec().
			WithSchedule(sched).WithTimeZone("Etc/UTC").
			WithConcurrencyPolicy(batchv1.ForbidConcurrent).
			WithStartingDeadlineSeconds(3600).
			WithSuccessfulJobsHistoryLimit(3).WithFailedJobsHistoryLimit(3).
			WithJobTemplate(batchv1ac.JobTemplateSpec().WithLabels(labels).
				WithSpec(batchv1ac.JobSpec().WithBackoffLimit(2).WithActiveDeadlineSeconds(6 * 3600).
					WithTemplate(corev1ac.PodTemplateSpec().WithLabels(labels).
						WithSpec(corev1ac.PodSpec().
							WithServiceAccountName(n).
							// The token is mounted here only: the job talks to the API server.
							WithAutomountServiceAccountToken(true).
							WithRestartPolicy(corev1.RestartPolicyNever).
							WithSecurityContext(corev1ac.PodSecurityContext().WithRunAsNonRoot(true).
								WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
							WithContainers(container))))))
	if _, err := cs.BatchV1().CronJobs(ns).Apply(ctx, cj, opts); err != nil {
		return fmt.Errorf("apply CronJob %s: %w", n, err)
	}
	return nil
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
	_, err = watchtools.UntilWithSync(ctx, podListWatch(cs, ns, pod), &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		return ok && ev.Type != watch.Deleted && p.UID != old.UID && p.DeletionTimestamp == nil && PodReady(p), nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("watch pod %s: %w", pod, err)
	}
	return nil
}
