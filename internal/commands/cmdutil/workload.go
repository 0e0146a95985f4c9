package cmdutil

import (
	"errors"
	"fmt"

	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// ValidateWorkload checks the workload and the variable name (attach and detach; Args checks the
// database name).
func ValidateWorkload(workload, env, flag string) error {
	if workload == "" {
		return UsageErrorf("%s is required: the workload, like %s deployment/web", flag, flag)
	}
	if _, err := database.ParseWorkload(workload); err != nil {
		return KubeError(err, Scope{})
	}
	if env != "" {
		if err := database.ValidateEnvName(env); err != nil {
			return KubeError(err, Scope{})
		}
	}
	return nil
}

// WorkloadError translates attach's errors.
func WorkloadError(err error, c *kube.Client, name string) error {
	var nf *database.WorkloadNotFoundError
	if errors.As(err, &nf) {
		return (&Error{Code: ExitNotFound, Err: err}).
			WithHint("check the name with `kubectl get deployments,statefulsets -n %s`", nf.Namespace)
	}
	var ce *database.EnvConflictError
	if errors.As(err, &ce) {
		return (&Error{Code: ExitConflict, Err: fmt.Errorf("database %s not attached: %w", name, err)}).
			WithHint("remove it from the workload first, or pass --overwrite to replace it with the database's Secret")
	}
	return KubeError(err, ScopeOf(c, name))
}
