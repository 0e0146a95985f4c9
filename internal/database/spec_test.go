package database

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", MaxNameLength)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"mydb", true},
		{"my-db-2", true},
		{"a", true},
		{long, true},
		{long + "a", false},
		{"", false},
		{"MyDB", false},
		{"my_db", false},
		{"-mydb", false},
		{"mydb-", false},
		{"1db", false}, // Services need a letter first
		{"my.db", false},
	} {
		err := ValidateName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		var ie *InputError
		if err != nil && !errors.As(err, &ie) {
			t.Errorf("ValidateName(%q) error is %T, want *InputError", tc.name, err)
		}
	}
}

// The longest name must keep every derived name valid.
func TestMaxNameKeepsDerivedNamesValid(t *testing.T) {
	t.Parallel()
	n := strings.Repeat("a", MaxNameLength)
	for _, d := range []string{HeadlessServiceName(n), CredentialsSecretName(n), SuperuserSecretName(n), n + "-" + strings.Repeat("f", 10), RoleName(n)} {
		if len(d) > 63 {
			t.Errorf("derived name %q is %d characters, over 63", d, len(d))
		}
	}
}

func TestParseStorage(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, want, note string
		ok             bool
	}{
		{"10Gi", "10Gi", "", true},
		{"10G", "10Gi", "storage: 10G taken as 10Gi", true},
		{"10GB", "10Gi", "storage: 10GB taken as 10Gi", true},
		{"1Gi", "1Gi", "", true},
		{"500Gi", "500Gi", "", true},
		{"501Gi", "", "", false},
		{"0Gi", "", "", false},
		{"512Mi", "", "", false},
		{"1Ti", "", "", false},
		{"10", "", "", false},
		{"1.5Gi", "", "", false},
		{"lots", "", "", false},
	} {
		q, note, err := ParseStorage(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("ParseStorage(%q) error %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if !tc.ok {
			if !strings.Contains(err.Error(), "1Gi to 500Gi") {
				t.Errorf("ParseStorage(%q) error %q does not name the allowed range", tc.in, err)
			}
			continue
		}
		if q.String() != tc.want || note != tc.note {
			t.Errorf("ParseStorage(%q) = %s, %q; want %s, %q", tc.in, q.String(), note, tc.want, tc.note)
		}
	}
}

func TestParseVersionAndPlan(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"15", "16", "17", "18"} {
		if _, err := ParseVersion(v); err != nil {
			t.Errorf("ParseVersion(%s): %v", v, err)
		}
	}
	for _, v := range []string{"14", "19", "16.1", "latest", ""} {
		_, err := ParseVersion(v)
		if err == nil || !strings.Contains(err.Error(), "15, 16, 17 or 18") {
			t.Errorf("ParseVersion(%q) = %v, want an error naming 15, 16, 17 or 18", v, err)
		}
	}
	for _, p := range []string{"hobby", "standard", "pro"} {
		if _, err := ValidatePlan(p); err != nil {
			t.Errorf("ValidatePlan(%s): %v", p, err)
		}
	}
	_, err := ValidatePlan("enterprise")
	if err == nil || !strings.Contains(err.Error(), "hobby, standard, pro") {
		t.Errorf("ValidatePlan(enterprise) = %v, want the plan names", err)
	}
}

func TestHost(t *testing.T) {
	t.Parallel()
	if got := HostFor("mydb", "shop", ""); got != "mydb.shop.svc.cluster.local" {
		t.Errorf("host = %s", got)
	}
	if got := HostFor("mydb", "shop", "postgres.internal."); got != "mydb.postgres.internal" {
		t.Errorf("host with zone = %s", got)
	}
}
