package database

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// The database's log: what its container writes (the server's log on standard error, the
// entrypoint's lines, and pgBackRest's output when the server archives WAL), read through the
// Kubernetes API (pods/log) and parsed into entries. Reading never changes anything.

// Sources of log entries.
const (
	// LogSourcePostgres is the server: lines that start with LogLinePrefix (or the older default
	// "%m [%p] "), with their DETAIL, HINT, QUERY, CONTEXT, STATEMENT and LOCATION lines.
	LogSourcePostgres = "postgres"
	// LogSourceEntrypoint is the image's entrypoint ("entrypoint: ...").
	LogSourceEntrypoint = "entrypoint"
	// LogSourcePgBackRest is pgBackRest, run by archive_command ("P00  ERROR: [041]: ...").
	LogSourcePgBackRest = "pgbackrest"
	// LogSourceOther is any other line of the container.
	LogSourceOther = "other"
	// LogSourceStackblaze marks what stackblaze itself says between a container's log and the
	// next one while following (a restart, a pod created again, a database that is stopped).
	LogSourceStackblaze = "stackblaze"
	// LogSourceBackup is a line of a backup job's pod (the stackblaze CLI's own output).
	LogSourceBackup = "backup"
)

// LogEntry is one entry of a database's log: a server message with its secondary lines, or one
// line of another program.
type LogEntry struct {
	// Time is the server's time of the entry (UTC); for lines without a time of their own, the
	// time the container runtime received the line.
	Time time.Time `json:"time"`
	Pod  string    `json:"pod"`
	PID  int       `json:"pid,omitempty"`
	// Level is the server's severity (DEBUG1-5, LOG, INFO, NOTICE, WARNING, ERROR, FATAL, PANIC),
	// pgBackRest's (WARN is WARNING), or "" for lines that have none.
	Level    string `json:"level"`
	SQLState string `json:"sqlstate,omitempty"`
	User     string `json:"user,omitempty"`
	Database string `json:"database,omitempty"`
	Message  string `json:"message"`
	// The server's secondary lines of the entry. A value of several lines has "\n" between them.
	Detail    string `json:"detail,omitempty"`
	Hint      string `json:"hint,omitempty"`
	Context   string `json:"context,omitempty"`
	Query     string `json:"query,omitempty"`
	Statement string `json:"statement,omitempty"`
	Location  string `json:"location,omitempty"`
	// Source is one of the LogSource constants.
	Source string `json:"source"`
}

// LogLevels are the levels an entry filter takes, least severe first; each shows entries of its
// level and the more severe ones.
var LogLevels = []string{"debug", "info", "warning", "error", "fatal"}

// ParseLogLevel reads a minimum level (case-insensitive; log and notice are info, warn is
// warning, panic is fatal) and returns its name in LogLevels.
func ParseLogLevel(s string) (string, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return "debug", nil
	case "info", "log", "notice":
		return "info", nil
	case "warning", "warn":
		return "warning", nil
	case "error":
		return "error", nil
	case "fatal", "panic":
		return "fatal", nil
	}
	return "", inputErrorf("log level %q does not exist: use one of %s (each shows that level and the more severe ones)", s, strings.Join(LogLevels, ", "))
}

// LogLevelRank ranks an entry's level: 0 debug (DEBUG1-5), 1 info (LOG, INFO, NOTICE, and no
// level), 2 warning, 3 error, 4 fatal (FATAL, PANIC): the index of its name in LogLevels.
func LogLevelRank(level string) int {
	switch l := strings.ToUpper(level); {
	case l == "PANIC" || l == "FATAL":
		return 4
	case l == "ERROR":
		return 3
	case l == "WARNING" || l == "WARN":
		return 2
	case strings.HasPrefix(l, "DEBUG") || l == "TRACE":
		return 0
	}
	return 1
}

// ShownAt tells whether the entry is shown with the minimum level min (a name of LogLevels, or ""
// for every entry). stackblaze's own entries are always shown.
func (e LogEntry) ShownAt(min string) bool {
	if min == "" || e.Source == LogSourceStackblaze {
		return true
	}
	for i, l := range LogLevels {
		if l == min {
			return LogLevelRank(e.Level) >= i
		}
	}
	return true
}

// LogOptions choose what ReadLogEntries and StreamLogs read.
type LogOptions struct {
	// Follow streams the log as it is written, across restarts of the container and a pod created
	// again, until the context ends.
	Follow bool
	// Previous reads the container that ran before the last restart (not with Follow).
	Previous bool
	// Since keeps the lines of the last Since (0: all).
	Since time.Duration
	// Tail keeps the last Tail entries (after MinLevel); 0: all.
	Tail int64
	// MinLevel is a name of LogLevels ("" for every entry).
	MinLevel string
}

