package backup

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Backup is one backup set in the repository.
type Backup struct {
	// ID is pgBackRest's label (20260124-101500F), what restore --backup takes.
	ID    string    `json:"id"`
	Type  string    `json:"type"`
	Start time.Time `json:"start"`
	Stop  time.Time `json:"stop"`
	// Size is the database's size when backed up, in bytes; RepoSize is what the backup takes
	// in the repository (compressed, and for diff backups only the changes).
	Size     int64 `json:"sizeBytes"`
	RepoSize int64 `json:"repoSizeBytes"`
	// Error is set when pgBackRest found a checksum error in a page while copying.
	Error bool `json:"error,omitempty"`
	// PostgresVersion is the major version of the backed-up data ("15").
	PostgresVersion string `json:"postgresVersion,omitempty"`
	// Current is set when the backup is of the cluster the stanza now archives (same major and
	// system identifier): the backups of a major before an upgrade are not.
	Current bool `json:"current"`
}

// Window is the range of times a point-in-time restore can reach.
type Window struct {
	Earliest time.Time `json:"earliest"`
	Latest   time.Time `json:"latest"`
}

// Contains reports whether t is inside the window.
func (w Window) Contains(t time.Time) bool {
	return !t.Before(w.Earliest) && !t.After(w.Latest)
}

func (w Window) String() string {
	return w.Earliest.UTC().Format(time.RFC3339) + " to " + w.Latest.UTC().Format(time.RFC3339)
}

// Repository is what `pgbackrest info` says about one stanza.
type Repository struct {
	Stanza  string   `json:"stanza"`
	Status  string   `json:"status"`
	Backups []Backup `json:"backups"`
	// ArchiveMin and ArchiveMax are the oldest and newest archived WAL segments.
	ArchiveMin string `json:"archiveMin,omitempty"`
	ArchiveMax string `json:"archiveMax,omitempty"`
}

type infoJSON struct {
	Name   string `json:"name"`
	Status struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"status"`
	DB []struct {
		ID       int    `json:"id"`
		SystemID int64  `json:"system-id"`
		Version  string `json:"version"`
	} `json:"db"`
	Archive []struct {
		ID  string `json:"id"`
		Min string `json:"min"`
		Max string `json:"max"`
	} `json:"archive"`
	Backup []struct {
		Label    string `json:"label"`
		Type     string `json:"type"`
		Error    bool   `json:"error"`
		Database struct {
			ID int `json:"id"`
		} `json:"database"`
		Timestamp struct {
			Start int64 `json:"start"`
			Stop  int64 `json:"stop"`
		} `json:"timestamp"`
		Info struct {
			Size       int64 `json:"size"`
			Repository struct {
				Size  int64 `json:"size"`
				Delta int64 `json:"delta"`
			} `json:"repository"`
		} `json:"info"`
	} `json:"backup"`
}

// ParseInfo reads the output of `pgbackrest info --output=json` for stanza. A stanza that does
// not exist yet (no backup was ever taken) is an empty repository, not an error.
func ParseInfo(data []byte, stanza string) (*Repository, error) {
	var all []infoJSON
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, fmt.Errorf("read pgbackrest info: %w", err)
	}
	repo := &Repository{Stanza: stanza, Backups: []Backup{}}
	for _, s := range all {
		if s.Name != stanza {
			continue
		}
		repo.Status = s.Status.Message
		for _, a := range s.Archive {
			if a.Min != "" && (repo.ArchiveMin == "" || a.Min < repo.ArchiveMin) {
				repo.ArchiveMin = a.Min
			}
			if a.Max > repo.ArchiveMax {
				repo.ArchiveMax = a.Max
			}
		}
		// The stanza's current cluster is its newest db entry.
		type cluster struct {
			version string
			system  int64
		}
		dbs := map[int]cluster{}
		var current cluster
		maxID := 0
		for _, d := range s.DB {
			dbs[d.ID] = cluster{d.Version, d.SystemID}
			if d.ID >= maxID {
				maxID, current = d.ID, dbs[d.ID]
			}
		}
		for _, b := range s.Backup {
			db := dbs[b.Database.ID]
			repo.Backups = append(repo.Backups, Backup{
				PostgresVersion: db.version,
				Current:         len(s.DB) == 0 || db == current,
				ID:              b.Label,
				Type:            b.Type,
				Start:           time.Unix(b.Timestamp.Start, 0).UTC(),
				Stop:            time.Unix(b.Timestamp.Stop, 0).UTC(),
				Size:            b.Info.Size,
				RepoSize:        b.Info.Repository.Delta,
				Error:           b.Error,
			})
		}
	}
	sort.Slice(repo.Backups, func(i, j int) bool { return repo.Backups[i].Start.Before(repo.Backups[j].Start) })
	return repo, nil
}

// Find returns the backup with the given ID.
func (r *Repository) Find(id string) (Backup, bool) {
	for _, b := range r.Backups {
		if b.ID == id {
			return b, true
		}
	}
	return Backup{}, false
}

// IDs lists the backups' IDs, oldest first.
func (r *Repository) IDs() []string {
	ids := make([]string, len(r.Backups))
	for i, b := range r.Backups {
		ids[i] = b.ID
	}
	return ids
}

// Latest is the newest backup.
func (r *Repository) Latest() (Backup, bool) {
	if len(r.Backups) == 0 {
		return Backup{}, false
	}
	return r.Backups[len(r.Backups)-1], true
}

// Window is the recoverable window: from the end of the oldest backup of the current cluster
// (after a major version upgrade, the new major's first backup; the first consistent
// point that the archive can replay from) to lastArchived, the time PostgreSQL last archived a
// WAL segment (pg_stat_archiver), or the newest backup's end when that is later. ok is false
// when there is no backup.
func (r *Repository) Window(lastArchived time.Time) (w Window, ok bool) {
	if len(r.Backups) == 0 {
		return Window{}, false
	}
	// pgBackRest records stop times in whole seconds and restores to a time only from a backup
	// whose stop second is before the target's: the earliest target is one second later.
	var current []Backup
	for _, b := range r.Backups {
		if b.Current {
			current = append(current, b)
		}
	}
	if len(current) == 0 {
		return Window{}, false
	}
	w.Earliest = current[0].Stop.Add(time.Second)
	for _, b := range current {
		if b.Stop.After(w.Latest) {
			w.Latest = b.Stop
		}
	}
	if lastArchived.After(w.Latest) {
		w.Latest = lastArchived
	}
	return w, true
}

// ParseTarget reads a restore time: RFC3339 (2026-11-24T10:15:00Z) or a duration before now
// (2h, 90m, 1h30m, 2d).
func ParseTarget(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	d := s
	days := 0
	if i := strings.Index(d, "d"); i > 0 {
		if _, err := fmt.Sscanf(d[:i], "%d", &days); err != nil || fmt.Sprint(days) != d[:i] {
			return time.Time{}, targetError(s)
		}
		d = d[i+1:]
	}
	var dur time.Duration
	if d != "" {
		var err error
		if dur, err = time.ParseDuration(d); err != nil {
			return time.Time{}, targetError(s)
		}
	}
	dur += time.Duration(days) * 24 * time.Hour
	if dur <= 0 {
		return time.Time{}, targetError(s)
	}
	return now.Add(-dur).UTC(), nil
}

func targetError(s string) error {
	return fmt.Errorf("time %q is neither RFC3339 (2026-11-24T10:15:00Z) nor a duration before now (2h, 90m, 1d)", s)
}
