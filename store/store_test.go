package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func newTenant(t *testing.T, db bun.IDB, name string) *store.Tenant {
	t.Helper()
	ten, key, err := store.CreateTenant(context.Background(), db, name, "admin@"+name+".example", t0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := store.TenantByAPIKey(context.Background(), db, key)
	if err != nil || got.ID != ten.ID {
		t.Fatalf("tenant by key: %v %v", got, err)
	}
	return ten
}

func newCustomer(t *testing.T, db bun.IDB, ten *store.Tenant, account string) *store.Customer {
	t.Helper()
	c := &store.Customer{TenantID: ten.ID, CompanyName: "Acme " + account, AccountNumbers: []string{account}, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertCustomer(context.Background(), db, c); err != nil {
		t.Fatal(err)
	}
	return c
}

func newInvitation(t *testing.T, db bun.IDB, c *store.Customer, email, state string) *store.Invitation {
	t.Helper()
	inv := &store.Invitation{TenantID: c.TenantID, CustomerID: c.ID, Email: email, EmailNormalized: email, State: state, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertInvitation(context.Background(), db, inv); err != nil {
		t.Fatal(err)
	}
	return inv
}

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	dsn := storetest.NewPostgresDSN(t) // already migrated once
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			db := storetest.Open(t, dsn)
			applied, err := store.Migrate(context.Background(), db)
			if err == nil && len(applied) != 0 {
				err = errors.New("a second run applied migrations again")
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestMigrateFromTwoProcessesOnAFreshSchema(t *testing.T) {
	t.Parallel()
	// NewPostgresDSN migrates; drop everything to start from an empty schema.
	dsn := storetest.NewPostgresDSN(t)
	db := storetest.Open(t, dsn)
	var tables []string
	if err := db.NewSelect().TableExpr("pg_tables").Column("tablename").Where("schemaname = current_schema()").Scan(context.Background(), &tables); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		if _, err := db.Exec("DROP TABLE IF EXISTS " + tbl + " CASCADE"); err != nil {
			t.Fatal(err)
		}
	}
	migrateConcurrently(t, dsn, 2)
}

// migrateConcurrently runs n migrators of dsn at once; together they must
// apply each migration exactly once, and none may fail.
func migrateConcurrently(t *testing.T, dsn string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	var total int
	var mu sync.Mutex
	errs := make([]error, n)
	for i := range errs {
		wg.Go(func() {
			applied, err := store.Migrate(context.Background(), storetest.Open(t, dsn))
			mu.Lock()
			total += len(applied)
			mu.Unlock()
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if want := len(store.MigrationNames()); total != want {
		t.Fatalf("%d concurrent runs applied %d migrations in all, want each of the %d exactly once", n, total, want)
	}
}

func TestEmailUniquePerTenantAmongLiveInvitations(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		a, b := newTenant(t, db, "a"), newTenant(t, db, "b")
		ca := newCustomer(t, db, a, "100")
		ca2 := newCustomer(t, db, a, "101")
		newInvitation(t, db, ca, "jane@example.com", store.InvitationPending)

		dup := &store.Invitation{TenantID: a.ID, CustomerID: ca2.ID, Email: "JANE@example.com", EmailNormalized: "jane@example.com", State: store.InvitationSaved, CreatedAt: t0, UpdatedAt: t0}
		if err := store.InsertInvitation(ctx, db, dup); !errors.Is(err, store.ErrEmailInUse) {
			t.Fatalf("second invitation with the same email: %v, want ErrEmailInUse", err)
		}
		// Another tenant may use the same email.
		newInvitation(t, db, newCustomer(t, db, b, "100"), "jane@example.com", store.InvitationPending)

		// A second vendor invitation for the same customer is refused.
		second := &store.Invitation{TenantID: a.ID, CustomerID: ca.ID, Email: "other@example.com", EmailNormalized: "other@example.com", State: store.InvitationSaved, CreatedAt: t0, UpdatedAt: t0}
		if err := store.InsertInvitation(ctx, db, second); !errors.Is(err, store.ErrAlreadyInvited) {
			t.Fatalf("second vendor invitation: %v, want ErrAlreadyInvited", err)
		}
		// Revoking frees the email.
		inv, err := store.VendorInvitation(ctx, db, a.ID, ca.ID)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := store.RevokeInvitation(ctx, db, a.ID, inv.ID, t0); err != nil {
			t.Fatal(err)
		}
		if inUse, err := store.EmailInUse(ctx, db, a.ID, "jane@example.com"); err != nil || inUse {
			t.Fatalf("email in use after revoke: %v %v", inUse, err)
		}
		newInvitation(t, db, ca2, "jane@example.com", store.InvitationSaved)
	})
}

func TestAccountNumberBelongsToOneCustomer(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ten := newTenant(t, db, "a")
		newCustomer(t, db, ten, "100")
		c := &store.Customer{TenantID: ten.ID, CompanyName: "Other", AccountNumbers: []string{"100"}, CreatedAt: t0, UpdatedAt: t0}
		err := db.RunInTx(context.Background(), nil, func(ctx context.Context, tx bun.Tx) error {
			return store.InsertCustomer(ctx, tx, c)
		})
		if !errors.Is(err, store.ErrAccountInUse) {
			t.Fatalf("got %v, want ErrAccountInUse", err)
		}
		got, err := store.CustomerByAccount(context.Background(), db, ten.ID, "100")
		if err != nil || got.CompanyName != "Acme 100" {
			t.Fatalf("customer by account: %v %v", got, err)
		}
	})
}

func TestListCustomersFiltersAndPages(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		ten, other := newTenant(t, db, "a"), newTenant(t, db, "b")
		newCustomer(t, db, other, "999")
		var ids []uuid.UUID
		for i, acct := range []string{"100", "101", "102", "103", "104"} {
			c := &store.Customer{TenantID: ten.ID, CompanyName: "Co_" + acct, AccountNumbers: []string{acct, "X" + acct},
				Ranking: []string{"1", "2"}[i%2], Status: []string{"active", "blacklisted"}[i%2],
				CreatedAt: t0.Add(time.Duration(i) * time.Hour), UpdatedAt: t0}
			if err := store.InsertCustomer(ctx, db, c); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, c.ID)
		}
		newInvitation(t, db, &store.Customer{ID: ids[4], TenantID: ten.ID}, "found.me@example.com", store.InvitationSaved)

		// Pages of two, newest first, cover all five exactly once.
		var seen []uuid.UUID
		after := uuid.Nil
		for {
			page, err := store.ListCustomers(ctx, db, ten.ID, store.CustomerFilter{After: after, Limit: 2})
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			for _, c := range page {
				seen = append(seen, c.ID)
				if len(c.AccountNumbers) != 2 {
					t.Fatalf("account numbers of %s: %v", c.CompanyName, c.AccountNumbers)
				}
			}
			after = page[len(page)-1].ID
		}
		if len(seen) != 5 || seen[0] != ids[4] || seen[4] != ids[0] {
			t.Fatalf("pages: %v, want the five ids newest first", seen)
		}
		for _, tc := range []struct {
			name string
			f    store.CustomerFilter
			want int
		}{
			{"status", store.CustomerFilter{Status: "blacklisted"}, 2},
			{"ranking", store.CustomerFilter{Ranking: "1"}, 3},
			{"created after", store.CustomerFilter{CreatedAfter: t0.Add(3 * time.Hour)}, 2},
			{"created before", store.CustomerFilter{CreatedBefore: t0.Add(time.Hour)}, 1},
			{"q company with literal underscore", store.CustomerFilter{Query: "co_10"}, 5},
			{"q account", store.CustomerFilter{Query: "x103"}, 1},
			{"q email", store.CustomerFilter{Query: "FOUND.ME"}, 1},
			{"q wildcard is literal", store.CustomerFilter{Query: "%"}, 0},
		} {
			got, err := store.ListCustomers(ctx, db, ten.ID, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("%s: %d customers, want %d", tc.name, len(got), tc.want)
			}
		}
	})
}

