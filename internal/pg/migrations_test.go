package pg

import (
	"reflect"
	"testing"
)

func TestSummarize(t *testing.T) {
	m := func(ids ...string) []Migration {
		out := []Migration{}
		for _, id := range ids {
			out = append(out, Migration{ID: id, Name: id})
		}
		return out
	}
	tests := []struct {
		name          string
		before, after *MigrationState
		found         int
		applied       []Migration
	}{
		{"no table after the run", nil, nil, 0, nil},
		{"first run creates the table", nil, &MigrationState{Tool: "goose", Applied: m("1", "2")}, 2, m("1", "2")},
		{"some new", &MigrationState{Tool: "goose", Applied: m("1")}, &MigrationState{Tool: "goose", Applied: m("1", "2", "3")}, 3, m("2", "3")},
		{"nothing new", &MigrationState{Tool: "knex", Applied: m("a")}, &MigrationState{Tool: "knex", Applied: m("a")}, 1, m()},
		{"version-only moved", &MigrationState{Tool: "alembic", VersionOnly: true, Applied: m("abc")},
			&MigrationState{Tool: "alembic", VersionOnly: true, Applied: m("def")}, 1, m("def")},
		{"version-only unchanged", &MigrationState{Tool: "alembic", VersionOnly: true, Applied: m("abc")},
			&MigrationState{Tool: "alembic", VersionOnly: true, Applied: m("abc")}, 1, m()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Summarize(tt.before, tt.after)
			if tt.after == nil {
				if s != nil {
					t.Fatalf("want no summary, got %+v", s)
				}
				return
			}
			if s.Found != tt.found || !reflect.DeepEqual(s.AppliedNow, tt.applied) {
				t.Fatalf("got found=%d applied=%v, want found=%d applied=%v", s.Found, s.AppliedNow, tt.found, tt.applied)
			}
		})
	}
}

func TestMigrationTableMatch(t *testing.T) {
	var golangMigrate, dbmate migrationTable
	for _, mt := range migrationTables {
		switch mt.tool {
		case "golang-migrate":
			golangMigrate = mt
		case "dbmate/rails":
			dbmate = mt
		}
	}
	withDirty := map[string]bool{"version": true, "dirty": true}
	plain := map[string]bool{"version": true}
	if !golangMigrate.matches(withDirty) || golangMigrate.matches(plain) {
		t.Fatal("golang-migrate's schema_migrations is the one with a dirty column")
	}
	if dbmate.matches(withDirty) || !dbmate.matches(plain) {
		t.Fatal("dbmate's and Rails' schema_migrations has no dirty column")
	}
}
