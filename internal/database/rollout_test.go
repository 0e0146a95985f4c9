package database

import (
	"errors"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A rollout the Deployment controller gave up on ends the wait, as kubectl rollout status does,
// instead of running into the timeout.
func TestDeploymentDoneStopsOnProgressDeadlineExceeded(t *testing.T) {
	t.Parallel()
	w := WorkloadRef{Kind: KindDeployment, Name: "web"}
	two := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Generation: 2},
		Spec:       appsv1.DeploymentSpec{Replicas: &two},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 2, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 1,
			Conditions: []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Status: "False",
				Reason: "ProgressDeadlineExceeded", Message: `ReplicaSet "web-7c9" has timed out progressing.`}}},
	}
	done, err := deploymentDone(w, d)
	var stalled *RolloutStalledError
	if done || !errors.As(err, &stalled) || stalled.Workload != w || stalled.Message == "" {
		t.Fatalf("deploymentDone = %v, %v; want a RolloutStalledError naming web and why", done, err)
	}
	// The controller has not seen the newest spec yet: its old verdict does not count.
	d.Generation = 3
	if done, err := deploymentDone(w, d); done || err != nil {
		t.Errorf("an unobserved generation: %v, %v; want still waiting", done, err)
	}
	d.Generation = 2
	d.Status.Conditions[0] = appsv1.DeploymentCondition{Type: appsv1.DeploymentProgressing, Status: "True", Reason: "NewReplicaSetAvailable"}
	d.Status.UpdatedReplicas, d.Status.AvailableReplicas = 2, 2
	if done, err := deploymentDone(w, d); !done || err != nil {
		t.Errorf("a finished rollout: %v, %v", done, err)
	}
}
