// Package store owns onboard's persistent state: the Bun models, the queries
// over them and the embedded migrations. Every query takes a bun.IDB so that it
// composes inside RunInTx and inside a test's transaction, and the same code
// runs on Postgres (production) and SQLite (the embedded dev mode).
package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // registers the pure-Go "sqlite" driver (no cgo)
)

// Dialect names the database family behind a DSN.
type Dialect string

const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DialectOf tells which database a DATABASE_URL points at.
func DialectOf(dsn string) (Dialect, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		return Postgres, nil
	case strings.HasPrefix(dsn, "sqlite:"):
		return SQLite, nil
	}
	return "", fmt.Errorf("DATABASE_URL must start with postgres:// or sqlite: (got %q)", redactDSN(dsn))
}

// Open connects to the database named by dsn and checks that it answers.
func Open(ctx context.Context, dsn string) (*bun.DB, error) {
	d, err := DialectOf(dsn)
	if err != nil {
		return nil, err
	}
	var db *bun.DB
	switch d {
	case Postgres:
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err) // pgx masks the password
		}
		// Bun writes every argument into the SQL text, so no two queries of
		// a batch share a text: pgx's default per-connection cache of
		// prepared statements would only hold (up to 512 of) them, megabytes
		// each for a 5,000-row import check, in the worker and in Postgres.
		cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
		// A connection attempt to a server that does not answer (a network
		// partition drops the packets) would otherwise wait for the
		// caller's deadline, or the kernel's, minutes: every caller would
		// hang rather than fail and retry. The DSN's connect_timeout wins.
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = 10 * time.Second
		}
		// The service runs short queries only. Postgres JIT-compiles any
		// query whose estimated cost passes jit_above_cost, and a batch's
		// 5,000-value look-up passes it: the compile took longer than the
		// query (24 ms against 0.1 ms) on every batch. The DSN can still
		// turn it on (?jit=on), which wins over this default.
		if _, set := cfg.RuntimeParams["jit"]; !set {
			cfg.RuntimeParams["jit"] = "off"
		}
		sqldb := stdlib.OpenDB(*cfg)
		sqldb.SetMaxOpenConns(20)
		sqldb.SetMaxIdleConns(10)
		sqldb.SetConnMaxIdleTime(5 * time.Minute)
		db = bun.NewDB(sqldb, pgdialect.New())
	case SQLite:
		path := strings.TrimPrefix(strings.TrimPrefix(dsn, "sqlite:"), "//")
		// WAL lets the API read while a worker writes; busy_timeout makes a
		// writer wait for the lock instead of failing; foreign keys are off
		// by default in SQLite. (Switching a fresh file to WAL can still
		// fail with SQLITE_BUSY at once: see ping.)
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		q.Add("_pragma", "journal_mode(WAL)")
		q.Add("_pragma", "foreign_keys(1)")
		q.Add("_pragma", "synchronous(NORMAL)")
		q.Add("_txlock", "immediate")
		sqldb, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
		if err != nil {
			return nil, fmt.Errorf("open sqlite: %w", err)
		}
		// SQLite has one writer; a single connection serialises writers in
		// Go instead of spinning on SQLITE_BUSY.
		sqldb.SetMaxOpenConns(1)
		db = bun.NewDB(sqldb, sqlitedialect.New())
	}
	if err := ping(ctx, db, d); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s database: %w", d, err)
	}
	return db, nil
}

// ping checks the connection. On SQLite a connection's first statements
// switch the file to WAL, which needs a lock that busy_timeout does not
// wait for: while another process migrates a fresh file they fail with
// SQLITE_BUSY at once, so the ping is tried again for as long as
// busy_timeout would have waited.
func ping(ctx context.Context, db *bun.DB, d Dialect) error {
	deadline := time.Now().Add(10 * time.Second)
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, time.Second) {
		err := db.PingContext(ctx)
		if err == nil || d != SQLite || !strings.Contains(err.Error(), "SQLITE_BUSY") || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// DialectOfDB tells which database family an open handle talks to.
func DialectOfDB(db bun.IDB) Dialect {
	if db.Dialect().Name() == dialect.PG {
		return Postgres
	}
	return SQLite
}

func redactDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil || u.User == nil {
		return dsn
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	}
	return u.String()
}
