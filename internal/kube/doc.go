// Package kube is the tool's adapter to the Kubernetes API, and knows nothing of databases:
// loading the kubeconfig (or in-cluster config) the way kubectl does, access reviews, exec into a
// container, list-and-watch waits for pods, and the Lease-based lock.
//
// It never imports cobra, viper, the output package or the database package. Its errors are typed
// values or API errors wrapped with context; the command layer turns them into words for users.
package kube
