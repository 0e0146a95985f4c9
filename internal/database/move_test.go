package database

import (
	"io"
	"strings"
	"testing"
)

func TestParseMachineURL(t *testing.T) {
	l, err := ParseMachineURL("postgres://dev:s3cret@localhost:5432/shop_dev?sslmode=disable")
	if err != nil || l.Password != "s3cret" || strings.Contains(l.URL, "s3cret") || l.URL != "postgres://dev@localhost:5432/shop_dev?sslmode=disable" {
		t.Errorf("ParseMachineURL: %+v %v", l, err)
	}
	for _, bad := range []string{"localhost:5432/shop", "mysql://a:b@h/d", "postgres://", "::"} {
		if _, err := ParseMachineURL(bad); err == nil {
			t.Errorf("%q was taken as a URL", bad)
		} else if _, ok := err.(*InputError); !ok {
			t.Errorf("%q: %T", bad, err)
		}
	}
	if _, err := ParseMachineURL("mysql://dev:s3cret@h/d"); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the refusal shows the password: %v", err)
	}
}

// An older server's psql gets a newer pg_dump's plain dump without the settings it does not
// know; everything else passes as it is, long lines included.
func TestNewerSettingsFilter(t *testing.T) {
	long := strings.Repeat("SET transaction_timeout = x", 100000)
	in := "SET statement_timeout = 0;\nSET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\n" + long + "\nCOPY t (a) FROM stdin;\n1\n\\.\n"
	out, err := io.ReadAll(newerSettingsFilter(strings.NewReader(in)))
	if err != nil {
		t.Fatal(err)
	}
	want := "SET statement_timeout = 0;\nSET client_encoding = 'UTF8';\n" + long + "\nCOPY t (a) FROM stdin;\n1\n\\.\n"
	if string(out) != want {
		t.Errorf("filtered: %d bytes, want %d", len(out), len(want))
	}
}
