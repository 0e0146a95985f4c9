package database

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// DescribeNotReady explains, as well as the cluster can tell, why a database's pod is not ready:
// the StatefulSet's failed pod creations (an admission webhook or Pod Security refusing it), the
// container's waiting reason, an unbound volume. It makes a few calls and is meant for the moment
// a wait has failed.
func DescribeNotReady(ctx context.Context, cs kubernetes.Interface, ns, name string) []string {
	var out []string
	pod, err := cs.CoreV1().Pods(ns).Get(ctx, PodName(name), metav1.GetOptions{})
	if err == nil {
		out = append(out, fmt.Sprintf("pod %s is %s", pod.Name, pod.Status.Phase))
		for _, c := range pod.Status.Conditions {
			if c.Status != corev1.ConditionTrue && c.Message != "" {
				out = append(out, fmt.Sprintf("%s: %s", c.Type, c.Message))
			}
		}
		for _, st := range pod.Status.ContainerStatuses {
			if w := st.State.Waiting; w != nil {
				out = append(out, fmt.Sprintf("container %s is waiting: %s %s", st.Name, w.Reason, w.Message))
			}
		}
	} else {
		out = append(out, fmt.Sprintf("pod %s does not exist", PodName(name)))
	}
	if pvc, err := cs.CoreV1().PersistentVolumeClaims(ns).Get(ctx, PVCName(name), metav1.GetOptions{}); err == nil && pvc.Status.Phase != corev1.ClaimBound {
		out = append(out, fmt.Sprintf("volume claim %s is %s", pvc.Name, pvc.Status.Phase))
	}
	evs, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(
			fields.OneTermEqualSelector("involvedObject.name", name),
			fields.OneTermEqualSelector("type", corev1.EventTypeWarning)).String(),
	})
	if err == nil {
		items := evs.Items
		sort.Slice(items, func(i, j int) bool { return items[i].LastTimestamp.Before(&items[j].LastTimestamp) })
		seen := map[string]bool{}
		for i := len(items) - 1; i >= 0 && len(seen) < 3; i-- {
			msg := strings.TrimSpace(items[i].Reason + ": " + items[i].Message)
			if !seen[msg] {
				seen[msg] = true
				out = append(out, msg)
			}
		}
	}
	return out
}
