package database

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

func TestNextSize(t *testing.T) {
	for _, tc := range []struct {
		cur, max, want string
		ok             bool
	}{
		{"1Gi", "3Gi", "2Gi", true},
		{"2Gi", "3Gi", "3Gi", true},
		{"3Gi", "3Gi", "3Gi", false},
		{"10Gi", "100Gi", "15Gi", true},
		{"11Gi", "100Gi", "17Gi", true},
		{"90Gi", "100Gi", "100Gi", true},
		{"400Gi", "500Gi", "500Gi", true},
	} {
		got, ok := NextSize(resource.MustParse(tc.cur), resource.MustParse(tc.max))
		if got.String() != tc.want || ok != tc.ok {
			t.Errorf("NextSize(%s, %s) = %s, %v; want %s, %v", tc.cur, tc.max, got.String(), ok, tc.want, tc.ok)
		}
	}
}

func TestValidateAutogrow(t *testing.T) {
	cur := resource.MustParse("2Gi")
	for _, tc := range []struct {
		max   string
		at    int
		every time.Duration
		bad   bool
	}{
		{"10Gi", 80, 5 * time.Minute, false},
		{"2Gi", 80, 5 * time.Minute, true},
		{"", 80, 5 * time.Minute, true},
		{"600Gi", 80, 5 * time.Minute, true},
		{"10Gi", 99, 5 * time.Minute, true},
		{"10Gi", 80, 30 * time.Second, true},
		{"10Gi", 80, 90 * time.Second, true},
		{"10Gi", 80, 2 * time.Hour, true},
	} {
		_, err := ValidateAutogrow(cur, tc.max, tc.at, tc.every)
		if _, input := err.(*InputError); (err != nil) != tc.bad || (err != nil && !input) {
			t.Errorf("ValidateAutogrow(%s, %d, %s) = %v", tc.max, tc.at, tc.every, err)
		}
	}
}

func TestEveryCron(t *testing.T) {
	for _, tc := range []struct {
		every      time.Duration
		cron, back string
	}{
		{time.Minute, "*/1 * * * *", "1m"},
		{5 * time.Minute, "*/5 * * * *", "5m"},
		{time.Hour, "0 * * * *", "60m"},
	} {
		if got := everyCron(tc.every); got != tc.cron || cronEvery(got) != tc.back {
			t.Errorf("everyCron(%s) = %s, read back as %s", tc.every, got, cronEvery(got))
		}
	}
}
