package restore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	bk "github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/commands/cmdutil"
	"github.com/stackblaze/stackblaze/internal/database"
	"github.com/stackblaze/stackblaze/internal/kube"
	"github.com/stackblaze/stackblaze/internal/output"
)

// runInto restores a backup (or a point in time) of src into a new database o.Into, which gets
// src's version, storage and plan, credentials of its own, and backups of its own. src is only
// read: its part of its repository is copied to the new database's backup volume (with S3 both
// read the same bucket), and the restore runs in the new database's pod. Anything that fails
// once the new database is being created deletes it again, so that the same command can simply
// be retried.
func runInto(ctx context.Context, o *Options, src *database.Backups, restore []string, res Result, start time.Time) error {
	c := src.Client
	scope := cmdutil.ScopeOf(c, o.Into)
	switch err := database.Exists(ctx, c.Clientset, c.Namespace, o.Into); {
	case err == nil:
		return (&cmdutil.Error{Code: cmdutil.ExitConflict, Err: fmt.Errorf("database %s already exists in namespace %s", o.Into, c.Namespace)}).
			WithHint("restore into a new name, or restore %s in place (without --into)", o.Into)
	case !errors.As(err, new(*database.NotFoundError)):
		return cmdutil.KubeError(err, scope)
	}

	// The new database must keep its backups where the source's are: on a volume of its own (and
	// then the source's are copied there), or in the same bucket and path (one stanza each).
	want := database.BackupConfigFor(database.Spec{Name: o.Into, Namespace: c.Namespace, S3: o.S3})
	srcS3 := src.Repo.Type == "s3"
	if srcS3 != (want.S3 != nil) || (srcS3 && (want.S3.Bucket != src.Repo.Bucket || want.RepoPath != src.Repo.Path)) {
		where := func(s3 bool, bucket, path string) string {
			if !s3 {
				return "on its backup volume"
			}
			return fmt.Sprintf("in bucket %s at %s", bucket, path)
		}
		var wantBucket string
		if want.S3 != nil {
			wantBucket = want.S3.Bucket
		}
		return cmdutil.UsageErrorf("the backups of %s are %s, but a new database would keep its backups %s",
			src.Name, where(srcS3, src.Repo.Bucket, src.Repo.Path), where(want.S3 != nil, wantBucket, want.RepoPath)).
			WithHint("restore --into with the backup_s3_* settings %s was created with", src.Name)
	}

	spec, _, err := database.SpecOf(o.Into, src.Version, src.Storage, src.Plan.Name)
	if err != nil {
		return fmt.Errorf("the spec of %s: %w", src.Name, err)
	}
	spec.ImageRepository, spec.DNSZone, spec.S3 = o.ImageRepository, o.DNSZone, o.S3
	cron, _ := database.ParseAt(database.DefaultBackupAt)
	// From here on, a failure deletes the new database again (src was never touched), so that
	// the same command can simply be run again.
	fail := func(err error) error {
		code := cmdutil.ExitCode(err)
		_, derr := database.Delete(context.WithoutCancel(ctx), c.Clientset, c.Namespace, o.Into, true)
		state := fmt.Sprintf("%s is unchanged and %s was deleted again", src.Name, o.Into)
		if derr != nil {
			state = fmt.Sprintf("%s is unchanged; delete the half-made %s with `stackblaze db delete %s --delete-data --yes` (%v)", src.Name, o.Into, o.Into, derr)
		}
		return (&cmdutil.Error{Code: code, Err: fmt.Errorf("restore %s into %s: %w", src.Name, o.Into, err)}).
			WithHint("%s; retry with the same command", state)
	}
	prog := o.IO.NewProgress(o.Now)
	_, err = database.Provision(ctx, c, database.ProvisionOptions{
		Spec: spec, BackupCron: cron, BackupImage: o.BackupImage, Timeout: o.Timeout,
		OpenTunnel: o.OpenTunnel, CheckLogin: o.CheckLogin, Now: o.Now, Progress: prog,
	})
	prog.Stop()
	if err != nil {
		return fail(cmdutil.KubeError(err, scope))
	}
	if err := restoreInto(ctx, o, src, restore); err != nil {
		return fail(err)
	}
	res.Into = o.Into
	res.Duration = o.Now().Sub(start).Seconds()
	if o.IO.IsJSON() {
		return output.JSON(o.IO.Out, res)
	}
	fmt.Fprintf(o.IO.Out, "Restored %s at %s into the new database %s; %s keeps running.\n", src.Name, res.point(), o.Into, src.Name)
	fmt.Fprintf(o.IO.Out, "Its credentials are in Secret %s.\n", database.CredentialsSecretName(o.Into))
	return nil
}

