package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// resendable stores a pending invitation of an active customer, emailed
// once at sentAt, and returns it.
func resendable(t *testing.T, db bun.IDB, ten *store.Tenant, account string, sentAt time.Time) *store.Invitation {
	t.Helper()
	ctx := context.Background()
	c := newCustomer(t, db, ten, account)
	if _, err := db.NewUpdate().Model((*store.Customer)(nil)).Set("status = ?", store.CustomerActive).Where("id = ?", c.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	inv := newInvitation(t, db, c, account+"@example.com", store.InvitationPending)
	d := store.NewInvitationDelivery(inv, sentAt)
	d.State, d.SentAt = store.DeliverySent, sentAt
	if err := store.InsertDeliveries(ctx, db, []*store.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NewUpdate().Model((*store.Invitation)(nil)).
		Set("send_count = 1").Set("last_sent_at = ?", sentAt).Set("delivery_status = ?", store.DeliverySent).
		Set("expires_at = ?", sentAt.Add(ten.InviteTTL())).Where("id = ?", inv.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	return inv
}

func dueIDs(t *testing.T, db bun.IDB, ten *store.Tenant, p store.ResendPolicy) map[uuid.UUID]bool {
	t.Helper()
	invs, err := store.DueForResend(context.Background(), db, ten.ID, p, uuid.Nil, 100)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]bool{}
	for _, inv := range invs {
		out[inv.ID] = true
	}
	// The check after the lock agrees.
	ids := make([]uuid.UUID, 0, len(out))
	for id := range out {
		ids = append(ids, id)
	}
	locked, err := store.LockForResend(context.Background(), db, ten.ID, p, ids)
	if err != nil || len(locked) != len(out) {
		t.Fatalf("LockForResend kept %d of %d: %v", len(locked), len(out), err)
	}
	return out
}

// A run asked for at `asked` leaves out the invitations emailed since (by an
// earlier attempt of the same run): an email created then, whatever became
// of it, or sent then.
func TestDueForResendSkipsWhatWasEmailedSinceTheRequest(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		ctx := context.Background()
		ten := newTenant(t, db, "resend")
		asked := t0.Add(5 * 24 * time.Hour)
		before := resendable(t, db, ten, "A1", t0)
		failedSince := resendable(t, db, ten, "A2", t0)
		sentSince := resendable(t, db, ten, "A3", t0)
		d := store.NewInvitationDelivery(failedSince, asked)
		d.State = store.DeliveryFailed
		if err := store.InsertDeliveries(ctx, db, []*store.Delivery{d}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewUpdate().Model((*store.Invitation)(nil)).Set("last_sent_at = ?", asked.Add(time.Minute)).Where("id = ?", sentSince.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		p := store.ResendPolicy{Now: asked.Add(time.Hour)}
		if got := dueIDs(t, db, ten, p); len(got) != 3 {
			t.Fatalf("without a request time: %d due, want 3", len(got))
		}
		p.NotEmailedSince = asked
		if got := dueIDs(t, db, ten, p); len(got) != 1 || !got[before.ID] {
			t.Fatalf("due %v, want only %s (emailed before the request)", got, before.ID)
		}
	})
}
