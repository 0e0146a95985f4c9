package cmdutil

// Exit codes. `stackblaze help exit-codes` prints this table; change both together (a test checks).
const (
	ExitOK          = 0
	ExitError       = 1
	ExitUsage       = 2
	ExitNotFound    = 3
	ExitForbidden   = 4
	ExitUnreachable = 5
	ExitConflict    = 6
	ExitTimeout     = 7
	ExitLockHeld    = 8
	ExitBlocked     = 9
	ExitUnhealthy   = 10
	ExitInterrupted = 130
)

// ExitCodeDoc describes one exit code.
type ExitCodeDoc struct {
	Code    int    `json:"code"`
	Name    string `json:"name"`
	Meaning string `json:"meaning"`
}

// ExitCodes is the documented table, in order.
var ExitCodes = []ExitCodeDoc{
	{ExitOK, "ok", "the command did what was asked (including \"nothing to change\")"},
	{ExitError, "error", "any other failure"},
	{ExitUsage, "usage", "bad flags, arguments or input values; nothing was sent to the cluster"},
	{ExitNotFound, "not-found", "the database (or another named object) does not exist in the namespace"},
	{ExitForbidden, "forbidden", "the cluster refused the credentials or the action (RBAC, expired token)"},
	{ExitUnreachable, "unreachable", "the cluster could not be reached (wrong server, refused, unknown host)"},
	{ExitConflict, "conflict", "the database exists with a different spec (version, storage, plan), restore --into names a database that exists, or attach would replace a variable set by something else"},
	{ExitTimeout, "timeout", "a wait (--timeout) ran out before the database was ready"},
	{ExitLockHeld, "lock-held", "another run holds the database's lock (migrate --no-wait, rotate-credentials past --lock-timeout)"},
	{ExitBlocked, "blocked", "db upgrade: the check found something that stops the upgrade (each finding says what to do); nothing was changed"},
	{ExitUnhealthy, "unhealthy", "db insights --fail-on: a check is at the given status (warn or bad) or worse; the report says which"},
	{ExitInterrupted, "interrupted", "interrupted by Ctrl-C (SIGINT) or SIGTERM"},
}
