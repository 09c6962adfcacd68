package workers

import (
	"context"
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
// than one page; an interrupted run that is retried skips what it already
// queued, because an invitation with an email queued is not due.
func (d *Deps) handleInviteResend(ctx context.Context, t *asynq.Task) error {
	var p jobs.InviteResend
	if err := jobs.Decode(t, &p); err != nil {
		return err
	}
	now := d.now()
	var total int
	if p.TenantID != "" {
		id, err := uuid.Parse(p.TenantID)
		if err != nil {
			return fmt.Errorf("invite:resend: tenant id: %v: %w", err, asynq.SkipRetry)
		}
		tenant, err := store.TenantByID(ctx, d.DB, id)
		if err != nil {
			return fmt.Errorf("invite:resend: %v: %w", err, asynq.SkipRetry)
		}
		if total, err = d.resendTenant(ctx, tenant, store.ResendPolicy{Now: now, DailyCap: d.ResendDailyCap}, now); err != nil {
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
			if due, err = store.LockForResend(ctx, tx, tenant.ID, ids); err != nil {
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
