// Package dump is `stackblaze db dump NAME [-f FILE]`: a logical dump of a database's
// application database, made in its pod with the server's own pg_dump and streamed to a file or
// stdout. The steps are database.Dump's; the command validates, writes and renders.
package dump

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// Options are the inputs of dump.
type Options struct {
	IO   *output.IOStreams
	Kube func() (*kube.Client, error)
	Now  func() time.Time

	Name string
	// File is where the dump goes; "" or "-" is stdout.
	File string
	Dump database.DumpOptions
	// compress is --compress, given to Dump.Compress.
	compress int
}

// Result is what dump -o json prints (with -f).
type Result struct {
	*database.DumpResult
	File string `json:"file"`
}

// NewCmdDump builds the command.
func NewCmdDump(f *cmdutil.Factory, runF func(*Options) error) *cobra.Command {
	opts := &Options{IO: f.IO, Kube: f.Kube, Now: f.Now}
	cmd := &cobra.Command{
		Use:   "dump NAME [-f FILE] [--format custom|plain] [--schema-only] [--table T]... [--exclude-table T]...",
		Short: "Dump a database's data and schema (pg_dump) to a file or stdout",
		Long: strings.TrimSpace(`
Dump the application's database of NAME with pg_dump, run in the database's pod by the
server's own binaries (the same major as the server, as the superuser over the pod's Unix
socket: no password is involved), and stream it to FILE or to stdout.

--format custom (the default) is pg_dump's compressed archive, for db import and pg_restore;
it is never written to a terminal. --compress sets its gzip level (default 1: pg_dump runs within
the database's CPU limit, and level 1 takes a fraction of the time of pg_dump's own default, 6,
for a dump a little larger). --format plain is SQL, without owners and privileges (they
name this database's roles), loadable with psql anywhere. --schema-only leaves the rows out;
--table (repeatable, pg_dump patterns like 'public.orders' or 'audit_*') dumps only those
tables, each of which must match one; --exclude-table leaves tables out.

On a terminal a progress line on stderr shows the bytes written and the rate. A file is written
under a temporary name beside FILE and renamed when the dump is complete: a failed dump leaves
nothing behind. -o json (with -f) prints what was written: bytes, seconds, format.

Exit codes: 1 pg_dump failed (its message says why), 2 bad flags (nothing sent), 3 no such
database, 7 the database is not running.`),
		Example: strings.Join([]string{
			"stackblaze db dump mydb -f mydb.dump",
			"stackblaze db dump mydb --format plain --schema-only > schema.sql",
			"stackblaze db dump mydb -f orders.dump --table public.orders --table public.customers",
		}, "\n"),
		Args:              cmdutil.ExactName,
		ValidArgsFunction: cmdutil.CompleteDatabaseNames(f),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Name = args[0]
			opts.Dump.Compress = &opts.compress
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
	fl.StringVarP(&opts.File, "file", "f", "", "write the dump to FILE (default: stdout)")
	fl.StringVar(&opts.Dump.Format, "format", database.FormatCustom, "custom (pg_dump's archive, for db import and pg_restore) or plain (SQL)")
	fl.BoolVar(&opts.Dump.SchemaOnly, "schema-only", false, "the schema alone, without the rows")
	fl.StringArrayVarP(&opts.Dump.Tables, "table", "t", nil, "dump only this table (a pg_dump pattern; repeatable)")
	fl.StringArrayVar(&opts.Dump.ExcludeTables, "exclude-table", nil, "leave this table out (a pg_dump pattern; repeatable)")
	fl.IntVar(&opts.compress, "compress", database.DefaultCompress, "the custom format's gzip level: 0 (none) to 9 (smallest, slowest)")
	_ = cmd.RegisterFlagCompletionFunc("format", cobra.FixedCompletions(database.DumpFormats, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// toStdout tells whether the dump goes to stdout.
func (o *Options) toStdout() bool { return o.File == "" || o.File == "-" }

// validate checks the flags; a bad value is a usage error, and nothing is sent.
func (o *Options) validate() error {
	d, err := database.ValidateDumpOptions(o.Dump)
	if err != nil {
		return cmdutil.UsageErrorf("%v", err)
	}
	o.Dump = d
	// A plain dump names no role of this database: psql loads it anywhere.
	o.Dump.NoOwner = o.Dump.Format == database.FormatPlain
	if o.toStdout() {
		if o.IO.IsJSON() {
			return cmdutil.UsageErrorf("-o json needs -f FILE: without it the dump itself goes to stdout").
				WithHint("stackblaze db dump %s -f %s.dump -o json", o.Name, o.Name)
		}
		if o.Dump.Format == database.FormatCustom && o.IO.OutTTY {
			return cmdutil.UsageErrorf("refusing to write a custom-format (binary) dump to a terminal").
				WithHint("write it to a file with -f %s.dump, redirect stdout, or use --format plain for SQL", o.Name)
		}
	}
	return nil
}

func run(ctx context.Context, o *Options) error {
	c, err := o.Kube()
	if err != nil {
		return err
	}
	scope := cmdutil.ScopeOf(c, o.Name)
	var (
		w   io.Writer = o.IO.Out
		tmp *os.File
	)
	if !o.toStdout() {
		tmp, err = os.CreateTemp(filepath.Dir(o.File), "."+filepath.Base(o.File)+".*.partial")
		if err != nil {
			return cmdutil.Errorf(cmdutil.ExitError, "cannot write %s: %v", o.File, err)
		}
		defer func() {
			if tmp != nil {
				tmp.Close()
				os.Remove(tmp.Name())
			}
		}()
		w = tmp
	}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()
	meter := o.IO.NewByteMeter(fmt.Sprintf("Dumping %s", o.Name))
	res, err := database.Dump(ctx, c, o.Name, meter.Writer(w), o.Dump)
	meter.Stop()
	if err != nil {
		return cmdutil.KubeError(err, scope)
	}
	if tmp != nil {
		if err := tmp.Sync(); err != nil {
			return err
		}
		if err := tmp.Close(); err != nil {
			return err
		}
		if err := os.Rename(tmp.Name(), o.File); err != nil {
			return err
		}
		tmp = nil
	}
	where := "stdout"
	if !o.toStdout() {
		where = o.File
	}
	prog.Done("Dumped %s (%s format) to %s: %s in %.1f s%s", o.Name, res.Format, where, output.HumanBytes(res.Bytes), res.Seconds, output.Rate(res.Bytes, res.Seconds))
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, Result{DumpResult: res, File: o.File})
	}
	return nil
}
