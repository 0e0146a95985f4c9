package database

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// upgradeScript is what the upgrade's pods run (scripts/upgrade.sh): the binary gives it to them
// as their command, so that the steps are those of the stackblaze that drives them.
//
//go:embed scripts/upgrade.sh
var upgradeScript string

// Names and paths of the upgrade's pods.
const (
	// LabelUpgrade marks the upgrade's pods; its value is their action (check, run, restore).
	LabelUpgrade = "stackblaze.io/upgrade"
	// OldBinariesPath is where the old major's binaries are put for pg_upgrade (an emptyDir).
	OldBinariesPath  = "/opt/stackblaze/old"
	upgradeContainer = "upgrade"
	// upgradeWork is upgrade.sh's working directory in its pods.
	upgradeWork = "/tmp/stackblaze-upgrade"
)

// UpgradePodName is the pod that upgrades (or restores) a database's data while it is stopped;
// UpgradeCheckPodName is the pod that checks it beside the running database.
func UpgradePodName(name string) string      { return name + "-upgrade" }
func UpgradeCheckPodName(name string) string { return name + "-upgrade-check" }

// UpgradeObjects are what an upgrade writes besides the StatefulSet: its pods and its lock.
func UpgradeObjects(name string) []ObjectRef {
	return []ObjectRef{{"Pod", UpgradePodName(name)}, {"Pod", UpgradeCheckPodName(name)}}
}

// upgradePodSpec is a pod of action (upgrade.sh check, run, restore SET) for database sts: an
// init container in the old major's image copies its binaries into a volume, and the new major's
// image runs the action with both majors' binaries, on the database's volumes (read-only for the
// check, which runs beside the live database on its node). The pod sets no fsGroup, so that the
// kubelet never changes the ownership of the data directory under a running server.
func upgradePodSpec(sts *appsv1.StatefulSet, podName, oldImage, newImage string, action []string, env []corev1.EnvVar, nodeName string) *corev1.Pod {
	name := sts.Name
	readOnly := action[0] == "check"
	var dbc corev1.Container
	for _, c := range sts.Spec.Template.Spec.Containers {
		if c.Name == ContainerName {
			dbc = c
		}
	}
	// The pgBackRest configuration (PGBACKREST_*) and PGDATA, as the database container has them.
	var dbEnv []corev1.EnvVar
	for _, e := range dbc.Env {
		if e.Name == "PGDATA" || strings.HasPrefix(e.Name, "PGBACKREST_") {
			dbEnv = append(dbEnv, e)
		}
	}
	dbEnv = append(dbEnv,
		corev1.EnvVar{Name: "OLD_BINARIES", Value: OldBinariesPath},
		corev1.EnvVar{Name: "STANZA", Value: BackupConfig(name).Stanza})
	mounts := []corev1.VolumeMount{{Name: "old-binaries", MountPath: OldBinariesPath}}
	volumes := []corev1.Volume{{Name: "old-binaries", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
	claims := map[string]bool{}
	for _, t := range sts.Spec.VolumeClaimTemplates {
		claims[t.Name] = true
	}
	for _, m := range dbc.VolumeMounts {
		switch {
		case m.Name == "data":
			mounts = append(mounts, corev1.VolumeMount{Name: "data", MountPath: m.MountPath, ReadOnly: readOnly})
		case claims[m.Name] && !readOnly:
			mounts = append(mounts, m)
		case m.Name == "s3-ca" && !readOnly:
			mounts = append(mounts, m)
		}
	}
	for _, t := range sts.Spec.VolumeClaimTemplates {
		volumes = append(volumes, corev1.Volume{Name: t.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: t.Name + "-" + name + "-0", ReadOnly: readOnly && t.Name == "data"}}})
	}
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == "s3-ca" {
			volumes = append(volumes, v)
		}
	}
	uid := int64(PostgresUID)
	no, yes := false, true
	// A deleted upgrade pod stops at once: every action can be run again from where it stopped.
	grace := int64(10)
	sc := &corev1.SecurityContext{
		RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid, AllowPrivilegeEscalation: &no,
		Capabilities:   &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
	res := corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
	}
	labels := Labels(name)
	labels[LabelUpgrade] = action[0]
	var ready *corev1.Probe
	if action[0] == "run" {
		// Ready once it prepared what needs no stopped database (upgrade.sh run).
		ready = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-e", upgradeWork + "/prepared"}}},
			PeriodSeconds: 1, FailureThreshold: 1}
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: sts.Namespace, Labels: labels,
			Annotations: map[string]string{LabelUpgrade: strings.Join(action, " ") + " " + newImage}},
		Spec: corev1.PodSpec{
			RestartPolicy:                 corev1.RestartPolicyNever,
			NodeName:                      nodeName,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			InitContainers: []corev1.Container{{
				Name: "old-binaries", Image: oldImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         []string{"bash", "-c", upgradeScript, "upgrade.sh", "export", OldBinariesPath},
				VolumeMounts:    []corev1.VolumeMount{{Name: "old-binaries", MountPath: OldBinariesPath}},
				SecurityContext: sc, Resources: res,
			}},
			Containers: []corev1.Container{{
				Name: upgradeContainer, Image: newImage, ImagePullPolicy: corev1.PullIfNotPresent,
				Command:         append([]string{"bash", "-c", upgradeScript, "upgrade.sh"}, action...),
				Env:             append(dbEnv, env...),
				VolumeMounts:    mounts,
				ReadinessProbe:  ready,
				SecurityContext: sc, Resources: res,
			}},
			Volumes: volumes,
		},
	}
}