func TestAcceptIsSingleUseAndCreatesAdmin(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		ten := newTenant(t, db, "a")
		c := newCustomer(t, db, ten, "100")
		inv := newInvitation(t, db, c, "jane@example.com", store.InvitationPending)
		if _, err := db.NewUpdate().Model(inv).Set("expires_at = ?", t0.Add(time.Hour)).WherePK().Exec(ctx); err != nil {
			t.Fatal(err)
		}
		d := store.NewInvitationDelivery(inv, t0)
		if err := store.InsertDeliveries(ctx, db, []*store.Delivery{d}); err != nil {
			t.Fatal(err)
		}
		first, err := store.IssueTokens(ctx, db, []*store.Delivery{d}, t0)
		if err != nil {
			t.Fatal(err)
		}
		second, err := store.IssueTokens(ctx, db, []*store.Delivery{d}, t0)
		if err != nil {
			t.Fatal(err)
		}
		other := newTenant(t, db, "b")
		for _, tc := range []struct {
			name   string
			tenant uuid.UUID
			token  string
			want   error
		}{
			{"unknown token", ten.ID, "nope", store.ErrNotFound},
			{"another tenant's key", other.ID, second[d.ID], store.ErrNotFound},
			{"superseded token", ten.ID, first[d.ID], store.ErrTokenGone},
		} {
			if _, err := store.AcceptInvitation(ctx, db, tc.tenant, tc.token, t0); !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		if _, err := store.AcceptInvitation(ctx, db, ten.ID, second[d.ID], t0.Add(2*time.Hour)); !errors.Is(err, store.ErrTokenGone) {
			t.Errorf("expired token: %v", err)
		}
		acc, err := store.AcceptInvitation(ctx, db, ten.ID, second[d.ID], t0)
		if err != nil {
			t.Fatal(err)
		}
		if acc.User.Role != store.RoleAdmin || acc.User.Email != "jane@example.com" || acc.Invitation.State != store.InvitationAccepted || acc.Customer.ID != c.ID {
			t.Fatalf("acceptance: %+v %+v", acc.User, acc.Invitation)
		}
		if _, err := store.AcceptInvitation(ctx, db, ten.ID, second[d.ID], t0); !errors.Is(err, store.ErrTokenGone) {
			t.Fatalf("second accept: %v, want ErrTokenGone", err)
		}
	})
}

