// Package testbed connects end-to-end tests to the local test bed that `make testbed-up` starts:
// a real kube-apiserver and controllers, KWOK nodes, and a pod runner that gives every pod running
// a PostgreSQL image a real PostgreSQL server on loopback.
//
// Tests call Require to get an Env, then Env.Namespace for a fresh namespace that is deleted when
// the test ends. When the test bed is not up, Require fails the test with a message that says how
// to start it: end-to-end tests never skip silently.
package testbed
