package workers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

const refusedAddress = `{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to"}]}`

// failedFirstEmail stores a pending invitation whose first email failed
// (SendGrid down through every retry of invite:send) at failedAt.
func (f *fixture) failedFirstEmail(t *testing.T, account, email string, failedAt time.Time) *store.Invitation {
	t.Helper()
	ctx := context.Background()
	d := f.pendingDelivery(t, account, email, store.CustomerActive)
	if err := store.FailDeliveries(ctx, f.db, []uuid.UUID{d.ID}, "gave up after retries: 503 Service Unavailable", failedAt); err != nil {
		t.Fatal(err)
	}
	inv, err := store.GetInvitation(ctx, f.db, f.tenant.ID, d.InvitationID.UUID)
	if err != nil || inv.SendCount != 0 || inv.DeliveryStatus != store.DeliveryFailed {
		t.Fatalf("invitation %+v, %v", inv, err)
	}
	return inv
}

// sendQueued runs invite:send for every queued email, as the worker pool
// would, with SendGrid refusing the first `refuse` requests' recipients.
func (f *fixture) sendQueued(t *testing.T, refuse int) {
	t.Helper()
	var ds []*store.Delivery
	if err := f.db.NewSelect().Model(&ds).Where("state = ?", store.DeliveryQueued).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if refuse > 0 {
		f.fake.FailNextWith(400, refusedAddress, refuse)
	}
	for _, d := range ds {
		if err := f.process(t, d); err != nil {
			t.Fatal(err)
		}
	}
}

// Pending invitations whose first email failed (after a SendGrid outage
// longer than invite:send's retries) are resent by the nightly run and by
// "resend all", as the pending list shows them; an invitation only saved is
// not.
func TestResendRunsReachInvitationsWhoseFirstEmailFailed(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		job  func(f *fixture, now time.Time) jobs.Job
	}{
		{"nightly", func(f *fixture, now time.Time) jobs.Job { return jobs.NewScheduled(jobs.TypeInviteResend, now) }},
		{"resend all pending", func(f *fixture, now time.Time) jobs.Job {
			return jobs.NewResendAllPending(f.tenant.ID.String(), "req-1", now)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Each(t, func(t *testing.T, db *bun.DB) {
				f := newFixture(t, db)
				withDispatcher(t, f)
				ctx := context.Background()
				now := t0.Add(10 * 24 * time.Hour)
				f.deps.Now = func() time.Time { return now }
				failed := f.failedFirstEmail(t, "1", "outage@example.com", now.Add(-4*24*time.Hour))
				// Failed only a day ago: the nightly run waits the interval.
				recent := f.failedFirstEmail(t, "2", "recent@example.com", now.Add(-24*time.Hour))
				if _, err := db.NewUpdate().Model((*store.Delivery)(nil)).Set("created_at = ?", now.Add(-24*time.Hour)).Where("invitation_id = ?", recent.ID).Exec(ctx); err != nil {
					t.Fatal(err)
				}
				c := &store.Customer{TenantID: f.tenant.ID, CompanyName: "Saved", Status: store.CustomerActive, AccountNumbers: []string{"3"}, CreatedAt: t0, UpdatedAt: t0}
				if err := store.InsertCustomer(ctx, db, c); err != nil {
					t.Fatal(err)
				}
				saved := &store.Invitation{TenantID: f.tenant.ID, CustomerID: c.ID, Email: "saved@example.com", EmailNormalized: "saved@example.com", State: store.InvitationSaved, CreatedAt: t0, UpdatedAt: t0}
				if err := store.InsertInvitation(ctx, db, saved); err != nil {
					t.Fatal(err)
				}

				f.run(t, tc.job(f, now))
				got := f.queuedFor(t)
				want := map[uuid.UUID]int{failed.ID: 1}
				if tc.name == "resend all pending" {
					want[recent.ID] = 1
				}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("queued %v, want %v (failed %s, failed recently %s, saved %s)", got, want, failed.ID, recent.ID, saved.ID)
				}
				f.sendQueued(t, 0)
				inv, _ := store.GetInvitation(ctx, db, f.tenant.ID, failed.ID)
				if inv.SendCount != 1 || inv.DeliveryStatus != store.DeliverySent || !inv.ExpiresAt.Equal(now.Add(f.tenant.InviteTTL())) {
					t.Fatalf("after the resend: %+v", inv)
				}
			})
		})
	}
}

// An address SendGrid refuses is not tried every night: each failed
// attempt uses up one of the tenant's resend_max resends, and the expiry
// does not move, whether the invitation's first email went out or not.
func TestNightlyRunGivesUpOnAnAddressSendGridRefuses(t *testing.T) {
	t.Parallel()
	for _, firstSent := range []bool{true, false} {
		t.Run(fmt.Sprint("first email sent ", firstSent), func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, storetest.NewPostgres(t))
			withDispatcher(t, f)
			ctx := context.Background()
			night := t0.Add(5 * 24 * time.Hour)
			f.deps.Now = func() time.Time { return night }
			var inv *store.Invitation
			if firstSent {
				inv = f.sentInvitation(t, "1", "refused@example.com", store.CustomerActive, night.Add(-4*24*time.Hour), 1)
			} else {
				inv = f.failedFirstEmail(t, "1", "refused@example.com", night.Add(-4*24*time.Hour))
			}
			// Thirty nights, the interval three days: without a bound the
			// address would be tried ten times.
			for range 30 {
				f.run(t, jobs.NewScheduled(jobs.TypeInviteResend, night))
				f.sendQueued(t, 1)
				night = night.Add(24 * time.Hour)
			}
			n, err := f.db.NewSelect().Model((*store.Delivery)(nil)).Where("invitation_id = ?", inv.ID).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			// resend_max (3) resends after the first email.
			if want := f.tenant.ResendMax + 1; int(n) != want {
				t.Fatalf("%d emails attempted, want %d", n, want)
			}
			got, _ := store.GetInvitation(ctx, f.db, f.tenant.ID, inv.ID)
			if !got.ExpiresAt.Equal(inv.ExpiresAt) || got.SendCount != inv.SendCount || got.DeliveryStatus != store.DeliveryFailed {
				t.Fatalf("after the failed resends: expiry %v (was %v), %d sends (was %d), status %s", got.ExpiresAt, inv.ExpiresAt, got.SendCount, inv.SendCount, got.DeliveryStatus)
			}
		})
	}
}
