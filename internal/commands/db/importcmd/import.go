// Package importcmd is `stackblaze db import NAME (--file FILE | --from URL)`: restore a dump, or
// a database this machine reaches, into a database's application database with the server's
// own pg_restore (psql for SQL) in its pod, in one transaction, every object owned by the
// application role. The steps are database.Restore's; the command reads the input, asks and
// renders. (The package is not named import, a Go keyword.)
package importcmd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of import.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name string
	// File is the dump to read; "-" is stdin.
	File string
	// From is the URL of a database this machine reaches, dumped with this machine's pg_dump.
	From  string
	Clean bool
	Yes   bool
	// PgDump is the local pg_dump that --from runs (PATH's by default).
	PgDump string
}

// Result is what import -o json prints.
type Result struct {
	*database.RestoreResult
	// Source is the file, "-" for stdin, or the URL without its password.
	Source string `json:"source"`
}

// NewCmdImport builds the command.
func NewCmdImport(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now, PgDump: "pg_dump"}
	var yes bool
	cmd := &cobra.Command{
		Use:   "import NAME (--file FILE | --from URL) [--clean] [--yes]",
		Short: "Restore a dump, or a database this machine reaches, into a database",
		Long: strings.TrimSpace(`
Restore into the application's database of NAME a dump (--file, "-" for stdin: pg_dump's custom
format, as db dump writes it, or a plain SQL dump), or a database this machine reaches (--from
postgres://USER:PASSWORD@HOST:PORT/DB, dumped with this machine's pg_dump and streamed into the
pod). The restore runs in the database's pod with the server's own pg_restore and psql, as the
superuser over the pod's Unix socket, in a single transaction: it all goes in, or nothing does.
Every object it creates belongs to the application's role (owners and privileges of the dump
are left out, and comments on extensions, which only their owner may set).

The format is told from the first bytes: a file that is neither a custom nor a plain dump is
refused (exit 2) before anything is sent. A truncated or damaged dump fails (exit 1) and changes
nothing. The target must be empty (no table, view, sequence, function or type outside the
system schemas, those of extensions aside) unless --clean, which drops every object the
application's role owns first, in the same transaction; it asks, or needs --yes where it cannot
ask (CI, no terminal).

--from: the password of the URL is never on a command line: this machine's pg_dump gets the URL
without it and the password in its PGPASSWORD (a URL without a password leaves pg_dump to your
PGPASSWORD or ~/.pgpass). pg_dump refuses a server newer than itself: then install the server's
major of the client tools.

Exit codes: 1 the restore failed (nothing changed), 2 bad flags or input, a non-empty target
without --clean (nothing changed), 3 no such database, 7 the database is not running.`),
		Example: strings.Join([]string{
			"stackblaze db import mydb --file mydb.dump",
			"stackblaze db dump prod -f - | stackblaze db import staging --file - --clean --yes",
			"stackblaze db import mydb --from postgres://me:secret@localhost:5432/legacy",
		}, "\n"),
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			opts.Yes = cmdutil.AssumeYes(f, yes)
			if err := opts.validate(); err != nil {
				return err
			}
			if runF != nil {
				return runF(opts)
			}
			return run(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.File, "file", "f", "", `the dump to restore (custom or plain format); "-" reads stdin`)
	fl.StringVar(&opts.From, "from", "", "a database this machine reaches, postgres://USER:PASSWORD@HOST:PORT/DB, dumped with this machine's pg_dump")
	fl.BoolVar(&opts.Clean, "clean", false, "drop every object of the application's role in the database first (asks; --yes where it cannot)")
	fl.BoolVarP(&yes, "yes", "y", false, "with --clean: do not ask")
	return cmd
}

