package store_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// searchFixture is a tenant's customers for the search tests, oldest first,
// with another tenant whose every customer would match the same searches.
type searchFixture struct {
	tenant, other *store.Tenant
	ids           map[string]uuid.UUID // by company name
	names         map[uuid.UUID]string
}

func newSearchFixture(t *testing.T, db *bun.DB) *searchFixture {
	t.Helper()
	ctx := context.Background()
	fx := &searchFixture{tenant: newTenant(t, db, "a"), other: newTenant(t, db, "b"), ids: map[string]uuid.UUID{}, names: map[uuid.UUID]string{}}
	type contact struct{ email, state, kind string }
	add := func(ten *store.Tenant, i int, name, status string, accounts []string, contacts ...contact) {
		c := &store.Customer{TenantID: ten.ID, CompanyName: name, Status: status, Ranking: []string{"1", "2"}[i%2], AccountNumbers: accounts,
			CreatedAt: t0.Add(time.Duration(i) * time.Hour), UpdatedAt: t0}
		if err := store.InsertCustomer(ctx, db, c); err != nil {
			t.Fatal(err)
		}
		for _, ct := range contacts {
			inv := &store.Invitation{TenantID: ten.ID, CustomerID: c.ID, Kind: ct.kind, Email: strings.ToUpper(ct.email), EmailNormalized: ct.email,
				State: ct.state, CreatedAt: t0, UpdatedAt: t0}
			if err := store.InsertInvitation(ctx, db, inv); err != nil {
				t.Fatal(err)
			}
		}
		if ten == fx.tenant {
			fx.ids[name], fx.names[c.ID] = c.ID, name
		}
	}
	// The other tenant first, then ours, then the other's again: its rows
	// sit on both sides of ours in id order.
	add(fx.other, 0, "Northwind Other", "active", []string{"NORTHWIND-1", "C_1"}, contact{"northwind@other.example", "pending", store.KindVendor})
	for i, c := range []struct {
		name, status string
		accounts     []string
		contacts     []contact
	}{
		{"Northwind Traders", "active", []string{"NW-1"}, nil},
		{"Contoso 100%", "active", []string{"C_1"}, nil},
		{"Contoso 1000", "blacklisted", []string{"C11", "X-1"}, nil},
		{"Fabrikam", "active", []string{"FAB"}, []contact{{"buyer@northwind.example", "pending", store.KindVendor}}},
		{"Tailspin", "inactive", []string{"NORTHWIND-9", "T-2"}, nil},
		{"Litware", "active", []string{"LW"}, []contact{{"old.northwind@litware.example", "revoked", store.KindVendor}, {"ap@litware.example", "saved", store.KindVendor}}},
		{"Northwind Everywhere", "active", []string{"NORTHWIND-1", "NORTHWIND-2"}, []contact{{"northwind@northwind.example", "accepted", store.KindVendor}, {"colleague.northwind@nw.example", "pending", store.KindCustomerAdmin}}},
		{`Back\slash & Co`, "active", []string{`B\1`}, nil},
		{"Adventure Works", "blacklisted", []string{"AW"}, []contact{{"northwind_fan@aw.example", "expired", store.KindVendor}}},
		{"Wide World Importers", "active", []string{"WWI"}, nil},
	} {
		add(fx.tenant, i+1, c.name, c.status, c.accounts, c.contacts...)
	}
	add(fx.other, 20, "Northwind Later", "active", []string{"NORTHWIND-2", "X-1"}, contact{"northwind@later.example", "pending", store.KindVendor})
	return fx
}

// pages pages through ListCustomers with the filter, pages of limit, and
// returns the company names in the order served.
func (fx *searchFixture) pages(t *testing.T, db bun.IDB, f store.CustomerFilter, limit int) []string {
	t.Helper()
	var got []string
	f.Limit, f.After = limit, uuid.Nil
	for range 100 {
		page, err := store.ListCustomers(context.Background(), db, fx.tenant.ID, f)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range page {
			name, ok := fx.names[c.ID]
			if !ok {
				t.Fatalf("q=%q served %s (%q), not a customer of the tenant", f.Query, c.ID, c.CompanyName)
			}
			got = append(got, name)
		}
		if len(page) < limit {
			return got
		}
		f.After = page[len(page)-1].ID
	}
	t.Fatalf("q=%q: more than 100 pages", f.Query)
	return nil
}

