package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// Delivery states: one email to be sent, being sent or done.
//
//	queued ──claim──> sending ──provider 2xx──> sent ──event──> bounced
//	   ^                 │ transient error, or the     (or delivered/complained as an event)
//	   │                 │ request refused as a whole (revoked key, unverified sender)
//	   └─────release─────┘ permanent error of the email / retries exhausted ──> failed
//
// A claim holds a lease: a worker that dies mid-send leaves the delivery in
// `sending`, and once the lease runs out another attempt takes it over.
const (
	DeliveryQueued  = "queued"
	DeliverySending = "sending"
	DeliverySent    = "sent"
	DeliveryFailed  = "failed"
	DeliveryBounced = "bounced"
)

// Delivery kinds.
const (
	DeliveryInvitation   = "invitation"
	DeliveryImportReport = "import_report"
)

// Delivery is one email: an invitation (or a resend of it), or an import's
// confirmation to its sender.
type Delivery struct {
	bun.BaseModel `bun:"table:deliveries,alias:d"`

	ID                uuid.UUID     `bun:"id,pk,type:uuid"`
	TenantID          uuid.UUID     `bun:"tenant_id,type:uuid"`
	InvitationID      uuid.NullUUID `bun:"invitation_id,type:uuid"`
	ImportID          uuid.NullUUID `bun:"import_id,type:uuid"`
	Kind              string        `bun:"kind"`
	State             string        `bun:"state"`
	Event             string        `bun:"event"`
	Attempts          int           `bun:"attempts"`
	LastError         string        `bun:"last_error"`
	ProviderMessageID string        `bun:"provider_message_id"`
	LeaseUntil        time.Time     `bun:"lease_until,nullzero"`
	SentAt            time.Time     `bun:"sent_at,nullzero"`
	CreatedAt         time.Time     `bun:"created_at"`
	UpdatedAt         time.Time     `bun:"updated_at"`

	// invitationMarked: the invitation was stored already showing this
	// email as queued, so MarkDeliveriesQueued need not update it.
	invitationMarked bool
}

// NewInvitationDelivery is a queued email for an invitation.
func NewInvitationDelivery(inv *Invitation, now time.Time) *Delivery {
	return &Delivery{
		ID:           uuid.Must(uuid.NewV7()),
		TenantID:     inv.TenantID,
		InvitationID: uuid.NullUUID{UUID: inv.ID, Valid: true},
		Kind:         DeliveryInvitation,
		State:        DeliveryQueued,
		CreatedAt:    now.UTC(),
		UpdatedAt:    now.UTC(),

		invitationMarked: inv.DeliveryStatus == DeliveryQueued && inv.DeliveryError == "",
	}
}

// InsertDeliveries stores new deliveries in one statement.
func InsertDeliveries(ctx context.Context, db bun.IDB, ds []*Delivery) error {
	if len(ds) == 0 {
		return nil
	}
	rows := make([][]any, len(ds))
	for i, d := range ds {
		rows[i] = []any{pgUUID(d.ID), pgUUID(d.TenantID), pgNullUUID(d.InvitationID), pgNullUUID(d.ImportID), d.Kind, d.State, d.Event,
			int32(d.Attempts), d.LastError, d.ProviderMessageID, pgTime(d.LeaseUntil), pgTime(d.SentAt), d.CreatedAt.UTC(), d.UpdatedAt.UTC()}
	}
	copied, err := copyRows(ctx, db, "deliveries", []string{"id", "tenant_id", "invitation_id", "import_id", "kind", "state", "event",
		"attempts", "last_error", "provider_message_id", "lease_until", "sent_at", "created_at", "updated_at"}, rows)
	if !copied {
		_, err = db.NewInsert().Model(&ds).Exec(ctx)
	}
	if err != nil {
		return fmt.Errorf("insert deliveries: %w", err)
	}
	return nil
}

