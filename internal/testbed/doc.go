// Package testbed connects end-to-end tests to the local test bed that `make testbed-up` starts:
// a real kube-apiserver and controllers and one real node (kubelet, containerd, kube-proxy,
// CoreDNS) that runs our database image in containers (docs/testing.md).
//
// Tests call Require to get an Env, then Env.Namespace for a fresh namespace that is deleted when
// the test ends. When the test bed is not up, Require fails the test with a message that says how
// to start it: end-to-end tests never skip silently.
package testbed