func (o LogOptions) validate() error {
	switch {
	case o.Follow && o.Previous:
		return inputErrorf("the previous container has ended: following its log does not go with showing it")
	case o.Tail < 0:
		return inputErrorf("tail %d is negative: use a number of entries, or 0 for all", o.Tail)
	case o.Since < 0:
		return inputErrorf("since %s is negative: use a duration such as 10m or 2h", o.Since)
	}
	if o.MinLevel != "" {
		if _, err := ParseLogLevel(o.MinLevel); err != nil {
			return err
		}
	}
	return nil
}

// NoPodError says that a database has no pod, so no log to read: it is stopped (Replicas 0), or
// its pod is not created yet.
type NoPodError struct {
	Name, Namespace, Pod string
	Replicas             int32
}

func (e *NoPodError) Error() string {
	return fmt.Sprintf("database %s has no pod %s", e.Name, e.Pod)
}

// NotStartedError says that the database's container has not run yet (Reason is why it waits,
// like ContainerCreating or ImagePullBackOff), so it has no log yet.
type NotStartedError struct{ Name, Pod, Reason string }

func (e *NotStartedError) Error() string {
	s := fmt.Sprintf("the container of database %s (pod %s) has not started yet", e.Name, e.Pod)
	if e.Reason != "" {
		s += ": " + e.Reason
	}
	return s
}

// NoPreviousError says that the database's container has not restarted since its pod was
// created, so there is no previous container to read.
type NoPreviousError struct {
	Name, Pod string
	Created   time.Time
}

func (e *NoPreviousError) Error() string {
	return fmt.Sprintf("pod %s of database %s has no previous container: it has not restarted since it was created", e.Pod, e.Name)
}