// pendingWithToken is a pending invitation of c with one live link.
func pendingWithToken(t *testing.T, db bun.IDB, c *store.Customer, email string) (*store.Invitation, string) {
	t.Helper()
	ctx := context.Background()
	inv := newInvitation(t, db, c, email, store.InvitationPending)
	if _, err := db.NewUpdate().Model(inv).Set("expires_at = ?", t0.Add(time.Hour)).WherePK().Exec(ctx); err != nil {
		t.Fatal(err)
	}
	d := store.NewInvitationDelivery(inv, t0)
	if err := store.InsertDeliveries(ctx, db, []*store.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	tokens, err := store.IssueTokens(ctx, db, []*store.Delivery{d}, t0)
	if err != nil {
		t.Fatal(err)
	}
	return inv, tokens[d.ID]
}

// An accept and a revoke of the same invitation at once: one wins, and the
// other says so. A revoke must never answer "pending" for an invitation
// that the contact has just accepted.
func TestAcceptAndRevokeAtOnceAgree(t *testing.T) {
	t.Parallel()
	db := storetest.NewPostgres(t)
	ctx := context.Background()
	ten := newTenant(t, db, "a")
	for i := range 30 {
		c := newCustomer(t, db, ten, fmt.Sprint(100+i))
		inv, token := pendingWithToken(t, db, c, fmt.Sprintf("race%d@example.com", i))
		var acceptErr, revokeErr error
		var revoked *store.Invitation
		var wg sync.WaitGroup
		wg.Go(func() {
			acceptErr = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				_, err := store.AcceptInvitation(ctx, tx, ten.ID, token, t0)
				return err
			})
		})
		wg.Go(func() {
			revokeErr = db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
				var err error
				revoked, err = store.RevokeInvitation(ctx, tx, ten.ID, inv.ID, t0)
				return err
			})
		})
		wg.Wait()
		final, err := store.GetInvitation(ctx, db, ten.ID, inv.ID)
		if err != nil {
			t.Fatal(err)
		}
		switch final.State {
		case store.InvitationAccepted:
			if acceptErr != nil || !errors.Is(revokeErr, store.ErrInvalidState) {
				t.Errorf("%d: accepted, but accept %v and revoke %v (%+v)", i, acceptErr, revokeErr, revoked)
			}
		case store.InvitationRevoked:
			if revokeErr != nil || revoked.State != store.InvitationRevoked || !errors.Is(acceptErr, store.ErrTokenGone) || !strings.Contains(acceptErr.Error(), "revoked") {
				t.Errorf("%d: revoked, but revoke %v (%+v) and accept %v", i, revokeErr, revoked, acceptErr)
			}
		default:
			t.Errorf("%d: ended %s", i, final.State)
		}
	}
}

