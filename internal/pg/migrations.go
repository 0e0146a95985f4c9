package pg

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Migration is one migration as a migration tool recorded it.
type Migration struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// MigrationState is what a recognised migration tool's table says has been applied.
type MigrationState struct {
	Tool  string `json:"tool"`
	Table string `json:"table"`
	// Applied lists the applied migrations, oldest first. Tools that keep only the current version
	// (golang-migrate, Alembic) report that version alone.
	Applied []Migration `json:"applied"`
	// VersionOnly says the tool records a current version, not a history.
	VersionOnly bool `json:"versionOnly,omitempty"`
}

type migrationTable struct {
	tool, table string
	// columns that must exist for the table to be this tool's
	columns []string
	// absent columns tell tools that share a table name apart
	absent      []string
	query       string
	versionOnly bool
}

// The tables are tried in order; the first one present wins. schema_migrations is shared by
// golang-migrate (version bigint, dirty), dbmate and Rails (version text).
var migrationTables = []migrationTable{
	{tool: "prisma", table: "_prisma_migrations", columns: []string{"migration_name", "finished_at"},
		query: `SELECT migration_name, migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL AND rolled_back_at IS NULL ORDER BY finished_at, migration_name`},
	{tool: "django", table: "django_migrations", columns: []string{"app", "name"},
		query: `SELECT app || '.' || name, name FROM django_migrations ORDER BY id`},
	{tool: "goose", table: "goose_db_version", columns: []string{"version_id", "is_applied"},
		query: `SELECT version_id::text, version_id::text FROM (
			SELECT DISTINCT ON (version_id) version_id, is_applied, id FROM goose_db_version ORDER BY version_id, id DESC) v
			WHERE is_applied AND version_id > 0 ORDER BY version_id`},
	{tool: "golang-migrate", table: "schema_migrations", columns: []string{"version", "dirty"},
		query: `SELECT version::text, CASE WHEN dirty THEN 'dirty' ELSE '' END FROM schema_migrations`, versionOnly: true},
	{tool: "dbmate/rails", table: "schema_migrations", columns: []string{"version"}, absent: []string{"dirty"},
		query: `SELECT version::text, version::text FROM schema_migrations ORDER BY version`},
	{tool: "alembic", table: "alembic_version", columns: []string{"version_num"},
		query: `SELECT version_num, version_num FROM alembic_version ORDER BY version_num`, versionOnly: true},
	{tool: "knex", table: "knex_migrations", columns: []string{"name", "batch"},
		query: `SELECT name, name FROM knex_migrations ORDER BY id`},
	{tool: "node-pg-migrate", table: "pgmigrations", columns: []string{"name", "run_on"},
		query: `SELECT name, name FROM pgmigrations ORDER BY id`},
	{tool: "flyway", table: "flyway_schema_history", columns: []string{"installed_rank", "success"},
		query: `SELECT coalesce(version, script), description FROM flyway_schema_history WHERE success AND version IS NOT NULL ORDER BY installed_rank`},
}

// ReadMigrations returns the state of the first migration table it recognises in the
// connection's search path, or nil when there is none. Its errors never carry credentials.
func ReadMigrations(ctx context.Context, conn *pgx.Conn) (*MigrationState, error) {
	rows, err := conn.Query(ctx, `SELECT c.relname, a.attname
		FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false))`)
	if err != nil {
		return nil, fmt.Errorf("look for migration tables: %w", err)
	}
	columns := map[string]map[string]bool{}
	for rows.Next() {
		var table, column string
		if err := rows.Scan(&table, &column); err != nil {
			return nil, err
		}
		if columns[table] == nil {
			columns[table] = map[string]bool{}
		}
		columns[table][column] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look for migration tables: %w", err)
	}
	for _, mt := range migrationTables {
		if !mt.matches(columns[mt.table]) {
			continue
		}
		rows, err := conn.Query(ctx, mt.query)
		if err != nil {
			return nil, fmt.Errorf("read %s's table %s: %w", mt.tool, mt.table, err)
		}
		applied, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Migration, error) {
			var m Migration
			err := r.Scan(&m.ID, &m.Name)
			return m, err
		})
		if err != nil {
			return nil, fmt.Errorf("read %s's table %s: %w", mt.tool, mt.table, err)
		}
		return &MigrationState{Tool: mt.tool, Table: mt.table, Applied: applied, VersionOnly: mt.versionOnly}, nil
	}
	return nil, nil
}

func (mt migrationTable) matches(cols map[string]bool) bool {
	if cols == nil {
		return false
	}
	for _, c := range mt.columns {
		if !cols[c] {
			return false
		}
	}
	for _, c := range mt.absent {
		if cols[c] {
			return false
		}
	}
	return true
}

// MigrationSummary compares the states before and after a run.
type MigrationSummary struct {
	Tool        string      `json:"tool"`
	Found       int         `json:"found"`
	AppliedNow  []Migration `json:"appliedByThisRun"`
	VersionOnly bool        `json:"versionOnly,omitempty"`
	Version     string      `json:"version,omitempty"`
	Previous    string      `json:"previousVersion,omitempty"`
}

// Summarize says what a run changed. before may be nil (no table yet: a first run).
func Summarize(before, after *MigrationState) *MigrationSummary {
	if after == nil {
		return nil
	}
	s := &MigrationSummary{Tool: after.Tool, Found: len(after.Applied), VersionOnly: after.VersionOnly, AppliedNow: []Migration{}}
	if after.VersionOnly {
		s.Version = joinIDs(after.Applied)
		if before != nil && before.Tool == after.Tool {
			s.Previous = joinIDs(before.Applied)
		}
		if s.Version != s.Previous {
			s.AppliedNow = append(s.AppliedNow, after.Applied...)
		}
		return s
	}
	seen := map[string]bool{}
	if before != nil && before.Tool == after.Tool {
		for _, m := range before.Applied {
			seen[m.ID] = true
		}
	}
	for _, m := range after.Applied {
		if !seen[m.ID] {
			s.AppliedNow = append(s.AppliedNow, m)
		}
	}
	return s
}

func joinIDs(ms []Migration) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}
