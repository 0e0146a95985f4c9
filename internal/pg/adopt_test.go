package pg

import (
	"strings"
	"testing"
)

func TestAdoptionSQL(t *testing.T) {
	v, err := ScramVerifier("new-app-password")
	if err != nil {
		t.Fatal(err)
	}
	sv, err := ScramVerifier("new-superuser-password")
	if err != nil {
		t.Fatal(err)
	}
	a := Adoption{FromOwner: "shop", FromAlt: "shop_b", FromDatabase: "shop", Owner: "shop_copy", Alt: "shop_copy_b", Database: "shop_copy",
		Login: "shop_copy", LoginVerifier: v, Superuser: "postgres", SuperuserVerifier: sv}
	sql, err := a.SQL()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`ALTER DATABASE "shop" RENAME TO "shop_copy";`,
		`ALTER ROLE "shop" RENAME TO "shop_copy";`,
		`ALTER ROLE "shop_b" RENAME TO "shop_copy_b";`,
		`ALTER ROLE "shop_copy_b" SET role = 'shop_copy';`,
		`ALTER ROLE "shop_copy" PASSWORD '` + v + `';`,
		`ALTER ROLE "shop_copy_b" PASSWORD NULL;`,
		`ALTER ROLE "postgres" PASSWORD '` + sv + `';`,
	} {
		if !strings.Contains(sql, want) {
			t.Errorf("missing %s in\n%s", want, sql)
		}
	}
	if !strings.HasPrefix(sql, "BEGIN;\n") || !strings.HasSuffix(sql, "COMMIT;\n\\q\n") {
		t.Errorf("not one transaction ending psql:\n%s", sql)
	}
	if strings.Contains(sql, "new-app-password") || strings.Contains(sql, "new-superuser-password") {
		t.Error("a password in the SQL")
	}

	plain := a
	plain.LoginVerifier = "new-app-password"
	if _, err := plain.SQL(); err == nil {
		t.Error("a plaintext password was accepted")
	}
	other := a
	other.Login = "someone"
	if _, err := other.SQL(); err == nil {
		t.Error("a login role that is neither owner nor alternate was accepted")
	}
}