// A customer blacklisted or made inactive after its email went out gets no
// portal account from the link.
func TestAcceptRefusedForACustomerNoLongerActive(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		ten := newTenant(t, db, "a")
		for _, status := range []string{store.CustomerBlacklisted, store.CustomerInactive} {
			c := newCustomer(t, db, ten, status)
			_, token := pendingWithToken(t, db, c, status+"@example.com")
			if _, err := db.NewUpdate().Model(c).Set("status = ?", status).WherePK().Exec(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := store.AcceptInvitation(ctx, db, ten.ID, token, t0); !errors.Is(err, store.ErrTokenGone) {
				t.Errorf("%s customer: %v, want ErrTokenGone", status, err)
			}
			if n, _ := db.NewSelect().Model((*store.User)(nil)).Where("customer_id = ?", c.ID).Count(ctx); n != 0 {
				t.Errorf("%s customer: %d portal users", status, n)
			}
		}
	})
}

// A new email's link replaces the links of earlier emails when it is sent,
// not when it is minted: a send that fails or waits (SendGrid refusing the
// account) leaves the contact's link working.
func TestEarlierLinksRetireWhenTheNewEmailIsSent(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		ten := newTenant(t, db, "a")
		inv := newInvitation(t, db, newCustomer(t, db, ten, "100"), "jane@example.com", store.InvitationPending)
		live := func(d *store.Delivery) int {
			n, err := db.NewSelect().Model((*store.InvitationToken)(nil)).Where("delivery_id = ? AND superseded_at IS NULL", d.ID).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
		send := func(d *store.Delivery, sent bool) {
			if _, err := store.ClaimDeliveries(ctx, db, []uuid.UUID{d.ID}, time.Minute, t0); err != nil {
				t.Fatal(err)
			}
			if _, err := store.IssueTokens(ctx, db, []*store.Delivery{d}, t0); err != nil {
				t.Fatal(err)
			}
			if !sent {
				if err := store.ReleaseDeliveries(ctx, db, []uuid.UUID{d.ID}, "refused", t0); err != nil {
					t.Fatal(err)
				}
				return
			}
			if err := store.MarkDeliveriesSent(ctx, db, []uuid.UUID{d.ID}, "m", time.Time{}, t0); err != nil {
				t.Fatal(err)
			}
		}
		first, second := store.NewInvitationDelivery(inv, t0), store.NewInvitationDelivery(inv, t0)
		if err := store.InsertDeliveries(ctx, db, []*store.Delivery{first}); err != nil {
			t.Fatal(err)
		}
		send(first, true)
		if err := store.InsertDeliveries(ctx, db, []*store.Delivery{second}); err != nil {
			t.Fatal(err)
		}
		send(second, false)
		send(second, false) // a retry mints again, retiring its own unsent link
		if live(first) != 1 || live(second) != 1 {
			t.Fatalf("after two refused sends: first email %d live links, second %d; want 1 and 1", live(first), live(second))
		}
		send(second, true)
		if live(first) != 0 || live(second) != 1 {
			t.Fatalf("after the second email went out: first %d, second %d; want 0 and 1", live(first), live(second))
		}
	})
}

