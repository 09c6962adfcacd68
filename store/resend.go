package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// ResendPolicy selects the pending invitations a resend run picks up.
type ResendPolicy struct {
	// MaxSends is the most emails an invitation gets, the first one included
	// (a tenant's resend_max resends plus the first send). Zero: no limit.
	MaxSends int
	// SentBefore picks invitations last sent at or before this time (the
	// tenant's interval ago). Zero: any.
	SentBefore time.Time
	// Now excludes invitations already past their expiry (they are expired
	// by the expiry sweep, not reminded).
	Now time.Time
}

// DueForResend returns a page (keyset on id) of the tenant's pending
// invitations that the policy allows to resend: the customer is active, the
// link has not expired, and no email of the invitation is queued or being
// sent (so a re-run of an interrupted resend does not queue a second one).
func DueForResend(ctx context.Context, db bun.IDB, tenantID uuid.UUID, p ResendPolicy, after uuid.UUID, limit int) ([]*Invitation, error) {
	var invs []*Invitation
	q := db.NewSelect().Model(&invs).
		Where("i.tenant_id = ? AND i.state = ? AND i.id > ?", tenantID, InvitationPending, after).
		Where("i.send_count > 0").
		Where("(i.expires_at IS NULL OR i.expires_at > ?)", p.Now.UTC()).
		Where("EXISTS (SELECT 1 FROM customers c WHERE c.id = i.customer_id AND c.status = ?)", CustomerActive).
		Where("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.invitation_id = i.id AND d.state IN (?))", bun.In([]string{DeliveryQueued, DeliverySending}))
	if p.MaxSends > 0 {
		q = q.Where("i.send_count < ?", p.MaxSends)
	}
	if !p.SentBefore.IsZero() {
		q = q.Where("i.last_sent_at <= ?", p.SentBefore.UTC())
	}
	if err := q.Order("i.id").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("due for resend: %w", err)
	}
	return invs, nil
}

// ExpireInvitations moves pending invitations past their expiry to expired
// and returns how many it moved.
func ExpireInvitations(ctx context.Context, db bun.IDB, now time.Time) (int64, error) {
	res, err := db.NewUpdate().Model((*Invitation)(nil)).ModelTableExpr("invitations").
		Set("state = ?", InvitationExpired).
		Set("updated_at = ?", now.UTC()).
		Where("state = ? AND expires_at IS NOT NULL AND expires_at <= ?", InvitationPending, now.UTC()).
		Where("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.invitation_id = invitations.id AND d.state IN (?))", bun.In([]string{DeliveryQueued, DeliverySending})).
		Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("expire invitations: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// TenantsPage returns a page of tenants in id order.
func TenantsPage(ctx context.Context, db bun.IDB, after uuid.UUID, limit int) ([]*Tenant, error) {
	var ts []*Tenant
	if err := db.NewSelect().Model(&ts).Where("id > ?", after).Order("id").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	return ts, nil
}