// GetDelivery loads one delivery.
func GetDelivery(ctx context.Context, db bun.IDB, id uuid.UUID) (*Delivery, error) {
	d := new(Delivery)
	if err := db.NewSelect().Model(d).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("delivery %s: %w", id, notFound(err))
	}
	return d, nil
}

// ClaimDeliveries moves the given deliveries that are queued, or sending with
// an expired lease, to sending under a new lease, and returns them. The
// deliveries it does not return are done, or leased by another worker.
func ClaimDeliveries(ctx context.Context, db bun.IDB, ids []uuid.UUID, lease time.Duration, now time.Time) ([]*Delivery, error) {
	var claimed []*Delivery
	if len(ids) == 0 {
		return claimed, nil
	}
	_, err := db.NewUpdate().Model(&claimed).ModelTableExpr("deliveries").
		Set("state = ?", DeliverySending).
		Set("lease_until = ?", now.Add(lease).UTC()).
		Set("attempts = attempts + 1").
		Set("updated_at = ?", now.UTC()).
		Where("id IN (?)", bun.In(ids)).
		Where("(state = ? OR (state = ? AND lease_until < ?))", DeliveryQueued, DeliverySending, now.UTC()).
		Returning("*").
		Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("claim deliveries: %w", err)
	}
	return claimed, nil
}

// LeasedDeliveries counts the given deliveries another worker is sending now.
func LeasedDeliveries(ctx context.Context, db bun.IDB, ids []uuid.UUID, now time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	n, err := db.NewSelect().Model((*Delivery)(nil)).
		Where("id IN (?) AND state = ? AND lease_until >= ?", bun.In(ids), DeliverySending, now.UTC()).
		Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("leased deliveries: %w", err)
	}
	return int(n), nil
}

// MarkDeliveriesSent records the provider's acceptance of the deliveries and
// counts the send on their invitations. expiresAt, when not zero, is the
// expiry the emails announce: it becomes the invitations' expiry now that the
// emails are out, and not before (a send that fails or waits must not bring
// an expired link back to life).
func MarkDeliveriesSent(ctx context.Context, db bun.IDB, ids []uuid.UUID, messageID string, expiresAt, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	// One transaction: a delivery recorded sent with its invitation not
	// counted (or the earlier links still live) would stay so, since a
	// retry finds the delivery sent. Only the deliveries this call moves
	// from sending to sent count, so calling it again changes nothing.
	return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var marked []uuid.UUID
		_, err := tx.NewUpdate().Model((*Delivery)(nil)).ModelTableExpr("deliveries").
			Set("state = ?", DeliverySent).
			Set("provider_message_id = ?", messageID).
			Set("sent_at = ?", now.UTC()).
			Set("lease_until = NULL").
			Set("last_error = ''").
			Set("updated_at = ?", now.UTC()).
			Where("id IN (?) AND state = ?", bun.In(ids), DeliverySending).
			Returning("id").
			Exec(ctx, &marked)
		if err != nil {
			return fmt.Errorf("mark deliveries sent: %w", err)
		}
		if len(marked) == 0 {
			return nil
		}
		q := tx.NewUpdate().Model((*Invitation)(nil)).ModelTableExpr("invitations").
			Set("send_count = send_count + 1").
			Set("last_sent_at = ?", now.UTC()).
			Set("delivery_status = ?", DeliverySent).
			Set("delivery_error = ''").
			Set("updated_at = ?", now.UTC()).
			Where("id IN (SELECT invitation_id FROM deliveries WHERE id IN (?))", bun.In(marked))
		if !expiresAt.IsZero() {
			q = q.Set("expires_at = ?", expiresAt.UTC())
		}
		if _, err := q.Exec(ctx); err != nil {
			return fmt.Errorf("count sends: %w", err)
		}
		// The new email's link replaces the links of the invitation's earlier
		// emails now that it is out, not when it was minted (IssueTokens).
		_, err = tx.NewUpdate().Model((*InvitationToken)(nil)).
			Set("superseded_at = ?", now.UTC()).
			Where("superseded_at IS NULL AND delivery_id NOT IN (?)", bun.In(marked)).
			Where("invitation_id IN (SELECT invitation_id FROM deliveries WHERE id IN (?) AND invitation_id IS NOT NULL)", bun.In(marked)).
			Exec(ctx)
		if err != nil {
			return fmt.Errorf("retire earlier links: %w", err)
		}
		return nil
	})
}