func TestDeliveryClaimLease(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		ten := newTenant(t, db, "a")
		inv := newInvitation(t, db, newCustomer(t, db, ten, "100"), "jane@example.com", store.InvitationPending)
		d := store.NewInvitationDelivery(inv, t0)
		if err := store.InsertDeliveries(ctx, db, []*store.Delivery{d}); err != nil {
			t.Fatal(err)
		}
		ids := []uuid.UUID{d.ID}
		got, err := store.ClaimDeliveries(ctx, db, ids, time.Minute, t0)
		if err != nil || len(got) != 1 || got[0].State != store.DeliverySending || got[0].Attempts != 1 {
			t.Fatalf("first claim: %v %v", got, err)
		}
		if got, _ := store.ClaimDeliveries(ctx, db, ids, time.Minute, t0.Add(30*time.Second)); len(got) != 0 {
			t.Fatal("a leased delivery was claimed twice")
		}
		if n, _ := store.LeasedDeliveries(ctx, db, ids, t0.Add(30*time.Second)); n != 1 {
			t.Fatalf("leased = %d", n)
		}
		// The first worker died; after the lease another takes over.
		got, err = store.ClaimDeliveries(ctx, db, ids, time.Minute, t0.Add(2*time.Minute))
		if err != nil || len(got) != 1 || got[0].Attempts != 2 {
			t.Fatalf("takeover: %v %v", got, err)
		}
		if err := store.MarkDeliveriesSent(ctx, db, ids, "msg-1", time.Time{}, t0.Add(2*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if got, _ := store.ClaimDeliveries(ctx, db, ids, time.Minute, t0.Add(time.Hour)); len(got) != 0 {
			t.Fatal("a sent delivery was claimed again")
		}
		inv2, _ := store.GetInvitation(ctx, db, ten.ID, inv.ID)
		if inv2.SendCount != 1 || inv2.DeliveryStatus != store.DeliverySent || !inv2.LastSentAt.Equal(t0.Add(2*time.Minute)) {
			t.Fatalf("invitation after send: %+v", inv2)
		}
	})
}

