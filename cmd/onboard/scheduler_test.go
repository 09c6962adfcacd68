package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// A scheduled run whose slot comes while the database is down is recorded
// once it is back, not skipped until the next night.
func TestScheduledRunWaitsOutADatabaseOutage(t *testing.T) {
	t.Parallel()
	dsn := storetest.NewPostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	postgres := u.Host
	// The scheduler reaches Postgres through an address where nothing
	// listens yet: the outage.
	u.Host = testenv.FreeAddr(t)
	db := storetest.Open(t, dsn) // checks the rows; Open pings, so it goes direct
	var logs testenv.SyncBuffer
	env := &environment{log: slog.New(slog.NewTextHandler(&logs, nil))}
	down := unpinged(t, u.String())

	job := jobs.NewScheduled(jobs.TypeInviteResend, time.Date(2026, 12, 4, 2, 0, 0, 0, time.UTC))
	done := make(chan error, 1)
	go func() { done <- recordSlot(context.Background(), env, down, job, time.Now().Add(time.Hour)) }()
	testenv.Eventually(t, 30*time.Second, "a failed attempt logged", func() bool {
		return strings.Contains(logs.String(), "trying again")
	})
	proxy(t, u.Host, postgres) // the database is back
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("the run was not recorded after the database came back")
	}
	if _, err := store.GetOutboxTask(context.Background(), db, job.ID); err != nil {
		t.Fatalf("the outbox has no row for the run: %v", err)
	}
	// With the next slot too close, an attempt that fails gives up: the
	// next slot stands for the same work.
	closed := unpinged(t, "postgres://onboard@"+testenv.FreeAddr(t)+"/onboard?sslmode=disable")
	if err := recordSlot(context.Background(), env, closed, job, time.Now()); err == nil {
		t.Fatal("recorded in a database that is down")
	}
}

// unpinged is a handle on the Postgres of dsn that has not connected yet.
func unpinged(t *testing.T, dsn string) *bun.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(stdlib.OpenDB(*cfg), pgdialect.New())
	t.Cleanup(func() { db.Close() })
	return db
}

// proxy forwards connections on from to to until the test ends.
func proxy(t *testing.T, from, to string) {
	t.Helper()
	ln, err := net.Listen("tcp", from)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", to)
			if err != nil {
				in.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, in, out)
			mu.Unlock()
			go func() { _, _ = io.Copy(out, in); out.Close() }()
			go func() { _, _ = io.Copy(in, out); in.Close() }()
		}
	}()
}
