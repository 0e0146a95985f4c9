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

// ConflictError says that a database exists with another spec, or that an object with one of its
// names exists and is not ours.
type ConflictError struct {
	Name string
	// Differences are "storage: 10Gi in the cluster, 20Gi requested" lines.
	Differences []string
	// Foreign names an object with a database's name that stackblaze does not manage.
	Foreign string
}

func (e *ConflictError) Error() string {
	if e.Foreign != "" {
		return fmt.Sprintf("database %s: %s exists and is not managed by stackblaze", e.Name, e.Foreign)
	}
	return fmt.Sprintf("database %s exists with a different spec: %s", e.Name, strings.Join(e.Differences, "; "))
}