// ReleaseDeliveries hands leased deliveries back to the queue after a
// transient failure, keeping the reason.
func ReleaseDeliveries(ctx context.Context, db bun.IDB, ids []uuid.UUID, reason string, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.NewUpdate().Model((*Delivery)(nil)).ModelTableExpr("deliveries").
		Set("state = ?", DeliveryQueued).
		Set("lease_until = NULL").
		Set("last_error = ?", reason).
		Set("updated_at = ?", now.UTC()).
		Where("id IN (?) AND state = ?", bun.In(ids), DeliverySending).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("release deliveries: %w", err)
	}
	return nil
}

// FailDeliveries records a permanent failure of the deliveries (and on their
// invitations, so the vendor sees why no email arrived).
func FailDeliveries(ctx context.Context, db bun.IDB, ids []uuid.UUID, reason string, now time.Time) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := db.NewUpdate().Model((*Delivery)(nil)).ModelTableExpr("deliveries").
		Set("state = ?", DeliveryFailed).
		Set("lease_until = NULL").
		Set("last_error = ?", reason).
		Set("updated_at = ?", now.UTC()).
		Where("id IN (?) AND state IN (?)", bun.In(ids), bun.In([]string{DeliveryQueued, DeliverySending})).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("fail deliveries: %w", err)
	}
	_, err = db.NewUpdate().Model((*Invitation)(nil)).ModelTableExpr("invitations").
		Set("delivery_status = ?", DeliveryFailed).
		Set("delivery_error = ?", reason).
		Set("updated_at = ?", now.UTC()).
		Where("id IN (SELECT invitation_id FROM deliveries WHERE id IN (?))", bun.In(ids)).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("fail deliveries: invitations: %w", err)
	}
	return nil
}

// InvitationsWithEmailInFlight tells which of the invitations have an email
// queued or being sent.
func InvitationsWithEmailInFlight(ctx context.Context, db bun.IDB, invs []*Invitation) (map[uuid.UUID]bool, error) {
	out := map[uuid.UUID]bool{}
	if len(invs) == 0 {
		return out, nil
	}
	ids := make([]uuid.UUID, len(invs))
	for i, inv := range invs {
		ids[i] = inv.ID
	}
	var busy []uuid.UUID
	err := db.NewSelect().Model((*Delivery)(nil)).Column("invitation_id").
		Where("invitation_id IN (?) AND state IN (?)", bun.In(ids), bun.In([]string{DeliveryQueued, DeliverySending})).
		Scan(ctx, &busy)
	if err != nil {
		return nil, fmt.Errorf("emails in flight: %w", err)
	}
	for _, id := range busy {
		out[id] = true
	}
	return out, nil
}

// MarkDeliveriesQueued shows on the deliveries' invitations that an email is
// on its way.
func MarkDeliveriesQueued(ctx context.Context, db bun.IDB, ds []*Delivery, now time.Time) error {
	ids := make([]uuid.UUID, 0, len(ds))
	for _, d := range ds {
		if d.InvitationID.Valid && !d.invitationMarked {
			ids = append(ids, d.InvitationID.UUID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	_, err := db.NewUpdate().Model((*Invitation)(nil)).ModelTableExpr("invitations").
		Set("delivery_status = ?", DeliveryQueued).
		Set("delivery_error = ''").
		Set("updated_at = ?", now.UTC()).
		Where("id IN (?)", bun.In(ids)).Exec(ctx)
	if err != nil {
		return fmt.Errorf("mark deliveries queued: %w", err)
	}
	return nil
}