// restoreInto does the restore itself once the new database runs.
func restoreInto(ctx context.Context, o *Options, src *database.Backups, restore []string) error {
	c := src.Client
	dst := &database.Backups{Client: c, Name: o.Into, Plan: src.Plan, Config: database.BackupConfig(o.Into)}
	prog := o.IO.NewProgress(o.Now)
	defer prog.Stop()

	// In a bucket both databases read the same repository; a backup volume is the database's
	// own, so the source's part of it is copied over first, and dropped again at the end.
	local := src.Repo.Type != "s3"
	if local {
		prog.Start("Copying the backups of %s to %s", src.Name, o.Into)
		if err := copyStanza(ctx, c, src.Name, o.Into); err != nil {
			return err
		}
		prog.Done("Backups of %s copied to the backup volume of %s", src.Name, o.Into)
	}

	prog.Start("Restoring into %s", o.Into)
	if _, err := dst.Run(ctx, src.Config.RestoreInPod(restore)); err != nil {
		return err
	}
	if local {
		// The new database's own stanza (if any) describes data that is about to go: a new
		// one is created for the restored data once it runs.
		if _, err := dst.Run(ctx, bk.DropStanzaInPod(o.Into)); err != nil {
			return err
		}
	}
	if err := swap(ctx, dst, o.Now().UTC().Format("20060102150405")); err != nil {
		return err
	}
	if err := restartAndWait(ctx, dst, o.Timeout); err != nil {
		return fmt.Errorf("the restored data did not start: %w", err)
	}
	prog.Done("Restored data of %s recovered in %s", src.Name, o.Into)

	prog.Start("Giving %s its own roles and credentials", o.Into)
	if _, err := database.ResetCredentials(ctx, c, src.Name, o.Into); err != nil {
		return err
	}
	steps := [][]string{bk.CleanupInPod(), dst.Config.InPod(bk.StanzaCreate())}
	if local {
		steps = append([][]string{bk.DropStanzaInPod(src.Name)}, steps...)
	}
	for _, argv := range steps {
		if _, err := dst.Run(ctx, argv); err != nil {
			return err
		}
	}
	creds, err := database.ReadCredentials(ctx, c.Clientset, c.Namespace, o.Into)
	if err != nil {
		return err
	}
	if err := database.VerifyLogin(ctx, o.OpenTunnel, o.CheckLogin, c, o.Into, creds); err != nil {
		return err
	}
	prog.Done("Login as %s to %s works (through a port-forward)", creds.Username, o.Into)
	return nil
}

// copyStanza streams the source's part of its repository (backups and archived WAL) from its
// pod to the new database's backup volume: two execs joined by a pipe.
func copyStanza(ctx context.Context, c *kube.Client, src, dst string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	packErr := make(chan error, 1)
	go func() {
		var stderr bytes.Buffer
		err := database.Exec(ctx, c, src, bk.PackStanzaInPod(src), nil, pw, &stderr)
		if err != nil {
			err = &kube.ExecError{Command: "tar (reading the backups of " + src + ")", Pod: database.PodName(src), Err: err, Stderr: stderr.String()}
			// The receiving side may wait for more input that never comes: stop it.
			cancel()
		}
		_ = pw.CloseWithError(err)
		packErr <- err
	}()
	var stderr bytes.Buffer
	err := database.Exec(ctx, c, dst, bk.UnpackStanzaInPod(src), pr, io.Discard, &stderr)
	_ = pr.Close()
	perr := <-packErr
	switch {
	case perr != nil && (err == nil || ctx.Err() != nil):
		return perr
	case err != nil:
		return &kube.ExecError{Command: "tar (writing the backups of " + src + ")", Pod: database.PodName(dst), Err: err, Stderr: stderr.String()}
	}
	return nil
}
