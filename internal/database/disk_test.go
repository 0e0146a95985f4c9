package database

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
)

func TestParseDiskUsage(t *testing.T) {
	out := DataMountPath + " 1006632960 805306368 201326592\n" + BackupMountPath + " 2080374784 104857600 1975517184\nwal 67108864\n"
	d := parseDiskUsage(out)
	if len(d.Volumes) != 2 || d.Volumes[0].Volume != "data" || d.Volumes[1].Volume != "backup" || d.WALBytes != 64<<20 || d.Full {
		t.Fatalf("%+v", d)
	}
	if p := d.Volumes[0].UsedPercent; p < 79.9 || p > 80.1 {
		t.Errorf("data used %.2f%%, want 80%%", p)
	}
	full := parseDiskUsage(DataMountPath + " 1006632960 1000000000 6632960\nwal 0\n")
	if !full.Full {
		t.Errorf("a data volume with 6 MB free is not full: %+v", full)
	}
	backupFull := parseDiskUsage(DataMountPath + " 1006632960 100000000 906632960\n" + BackupMountPath + " 2080374784 2080374784 0\n")
	if backupFull.Full {
		t.Error("a full backup volume is not a full data volume")
	}
}

func TestValidateResize(t *testing.T) {
	cur := resource.MustParse("2Gi")
	if q, err := ValidateResize(cur, "4Gi"); err != nil || q.String() != "4Gi" {
		t.Errorf("4Gi: %v %v", q, err)
	}
	for in, want := range map[string]string{"1Gi": "volumes only grow", "600Gi": "out of range", "lots": "not a size"} {
		if _, err := ValidateResize(cur, in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", in, err, want)
		}
	}
}
