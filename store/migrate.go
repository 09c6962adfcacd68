package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"

	"github.com/onboard-dev/onboard/internal/filelock"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// columnTypes fills the type placeholders of the migration templates, so one
// set of SQL files serves both databases. Postgres guards what only Postgres
// has ({{if .Postgres}}…{{end}}), such as the trigram indexes of customer
// search.
type columnTypes struct {
	UUID, Bytes, Time, Bool string
	Postgres                bool
}

var typesByDialect = map[Dialect]columnTypes{
	Postgres: {UUID: "uuid", Bytes: "bytea", Time: "timestamptz", Bool: "boolean", Postgres: true},
	SQLite:   {UUID: "TEXT", Bytes: "BLOB", Time: "TIMESTAMP", Bool: "BOOLEAN"},
}

// migrationLockKey is the Postgres advisory lock that serialises concurrent
// `onboard migrate` runs (two release phases starting at once).
const migrationLockKey = 0x6f6e626f617264 // "onboard"

// ErrNotMigrated is what CheckMigrated wraps when the database lacks
// migrations this binary ships.
var ErrNotMigrated = errors.New("database not migrated")

// PendingMigrations names the embedded migrations the database has not
// applied, oldest first (as 20261123000003_import_dry_runs): every one on a
// database never migrated.
func PendingMigrations(ctx context.Context, db *bun.DB) ([]string, error) {
	q := "SELECT to_regclass('bun_migrations') IS NOT NULL"
	if DialectOfDB(db) == SQLite {
		q = "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'bun_migrations')"
	}
	var tracked bool
	if err := db.QueryRowContext(ctx, q).Scan(&tracked); err != nil {
		return nil, fmt.Errorf("check migrations: %w", err)
	}
	applied := map[string]bool{}
	if tracked {
		var names []string
		if err := db.NewSelect().TableExpr("bun_migrations").Column("name").Scan(ctx, &names); err != nil {
			return nil, fmt.Errorf("check migrations: %w", err)
		}
		for _, n := range names {
			applied[n] = true
		}
	}
	var pending []string
	for _, label := range upMigrations() {
		if id, _, _ := strings.Cut(label, "_"); !applied[id] {
			pending = append(pending, label)
		}
	}
	return pending, nil
}

// upMigrations names the embedded up migrations without their suffixes.
func upMigrations() []string {
	var labels []string
	for _, file := range MigrationNames() {
		if label, ok := strings.CutSuffix(file, ".up.sql"); ok {
			labels = append(labels, strings.TrimSuffix(label, ".tx"))
		}
	}
	return labels
}

// CheckMigrated returns nil when every embedded migration is applied, and
// otherwise an error wrapping ErrNotMigrated that says what to run.
func CheckMigrated(ctx context.Context, db *bun.DB) error {
	pending, err := PendingMigrations(ctx, db)
	switch {
	case err != nil:
		return err
	case len(pending) == 0:
		return nil
	case len(pending) == len(upMigrations()):
		return fmt.Errorf("%w: run onboard migrate", ErrNotMigrated)
	}
	return fmt.Errorf("%w: %d pending (%s): run onboard migrate", ErrNotMigrated, len(pending), strings.Join(pending, ", "))
}

// MigrationNames lists the migrations onboard ships, oldest first.
func MigrationNames() []string {
	entries, _ := fs.ReadDir(migrationFiles, "migrations")
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// Migrate applies every migration not applied yet. It is idempotent and safe
// to run from several processes at once: the whole run holds a lock (on
// Postgres an advisory lock, on SQLite a lock file beside the database), so
// a second process waits and then finds nothing to do.
func Migrate(ctx context.Context, db *bun.DB) ([]string, error) {
	d := DialectOfDB(db)
	switch d {
	case SQLite:
		unlock, err := lockSQLiteMigrations(ctx, db)
		if err != nil {
			return nil, err
		}
		defer unlock()
	case Postgres:
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock(?)", migrationLockKey); err != nil {
			return nil, fmt.Errorf("migrate: take lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(?)", migrationLockKey) //nolint:errcheck // the lock also ends with the session
	}

	return runMigrations(ctx, db, d)
}

func runMigrations(ctx context.Context, db *bun.DB, d Dialect) ([]string, error) {
	files, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	migrations := migrate.NewMigrations()
	if err := migrations.Discover(files); err != nil {
		return nil, fmt.Errorf("migrate: discover: %w", err)
	}
	m := migrate.NewMigrator(db, migrations,
		migrate.WithMarkAppliedOnSuccess(true),
		migrate.WithTemplateData(typesByDialect[d]),
	)
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("migrate: init: %w", err)
	}
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	var applied []string
	for _, mg := range group.Migrations {
		applied = append(applied, mg.Name)
	}
	return applied, nil
}

// lockSQLiteMigrations serialises migrators of one SQLite file: SQLite has
// no advisory lock, and two runs on a fresh file both see nothing applied
// and both create the tables. The lock is an OS file lock on
// DATABASE.migrate.lock, held for the whole run and dropped by the kernel if
// the process dies. An in-memory database has no file and no other
// migrator.
func lockSQLiteMigrations(ctx context.Context, db *bun.DB) (unlock func(), err error) {
	var file string
	if err := db.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file); err != nil {
		return nil, fmt.Errorf("migrate: find the database file: %w", err)
	}
	if file == "" {
		return func() {}, nil
	}
	unlock, err = filelock.Lock(file + ".migrate.lock")
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return unlock, nil
}