// The server's lines. LogLinePrefix gives "2026-11-30 07:00:00.123 UTC [57] 42P01 app@app ";
// a background process's lines stop after the SQLSTATE (%q), and databases made before it have
// the default "%m [%p] ". The severity follows, then a colon and two spaces.
var (
	pgLineRE = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(?:\.\d+)?) ([A-Za-z]+|[+-]\d{2}(?::?\d{2})?) \[(\d+)\] (?:(.*?) )?(` + pgKeywords + `):  (.*)$`)
	// pgBareRE is a server line without a prefix (a message written before the settings apply).
	pgBareRE = regexp.MustCompile(`^(` + pgKeywords + `):  (.*)$`)
	// pgBackRestRE is pgBackRest's console line ("2026-11-30 07:00:00.123 P00  ERROR: [041]: ...",
	// the time in the container's zone, UTC) or its standard error line ("ERROR: [041]: ...").
	pgBackRestRE = regexp.MustCompile(`^(?:(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}) )?(?:P\d{2} +)?(ERROR|WARN|INFO|DETAIL|DEBUG|TRACE|ASSERT): (\S.*)$`)
	sqlStateRE   = regexp.MustCompile(`^[0-9A-Z]{5}$`)
)

const pgKeywords = `DEBUG[1-5]|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC|DETAIL|HINT|QUERY|CONTEXT|STATEMENT|LOCATION`

// isSeverity tells a keyword that starts an entry from a secondary one.
func isSeverity(kw string) bool {
	switch kw {
	case "DETAIL", "HINT", "QUERY", "CONTEXT", "STATEMENT", "LOCATION":
		return false
	}
	return true
}

// field is where a secondary line of the server goes.
func (e *LogEntry) field(kw string) *string {
	switch kw {
	case "DETAIL":
		return &e.Detail
	case "HINT":
		return &e.Hint
	case "QUERY":
		return &e.Query
	case "CONTEXT":
		return &e.Context
	case "STATEMENT":
		return &e.Statement
	case "LOCATION":
		return &e.Location
	}
	return &e.Message
}

// logParser groups the lines of a container's log into entries. It holds the entry being read
// until a line shows that it is complete (another entry starts), or flush.
type logParser struct {
	pod  string
	emit func(LogEntry) error
	cur  *LogEntry
	// into is the field the current entry's continuation lines go to.
	into *string
}

func newLogParser(pod string, emit func(LogEntry) error) *logParser {
	return &logParser{pod: pod, emit: emit}
}

// flush emits the entry being read, if any.
func (p *logParser) flush() error {
	e := p.cur
	p.cur, p.into = nil, nil
	if e == nil {
		return nil
	}
	return p.emit(*e)
}

func (p *logParser) start(e LogEntry, into func(*LogEntry) *string) error {
	if err := p.flush(); err != nil {
		return err
	}
	e.Pod = p.pod
	p.cur = &e
	p.into = into(p.cur)
	return nil
}

func appendLine(s *string, line string) {
	if *s == "" {
		*s = line
		return
	}
	*s += "\n" + line
}

// line reads one line; at is when the container runtime received it (zero when unknown).
func (p *logParser) line(at time.Time, s string) error {
	s = strings.TrimRight(s, "\r")
	if strings.TrimSpace(s) == "" {
		return nil
	}
	// A continuation: the server writes the further lines of a message, detail or statement
	// after a tab; pgBackRest indents its further lines with spaces.
	if (s[0] == '\t' || s[0] == ' ') && p.cur != nil {
		switch p.cur.Source {
		case LogSourcePostgres:
			appendLine(p.into, strings.TrimPrefix(s, "\t"))
		case LogSourcePgBackRest:
			t := strings.TrimSpace(s)
			if h, ok := strings.CutPrefix(t, "HINT: "); ok {
				appendLine(&p.cur.Hint, h)
			} else {
				appendLine(&p.cur.Message, t)
			}
		default:
			appendLine(p.into, s)
		}
		return nil
	}
	if m := pgLineRE.FindStringSubmatch(s); m != nil {
		e := LogEntry{Time: serverTime(m[1], m[2], at), Level: m[5], Source: LogSourcePostgres}
		e.PID, _ = strconv.Atoi(m[3])
		e.SQLState, e.User, e.Database = splitPrefixMiddle(m[4])
		return p.server(e, m[5], m[6])
	}
	if m := pgBareRE.FindStringSubmatch(s); m != nil {
		return p.server(LogEntry{Time: at, Level: m[1], Source: LogSourcePostgres}, m[1], m[2])
	}
	if m := pgBackRestRE.FindStringSubmatch(s); m != nil {
		t := at
		if t.IsZero() && m[1] != "" {
			t, _ = time.ParseInLocation("2006-01-02 15:04:05.000", m[1], time.UTC)
		}
		return p.start(LogEntry{Time: t, Level: pgBackRestLevel(m[2]), Message: m[3], Source: LogSourcePgBackRest},
			func(e *LogEntry) *string { return &e.Message })
	}
	if msg, ok := strings.CutPrefix(s, "entrypoint: "); ok {
		return p.start(LogEntry{Time: at, Message: msg, Source: LogSourceEntrypoint}, func(e *LogEntry) *string { return &e.Message })
	}
	return p.start(LogEntry{Time: at, Message: s, Source: LogSourceOther}, func(e *LogEntry) *string { return &e.Message })
}

// server reads a line of the server: a new entry, or a secondary line of the current one (the
// same process's).
func (p *logParser) server(e LogEntry, kw, text string) error {
	if isSeverity(kw) {
		e.Message = text
		return p.start(e, func(e *LogEntry) *string { return &e.Message })
	}
	if c := p.cur; c != nil && c.Source == LogSourcePostgres && c.PID == e.PID {
		p.into = c.field(kw)
		appendLine(p.into, text)
		return nil
	}
	// A secondary line whose entry is not here (flushed, or cut off by --tail): an entry of its
	// own, without a level.
	e.Level = ""
	*e.field(kw) = text
	return p.start(e, func(e *LogEntry) *string { return e.field(kw) })
}

// splitPrefixMiddle reads what LogLinePrefix puts between "[pid] " and the severity: the
// SQLSTATE, then user@database for a session.
func splitPrefixMiddle(s string) (state, user, db string) {
	s = strings.TrimSpace(s)
	if len(s) >= 5 && sqlStateRE.MatchString(s[:5]) && (len(s) == 5 || s[5] == ' ') {
		state, s = s[:5], strings.TrimSpace(s[5:])
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		user, db = s[:i], s[i+1:]
	}
	if user == "[unknown]" {
		user = ""
	}
	if db == "[unknown]" {
		db = ""
	}
	return state, user, db
}

// serverTime reads the server's %m time in zone (UTC in our databases). A zone abbreviation other
// than UTC or GMT is ambiguous: then the runtime's time of the line is used when known.
func serverTime(s, zone string, at time.Time) time.Time {
	loc := time.UTC
	switch {
	case zone == "UTC" || zone == "GMT" || zone == "Z":
	case zone[0] == '+' || zone[0] == '-':
		digits := strings.ReplaceAll(zone[1:], ":", "")
		h, _ := strconv.Atoi(digits[:2])
		m := 0
		if len(digits) == 4 {
			m, _ = strconv.Atoi(digits[2:])
		}
		off := h*3600 + m*60
		if zone[0] == '-' {
			off = -off
		}
		loc = time.FixedZone(zone, off)
	case !at.IsZero():
		return at
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
	if err != nil {
		return at
	}
	return t.UTC()
}

func pgBackRestLevel(l string) string {
	switch l {
	case "WARN":
		return "WARNING"
	case "ASSERT":
		return "ERROR"
	case "DETAIL", "TRACE":
		return "DEBUG"
	}
	return l
}

// splitRuntimeTime takes off the time the container runtime gives each line when the log is
// read with timestamps ("2026-11-30T07:00:00.123456789Z line").
func splitRuntimeTime(line string) (time.Time, string) {
	if len(line) < 20 || line[4] != '-' || line[10] != 'T' {
		return time.Time{}, line
	}
	i := strings.IndexByte(line, ' ')
	if i < 0 {
		i = len(line)
	}
	t, err := time.Parse(time.RFC3339Nano, line[:i])
	if err != nil {
		return time.Time{}, line
	}
	if i == len(line) {
		return t, ""
	}
	return t, line[i+1:]
}

// maxLogLine bounds one line; the rest of a longer line is dropped.
const maxLogLine = 1 << 20

// eachLine calls fn with each line of r, without its line end.
func eachLine(r io.Reader, fn func(string) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if room := maxLogLine - len(buf); room > 0 {
			buf = append(buf, chunk[:min(len(chunk), room)]...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if len(buf) > 0 {
			line := strings.TrimSuffix(string(buf), "\n")
			buf = buf[:0]
			if ferr := fn(line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// ParseLog reads a container's log (plain, or with the runtime's time before each line as
// `kubectl logs --timestamps` prints it) and calls emit with each entry once the next line shows
// that it is complete, or at the end. pod names the pod in the entries.
func ParseLog(r io.Reader, pod string, emit func(LogEntry) error) error {
	p := newLogParser(pod, emit)
	if err := eachLine(r, func(l string) error {
		return p.line(splitRuntimeTime(l))
	}); err != nil {
		return err
	}
	return p.flush()
}

// ReadLogEntries reads a database's log as it is now (o.Follow is ignored).
func ReadLogEntries(ctx context.Context, cs kubernetes.Interface, ns, name string, o LogOptions) ([]LogEntry, error) {
	o.Follow = false
	entries := []LogEntry{}
	err := StreamLogs(ctx, cs, ns, name, o, func(e LogEntry) error {
		entries = append(entries, e)
		return nil
	})
	return entries, err
}

// followFlush is how long an entry waits for a next line before it is shown, while following.
const followFlush = 500 * time.Millisecond

// StreamLogs calls emit with each entry of a database's log that o selects. Without o.Follow it
// reads the log as it is and returns; a database without a pod is a *NoPodError, a container that
// has not started a *NotStartedError, and with o.Previous a pod that has not restarted a
// *NoPreviousError. With o.Follow it goes on until ctx ends: when the container stops or the pod
// is deleted, it watches the pod until the next container runs and goes on from that container's
// start, with an entry of LogSourceStackblaze between; a database without a pod is waited for,
// and one that is deleted meanwhile ends it with a *NotFoundError.
func StreamLogs(ctx context.Context, cs kubernetes.Interface, ns, name string, o LogOptions, emit func(LogEntry) error) error {
	if err := o.validate(); err != nil {
		return err
	}
	sts, err := GetDatabase(ctx, cs, ns, name)
	if err != nil {
		return err
	}
	if o.MinLevel != "" {
		min, _ := ParseLogLevel(o.MinLevel)
		o.MinLevel = min
		next := emit
		emit = func(e LogEntry) error {
			if !e.ShownAt(min) {
				return nil
			}
			return next(e)
		}
	}
	r := &logReader{cs: cs, ns: ns, name: name, pod: PodName(name), o: o, emit: emit}
	if sts.Spec.Replicas != nil {
		r.replicas = *sts.Spec.Replicas
	}
	if o.Follow {
		return r.follow(ctx)
	}
	return r.once(ctx)
}

// logReader reads the log of one database's pod.
type logReader struct {
	cs       kubernetes.Interface
	ns, name string
	pod      string
	o        LogOptions
	emit     func(LogEntry) error
	replicas int32
	// last is the runtime's time of the last line read: a log read again (a stream that ended,
	// or the next container) starts after it, so that no line is shown twice.
	last time.Time
}

func (r *logReader) getPod(ctx context.Context) (*corev1.Pod, error) {
	p, err := r.cs.CoreV1().Pods(r.ns).Get(ctx, r.pod, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s: %w", r.pod, err)
	}
	return p, nil
}

func containerStatus(p *corev1.Pod) *corev1.ContainerStatus {
	if p == nil {
		return nil
	}
	for i := range p.Status.ContainerStatuses {
		if c := &p.Status.ContainerStatuses[i]; c.Name == ContainerName {
			return c
		}
	}
	return nil
}

// logContainer is the container whose log the API serves for the pod now (as the kubelet
// chooses it): the running one, else the one that ended last; "" when none has run.
func logContainer(p *corev1.Pod) (id string, running bool) {
	c := containerStatus(p)
	switch {
	case c == nil:
		return "", false
	case c.State.Running != nil && c.ContainerID != "":
		return c.ContainerID, true
	case c.State.Terminated != nil && c.State.Terminated.ContainerID != "":
		return c.State.Terminated.ContainerID, false
	case c.LastTerminationState.Terminated != nil:
		return c.LastTerminationState.Terminated.ContainerID, false
	}
	return "", false
}

// waitingReason says why a pod's container has not run.
func waitingReason(p *corev1.Pod) string {
	if c := containerStatus(p); c != nil && c.State.Waiting != nil && c.State.Waiting.Reason != "" {
		return c.State.Waiting.Reason
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue && c.Reason != "" {
			return c.Reason
		}
	}
	return string(p.Status.Phase)
}

func (r *logReader) logOptions() *corev1.PodLogOptions {
	return &corev1.PodLogOptions{Container: ContainerName, Timestamps: true, Previous: r.o.Previous}
}

func (r *logReader) sinceSeconds(o *corev1.PodLogOptions) {
	if r.o.Since > 0 {
		s := int64((r.o.Since + time.Second - 1) / time.Second)
		o.SinceSeconds = &s
	}
}

// once reads the log as it is.
func (r *logReader) once(ctx context.Context) error {
	p, err := r.getPod(ctx)
	if err != nil {
		return err
	}
	if p == nil {
		return &NoPodError{Name: r.name, Namespace: r.ns, Pod: r.pod, Replicas: r.replicas}
	}
	if r.o.Previous {
		if c := containerStatus(p); c == nil || c.LastTerminationState.Terminated == nil || c.LastTerminationState.Terminated.ContainerID == "" {
			return &NoPreviousError{Name: r.name, Pod: r.pod, Created: p.CreationTimestamp.Time}
		}
	} else if id, _ := logContainer(p); id == "" {
		return &NotStartedError{Name: r.name, Pod: r.pod, Reason: waitingReason(p)}
	}
	if r.o.Tail > 0 {
		return r.tail(ctx)
	}
	o := r.logOptions()
	r.sinceSeconds(o)
	parser := newLogParser(r.pod, r.emit)
	if _, err := r.stream(ctx, o, parser, 0); err != nil {
		return err
	}
	return parser.flush()
}

// tail emits the last o.Tail entries. It asks for the log's last lines, more each time, until
// they hold that many entries after the first (which may be cut off), or the whole log.
func (r *logReader) tail(ctx context.Context) error {
	lines := r.o.Tail*8 + 64
	for {
		r.last = time.Time{}
		var got []LogEntry
		o := r.logOptions()
		r.sinceSeconds(o)
		if lines > 0 {
			o.TailLines = new(lines)
		}
		parser := newLogParser(r.pod, func(e LogEntry) error {
			got = append(got, e)
			return nil
		})
		n, err := r.stream(ctx, o, parser, 0)
		if err != nil {
			return err
		}
		if err := parser.flush(); err != nil {
			return err
		}
		var shown []LogEntry
		for i, e := range got {
			// The first entry of a cut log may lack its first lines: count it only in a whole log.
			if e.ShownAt(r.o.MinLevel) && (i > 0 || lines == 0 || n < lines) {
				shown = append(shown, e)
			}
		}
		if int64(len(shown)) >= r.o.Tail || lines == 0 || n < lines {
			if int64(len(shown)) > r.o.Tail {
				shown = shown[int64(len(shown))-r.o.Tail:]
			}
			for _, e := range shown {
				if err := r.emit(e); err != nil {
					return err
				}
			}
			return nil
		}
		if lines *= 8; lines > 1<<20 {
			lines = 0 // the whole log
		}
	}
}

// openError is a log request the API refused; readError a stream that broke while it was read.
type (
	openError struct{ err error }
	readError struct{ err error }
)

func (e *openError) Error() string { return e.err.Error() }
func (e *openError) Unwrap() error { return e.err }
func (e *readError) Error() string { return e.err.Error() }
func (e *readError) Unwrap() error { return e.err }

// stream reads one log request into parser, skipping the lines at or before r.last, and returns
// the number of lines it read. With flushAfter, an entry that has waited that long for a next
// line is emitted. A request the API refuses is an *openError; while following, a stream that
// breaks is a *readError; emit's errors are returned as they are.
func (r *logReader) stream(ctx context.Context, o *corev1.PodLogOptions, parser *logParser, flushAfter time.Duration) (int64, error) {
	rc, err := r.cs.CoreV1().Pods(r.ns).GetLogs(r.pod, o).Stream(ctx)
	if err != nil {
		return 0, &openError{fmt.Errorf("read the log of pod %s: %w", r.pod, err)}
	}
	defer rc.Close()
	var n int64
	take := func(l string) error {
		at, text := splitRuntimeTime(l)
		if !at.IsZero() {
			if !r.last.IsZero() && !at.After(r.last) {
				return nil
			}
			r.last = at
		}
		n++
		return parser.line(at, text)
	}
	if flushAfter == 0 {
		err := eachLine(rc, take)
		if err != nil && ctx.Err() != nil {
			err = ctx.Err()
		}
		return n, err
	}
	// Following: lines come from a reader of their own, so that an entry that waits for its next
	// line can be shown meanwhile.
	lines := make(chan string)
	done := make(chan struct{})
	defer close(done)
	errc := make(chan error, 1)
	go func() {
		errc <- eachLine(rc, func(l string) error {
			select {
			case lines <- l:
				return nil
			case <-done:
				return context.Canceled
			}
		})
		close(lines)
	}()
	timer := time.NewTimer(flushAfter)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				err := <-errc
				switch {
				case err != nil && ctx.Err() != nil:
					err = ctx.Err()
				case err != nil:
					err = &readError{fmt.Errorf("read the log of pod %s: %w", r.pod, err)}
				}
				return n, err
			}
			if err := take(l); err != nil {
				return n, err
			}
			timer.Reset(flushAfter)
		case <-timer.C:
			if err := parser.flush(); err != nil {
				return n, err
			}
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}

// marker emits what stackblaze says between two containers' logs.
func (r *logReader) marker(format string, args ...any) error {
	return r.emit(LogEntry{Time: time.Now().UTC(), Pod: r.pod, Source: LogSourceStackblaze, Message: fmt.Sprintf(format, args...)})
}

// idleWait bounds the wait for a change of the pod after a stream of a running container ended
// without a line: the stream is opened again then.
const idleWait = 2 * time.Second

// follow streams the log until ctx ends, from one container to the next.
func (r *logReader) follow(ctx context.Context) error {
	parser := newLogParser(r.pod, r.emit)
	var (
		seen      string    // the container whose log was read last
		seenUID   types.UID // its pod
		waitedFor = "-"     // the container after which a wait was announced
		idle      bool      // the last stream of seen, still running, brought nothing
		first     = true
	)
	p, err := r.getPod(ctx)
	if err != nil {
		return err
	}
	if id, _ := logContainer(p); id != "" && r.o.Tail > 0 {
		// The last entries first; the stream then starts after them.
		if err := r.tail(ctx); err != nil {
			return err
		}
		seen, seenUID, first = id, p.UID, false
	}
	for {
		id, running := logContainer(p)
		if id == "" || id == seen && (!running || idle) {
			if p == nil && !first {
				// The pod is gone: for a restart, or with the database (then there is no more).
				if _, err := GetDatabase(ctx, r.cs, r.ns, r.name); err != nil {
					return err
				}
			}
			if waitedFor != seen {
				said, err := r.announceWait(p, seen, first)
				if err != nil {
					return err
				}
				if said {
					waitedFor = seen
				}
			}
			was := podState(p)
			wctx, cancel := ctx, context.CancelFunc(func() {})
			if id != "" && running {
				wctx, cancel = context.WithTimeout(ctx, idleWait)
			}
			// Any change of the pod (created, deleted, its container's state) is looked at.
			q, err := waitPod(wctx, r.cs, r.ns, r.pod, func(q *corev1.Pod) bool { return podState(q) != was })
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				return err
			}
			if err == nil {
				p = q
			} // else the pod did not change for a while: read the stream again
			idle = false
			continue
		}
		if seen != "" && id != seen {
			if err := r.announceNext(p, seenUID); err != nil {
				return err
			}
		}
		if id != seen {
			// Another container (perhaps on another node, whose clock may differ): all of it.
			r.last = time.Time{}
		}
		o := r.logOptions()
		o.Follow = true
		if !r.last.IsZero() {
			o.SinceTime = &metav1.Time{Time: r.last.Truncate(time.Second)}
		} else if first {
			r.sinceSeconds(o)
		}
		n, err := r.stream(ctx, o, parser, followFlush)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A stream that broke, a pod that was deleted, a container that is not there to read:
		// the pod says what comes next. A refusal (forbidden, unreachable) ends the command, and
		// so does an error of emit.
		var oe *openError
		var re *readError
		switch {
		case err == nil, errors.As(err, &re):
		case errors.As(err, &oe) && (apierrors.IsNotFound(err) || apierrors.IsBadRequest(err)):
		default:
			return err
		}
		if err := parser.flush(); err != nil {
			return err
		}
		idle = n == 0 && id == seen
		seen, seenUID, first = id, p.UID, false
		if p, err = r.getPod(ctx); err != nil {
			return err
		}
	}
}

// announceWait says what the log waits for, and whether it said something.
func (r *logReader) announceWait(p *corev1.Pod, seen string, first bool) (bool, error) {
	id, running := logContainer(p)
	switch {
	case p == nil && first:
		return true, r.marker("pod %s does not exist (database %s is stopped, or starting): waiting for it", r.pod, r.name)
	case p == nil:
		return true, r.marker("pod %s is gone: waiting for it to be created again", r.pod)
	case id == "":
		return true, r.marker("pod %s: waiting for its container to start (%s)", r.pod, waitingReason(p))
	case id == seen && !running:
		return true, r.marker("pod %s: its container stopped%s: waiting for the next one", r.pod, endedHow(containerStatus(p), seen))
	}
	return false, nil
}

// announceNext says that the log goes on with another container.
func (r *logReader) announceNext(p *corev1.Pod, seenUID types.UID) error {
	if p.UID != seenUID {
		return r.marker("pod %s was created again: following the new container", r.pod)
	}
	how := ""
	if c := containerStatus(p); c != nil && c.LastTerminationState.Terminated != nil {
		how = endedHow(c, c.LastTerminationState.Terminated.ContainerID)
	}
	return r.marker("pod %s restarted%s: following the new container", r.pod, how)
}

// endedHow says how the container id of status c ended: " (exit code 1, Error)".
func endedHow(c *corev1.ContainerStatus, id string) string {
	if c == nil {
		return ""
	}
	for _, t := range []*corev1.ContainerStateTerminated{c.State.Terminated, c.LastTerminationState.Terminated} {
		if t != nil && t.ContainerID == id {
			s := fmt.Sprintf(" (exit code %d", t.ExitCode)
			if t.Reason != "" {
				s += ", " + t.Reason
			}
			return s + ")"
		}
	}
	return ""
}

// podState is what of a pod tells its log's reader to look again: the pod, its deletion, its
// container's state.
func podState(p *corev1.Pod) string {
	if p == nil {
		return ""
	}
	s := fmt.Sprintf("%s|%t|%s", p.UID, p.DeletionTimestamp != nil, p.Status.Phase)
	if c := containerStatus(p); c != nil {
		b, _ := json.Marshal([]any{c.RestartCount, c.ContainerID, c.State, c.LastTerminationState})
		s += "|" + string(b)
	}
	return s
}

// waitPod watches pod until cond is true of it (nil when it does not exist) and returns it.
func waitPod(ctx context.Context, cs kubernetes.Interface, ns, pod string, cond func(*corev1.Pod) bool) (*corev1.Pod, error) {
	var got *corev1.Pod
	key := ns + "/" + pod
	// (A clientset that cannot stream a list as watch events, such as a fake, says so.)
	lw := cache.ToListWatcherWithWatchListSemantics(kube.PodListWatch(cs, ns, pod), cs)
	_, err := watchtools.UntilWithSync(ctx, lw, &corev1.Pod{},
		func(store cache.Store) (bool, error) {
			obj, ok, err := store.GetByKey(key)
			if err != nil {
				return false, err
			}
			var p *corev1.Pod
			if ok {
				p, _ = obj.(*corev1.Pod)
			}
			if cond(p) {
				got = p
				return true, nil
			}
			return false, nil
		},
		func(ev watch.Event) (bool, error) {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || p.Name != pod {
				return false, nil
			}
			if ev.Type == watch.Deleted {
				p = nil
			}
			if cond(p) {
				got = p
				return true, nil
			}
			return false, nil
		})
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("watch pod %s: %w", pod, err)
	}
	return got, nil
}

// BackupLog is the log of one pod of a backup job.
type BackupLog struct {
	Pod string `json:"pod"`
	Job string `json:"job,omitempty"`
	// Phase is the pod's (Succeeded, Failed, Running, Pending).
	Phase   string     `json:"phase"`
	Created time.Time  `json:"created"`
	Entries []LogEntry `json:"entries"`
}

// BackupJobSelector selects the pods of a database's backup jobs.
func BackupJobSelector(name string) string {
	return labels.SelectorFromSet(map[string]string{LabelDatabase: name, LabelName: backupJobLabels(name)[LabelName]}).String()
}

// cliTimeRE is the time the stackblaze CLI puts before its progress lines without a terminal.
var cliTimeRE = regexp.MustCompile(`^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})) `)

// ReadBackupLogs reads the logs of the database's backup jobs' pods (those Kubernetes keeps),
// oldest first. o.Since, o.Tail (lines of each pod) and o.MinLevel apply; a line of the CLI that
// starts with "error:" is an ERROR, one with "!" a WARNING.
func ReadBackupLogs(ctx context.Context, cs kubernetes.Interface, ns, name string, o LogOptions) ([]BackupLog, error) {
	o.Follow, o.Previous = false, false
	if err := o.validate(); err != nil {
		return nil, err
	}
	if _, err := GetDatabase(ctx, cs, ns, name); err != nil {
		return nil, err
	}
	min := ""
	if o.MinLevel != "" {
		min, _ = ParseLogLevel(o.MinLevel)
	}
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: BackupJobSelector(name)})
	if err != nil {
		return nil, fmt.Errorf("list the backup jobs' pods: %w", err)
	}
	items := pods.Items
	sort.SliceStable(items, func(i, j int) bool {
		a, b := items[i].CreationTimestamp.Time, items[j].CreationTimestamp.Time
		if a.Equal(b) {
			return items[i].Name < items[j].Name
		}
		return a.Before(b)
	})
	logs := []BackupLog{}
	for i := range items {
		p := &items[i]
		if !IsOwnedBy(p.Labels, name) {
			continue
		}
		bl := BackupLog{Pod: p.Name, Job: p.Labels["job-name"], Phase: string(p.Status.Phase), Created: p.CreationTimestamp.Time, Entries: []LogEntry{}}
		started := false
		for _, c := range p.Status.ContainerStatuses {
			started = started || c.State.Running != nil || c.State.Terminated != nil
		}
		if started && len(p.Spec.Containers) > 0 {
			lo := &corev1.PodLogOptions{Container: p.Spec.Containers[0].Name, Timestamps: true}
			if o.Tail > 0 {
				t := o.Tail
				lo.TailLines = &t
			}
			if o.Since > 0 {
				s := int64((o.Since + time.Second - 1) / time.Second)
				lo.SinceSeconds = &s
			}
			rc, err := cs.CoreV1().Pods(ns).GetLogs(p.Name, lo).Stream(ctx)
			if err != nil {
				if apierrors.IsNotFound(err) || apierrors.IsBadRequest(err) {
					logs = append(logs, bl) // gone, or not there to read
					continue
				}
				return nil, fmt.Errorf("read the log of pod %s: %w", p.Name, err)
			}
			err = eachLine(rc, func(l string) error {
				if e, ok := cliLine(p.Name, l); ok && e.ShownAt(min) {
					bl.Entries = append(bl.Entries, e)
				}
				return nil
			})
			rc.Close()
			if err != nil {
				return nil, fmt.Errorf("read the log of pod %s: %w", p.Name, err)
			}
		}
		logs = append(logs, bl)
	}
	return logs, nil
}

// cliLine reads one line of the stackblaze CLI's output in a job's pod.
func cliLine(pod, l string) (LogEntry, bool) {
	at, text := splitRuntimeTime(l)
	text = strings.TrimRight(text, "\r")
	if strings.TrimSpace(text) == "" {
		return LogEntry{}, false
	}
	if m := cliTimeRE.FindStringSubmatch(text); m != nil {
		if t, err := time.Parse(time.RFC3339Nano, m[1]); err == nil && at.IsZero() {
			at = t
		}
		text = text[len(m[0]):]
	}
	e := LogEntry{Time: at.UTC(), Pod: pod, Message: text, Source: LogSourceBackup}
	switch {
	case strings.HasPrefix(text, "error:"):
		e.Level = "ERROR"
	case strings.HasPrefix(text, "! "):
		e.Level = "WARNING"
	}
	return e, true
}
