// Package kube is everything stackblaze does with the Kubernetes API: loading the kubeconfig (or
// in-cluster config), validating a database spec, building the objects of one database as
// server-side apply configurations, applying them, waiting by watching, and reading databases back
// for list and status.
//
// It never imports cobra, viper or the output package: it takes a context and plain values and
// returns plain results or errors. Errors from the API server are returned as they are (wrapped
// with context); the command layer turns them into words.
package kube
