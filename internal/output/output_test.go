package output

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestDecorationRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name             string
		tty              bool
		format           string
		noColor          bool
		env              map[string]string
		decorated, color bool
	}{
		{"terminal", true, "text", false, nil, true, true},
		{"pipe", false, "text", false, nil, false, false},
		{"json on a terminal", true, "json", false, nil, false, false},
		{"CI", true, "text", false, map[string]string{"CI": "true"}, false, false},
		{"NO_COLOR", true, "text", false, map[string]string{"NO_COLOR": "1"}, true, false},
		{"--no-color", true, "text", true, nil, true, false},
		{"TERM=dumb", true, "text", false, map[string]string{"TERM": "dumb"}, false, false},
		{"CLICOLOR_FORCE in a pipe", false, "text", false, map[string]string{"CLICOLOR_FORCE": "1"}, false, true},
		{"CLICOLOR_FORCE and NO_COLOR", false, "text", false, map[string]string{"CLICOLOR_FORCE": "1", "NO_COLOR": "1"}, false, false},
	} {
		s := Test(nil, &bytes.Buffer{}, &bytes.Buffer{})
		s.OutTTY, s.ErrTTY, s.InTTY = tc.tty, tc.tty, tc.tty
		s.Getenv = func(k string) string { return tc.env[k] }
		s.Configure(tc.format, tc.noColor)
		if s.Decorated() != tc.decorated || s.ColorEnabled() != tc.color {
			t.Errorf("%s: decorated %v color %v, want %v %v", tc.name, s.Decorated(), s.ColorEnabled(), tc.decorated, tc.color)
		}
	}
}

func TestProgressPlainHasTimestamps(t *testing.T) {
	t.Parallel()
	var errOut bytes.Buffer
	s := Test(nil, &bytes.Buffer{}, &errOut)
	s.OutTTY, s.ErrTTY = true, true
	s.Getenv = func(k string) string { return map[string]string{"CI": "1"}[k] }
	p := s.NewProgress(func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) })
	p.Start("working")
	p.Done("done")
	want := "2026-01-02T03:04:05Z working ...\n2026-01-02T03:04:05Z ✔ done\n"
	if errOut.String() != want {
		t.Errorf("got %q, want %q", errOut.String(), want)
	}
}

func TestConfirm(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]bool{"y\n": true, "YES\n": true, "n\n": false, "\n": false, "": false} {
		var errOut bytes.Buffer
		s := Test(strings.NewReader(in), &bytes.Buffer{}, &errOut)
		got, _ := s.Confirm("Delete?")
		if got != want || !strings.Contains(errOut.String(), "Delete? [y/N]") {
			t.Errorf("Confirm(%q) = %v, prompt %q", in, got, errOut.String())
		}
	}
}

func TestAge(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		5 * time.Second: "5s", 90 * time.Second: "90s", 150 * time.Second: "2m30s", 25 * time.Minute: "25m", 3*time.Hour + 5*time.Minute: "3h5m",
		20 * time.Hour: "20h", 72 * time.Hour: "3d",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%s) = %s, want %s", d, got, want)
		}
	}
}