func TestOutbox(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		task := &store.OutboxTask{TaskID: "invite:send:1", TaskType: "invite:send", Queue: "critical", Payload: []byte(`{}`), CreatedAt: t0}
		if err := store.AddOutbox(ctx, db, task); err != nil {
			t.Fatal(err)
		}
		if err := store.AddOutbox(ctx, db, task); err != nil {
			t.Fatalf("adding the same task twice: %v", err)
		}
		due, err := store.OutboxNotEnqueued(ctx, db, t0.Add(time.Minute), 10)
		if err != nil || len(due) != 1 {
			t.Fatalf("not enqueued: %v %v", due, err)
		}
		if err := store.MarkEnqueued(ctx, db, []string{task.TaskID}, t0); err != nil {
			t.Fatal(err)
		}
		if due, _ := store.OutboxNotEnqueued(ctx, db, t0.Add(time.Minute), 10); len(due) != 0 {
			t.Fatal("enqueued task still due")
		}
		un, err := store.OutboxUnfinished(ctx, db, t0.Add(time.Minute), "", 10)
		if err != nil || len(un) != 1 {
			t.Fatalf("unfinished: %v %v", un, err)
		}
		// Reruns of an archived task: two allowed, the third refused; each
		// moves the time the sweep looks at it again.
		for i, want := range []bool{true, true, false} {
			now := t0.Add(time.Duration(i+1) * time.Hour)
			ok, err := store.TakeRerun(ctx, db, task.TaskID, 2, now)
			if err != nil || ok != want {
				t.Fatalf("rerun %d: %v %v, want %v", i+1, ok, err, want)
			}
		}
		if un, _ := store.OutboxUnfinished(ctx, db, t0.Add(2*time.Hour), "", 10); len(un) != 1 || !un[0].EnqueuedAt.Equal(t0.Add(2*time.Hour)) {
			t.Fatalf("after two reruns: %+v", un)
		}
		if err := store.MarkCompleted(ctx, db, task.TaskID, t0); err != nil {
			t.Fatal(err)
		}
		if un, _ := store.OutboxUnfinished(ctx, db, t0.Add(3*time.Hour), "", 10); len(un) != 0 {
			t.Fatal("completed task unfinished")
		}
		if ok, err := store.TakeRerun(ctx, db, task.TaskID, 10, t0); err != nil || ok {
			t.Fatalf("rerun of a completed task: %v %v", ok, err)
		}
		if n, err := store.PurgeCompletedOutbox(ctx, db, t0.Add(time.Second)); err != nil || n != 1 {
			t.Fatalf("purge: %d %v", n, err)
		}
	})
}

// TestPostgresJITIsOffUnlessAsked: the import's batch look-ups cost more to
// JIT-compile than to run, so connections turn JIT off; a DSN can turn it on.
func TestPostgresJITIsOffUnlessAsked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := storetest.NewPostgresDSN(t)
	for _, c := range []struct{ dsn, want string }{{dsn, "off"}, {dsn + "&jit=on", "on"}} {
		db, err := store.Open(ctx, c.dsn)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		err = db.QueryRowContext(ctx, "SHOW jit").Scan(&got)
		db.Close()
		if err != nil || got != c.want {
			t.Fatalf("%s: jit = %q, %v; want %q", c.dsn, got, err, c.want)
		}
	}
}

// SQLite has no advisory lock: concurrent migrators of one fresh file are
// serialised by a lock file beside it (`onboard dev` and `onboard migrate`
// at once, or two release phases).
func TestMigrateConcurrentlyOnAFreshSQLiteFile(t *testing.T) {
	t.Parallel()
	for range 3 { // unserialised, about two rounds in three failed
		migrateConcurrently(t, "sqlite:"+filepath.Join(t.TempDir(), "onboard.db"), 6)
	}
}

func TestCheckMigrated(t *testing.T) {
	t.Parallel()
	for name, dsn := range map[string]string{
		"postgres": storetest.NewUnmigratedPostgresDSN(t),
		"sqlite":   "sqlite:" + filepath.Join(t.TempDir(), "onboard.db"),
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			db := storetest.Open(t, dsn)
			err := store.CheckMigrated(ctx, db)
			if !errors.Is(err, store.ErrNotMigrated) || err.Error() != "database not migrated: run onboard migrate" {
				t.Fatalf("never migrated: %v", err)
			}
			if _, err := store.Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			if err := store.CheckMigrated(ctx, db); err != nil {
				t.Fatalf("migrated: %v", err)
			}
			// As if this binary shipped a migration the database lacks.
			if _, err := db.NewDelete().TableExpr("bun_migrations").Where("name = ?", "20261123000003").Exec(ctx); err != nil {
				t.Fatal(err)
			}
			err = store.CheckMigrated(ctx, db)
			if !errors.Is(err, store.ErrNotMigrated) || !strings.Contains(err.Error(), "1 pending (20261123000003_import_dry_runs): run onboard migrate") {
				t.Fatalf("one pending: %v", err)
			}
		})
	}
}
