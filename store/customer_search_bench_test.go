package store_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// BenchmarkCustomerSearch times GET /v1/customers?q= (store.ListCustomers)
// on one tenant of BENCH_CUSTOMERS customers (default 100,000) among other
// tenants holding half as many again, interleaved with it in id order, on
// Postgres and on SQLite (BENCH_SQLITE_CUSTOMERS, default the same). Each
// search reports its time as a multiple of the baseline measured first in
// the same run: the unfiltered first page (x-unfiltered).
//
//	BENCH_CUSTOMERS=1000000 go test -run '^$' -bench CustomerSearch/postgres -benchtime 5x -timeout 60m ./store
func BenchmarkCustomerSearch(b *testing.B) {
	n := envInt(b, "BENCH_CUSTOMERS", 100_000)
	for _, d := range []struct {
		name string
		open func(testing.TB) *bun.DB
		n    int
	}{
		{"postgres", storetest.NewPostgres, n},
		{"sqlite", storetest.NewSQLite, envInt(b, "BENCH_SQLITE_CUSTOMERS", n)},
	} {
		b.Run(d.name, func(b *testing.B) {
			db := d.open(b)
			start := time.Now()
			tenant, probe := seedSearch(b, db, d.n)
			b.Logf("seeded %d customers (%d in the searched tenant) in %s", d.n*3/2, d.n, time.Since(start).Round(time.Second))
			if store.DialectOfDB(db) == store.Postgres {
				if _, err := db.ExecContext(context.Background(), "ANALYZE"); err != nil {
					b.Fatal(err)
				}
			}
			var baseline float64
			for _, s := range []struct {
				name string
				f    store.CustomerFilter
			}{
				{"unfiltered", store.CustomerFilter{}},
				{"q=one_account", store.CustomerFilter{Query: probe.account}},
				{"q=one_number", store.CustomerFilter{Query: probe.number}},
				{"q=acme_(5%_of_names)", store.CustomerFilter{Query: "acme"}},
				{"q=acme_page_2", store.CustomerFilter{Query: "acme", After: probe.acmeCursor}},
				{"q=acme_blacklisted_(none_is)", store.CustomerFilter{Query: "acme", Status: store.CustomerBlacklisted}},
				{"q=hooli-mail_(1/8_of_emails)", store.CustomerFilter{Query: "hooli-mail"}},
				{"q=buyer_(every_email)", store.CustomerFilter{Query: "buyer"}},
				{"q=zzzz_(no_match)", store.CustomerFilter{Query: "zzzz"}},
				{"q=co_(2_chars,_common)", store.CustomerFilter{Query: "co"}},
				{"q=qz_(2_chars,_no_match)", store.CustomerFilter{Query: "qz"}},
				{"q=@_(1_char,_every_email)", store.CustomerFilter{Query: "@"}},
			} {
				b.Run(s.name, func(b *testing.B) {
					s.f.Limit = 50
					iterations := 0
					for b.Loop() {
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						_, err := store.ListCustomers(ctx, db, tenant, s.f)
						timedOut := errors.Is(ctx.Err(), context.DeadlineExceeded)
						cancel()
						if timedOut {
							b.Skipf("%s: over 30 s (the API answers 503)", s.name)
						}
						if err != nil {
							b.Fatal(err)
						}
						iterations++
					}
					perOp := float64(b.Elapsed()) / float64(iterations)
					if s.name == "unfiltered" {
						baseline = perOp
					}
					b.ReportMetric(perOp/1e6, "ms/op")
					b.ReportMetric(perOp/baseline, "x-unfiltered")
				})
			}
		})
	}
}

// searchProbe names search terms that match one known customer, and the
// cursor after the first page of "acme".
type searchProbe struct {
	account, number string
	acmeCursor      uuid.UUID
}

