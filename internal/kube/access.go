package kube

import (
	"context"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Access is one permission a command needs.
type Access struct {
	Verb        string
	Group       string
	Resource    string
	Subresource string
}

func (a Access) String() string {
	r := a.Resource
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Group != "" {
		r += "." + a.Group
	}
	return a.Verb + " " + r
}

// ForbiddenError says which permission is missing.
type ForbiddenError struct {
	Access    Access
	Namespace string
}

func (e *ForbiddenError) Error() string {
	return fmt.Sprintf("forbidden: %s in namespace %s", e.Access, e.Namespace)
}

// CheckAccess asks the API server (SelfSubjectAccessReview, which every authenticated user may
// create) whether the caller has each permission, and returns a *ForbiddenError for the first it
// lacks. If the review itself fails, it returns nil and lets the real request speak.
func CheckAccess(ctx context.Context, cs kubernetes.Interface, ns string, checks []Access) error {
	for _, a := range checks {
		r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Namespace: ns, Verb: a.Verb, Group: a.Group, Resource: a.Resource, Subresource: a.Subresource,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			if strings.Contains(err.Error(), "connection refused") || ctx.Err() != nil {
				return err
			}
			return nil
		}
		if !r.Status.Allowed {
			return &ForbiddenError{Access: a, Namespace: ns}
		}
	}
	return nil
}
