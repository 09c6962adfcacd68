// Package invite owns queueing invitation emails: a delivery per email and
// the invite:send tasks that carry them, recorded in the caller's
// transaction and dispatched after its commit.
package invite

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// QueueEmails creates a queued delivery for each invitation (all of one
// tenant) and records invite:send tasks of up to jobs.MaxDeliveriesPerSend
// deliveries each. Call it inside a transaction and dispatch the returned jobs
// after the commit.
func QueueEmails(ctx context.Context, tx bun.IDB, tenantID uuid.UUID, invs []*store.Invitation, now time.Time) ([]jobs.Job, error) {
	var out []jobs.Job
	for start := 0; start < len(invs); start += jobs.MaxDeliveriesPerSend {
		chunk := invs[start:min(start+jobs.MaxDeliveriesPerSend, len(invs))]
		ds := make([]*store.Delivery, len(chunk))
		ids := make([]string, len(chunk))
		for i, inv := range chunk {
			ds[i] = store.NewInvitationDelivery(inv, now)
			ids[i] = ds[i].ID.String()
		}
		if err := store.InsertDeliveries(ctx, tx, ds); err != nil {
			return nil, err
		}
		if err := store.MarkDeliveriesQueued(ctx, tx, ds, now); err != nil {
			return nil, err
		}
		for _, inv := range chunk {
			inv.DeliveryStatus = store.DeliveryQueued
		}
		job := jobs.NewInviteSend(tenantID.String(), ids)
		if err := outbox.Record(ctx, tx, tenantID, now, job); err != nil {
			return nil, err
		}
		out = append(out, job)
	}
	return out, nil
}