// PodFailedError says that one of the upgrade's pods failed; Log is the end of its output.
type PodFailedError struct {
	Pod, Action, Log string
}

func (e *PodFailedError) Error() string {
	return fmt.Sprintf("%s (pod %s) failed: %s", e.Action, e.Pod, e.Log)
}

// runUpgradePod runs pod to its end and returns its output (the upgrade container's log): see
// startUpgradePod and endUpgradePod.
func runUpgradePod(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) (string, error) {
	if err := startUpgradePod(ctx, cs, pod); err != nil {
		return "", err
	}
	return endUpgradePod(ctx, cs, pod)
}

// startUpgradePod creates pod. A pod of the same name that runs the same action (an earlier run
// that was stopped) is kept rather than started again; any other is replaced.
func startUpgradePod(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) error {
	pods := cs.CoreV1().Pods(pod.Namespace)
	cur, err := pods.Get(ctx, pod.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		cur = nil
	case err != nil:
		return fmt.Errorf("get pod %s: %w", pod.Name, err)
	case cur.Annotations[LabelUpgrade] != pod.Annotations[LabelUpgrade] || cur.Status.Phase == corev1.PodFailed:
		if err := deletePod(ctx, cs, pod.Namespace, pod.Name); err != nil {
			return err
		}
		cur = nil
	}
	if cur == nil {
		if _, err := pods.Create(ctx, pod, metav1.CreateOptions{FieldManager: kube.FieldManager}); err != nil {
			return fmt.Errorf("create pod %s: %w", pod.Name, err)
		}
	}
	return nil
}

// watchUpgradePod watches pod until done says yes, it ended, or it cannot start (an image the
// node cannot get never ends by itself), and returns it.
func watchUpgradePod(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod, done func(*corev1.Pod) bool) (*corev1.Pod, error) {
	var last *corev1.Pod
	_, err := watchtools.UntilWithSync(ctx, kube.PodListWatch(cs, pod.Namespace, pod.Name), &corev1.Pod{}, nil, func(ev watch.Event) (bool, error) {
		p, ok := ev.Object.(*corev1.Pod)
		if !ok {
			return false, nil
		}
		if ev.Type == watch.Deleted {
			return false, fmt.Errorf("pod %s was deleted before it finished", pod.Name)
		}
		last = p
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || done(p) {
			return true, nil
		}
		for _, s := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			if w := s.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff" || w.Reason == "InvalidImageName") {
				return false, fmt.Errorf("pod %s cannot start: image %s: %s", pod.Name, s.Image, w.Reason)
			}
		}
		return false, nil
	})
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return last, err
}

// endUpgradePod waits for pod's end and returns its output; a failure is a *PodFailedError. The
// pod is deleted once it succeeded (a failed one is kept for `kubectl logs` until the next run).
func endUpgradePod(ctx context.Context, cs kubernetes.Interface, pod *corev1.Pod) (string, error) {
	end, err := watchUpgradePod(ctx, cs, pod, func(*corev1.Pod) bool { return false })
	if err != nil {
		return "", err
	}
	log, err := podLog(ctx, cs, end)
	if err != nil {
		return "", err
	}
	if end.Status.Phase == corev1.PodFailed {
		return log, &PodFailedError{Pod: pod.Name, Action: pod.Labels[LabelUpgrade], Log: lastLines(log, 15)}
	}
	if err := deletePod(ctx, cs, pod.Namespace, pod.Name); err != nil {
		return log, err
	}
	return log, nil
}

// podLog is the output of an ended upgrade pod: its init container's when that failed.
func podLog(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) (string, error) {
	container := upgradeContainer
	for _, s := range p.Status.InitContainerStatuses {
		if t := s.State.Terminated; t != nil && t.ExitCode != 0 {
			container = s.Name
		}
	}
	// Stream (not DoRaw) keeps the API server's reason in the error: a refusal names pods/log.
	rc, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container}).Stream(ctx)
	if err != nil {
		return "", fmt.Errorf("read the log of pod %s: %w", p.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return "", fmt.Errorf("read the log of pod %s: %w", p.Name, err)
	}
	return string(b), nil
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// deletePod deletes a pod and watches until it is gone.
func deletePod(ctx context.Context, cs kubernetes.Interface, ns, name string) error {
	err := cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s: %w", name, err)
	}
	return kube.WaitPodGone(ctx, cs, ns, name)
}
