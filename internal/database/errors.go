package database

import (
	"fmt"
	"strings"
)

// NotFoundError says that a database does not exist.
type NotFoundError struct {
	Name      string
	Namespace string
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("database %s not found in namespace %s", e.Name, e.Namespace)
}

// ConflictError says that a database exists with another spec (an object of one of its names that
// is not its own is a *ForeignObjectError).
type ConflictError struct {
	Name string
	// Differences are "storage: 10Gi in the cluster, 20Gi requested" lines.
	Differences []string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("database %s exists with a different spec: %s", e.Name, strings.Join(e.Differences, "; "))
}