var (
	benchCompanies = []string{"Acme", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Wonka", "Hooli", "Vandelay", "Soylent",
		"Tyrell", "Cyberdyne", "Gringotts", "Oscorp", "Duff", "Krusty", "Aperture", "Black Mesa", "Massive Dynamic", "Pied Piper"}
	benchTrades  = []string{"Parts", "Supply", "Industrial", "Hardware", "Tools", "Electric", "Plumbing", "Foods", "Motors", "Textiles", "Logistics", "Medical"}
	benchForms   = []string{"Inc", "LLC", "GmbH", "Ltd", "Co", "Group", "& Sons", "SA"}
	benchDomains = []string{"acme", "globex", "initech", "umbrella", "stark", "wayne", "wonka", "hooli"}
)

// seedSearch writes n customers for the searched tenant and n/2 for ten
// others, two of every three ids the searched tenant's: company names from
// word lists (one in twenty an Acme) and a running number, an account number
// each and a second for one in four, the initial contact's invitation and,
// for one in ten, an earlier revoked one.
func seedSearch(b *testing.B, db *bun.DB, n int) (uuid.UUID, searchProbe) {
	b.Helper()
	ctx := context.Background()
	var tenants []uuid.UUID
	for i := range 11 {
		ten, _, err := store.CreateTenant(ctx, db, fmt.Sprintf("bench %d", i), "", t0)
		if err != nil {
			b.Fatal(err)
		}
		tenants = append(tenants, ten.ID)
	}
	var probe searchProbe
	total := n * 3 / 2
	const batch = 5000
	for lo := 1; lo <= total; lo += batch {
		var cs []*store.Customer
		var invs []*store.Invitation
		for i := lo; i < lo+batch && i <= total; i++ {
			tenant := tenants[0]
			if i%3 == 0 {
				tenant = tenants[1+(i/3)%10]
			}
			at := t0.Add(time.Duration(i) * time.Second)
			c := &store.Customer{ID: uuid.Must(uuid.NewV7()), TenantID: tenant,
				CompanyName: fmt.Sprintf("%s %s %s #%d", benchCompanies[i%20], benchTrades[(i/20)%12], benchForms[(i/240)%8], i),
				Ranking:     strconv.Itoa(1 + i%5), Status: []string{"active", "active", "active", "inactive", "blacklisted"}[i%5],
				AccountNumbers: []string{fmt.Sprintf("C%08d", i)}, CreatedAt: at, UpdatedAt: at}
			if i%4 == 0 {
				c.AccountNumbers = append(c.AccountNumbers, fmt.Sprintf("ERP-%06X-%d", uint32(i)*2654435761>>8, i))
			}
			cs = append(cs, c)
			domain := benchDomains[(i/7)%8]
			email := fmt.Sprintf("buyer.%d@%s-mail.example", i, domain)
			invs = append(invs, &store.Invitation{TenantID: tenant, CustomerID: c.ID, Email: email, EmailNormalized: email,
				State: []string{"saved", "pending", "accepted", "expired"}[i%4], CreatedAt: at, UpdatedAt: at})
			if i%10 == 0 {
				old := fmt.Sprintf("old.%d@%s-mail.example", i, domain)
				invs = append(invs, &store.Invitation{TenantID: tenant, CustomerID: c.ID, Email: old, EmailNormalized: old,
					State: store.InvitationRevoked, CreatedAt: at, UpdatedAt: at})
			}
			if tenant == tenants[0] && i >= total/2 && probe.account == "" {
				probe.account, probe.number = c.AccountNumbers[0], fmt.Sprintf("#%d", i)
			}
		}
		err := store.RunInBulkTx(ctx, db, func(ctx context.Context, tx *store.BulkTx) error {
			if err := store.InsertCustomers(ctx, tx, cs); err != nil {
				return err
			}
			return store.InsertInvitations(ctx, tx, invs)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	first, err := store.ListCustomers(ctx, db, tenants[0], store.CustomerFilter{Query: "acme", Limit: 50})
	if err != nil || len(first) != 50 {
		b.Fatalf("first page of acme: %d customers, %v", len(first), err)
	}
	probe.acmeCursor = first[49].ID
	return tenants[0], probe
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 100 {
		b.Fatalf("%s=%q: want a number of customers, at least 100", name, v)
	}
	return n
}