func TestSearchCustomers(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		fx := newSearchFixture(t, db)
		for _, tc := range []struct {
			name string
			f    store.CustomerFilter
			want []string // newest first
		}{
			{"company, account or any invitation's email, any case", store.CustomerFilter{Query: "NorthWind"},
				[]string{"Adventure Works", "Northwind Everywhere", "Litware", "Tailspin", "Fabrikam", "Northwind Traders"}},
			{"company only", store.CustomerFilter{Query: "traders"}, []string{"Northwind Traders"}},
			{"account only", store.CustomerFilter{Query: "t-2"}, []string{"Tailspin"}},
			{"email only", store.CustomerFilter{Query: "ap@litware"}, []string{"Litware"}},
			{"revoked invitation's email", store.CustomerFilter{Query: "old.north"}, []string{"Litware"}},
			{"customer admin's email", store.CustomerFilter{Query: "colleague"}, []string{"Northwind Everywhere"}},
			{"percent is literal", store.CustomerFilter{Query: "100%"}, []string{"Contoso 100%"}},
			{"lone percent", store.CustomerFilter{Query: "%"}, []string{"Contoso 100%"}},
			{"underscore is literal", store.CustomerFilter{Query: "c_1"}, []string{"Contoso 100%"}},
			{"lone underscore", store.CustomerFilter{Query: "_"}, []string{"Adventure Works", "Contoso 100%"}},
			{"backslash is literal", store.CustomerFilter{Query: `k\s`}, []string{`Back\slash & Co`}},
			{"lone backslash", store.CustomerFilter{Query: `\`}, []string{`Back\slash & Co`}},
			{"two characters", store.CustomerFilter{Query: "nw"}, []string{"Northwind Everywhere", "Northwind Traders"}},
			{"one character", store.CustomerFilter{Query: "&"}, []string{`Back\slash & Co`}},
			{"one letter", store.CustomerFilter{Query: "x"}, []string{"Adventure Works", "Northwind Everywhere", "Litware", "Fabrikam", "Contoso 1000"}},
			{"no match", store.CustomerFilter{Query: "zzz"}, nil},
			{"with status", store.CustomerFilter{Query: "northwind", Status: "blacklisted"}, []string{"Adventure Works"}},
			{"with ranking", store.CustomerFilter{Query: "northwind", Ranking: "1"}, []string{"Litware", "Fabrikam"}},
			{"with created range", store.CustomerFilter{Query: "northwind", CreatedAfter: t0.Add(4 * time.Hour), CreatedBefore: t0.Add(9 * time.Hour)},
				[]string{"Northwind Everywhere", "Litware", "Tailspin", "Fabrikam"}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, limit := range []int{1, 2, 3, 50} {
					if got := fx.pages(t, db, tc.f, limit); !slices.Equal(got, tc.want) {
						t.Errorf("q=%q, pages of %d: %q, want %q", tc.f.Query, limit, got, tc.want)
					}
				}
			})
		}
	})
}

// TestSearchCustomersAsBefore holds the search to the query it replaced (one
// statement ORing the three matches), on every customer, filter and page
// size of the fixture, for searches of every length.
func TestSearchCustomersAsBefore(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		fx := newSearchFixture(t, db)
		queries := []string{"n", "o", "1", "-", "@", ".", "no", "-1", "_1", "%", "\\", "nor", "wind", "northwind-", "example", "c_", "ld.n", "zz"}
		filters := []store.CustomerFilter{{}, {Status: "active"}, {Ranking: "2"}, {CreatedAfter: t0.Add(3 * time.Hour)}}
		for _, q := range queries {
			for _, f := range filters {
				f.Query = q
				for _, limit := range []int{1, 2, 4, 50} {
					var want []string
					after := uuid.Nil
					for {
						var ids []uuid.UUID
						like := "%" + strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(q)) + "%"
						sel := db.NewSelect().TableExpr("customers AS c").Column("c.id").Where("c.tenant_id = ?", fx.tenant.ID)
						if f.Status != "" {
							sel = sel.Where("c.status = ?", f.Status)
						}
						if f.Ranking != "" {
							sel = sel.Where("c.ranking = ?", f.Ranking)
						}
						if !f.CreatedAfter.IsZero() {
							sel = sel.Where("c.created_at >= ?", f.CreatedAfter)
						}
						if after != uuid.Nil {
							sel = sel.Where("c.id < ?", after)
						}
						err := sel.WhereGroup(" AND ", func(s *bun.SelectQuery) *bun.SelectQuery {
							return s.Where(`LOWER(c.company_name) LIKE ? ESCAPE '\'`, like).
								WhereOr(`EXISTS (SELECT 1 FROM customer_accounts a WHERE a.tenant_id = c.tenant_id AND a.customer_id = c.id AND LOWER(a.account_number) LIKE ? ESCAPE '\')`, like).
								WhereOr(`EXISTS (SELECT 1 FROM invitations i WHERE i.tenant_id = c.tenant_id AND i.customer_id = c.id AND i.email_normalized LIKE ? ESCAPE '\')`, like)
						}).Order("c.id DESC").Limit(int64(limit)).Scan(ctx, &ids)
						if err != nil {
							t.Fatal(err)
						}
						for _, id := range ids {
							want = append(want, fx.names[id])
						}
						if len(ids) < limit {
							break
						}
						after = ids[len(ids)-1]
					}
					if got := fx.pages(t, db, f, limit); !slices.Equal(got, want) {
						t.Errorf("q=%q %+v, pages of %d: %q, the former query %q", q, f, limit, got, want)
					}
				}
			}
		}
	})
}