// validate checks the flags together; a bad value is a usage error, and nothing is sent.
func (o *Options) validate() error {
	switch {
	case o.File == "" && o.From == "":
		return cmdutil.UsageErrorf("give --file FILE (a dump; - for stdin) or --from URL (a database this machine reaches)")
	case o.File != "" && o.From != "":
		return cmdutil.UsageErrorf("--file and --from go one at a time")
	}
	if o.From != "" {
		if _, _, err := database.SourceDumpArgs(o.From); err != nil {
			return cmdutil.UsageErrorf("%v", err)
		}
	}
	if o.File == "-" && o.IO.InTTY {
		return cmdutil.UsageErrorf("--file - reads the dump from stdin, and stdin is a terminal").
			WithHint("pipe the dump in: stackblaze db dump SOURCE -f - | stackblaze db import %s --file -", o.Name)
	}
	if o.Clean {
		if err := o.confirmation().Refuse(o.IO, o.Yes); err != nil {
			return err
		}
	}
	return nil
}

func (o *Options) confirmation() cmdutil.Confirmation {
	return cmdutil.Confirmation{
		Action:   "drop the objects of database " + o.Name + " (--clean)",
		Effect:   "its tables and their rows are replaced by the dump's",
		Hint:     "add --yes to replace them",
		Declined: "not imported: no confirmation",
	}
}

// input is the dump to restore and how it ends: wait returns the source's error (pg_dump's, for
// --from) once the restore is done with it.
type input struct {
	r    io.Reader
	wait func(restoreErr error) error
}

// openFile opens --file and checks that it is a dump (an *InputError, before anything is sent).
func (o *Options) openFile() (*input, error) {
	var f io.ReadCloser = io.NopCloser(o.IO.In)
	if o.File != "-" {
		file, err := os.Open(o.File)
		if err != nil {
			return nil, cmdutil.UsageErrorf("cannot read the dump: %v", err)
		}
		f = file
	}
	br := bufio.NewReaderSize(f, 64*1024)
	head, err := br.Peek(database.SniffLen)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, cmdutil.Errorf(cmdutil.ExitError, "read %s: %v", o.File, err)
	}
	if _, err := database.SniffFormat(head); err != nil {
		f.Close()
		return nil, cmdutil.UsageErrorf("%s: %v", o.fileName(), err).WithHint("nothing was changed")
	}
	return &input{r: br, wait: func(error) error { return f.Close() }}, nil
}

func (o *Options) fileName() string {
	if o.File == "-" {
		return "stdin"
	}
	return o.File
}

// startSource runs this machine's pg_dump for --from, the password only in its environment.
func (o *Options) startSource(ctx context.Context) (*input, error) {
	args, password, err := database.SourceDumpArgs(o.From)
	if err != nil {
		return nil, cmdutil.UsageErrorf("%v", err)
	}
	path, err := exec.LookPath(o.PgDump)
	if err != nil {
		return nil, cmdutil.Errorf(cmdutil.ExitError, "--from runs this machine's pg_dump, and there is none in PATH").
			WithHint("install PostgreSQL's client tools of the source server's major (Debian and Ubuntu: postgresql-client; macOS: brew install libpq)")
	}
	dctx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(dctx, path, args...)
	cmd.Env = os.Environ()
	if password != "" {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+password)
	}
	cmd.Env = append(cmd.Env, "PGCONNECT_TIMEOUT=15")
	pr, pw := io.Pipe()
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = pw, &stderr
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, cmdutil.Errorf(cmdutil.ExitError, "run pg_dump: %v", err)
	}
	var (
		once   sync.Once
		srcErr error
		done   = make(chan struct{})
	)
	go func() {
		err := cmd.Wait()
		if err != nil && dctx.Err() == nil {
			srcErr = &sourceError{msg: database.ExplainSourceDumpError(stderr.String()), err: err}
			pw.CloseWithError(srcErr)
		} else {
			pw.Close()
		}
		close(done)
	}()
	return &input{r: pr, wait: func(restoreErr error) error {
		once.Do(func() {
			if restoreErr != nil {
				// The restore stopped reading: pg_dump has nothing more to do. (Cancelled
				// first, so that its end is not taken for its failure.)
				cancel()
				pr.CloseWithError(restoreErr)
			}
			<-done
			cancel()
		})
		return srcErr
	}}, nil
}

