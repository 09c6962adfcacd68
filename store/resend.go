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
	// (a tenant's resend_max resends plus the first send), counting the ones
	// that failed. Zero: no limit.
	MaxSends int
	// SentBefore picks invitations last sent, and last attempted, at or
	// before this time (the tenant's interval ago). Zero: any.
	SentBefore time.Time
	// Now excludes invitations already past their expiry (they are expired
	// by the expiry sweep, not reminded).
	Now time.Time
	// DailyCap is the most emails an invitation gets in 24 hours, whatever
	// asks for them (RESEND_DAILY_CAP). Zero: no cap.
	DailyCap int
	// NotEmailedSince leaves out invitations with an email created (queued)
	// or sent at or after this time: the time the run was asked for, so a
	// retry of a run that stopped half-way (a worker killed, its database
	// connection lost) skips the pages the first attempt already did, whose
	// emails may be sent by now. Zero: no such check.
	NotEmailedSince time.Time
}

// NoResendStatuses are the delivery statuses after which a run does not
// email the address again: it bounced, or its owner reported spam.
var NoResendStatuses = []string{EventBounced, EventComplained}

// SendsSince counts the emails (queued, sent or not) of each of the
// tenant's invitations created since the given time.
func SendsSince(ctx context.Context, db bun.IDB, tenantID uuid.UUID, invitationIDs []uuid.UUID, since time.Time) (map[uuid.UUID]int, error) {
	out := map[uuid.UUID]int{}
	if len(invitationIDs) == 0 {
		return out, nil
	}
	var rows []struct {
		InvitationID uuid.UUID `bun:"invitation_id,type:uuid"`
		N            int       `bun:"n"`
	}
	err := db.NewSelect().Model((*Delivery)(nil)).Column("invitation_id").ColumnExpr("COUNT(*) AS n").
		Where("tenant_id = ? AND invitation_id IN (?) AND created_at > ?", tenantID, bun.In(invitationIDs), since.UTC()).
		Group("invitation_id").Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("sends since: %w", err)
	}
	for _, r := range rows {
		out[r.InvitationID] = r.N
	}
	return out, nil
}

// DueForResend returns a page (keyset on id) of the tenant's pending
// invitations that the policy allows to resend: emailed before, or their
// email failed; the customer is active, the link has not expired, and no
// email of the invitation is queued or being sent (so a re-run of an
// interrupted resend does not queue a second one).
func DueForResend(ctx context.Context, db bun.IDB, tenantID uuid.UUID, p ResendPolicy, after uuid.UUID, limit int) ([]*Invitation, error) {
	var invs []*Invitation
	q := dueForResend(db.NewSelect().Model(&invs), tenantID, p).Where("i.id > ?", after)
	if err := q.Order("i.id").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("due for resend: %w", err)
	}
	return invs, nil
}

func dueForResend(q *bun.SelectQuery, tenantID uuid.UUID, p ResendPolicy) *bun.SelectQuery {
	q = q.Where("i.tenant_id = ? AND i.state = ?", tenantID, InvitationPending).
		// Emailed before, or asked to be and the email failed (SendGrid
		// refused it, or was down through all its retries): both are
		// waiting for the contact. A `saved` invitation was never asked to
		// be sent and is not pending.
		Where("(i.send_count > 0 OR i.delivery_status = ?)", DeliveryFailed).
		Where("(i.expires_at IS NULL OR i.expires_at > ?)", p.Now.UTC()).
		Where("EXISTS (SELECT 1 FROM customers c WHERE c.id = i.customer_id AND c.status = ?)", CustomerActive).
		Where("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.invitation_id = i.id AND d.state IN (?))", bun.In([]string{DeliveryQueued, DeliverySending})).
		Where("i.delivery_status NOT IN (?)", bun.In(NoResendStatuses))
	if p.MaxSends > 0 {
		// A failed attempt uses up a resend as a sent email does, so an
		// address SendGrid refuses (invalid, or on its block list) is tried
		// at most MaxSends times and not every night for as long as the
		// invitation lives. A failure is not told apart by its cause: after
		// an outage longer than invite:send's retries the same rule gives
		// the contact MaxSends-1 more tries, which is what we want there.
		q = q.Where("i.send_count + (SELECT COUNT(*) FROM deliveries d WHERE d.invitation_id = i.id AND d.state = ?) < ?", DeliveryFailed, p.MaxSends)
	}
	if p.DailyCap > 0 {
		q = q.Where("(SELECT COUNT(*) FROM deliveries d WHERE d.invitation_id = i.id AND d.created_at > ?) < ?", p.Now.Add(-24*time.Hour).UTC(), p.DailyCap)
	}
	if !p.SentBefore.IsZero() {
		// The interval runs from the last attempt, sent or not: an
		// invitation whose email failed has no last_sent_at.
		q = q.Where("(i.last_sent_at IS NULL OR i.last_sent_at <= ?)", p.SentBefore.UTC()).
			Where("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.invitation_id = i.id AND d.created_at > ?)", p.SentBefore.UTC())
	}
	if !p.NotEmailedSince.IsZero() {
		q = q.Where("(i.last_sent_at IS NULL OR i.last_sent_at < ?)", p.NotEmailedSince.UTC()).
			Where("NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.invitation_id = i.id AND d.created_at >= ?)", p.NotEmailedSince.UTC())
	}
	return q
}

// LockForResend takes the invitations, by id, that are still pending,
// locked FOR UPDATE on Postgres until the transaction ends (SQLite has one
// writer at a time already), and returns those the policy still allows to
// resend. A page read by DueForResend outside the transaction may meet
// another resend (a second "resend all", the nightly run, an API resend of
// one address, an earlier attempt of the same run) that queued or sent
// emails since: those invitations are left out here, so each gets one email.
func LockForResend(ctx context.Context, tx bun.IDB, tenantID uuid.UUID, p ResendPolicy, ids []uuid.UUID) ([]*Invitation, error) {
	var invs []*Invitation
	if len(ids) == 0 {
		return invs, nil
	}
	q := tx.NewSelect().Model(&invs).
		Where("i.tenant_id = ? AND i.id IN (?) AND i.state = ?", tenantID, bun.In(ids), InvitationPending).
		Order("i.id") // lockers take rows in one order: no deadlock
	if DialectOfDB(tx) == Postgres {
		q = q.For("UPDATE")
	}
	if err := q.Scan(ctx); err != nil {
		return nil, fmt.Errorf("lock invitations for resend: %w", err)
	}
	if len(invs) == 0 {
		return invs, nil
	}
	// Checked again after the lock: a concurrent resend that queued an
	// email has committed by now, and this statement sees it.
	var due []*Invitation
	if err := dueForResend(tx.NewSelect().Model(&due), tenantID, p).Where("i.id IN (?)", bun.In(ids)).Order("i.id").Scan(ctx); err != nil {
		return nil, fmt.Errorf("lock invitations for resend: %w", err)
	}
	return due, nil
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
