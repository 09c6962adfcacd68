package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/secret"
)

// Invitation states.
const (
	InvitationSaved    = "saved"    // stored, never sent ("Save")
	InvitationPending  = "pending"  // sent, not accepted yet
	InvitationAccepted = "accepted" // the contact has a portal account
	InvitationExpired  = "expired"  // the link ran out before it was accepted
	InvitationRevoked  = "revoked"  // withdrawn by the vendor; frees the email
)

// Invitation kinds: who invited the contact.
const (
	KindVendor        = "vendor"         // the vendor's invite of a customer's initial contact
	KindCustomerAdmin = "customer_admin" // a customer admin's invite of a colleague
)

// RoleAdmin is the portal role of a customer's initial contact.
const RoleAdmin = "admin"

// Invitation is a contact of a customer and the invitation that brings that
// contact into the portal. The email is the contact's login: it is stored as
// typed, compared normalised, and never updated.
type Invitation struct {
	bun.BaseModel `bun:"table:invitations,alias:i"`

	ID              uuid.UUID     `bun:"id,pk,type:uuid"`
	TenantID        uuid.UUID     `bun:"tenant_id,type:uuid"`
	CustomerID      uuid.UUID     `bun:"customer_id,type:uuid"`
	Kind            string        `bun:"kind"`
	Email           string        `bun:"email"`
	EmailNormalized string        `bun:"email_normalized"`
	FirstName       string        `bun:"first_name"`
	LastName        string        `bun:"last_name"`
	Phone           string        `bun:"phone"`
	Role            string        `bun:"role"`
	State           string        `bun:"state"`
	DeliveryStatus  string        `bun:"delivery_status"`
	DeliveryError   string        `bun:"delivery_error"`
	ExpiresAt       time.Time     `bun:"expires_at,nullzero"`
	SendCount       int           `bun:"send_count"`
	LastSentAt      time.Time     `bun:"last_sent_at,nullzero"`
	AcceptedAt      time.Time     `bun:"accepted_at,nullzero"`
	RevokedAt       time.Time     `bun:"revoked_at,nullzero"`
	ImportID        uuid.NullUUID `bun:"import_id,type:uuid"`
	ImportRow       int           `bun:"import_row,nullzero"`
	CreatedAt       time.Time     `bun:"created_at"`
	UpdatedAt       time.Time     `bun:"updated_at"`
}

// InvitationToken is one link sent to a contact. Only its hash is stored.
type InvitationToken struct {
	bun.BaseModel `bun:"table:invitation_tokens"`

	TokenHash    []byte    `bun:"token_hash,pk"`
	InvitationID uuid.UUID `bun:"invitation_id,type:uuid"`
	DeliveryID   uuid.UUID `bun:"delivery_id,type:uuid"`
	CreatedAt    time.Time `bun:"created_at"`
	SupersededAt time.Time `bun:"superseded_at,nullzero"`
}

// User is a portal account, created when an invitation is accepted.
type User struct {
	bun.BaseModel `bun:"table:users"`

	ID              uuid.UUID `bun:"id,pk,type:uuid"`
	TenantID        uuid.UUID `bun:"tenant_id,type:uuid"`
	CustomerID      uuid.UUID `bun:"customer_id,type:uuid"`
	InvitationID    uuid.UUID `bun:"invitation_id,type:uuid"`
	Email           string    `bun:"email"`
	EmailNormalized string    `bun:"email_normalized"`
	FirstName       string    `bun:"first_name"`
	LastName        string    `bun:"last_name"`
	Role            string    `bun:"role"`
	CreatedAt       time.Time `bun:"created_at"`
}

// StateAt is the invitation's state at now: a pending invitation past its
// expiry is expired, though the expiry sweep (EXPIRY_SCHEDULE) records that
// only when it runs; one with an email queued is not (sending the email sets
// a new expiry), as the sweep leaves it too.
func (i *Invitation) StateAt(now time.Time) string {
	if i.State == InvitationPending && !i.ExpiresAt.IsZero() && !i.ExpiresAt.After(now) && i.DeliveryStatus != DeliveryQueued {
		return InvitationExpired
	}
	return i.State
}

