package cmdutil

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stackblaze/stackblaze/internal/output"
)

func testStreams(in string, tty bool, env map[string]string) (*output.IOStreams, *bytes.Buffer) {
	errOut := &bytes.Buffer{}
	ios := output.Test(strings.NewReader(in), &bytes.Buffer{}, errOut)
	ios.InTTY, ios.OutTTY, ios.ErrTTY = tty, tty, tty
	ios.Getenv = func(k string) string { return env[k] }
	return ios, errOut
}

func TestConfirmationRefuse(t *testing.T) {
	t.Parallel()
	c := Confirmation{Action: "rotate the credentials of mydb", Effect: "it restarts the attached workloads", Hint: "add --yes to rotate them"}
	ci := map[string]string{"CI": "true"}
	for _, tc := range []struct {
		name string
		tty  bool
		env  map[string]string
		yes  bool
		want string
	}{
		{"terminal", true, nil, false, ""},
		{"yes without a terminal", false, nil, true, ""},
		{"yes in CI", true, ci, true, ""},
		{"no terminal", false, nil, false, "refusing to rotate the credentials of mydb without confirmation (it restarts the attached workloads): stdin is not a terminal"},
		{"CI on a terminal", true, ci, false, "refusing to rotate the credentials of mydb without confirmation (it restarts the attached workloads): CI is set"},
	} {
		ios, _ := testStreams("", tc.tty, tc.env)
		err := c.Refuse(ios, tc.yes)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || err.Error() != tc.want || ExitCode(err) != ExitUsage || Hint(err) != c.Hint {
			t.Errorf("%s: %v (exit %d, hint %q), want %q exit %d", tc.name, err, ExitCode(err), Hint(err), tc.want, ExitUsage)
		}
	}

	ios, _ := testStreams("", false, nil)
	err := Confirmation{Action: "delete database mydb"}.Refuse(ios, false)
	if want := "refusing to delete database mydb without confirmation: stdin is not a terminal"; err == nil || err.Error() != want {
		t.Errorf("no effect: %v, want %q", err, want)
	}
	// A terminal on stdin, but stderr (where the question goes) redirected.
	ios, _ = testStreams("", true, nil)
	ios.ErrTTY = false
	err = Confirmation{Action: "delete database mydb"}.Refuse(ios, false)
	if want := "refusing to delete database mydb without confirmation: stderr is not a terminal, so the question would not be seen"; err == nil || err.Error() != want {
		t.Errorf("stderr redirected: %v, want %q", err, want)
	}
}

func TestConfirmationAsk(t *testing.T) {
	t.Parallel()
	c := Confirmation{Declined: "not deleted: no confirmation"}
	for _, tc := range []struct {
		name, in string
		yes      bool
		ok       bool
		prompt   bool
	}{
		{"yes", "y\n", false, true, true},
		{"YES", "YES\n", false, true, true},
		{"no", "n\n", false, false, true},
		{"empty line", "\n", false, false, true},
		{"input ends before an answer", "", false, false, true},
		{"--yes asks nothing", "", true, true, false},
	} {
		ios, errOut := testStreams(tc.in, true, nil)
		err := c.Ask(ios, tc.yes, "Delete?")
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && (err == nil || err.Error() != c.Declined || ExitCode(err) != ExitError) {
			t.Errorf("%s: %v (exit %d), want %q exit %d", tc.name, err, ExitCode(err), c.Declined, ExitError)
		}
		if asked := strings.Contains(errOut.String(), "Delete? [y/N]"); asked != tc.prompt {
			t.Errorf("%s: prompt %q", tc.name, errOut)
		}
	}
}

func TestAssumeYes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg  *Config
		flag bool
		want bool
	}{
		{nil, false, false},
		{nil, true, true},
		{&Config{}, false, false},
		{&Config{Yes: true}, false, true},
		{&Config{}, true, true},
	} {
		if got := AssumeYes(&Factory{Config: tc.cfg}, tc.flag); got != tc.want {
			t.Errorf("config %+v, flag %v: %v", tc.cfg, tc.flag, got)
		}
	}
}
