package store_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// An outage (nothing listens, the connection drops) is told from a server
// that answered (a database that does not exist, a refused query) and from
// a request given up on: only the first is Unavailable.
func TestUnavailableIsAnOutageOnly(t *testing.T) {
	t.Parallel()
	ping := func(dsn string) error {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		db := bun.NewDB(stdlib.OpenDB(*cfg), pgdialect.New())
		defer db.Close()
		return db.PingContext(context.Background())
	}
	refused := ping("postgres://onboard@" + testenv.FreeAddr(t) + "/onboard?sslmode=disable")
	cfg, err := pgx.ParseConfig(storetest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	noDatabase := ping(fmt.Sprintf("postgres://%s@%s:%d/onboard_no_such_database?sslmode=disable", cfg.User, cfg.Host, cfg.Port))
	db := storetest.NewPostgres(t)
	_, badQuery := db.ExecContext(context.Background(), "SELECT * FROM no_such_table")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, cancelled := db.ExecContext(ctx, "SELECT 1")
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"connection refused":                {refused, true},
		"a database that does not exist":    {noDatabase, false},
		"a query the server refused":        {badQuery, false},
		"a request cancelled by its client": {cancelled, false},
		"no error":                          {nil, false},
	} {
		if (tc.err == nil) != (name == "no error") {
			t.Fatalf("%s: err %v", name, tc.err)
		}
		if got := store.Unavailable(tc.err); got != tc.want {
			t.Errorf("%s (%v): Unavailable %v, want %v", name, tc.err, got, tc.want)
		}
	}
}