// InsertInvitation stores a new invitation. A tenant's email can be held by
// one invitation that is not revoked (ErrEmailInUse) and a customer has one
// vendor invitation (ErrAlreadyInvited).
func InsertInvitation(ctx context.Context, db bun.IDB, inv *Invitation) error {
	return InsertInvitations(ctx, db, []*Invitation{inv})
}

// InsertInvitations stores new invitations in one statement; see
// InsertInvitation for the conflicts.
func InsertInvitations(ctx context.Context, db bun.IDB, invs []*Invitation) error {
	if len(invs) == 0 {
		return nil
	}
	for _, inv := range invs {
		if inv.ID == uuid.Nil {
			inv.ID = uuid.Must(uuid.NewV7())
		}
		if inv.Role == "" {
			inv.Role = RoleAdmin
		}
		if inv.Kind == "" {
			inv.Kind = KindVendor
		}
	}
	rows := make([][]any, len(invs))
	for i, v := range invs {
		rows[i] = []any{pgUUID(v.ID), pgUUID(v.TenantID), pgUUID(v.CustomerID), v.Kind, v.Email, v.EmailNormalized, v.FirstName, v.LastName,
			v.Phone, v.Role, v.State, v.DeliveryStatus, v.DeliveryError, pgTime(v.ExpiresAt), int32(v.SendCount), pgTime(v.LastSentAt),
			pgTime(v.AcceptedAt), pgTime(v.RevokedAt), pgNullUUID(v.ImportID), pgNullInt(v.ImportRow), v.CreatedAt.UTC(), v.UpdatedAt.UTC()}
	}
	copied, err := copyRows(ctx, db, "invitations", []string{"id", "tenant_id", "customer_id", "kind", "email", "email_normalized", "first_name", "last_name",
		"phone", "role", "state", "delivery_status", "delivery_error", "expires_at", "send_count", "last_sent_at",
		"accepted_at", "revoked_at", "import_id", "import_row", "created_at", "updated_at"}, rows)
	if !copied {
		_, err = db.NewInsert().Model(&invs).Exec(ctx)
	}
	if err != nil {
		return fmt.Errorf("insert invitations: %w", invitationConflict(err))
	}
	return nil
}

func invitationConflict(err error) error {
	name, ok := uniqueViolation(err)
	if !ok {
		return err
	}
	switch {
	case name == "invitations_email_in_use", strings.Contains(name, "email_normalized"):
		return ErrEmailInUse
	case name == "invitations_one_vendor_invite", strings.Contains(name, "customer_id"):
		return ErrAlreadyInvited
	}
	return err
}

// EmailInUse reports whether the tenant already holds the normalised email,
// in a live invitation or a portal account.
func EmailInUse(ctx context.Context, db bun.IDB, tenantID uuid.UUID, emailNormalized string) (bool, error) {
	n, err := db.NewSelect().Model((*Invitation)(nil)).
		Where("tenant_id = ? AND email_normalized = ? AND state <> ?", tenantID, emailNormalized, InvitationRevoked).
		Count(ctx)
	if err != nil {
		return false, fmt.Errorf("email in use: %w", err)
	}
	if n > 0 {
		return true, nil
	}
	n, err = db.NewSelect().Model((*User)(nil)).
		Where("tenant_id = ? AND email_normalized = ?", tenantID, emailNormalized).Count(ctx)
	if err != nil {
		return false, fmt.Errorf("email in use: %w", err)
	}
	return n > 0, nil
}

// GetInvitation loads one of the tenant's invitations.
func GetInvitation(ctx context.Context, db bun.IDB, tenantID, id uuid.UUID) (*Invitation, error) {
	inv := new(Invitation)
	err := db.NewSelect().Model(inv).Where("tenant_id = ? AND id = ?", tenantID, id).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("invitation %s: %w", id, notFound(err))
	}
	return inv, nil
}