// sourceError is the local pg_dump's failure.
type sourceError struct {
	msg string
	err error
}

func (e *sourceError) Error() string {
	if e.msg == "" {
		return fmt.Sprintf("pg_dump of the source: %v", e.err)
	}
	return "pg_dump of the source: " + e.msg
}

func run(ctx context.Context, o *Options) error {
	var (
		in  *input
		err error
	)
	source := o.File
	if o.File != "" {
		// A file that is not a dump is refused before anything reaches the cluster.
		if in, err = o.openFile(); err != nil {
			return err
		}
	}
	c, err := o.Kube()
	if err != nil {
		if in != nil {
			in.wait(err)
		}
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	if o.Clean && !o.Yes {
		n, err := database.UserObjects(ctx, c, o.Name)
		if err != nil {
			if in != nil {
				in.wait(err)
			}
			return cmdutil.KubeError(err, scope)
		}
		if n > 0 {
			if err := o.confirmation().Ask(o.IO, false, fmt.Sprintf("Drop the %d tables, views, sequences, functions and types of database %s, and every other object of its role, and restore the dump in their place?", n, o.Name)); err != nil {
				if in != nil {
					in.wait(err)
				}
				return err
			}
		}
	}
	if o.From != "" {
		source = database.RedactURL(o.From)
		if in, err = o.startSource(ctx); err != nil {
			return err
		}
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	meter := o.IO.NewByteMeter("Importing into " + o.Name)
	var p database.Progress = prog
	if meter.On {
		p = database.NoProgress{}
	}
	res, rerr := database.Restore(ctx, c, o.Name, meter.Reader(in.r), database.RestoreOptions{Clean: o.Clean, Progress: p})
	meter.Stop()
	serr := in.wait(rerr)
	if serr != nil {
		prog.Stop()
		var se *sourceError
		if errors.As(serr, &se) {
			return (&cmdutil.Error{Code: cmdutil.ExitError, Err: se}).WithHint("nothing was changed in %s", o.Name)
		}
		if rerr == nil {
			return serr
		}
	}
	if rerr != nil {
		return explain(rerr, o, scope)
	}
	if meter.On {
		prog.Done("Restored %d objects into %s", res.Objects, o.Name)
	}
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, Result{RestoreResult: res, Source: source})
	}
	fmt.Fprintf(o.IO.Out, "Imported %s (%s format, %s) into %s in %.1f s: %d objects, all owned by %s\n",
		source, res.Format, output.HumanBytes(res.Bytes), o.Name, res.Seconds, res.Objects, database.RoleName(o.Name))
	return nil
}

// explain turns a restore's failure into words and an exit code.
func explain(err error, o *Options, scope cmdutil.Scope) error {
	var ne *database.NotEmptyError
	if errors.As(err, &ne) {
		return cmdutil.UsageErrorf("%v", err).
			WithHint("nothing was changed; --clean drops them first (it asks; add --yes where it cannot), or import into a new database (stackblaze db create NEW)")
	}
	var re *database.RestoreError
	if errors.As(err, &re) {
		hint := "the transaction was rolled back: the database is as it was"
		switch {
		case strings.Contains(re.Stderr, "unsupported version") && strings.Contains(re.Stderr, "file header"):
			hint = "the dump was made by a newer pg_dump than this database's major: upgrade the database (stackblaze db upgrade) or dump with an older pg_dump; " + hint
		case strings.Contains(re.Stderr, "end of file") || strings.Contains(re.Stderr, "truncated?"):
			hint = "the dump is truncated or damaged: make it again; " + hint
		}
		return (&cmdutil.Error{Code: cmdutil.ExitError, Err: err}).WithHint("%s", hint)
	}
	var ie *database.InputError
	if errors.As(err, &ie) {
		return cmdutil.UsageErrorf("%s: %v", o.inputName(), err).WithHint("nothing was changed")
	}
	return cmdutil.KubeError(err, scope)
}

func (o *Options) inputName() string {
	if o.From != "" {
		return "the output of pg_dump " + database.RedactURL(o.From)
	}
	return o.fileName()
}
