package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/onboard-dev/onboard/store"
)

func runMigrate(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "migrate", "Applies the database migrations to DATABASE_URL. Idempotent and safe to run\nfrom several processes at once (a Postgres advisory lock; on SQLite a lock\nfile beside the database).")
	_, db, err := setup(ctx, env, fs, args)
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := store.Migrate(ctx, db)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(env.stdout, "migrate: database is up to date")
		return nil
	}
	fmt.Fprintf(env.stdout, "migrate: applied %s\n", strings.Join(applied, ", "))
	return nil
}