// VendorInvitation loads the invitation of a customer's initial contact that
// is not revoked.
func VendorInvitation(ctx context.Context, db bun.IDB, tenantID, customerID uuid.UUID) (*Invitation, error) {
	inv := new(Invitation)
	err := db.NewSelect().Model(inv).
		Where("tenant_id = ? AND customer_id = ? AND kind = ? AND state <> ?", tenantID, customerID, KindVendor, InvitationRevoked).
		Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("vendor invitation of customer %s: %w", customerID, notFound(err))
	}
	return inv, nil
}

// LastVendorInvitation loads the newest invitation of a customer's initial
// contact, revoked ones included: the contact to invite again once every
// invitation was revoked.
func LastVendorInvitation(ctx context.Context, db bun.IDB, tenantID, customerID uuid.UUID) (*Invitation, error) {
	inv := new(Invitation)
	err := db.NewSelect().Model(inv).
		Where("tenant_id = ? AND customer_id = ? AND kind = ?", tenantID, customerID, KindVendor).
		Order("created_at DESC", "id DESC").Limit(1).
		Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("last vendor invitation of customer %s: %w", customerID, notFound(err))
	}
	return inv, nil
}

// VendorInvitations loads the live vendor invitations of several customers,
// keyed by customer id.
func VendorInvitations(ctx context.Context, db bun.IDB, tenantID uuid.UUID, customerIDs []uuid.UUID) (map[uuid.UUID]*Invitation, error) {
	out := make(map[uuid.UUID]*Invitation, len(customerIDs))
	if len(customerIDs) == 0 {
		return out, nil
	}
	var invs []*Invitation
	err := db.NewSelect().Model(&invs).
		Where("tenant_id = ? AND customer_id IN (?) AND kind = ? AND state <> ?", tenantID, bun.In(customerIDs), KindVendor, InvitationRevoked).
		Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("vendor invitations: %w", err)
	}
	for _, inv := range invs {
		out[inv.CustomerID] = inv
	}
	return out, nil
}

// InvitationFilter narrows ListInvitations.
type InvitationFilter struct {
	// State keeps one state; with Now set, a pending invitation past its
	// expiry counts as expired (see StateAt).
	State string
	Now   time.Time
	Live  bool // leave out revoked invitations
	// Emails, when not nil, keeps the invitations of these normalised
	// emails only: an empty list matches none.
	Emails []string
	After  uuid.UUID // keyset cursor
	Limit  int
	// Lock takes the rows FOR UPDATE (Postgres), so that a check made on
	// them holds until the transaction ends: two requests resending one
	// invitation run one after the other.
	Lock bool
}

