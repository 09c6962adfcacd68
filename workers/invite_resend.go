package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/invite"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// resendPageSize is how many invitations one page of a resend run reads and
// queues in one transaction: one invite:send task of SendGrid's maximum
// batch.
const resendPageSize = jobs.MaxDeliveriesPerSend

// handleInviteResend resends pending invitations: every tenant's due ones
// under its policy (the nightly run), or every pending one of a tenant (a
// vendor's "resend all"). It pages through the database and never holds more
// than one page. A run that is retried (its database connection was lost,
// its worker killed) skips what an earlier attempt did: an invitation with
// an email queued, or queued or sent since the run was asked for, is not
// due, though the earlier attempt's emails may be sent by now.
func (d *Deps) handleInviteResend(ctx context.Context, t *asynq.Task) error {
	var p jobs.InviteResend
	if err := jobs.Decode(t, &p); err != nil {
		return err
	}
	since, err := d.resendAskedAt(ctx, p)
	if err != nil {
		return err
	}
	now := d.now()
	// The run's own emails must count as emailed since the request also
	// when this worker's clock is behind the one that stamped it.
	if now.Before(since) {
		now = since
	}
	var total int
	if p.TenantID != "" {
		id, err := uuid.Parse(p.TenantID)
		if err != nil {
			return fmt.Errorf("invite:resend: tenant id: %v: %w", err, asynq.SkipRetry)
		}
		tenant, err := store.TenantByID(ctx, d.DB, id)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("invite:resend: %v: %w", err, asynq.SkipRetry)
		}
		if err != nil {
			return fmt.Errorf("invite:resend: %w", err) // the database: asynq retries
		}
		policy := store.ResendPolicy{Now: now, DailyCap: d.ResendDailyCap, NotEmailedSince: since}
		if total, err = d.resendTenant(ctx, tenant, policy, now); err != nil {
			return err
		}
	} else {
		after := uuid.Nil
		for {
			tenants, err := store.TenantsPage(ctx, d.DB, after, 100)
			if err != nil {
				return err
			}
			for _, tenant := range tenants {
				policy := store.ResendPolicy{
					MaxSends:   tenant.ResendMax + 1,
					SentBefore: now.Add(-tenant.ResendInterval()),
					Now:        now,
					DailyCap:   d.ResendDailyCap,
					// The interval alone keeps out what an earlier attempt
					// sent, but not an email it queued that failed since.
					NotEmailedSince: since,
				}
				n, err := d.resendTenant(ctx, tenant, policy, now)
				if err != nil {
					return err
				}
				total += n
			}
			if len(tenants) < 100 {
				break
			}
			after = tenants[len(tenants)-1].ID
		}
	}
	d.Log.InfoContext(ctx, "resend run queued emails", "emails", total, "tenant_id", p.TenantID, "slot", p.Slot)
	d.completed(ctx)
	return nil
}

// resendAskedAt is when the run was asked for: the vendor's request time, or
// the nightly slot. A payload queued before it carried its time has the
// outbox's record of the task instead (recorded with the request, kept a
// week); with neither, zero: only emails in flight are skipped, as before.
func (d *Deps) resendAskedAt(ctx context.Context, p jobs.InviteResend) (time.Time, error) {
	for _, s := range []string{p.RequestedAt, p.Slot} {
		if s == "" {
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("invite:resend: request time %q: %v: %w", s, err, asynq.SkipRetry)
		}
		return at, nil
	}
	id, ok := asynq.GetTaskID(ctx)
	if !ok {
		return time.Time{}, nil
	}
	ot, err := store.GetOutboxTask(ctx, d.DB, id)
	if errors.Is(err, store.ErrNotFound) {
		d.Log.WarnContext(ctx, "invite:resend: no request time; a retry skips only emails in flight", "task_id", id)
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	return ot.CreatedAt, nil
}

func (d *Deps) resendTenant(ctx context.Context, tenant *store.Tenant, policy store.ResendPolicy, now time.Time) (int, error) {
	total := 0
	after := uuid.Nil
	for {
		invs, err := store.DueForResend(ctx, d.DB, tenant.ID, policy, after, resendPageSize)
		if err != nil {
			return total, err
		}
		if len(invs) == 0 {
			return total, nil
		}
		ids := make([]uuid.UUID, len(invs))
		for i, inv := range invs {
			ids[i] = inv.ID
		}
		var queued []jobs.Job
		var due []*store.Invitation
		err = d.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if due, err = store.LockForResend(ctx, tx, tenant.ID, policy, ids); err != nil {
				return err
			}
			queued, err = invite.QueueEmails(ctx, tx, tenant.ID, due, now)
			return err
		})
		if err != nil {
			return total, err
		}
		d.Dispatcher.Dispatch(ctx, queued...)
		total += len(due)
		if len(invs) < resendPageSize {
			return total, nil
		}
		after = invs[len(invs)-1].ID
	}
}

// handleInviteExpire marks pending invitations past their expiry expired.
func (d *Deps) handleInviteExpire(ctx context.Context, t *asynq.Task) error {
	n, err := store.ExpireInvitations(ctx, d.DB, d.now())
	if err != nil {
		return err
	}
	d.Log.InfoContext(ctx, "expired invitations", "count", n)
	d.completed(ctx)
	return nil
}
