package database

import (
	"context"
	"fmt"
	"strings"
	"time"

	bk "github.com/stackblaze/stackblaze/internal/backup"
	"github.com/stackblaze/stackblaze/internal/kube"
)

// Backups are a database's backups: its pgBackRest repository, reached by running pgbackrest in
// the database's pod (pods/exec).
type Backups struct {
	Client *kube.Client
	Name   string
	Plan   Plan
	Config bk.Config
	// Version and Storage are the database's, as create recorded them.
	Version, Storage string
	// Repo is where its repository is.
	Repo BackupRepo
	// Upgrade is its last major version upgrade (nil when it has none).
	Upgrade *UpgradeRecord
}

// OpenBackups checks that the database exists and reads its plan.
func OpenBackups(ctx context.Context, c *kube.Client, name string) (*Backups, error) {
	sts, err := GetDatabase(ctx, c.Clientset, c.Namespace, name)
	if err != nil {
		return nil, err
	}
	plan, _ := LookupPlan(sts.Annotations[AnnotationPlan])
	up, err := UpgradeOf(sts)
	if err != nil {
		return nil, err
	}
	return &Backups{Client: c, Name: name, Plan: plan, Config: BackupConfig(name),
		Version: sts.Annotations[AnnotationVersion], Storage: sts.Annotations[AnnotationStorage], Repo: BackupRepoOf(sts), Upgrade: up}, nil
}

// Run runs a pgbackrest command in the database pod and returns its stdout.
func (t *Backups) Run(ctx context.Context, argv []string) (string, error) {
	out, err := ExecOutput(ctx, t.Client, t.Name, argv)
	if err != nil {
		return out, fmt.Errorf("database %s: %w", t.Name, err)
	}
	return out, nil
}

// Info reads the repository, and the server's last archived time for the window.
func (t *Backups) Info(ctx context.Context) (*bk.Repository, time.Time, error) {
	out, err := t.Run(ctx, t.Config.InPod(bk.InfoCmd()))
	if err != nil {
		return nil, time.Time{}, err
	}
	repo, err := bk.ParseInfo([]byte(out), t.Name)
	if err != nil {
		return nil, time.Time{}, err
	}
	var last time.Time
	if s, err := t.Run(ctx, bk.LastArchived()); err == nil && strings.TrimSpace(s) != "" {
		last, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
	}
	return repo, last, nil
}

// Take runs a backup of type typ (creating the stanza first when needed) and returns it.
func (t *Backups) Take(ctx context.Context, typ string) (bk.Backup, error) {
	if _, err := t.Run(ctx, t.Config.InPod(bk.StanzaCreate())); err != nil {
		return bk.Backup{}, err
	}
	before, _, err := t.Info(ctx)
	if err != nil {
		return bk.Backup{}, err
	}
	if _, err := t.Run(ctx, t.Config.InPod(bk.BackupCmd(typ))); err != nil {
		return bk.Backup{}, err
	}
	after, _, err := t.Info(ctx)
	if err != nil {
		return bk.Backup{}, err
	}
	for i := len(after.Backups) - 1; i >= 0; i-- {
		if _, old := before.Find(after.Backups[i].ID); !old {
			return after.Backups[i], nil
		}
	}
	return bk.Backup{}, fmt.Errorf("database %s: pgbackrest finished but lists no new backup", t.Name)
}

// BackupList is a database's backups and its recoverable window.
type BackupList struct {
	Database string      `json:"database"`
	Plan     string      `json:"plan"`
	PITR     bool        `json:"pitr"`
	Backups  []bk.Backup `json:"backups"`
	// Window is the recoverable window of point-in-time recovery (null without PITR or backups).
	Window *bk.Window `json:"recoverableWindow"`
	// Version is the major the database runs; Upgrade its last major version upgrade.
	Version string         `json:"postgresVersion"`
	Upgrade *UpgradeRecord `json:"upgrade,omitempty"`
}

// List reads the backups and the recoverable window.
func (t *Backups) List(ctx context.Context) (*BackupList, *bk.Repository, error) {
	repo, last, err := t.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	res := &BackupList{Database: t.Name, Plan: t.Plan.Name, PITR: t.Plan.PITR, Backups: repo.Backups, Version: t.Version, Upgrade: t.Upgrade}
	if w, ok := repo.Window(last); ok && t.Plan.PITR {
		res.Window = &w
	}
	return res, repo, nil
}