// ListInvitations returns one page of the tenant's invitations in id order.
func ListInvitations(ctx context.Context, db bun.IDB, tenantID uuid.UUID, f InvitationFilter) ([]*Invitation, error) {
	var invs []*Invitation
	if f.Emails != nil && len(f.Emails) == 0 {
		return invs, nil
	}
	q := db.NewSelect().Model(&invs).Where("tenant_id = ?", tenantID)
	switch {
	case f.State == InvitationPending && !f.Now.IsZero():
		q = q.Where("state = ? AND (expires_at IS NULL OR expires_at > ? OR delivery_status = ?)", f.State, f.Now.UTC(), DeliveryQueued)
	case f.State == InvitationExpired && !f.Now.IsZero():
		q = q.Where("(state = ? OR (state = ? AND expires_at <= ? AND delivery_status <> ?))", f.State, InvitationPending, f.Now.UTC(), DeliveryQueued)
	case f.State != "":
		q = q.Where("state = ?", f.State)
	}
	if f.Live {
		q = q.Where("state <> ?", InvitationRevoked)
	}
	if len(f.Emails) > 0 {
		q = q.Where("email_normalized IN (?)", bun.In(f.Emails))
	}
	if f.After != uuid.Nil {
		q = q.Where("id > ?", f.After)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	if f.Lock && DialectOfDB(db) == Postgres {
		// In id order, so concurrent lockers cannot deadlock. SQLite has
		// one writer at a time already.
		q = q.For("UPDATE")
	}
	if err := q.Order("id").Limit(int64(f.Limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	return invs, nil
}

// RevokeInvitation withdraws an invitation that has not been accepted; its
// links stop working and its email is free again.
func RevokeInvitation(ctx context.Context, db bun.IDB, tenantID, id uuid.UUID, now time.Time) (*Invitation, error) {
	inv, err := GetInvitation(ctx, db, tenantID, id)
	if err != nil {
		return nil, err
	}
	switch inv.State {
	case InvitationRevoked:
		return inv, nil
	case InvitationAccepted:
		return nil, fmt.Errorf("%w: the invitation was accepted; remove the portal user instead", ErrInvalidState)
	}
	res, err := db.NewUpdate().Model(inv).
		Set("state = ?", InvitationRevoked).
		Set("revoked_at = ?", now.UTC()).
		Set("updated_at = ?", now.UTC()).
		Where("tenant_id = ? AND id = ? AND state NOT IN (?)", tenantID, id, bun.In([]string{InvitationAccepted, InvitationRevoked})).
		Returning("*").
		Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("revoke invitation %s: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// An accept (or another revoke) committed since the read: answer
		// with what the invitation is now, never the stale "pending".
		if inv, err = GetInvitation(ctx, db, tenantID, id); err != nil {
			return nil, err
		}
		if inv.State == InvitationAccepted {
			return nil, fmt.Errorf("%w: the invitation was accepted; remove the portal user instead", ErrInvalidState)
		}
		return inv, nil
	}
	// Queued emails of a revoked invitation must not go out.
	_, err = db.NewUpdate().Model((*Delivery)(nil)).
		Set("state = ?", DeliveryFailed).
		Set("last_error = ?", "invitation revoked").
		Set("updated_at = ?", now.UTC()).
		Where("invitation_id = ? AND state = ?", id, DeliveryQueued).
		Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("revoke invitation %s: cancel deliveries: %w", id, err)
	}
	return inv, nil
}

// Acceptance is what accepting an invitation produced.
type Acceptance struct {
	Invitation *Invitation
	Customer   *Customer
	User       *User
}

// AcceptInvitation redeems a token: the invitation becomes accepted and the
// contact gets a portal account with the invitation's role. A token is
// single-use; an unknown token is ErrNotFound and a used, replaced, revoked or
// expired one is ErrTokenGone with the reason. Run it inside a transaction.
func AcceptInvitation(ctx context.Context, db bun.IDB, tenantID uuid.UUID, token string, now time.Time) (*Acceptance, error) {
	hash := secret.Hash(token)
	tok := new(InvitationToken)
	if err := db.NewSelect().Model(tok).Where("token_hash = ?", hash).Scan(ctx); err != nil {
		return nil, fmt.Errorf("accept invitation: %w", notFound(err))
	}
	inv, err := GetInvitation(ctx, db, tenantID, tok.InvitationID)
	if err != nil {
		// Another tenant's token: indistinguishable from an unknown one.
		return nil, fmt.Errorf("accept invitation: %w", ErrNotFound)
	}
	switch {
	case inv.State == InvitationAccepted:
		return nil, fmt.Errorf("%w: it has already been used", ErrTokenGone)
	case inv.State == InvitationRevoked:
		return nil, fmt.Errorf("%w: the invitation was revoked", ErrTokenGone)
	case !tok.SupersededAt.IsZero():
		return nil, fmt.Errorf("%w: a newer invitation email replaced this link", ErrTokenGone)
	case inv.State == InvitationExpired || (!inv.ExpiresAt.IsZero() && !now.Before(inv.ExpiresAt)):
		return nil, fmt.Errorf("%w: it has expired", ErrTokenGone)
	case inv.State != InvitationPending:
		return nil, fmt.Errorf("%w: the invitation is %s", ErrTokenGone, inv.State)
	}
	// A customer blacklisted or made inactive since the email went out gets
	// no portal account from it, as it would get no invitation now.
	cust, err := GetCustomer(ctx, db, tenantID, inv.CustomerID)
	if err != nil {
		return nil, err
	}
	if cust.Status != CustomerActive {
		return nil, fmt.Errorf("%w: the invitation is no longer valid", ErrTokenGone)
	}
	// The state guard makes a concurrent second accept of the same token
	// update nothing.
	res, err := db.NewUpdate().Model(inv).
		Set("state = ?", InvitationAccepted).
		Set("accepted_at = ?", now.UTC()).
		Set("updated_at = ?", now.UTC()).
		Where("id = ? AND state = ?", inv.ID, InvitationPending).
		Exec(ctx)
	if err != nil {
		return nil, fmt.Errorf("accept invitation: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		// A concurrent accept or revoke won: say which.
		if cur, err := GetInvitation(ctx, db, tenantID, inv.ID); err == nil && cur.State == InvitationRevoked {
			return nil, fmt.Errorf("%w: the invitation was revoked", ErrTokenGone)
		}
		return nil, fmt.Errorf("%w: it has already been used", ErrTokenGone)
	}
	inv.State, inv.AcceptedAt, inv.UpdatedAt = InvitationAccepted, now.UTC(), now.UTC()
	if _, err := db.NewUpdate().Model((*InvitationToken)(nil)).
		Set("superseded_at = ?", now.UTC()).
		Where("invitation_id = ? AND superseded_at IS NULL", inv.ID).Exec(ctx); err != nil {
		return nil, fmt.Errorf("accept invitation: retire tokens: %w", err)
	}
	user := &User{
		ID:              uuid.Must(uuid.NewV7()),
		TenantID:        inv.TenantID,
		CustomerID:      inv.CustomerID,
		InvitationID:    inv.ID,
		Email:           inv.Email,
		EmailNormalized: inv.EmailNormalized,
		FirstName:       inv.FirstName,
		LastName:        inv.LastName,
		Role:            inv.Role,
		CreatedAt:       now.UTC(),
	}
	if _, err := db.NewInsert().Model(user).Exec(ctx); err != nil {
		if _, ok := uniqueViolation(err); ok {
			return nil, fmt.Errorf("accept invitation: %w", ErrEmailInUse)
		}
		return nil, fmt.Errorf("accept invitation: create user: %w", err)
	}
	return &Acceptance{Invitation: inv, Customer: cust, User: user}, nil
}

// IssueTokens mints a fresh link for each delivery, retiring the links an
// earlier attempt of the same delivery minted (never sent, or sent within
// the residual window). The links of the invitation's earlier emails stay
// valid until this one is sent (MarkDeliveriesSent): a send that fails or
// waits must not kill the link the contact already holds. It returns the raw
// tokens by delivery id; only their hashes are stored.
func IssueTokens(ctx context.Context, db bun.IDB, deliveries []*Delivery, now time.Time) (map[uuid.UUID]string, error) {
	if len(deliveries) == 0 {
		return nil, nil
	}
	deliveryIDs := make([]uuid.UUID, 0, len(deliveries))
	invIDs := make([]uuid.UUID, 0, len(deliveries))
	rows := make([]InvitationToken, 0, len(deliveries))
	tokens := make(map[uuid.UUID]string, len(deliveries))
	for _, d := range deliveries {
		if !d.InvitationID.Valid {
			continue
		}
		tok, hash := secret.NewToken()
		tokens[d.ID] = tok
		deliveryIDs = append(deliveryIDs, d.ID)
		invIDs = append(invIDs, d.InvitationID.UUID)
		rows = append(rows, InvitationToken{TokenHash: hash, InvitationID: d.InvitationID.UUID, DeliveryID: d.ID, CreatedAt: now.UTC()})
	}
	if len(rows) == 0 {
		return tokens, nil
	}
	if _, err := db.NewUpdate().Model((*InvitationToken)(nil)).
		Set("superseded_at = ?", now.UTC()).
		// invitation_id for the index of live links.
		Where("invitation_id IN (?) AND superseded_at IS NULL AND delivery_id IN (?)", bun.In(invIDs), bun.In(deliveryIDs)).Exec(ctx); err != nil {
		return nil, fmt.Errorf("issue tokens: retire old: %w", err)
	}
	if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
		return nil, fmt.Errorf("issue tokens: %w", err)
	}
	return tokens, nil
}
