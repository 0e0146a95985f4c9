package database

import (
	"context"
	"io"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/stackblaze/stackblaze/internal/kube"
)

// Disk use thresholds: past WarnPercent status warns; at FullPercent (or with less than
// FullFreeBytes free) the volume is full: PostgreSQL refuses writes or stops.
const (
	WarnPercent   = 80
	FullPercent   = 99
	FullFreeBytes = 16 << 20
)

// VolumeUsage is one volume's use, as the filesystem in the database's container says.
type VolumeUsage struct {
	// Volume is "data" or "backup".
	Volume      string  `json:"volume"`
	SizeBytes   int64   `json:"sizeBytes"`
	UsedBytes   int64   `json:"usedBytes"`
	FreeBytes   int64   `json:"freeBytes"`
	UsedPercent float64 `json:"usedPercent"`
}

// Full tells whether the volume has no room left for PostgreSQL to write.
func (v VolumeUsage) Full() bool {
	return v.UsedPercent >= FullPercent || v.FreeBytes < FullFreeBytes
}

// DiskUsage is a database's disk use: its volumes and its WAL (on the data volume).
type DiskUsage struct {
	Volumes  []VolumeUsage `json:"volumes"`
	WALBytes int64         `json:"walBytes"`
	// Full is set when the data volume is full, or the server stopped for want of space.
	Full bool `json:"full"`
}

// ReadDiskUsage reads the database's disk use in its running container (pods/exec).
func ReadDiskUsage(ctx context.Context, c *kube.Client, name string) (*DiskUsage, error) {
	script := `df -B1 --output=target,size,used,avail "$0" 2>/dev/null | tail -n +2; ` +
		`if [ -d "$1" ]; then df -B1 --output=target,size,used,avail "$1" | tail -n +2; fi; ` +
		`echo wal $(du -sb "$PGDATA/pg_wal" 2>/dev/null | cut -f1)`
	out, err := ExecOutput(ctx, c, name, []string{"sh", "-c", script, DataMountPath, BackupMountPath})
	if err != nil {
		return nil, err
	}
	return parseDiskUsage(out), nil
}

func parseDiskUsage(out string) *DiskUsage {
	d := &DiskUsage{Volumes: []VolumeUsage{}}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "wal":
			d.WALBytes, _ = strconv.ParseInt(f[1], 10, 64)
		case len(f) == 4:
			v := VolumeUsage{Volume: "data"}
			if f[0] == BackupMountPath {
				v.Volume = "backup"
			}
			v.SizeBytes, _ = strconv.ParseInt(f[1], 10, 64)
			v.UsedBytes, _ = strconv.ParseInt(f[2], 10, 64)
			v.FreeBytes, _ = strconv.ParseInt(f[3], 10, 64)
			if v.SizeBytes > 0 {
				v.UsedPercent = float64(v.UsedBytes) * 100 / float64(v.SizeBytes)
			}
			d.Volumes = append(d.Volumes, v)
			d.Full = d.Full || v.Volume == "data" && v.Full()
		}
	}
	return d
}

// StoppedForSpace tells whether the database's container stopped (or cannot start) because its
// disk is full: the end of its last log says "No space left on device".
func StoppedForSpace(ctx context.Context, cs kubernetes.Interface, ns, name string) bool {
	tail := int64(30)
	for _, previous := range []bool{false, true} {
		rc, err := cs.CoreV1().Pods(ns).GetLogs(PodName(name), &corev1.PodLogOptions{Container: ContainerName, Previous: previous, TailLines: &tail}).Stream(ctx)
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(rc, 1<<20))
		rc.Close()
		if strings.Contains(string(b), "No space left on device") {
			return true
		}
	}
	return false
}
