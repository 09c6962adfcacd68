// Package storetest gives tests an isolated, migrated database: a fresh
// Postgres schema (dropped afterwards) or a fresh SQLite file. Postgres must
// be reachable: a missing database fails the test, it never skips it.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/store"
)

// DefaultPostgresURL is where tests find Postgres unless TEST_DATABASE_URL
// says otherwise.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// PostgresURL is the server tests create their schemas in.
func PostgresURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return DefaultPostgresURL
}

// NewPostgresDSN creates an empty, migrated schema of its own for the test
// and returns a DSN whose connections use it (also usable by a child
// process). The schema is dropped when the test ends.
func NewPostgresDSN(t testing.TB) string {
	t.Helper()
	dsn := NewUnmigratedPostgresDSN(t)
	migrate(t, dsn)
	return dsn
}

// NewUnmigratedPostgresDSN is NewPostgresDSN without the migrations: an
// empty schema, as a database is before `onboard migrate`.
func NewUnmigratedPostgresDSN(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := PostgresURL()
	admin, err := store.Open(ctx, base)
	if err != nil {
		t.Fatalf("storetest: Postgres is required for this test: %v", err)
	}
	defer admin.Close()
	if err := sharedExtensions(ctx, admin); err != nil {
		t.Fatalf("storetest: %v", err)
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("storetest: create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		db, err := store.Open(ctx, base)
		if err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
			return
		}
		defer db.Close()
		if _, err := db.ExecContext(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("storetest: drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// sharedExtensions installs, in the public schema, the extensions the
// migrations use. A migration creates a missing one in the first schema of
// its search path, which for a test is the test's own: dropped with it, the
// extension would take the indexes of every other test's schema along.
// Tests creating it at once race on the catalog; the loser finds it made.
func sharedExtensions(ctx context.Context, db *bun.DB) error {
	_, err := db.ExecContext(ctx, "CREATE EXTENSION IF NOT EXISTS pg_trgm SCHEMA public")
	if err == nil {
		return nil
	}
	var exists bool
	if qerr := db.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm')").Scan(&exists); qerr != nil || !exists {
		return fmt.Errorf("create extension pg_trgm: %w", err)
	}
	return nil
}

// NewSQLiteDSN creates a migrated SQLite database file for the test.
func NewSQLiteDSN(t testing.TB) string {
	t.Helper()
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "onboard.db")
	migrate(t, dsn)
	return dsn
}

func migrate(t testing.TB, dsn string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	defer db.Close()
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatalf("storetest: %v", err)
	}
}

// Open opens dsn for the test and closes it when the test ends.
func Open(t testing.TB, dsn string) *bun.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dsn)
	if err != nil {
		t.Fatalf("storetest: %v", err)
	}
	// Many tests run at once against one server: keep each one's share of
	// Postgres' connections small.
	db.SetMaxOpenConns(4)
	t.Cleanup(func() { db.Close() })
	return db
}

// NewPostgres is an isolated, migrated Postgres database for the test.
func NewPostgres(t testing.TB) *bun.DB { return Open(t, NewPostgresDSN(t)) }

// NewSQLite is an isolated, migrated SQLite database for the test.
func NewSQLite(t testing.TB) *bun.DB { return Open(t, NewSQLiteDSN(t)) }

// Each runs fn against Postgres and against SQLite, in parallel subtests, so
// the store code is held to both dialects.
func Each(t *testing.T, fn func(t *testing.T, db *bun.DB)) {
	t.Helper()
	for name, open := range map[string]func(testing.TB) *bun.DB{"postgres": NewPostgres, "sqlite": NewSQLite} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			fn(t, open(t))
		})
	}
}
