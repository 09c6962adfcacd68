package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// What the provider said happened to a sent email, as recorded on the
// delivery's event (and the invitation's delivery_status). Events arrive
// late, out of order and more than once, so a record only moves forward:
// delivered, then blocked, then bounced, then complained; an event of the
// same or a lower rank changes nothing. A hard bounce outranks a block: a
// block is usually the receiving server's policy of the moment, a bounce
// says the address is bad, and resend runs must stop mailing it.
const (
	EventDelivered  = "delivered"
	EventBlocked    = "blocked" // refused by the receiving server's policy; kept apart from bounces
	EventBounced    = "bounced"
	EventComplained = "complained"
)

// eventRank orders the events.
var eventRank = map[string]int{EventDelivered: 1, EventBlocked: 2, EventBounced: 3, EventComplained: 4}

// rankSQL is eventRank as SQL over a column.
func rankSQL(col string) string {
	return "(CASE " + col + " WHEN 'delivered' THEN 1 WHEN 'blocked' THEN 2 WHEN 'bounced' THEN 3 WHEN 'complained' THEN 4 ELSE 0 END)"
}

// DeliveryEvent is one provider event mapped back to our records through
// the custom_args sent with the email.
type DeliveryEvent struct {
	TenantID     uuid.UUID
	DeliveryID   uuid.NullUUID // absent on events for emails sent before delivery ids were sent along
	InvitationID uuid.NullUUID
	Event        string // one of the Event constants
	Reason       string // the provider's reason for a bounce or block
}

// EventResult says what applying an event did.
type EventResult struct {
	Applied    bool // the delivery moved forward
	Invitation bool // and so did its invitation's delivery_status
}

// ApplyDeliveryEvent moves the delivery (and its invitation, when this is
// the invitation's latest email) forward to the event, if it is ahead of
// what is recorded. Every lookup is scoped to the event's tenant.
func ApplyDeliveryEvent(ctx context.Context, db bun.IDB, e DeliveryEvent, now time.Time) (EventResult, error) {
	var res EventResult
	rank, ok := eventRank[e.Event]
	if !ok {
		return res, fmt.Errorf("apply delivery event: unknown event %q", e.Event)
	}
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		d := new(Delivery)
		q := tx.NewSelect().Model(d).Where("d.tenant_id = ?", e.TenantID)
		switch {
		case e.DeliveryID.Valid:
			q = q.Where("d.id = ?", e.DeliveryID.UUID)
			if e.InvitationID.Valid {
				q = q.Where("d.invitation_id = ?", e.InvitationID.UUID)
			}
		case e.InvitationID.Valid:
			// Without a delivery id the event is about the invitation's
			// latest email that reached the provider.
			q = q.Where("d.invitation_id = ?", e.InvitationID.UUID).
				Where("d.state IN (?)", bun.In([]string{DeliverySent, DeliveryBounced})).
				OrderExpr("d.created_at DESC").Limit(1)
		default:
			return nil
		}
		if err := q.Scan(ctx); errors.Is(err, sql.ErrNoRows) {
			return nil // not ours, or not this tenant's: nothing to change
		} else if err != nil {
			return err
		}
		upd := tx.NewUpdate().Model((*Delivery)(nil)).ModelTableExpr("deliveries").
			Set("event = ?", e.Event).
			Set("updated_at = ?", now.UTC()).
			Where("id = ? AND tenant_id = ?", d.ID, e.TenantID).
			Where(rankSQL("event")+" < ?", rank)
		if e.Event == EventBounced {
			upd = upd.Set("state = CASE WHEN state = ? THEN ? ELSE state END", DeliverySent, DeliveryBounced)
		}
		if e.Reason != "" {
			upd = upd.Set("last_error = ?", e.Reason)
		}
		r, err := upd.Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := r.RowsAffected(); n == 0 {
			return nil // a duplicate, or older news
		}
		res.Applied = true
		if !d.InvitationID.Valid {
			return nil
		}
		// A resend supersedes the earlier email: news about an older one no
		// longer describes the invitation.
		iu := tx.NewUpdate().Model((*Invitation)(nil)).ModelTableExpr("invitations").
			Set("delivery_status = ?", e.Event).
			Set("updated_at = ?", now.UTC()).
			Where("id = ? AND tenant_id = ?", d.InvitationID.UUID, e.TenantID).
			Where(rankSQL("delivery_status")+" < ?", rank).
			Where("NOT EXISTS (SELECT 1 FROM deliveries AS newer WHERE newer.invitation_id = ? AND newer.created_at > ?)", d.InvitationID.UUID, d.CreatedAt)
		if e.Reason != "" {
			iu = iu.Set("delivery_error = ?", e.Reason)
		}
		r, err = iu.Exec(ctx)
		if err != nil {
			return err
		}
		n, _ := r.RowsAffected()
		res.Invitation = n > 0
		return nil
	})
	if err != nil {
		return EventResult{}, fmt.Errorf("apply delivery event: %w", err)
	}
	return res, nil
}
