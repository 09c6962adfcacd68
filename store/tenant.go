package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/secret"
)

// Tenant is a vendor: the owner of customers, invitations and imports, and the
// holder of one API key (stored hashed).
type Tenant struct {
	bun.BaseModel `bun:"table:tenants"`

	ID           uuid.UUID `bun:"id,pk,type:uuid"`
	Name         string    `bun:"name"`
	APIKeyHash   []byte    `bun:"api_key_hash"`
	APIKeyPrefix string    `bun:"api_key_prefix"`
	AdminEmail   string    `bun:"admin_email"`
	// The per-tenant invitation policy.
	InviteTTLHours      int       `bun:"invite_ttl_hours"`
	ResendMax           int       `bun:"resend_max"`
	ResendIntervalHours int       `bun:"resend_interval_hours"`
	CreatedAt           time.Time `bun:"created_at"`
}

// InviteTTL is how long an invitation link stays valid after a send.
func (t *Tenant) InviteTTL() time.Duration { return time.Duration(t.InviteTTLHours) * time.Hour }

// ResendInterval is the least time between two sends of the same invitation
// by the nightly run.
func (t *Tenant) ResendInterval() time.Duration {
	return time.Duration(t.ResendIntervalHours) * time.Hour
}

// Default invitation policy of a new tenant.
const (
	DefaultInviteTTLHours      = 14 * 24
	DefaultResendMax           = 3
	DefaultResendIntervalHours = 3 * 24
)

// CreateTenant stores a new tenant and returns it with its API key, which is
// shown to the caller once and stored only as a hash.
func CreateTenant(ctx context.Context, db bun.IDB, name, adminEmail string, now time.Time) (*Tenant, string, error) {
	key, hash := secret.NewAPIKey()
	t := &Tenant{
		ID:                  uuid.Must(uuid.NewV7()),
		Name:                name,
		APIKeyHash:          hash,
		APIKeyPrefix:        key[:len(secret.APIKeyPrefix)+6],
		AdminEmail:          adminEmail,
		InviteTTLHours:      DefaultInviteTTLHours,
		ResendMax:           DefaultResendMax,
		ResendIntervalHours: DefaultResendIntervalHours,
		CreatedAt:           now.UTC(),
	}
	if _, err := db.NewInsert().Model(t).Exec(ctx); err != nil {
		return nil, "", fmt.Errorf("create tenant: %w", err)
	}
	return t, key, nil
}

// TenantByAPIKey finds the tenant an API key belongs to.
func TenantByAPIKey(ctx context.Context, db bun.IDB, key string) (*Tenant, error) {
	t := new(Tenant)
	err := db.NewSelect().Model(t).Where("api_key_hash = ?", secret.Hash(key)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("tenant by api key: %w", notFound(err))
	}
	return t, nil
}

// TenantByID loads one tenant.
func TenantByID(ctx context.Context, db bun.IDB, id uuid.UUID) (*Tenant, error) {
	t := new(Tenant)
	if err := db.NewSelect().Model(t).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("tenant %s: %w", id, notFound(err))
	}
	return t, nil
}

// UpdateTenantPolicy changes a tenant's invitation policy.
func UpdateTenantPolicy(ctx context.Context, db bun.IDB, t *Tenant) error {
	_, err := db.NewUpdate().Model(t).
		Column("invite_ttl_hours", "resend_max", "resend_interval_hours").
		WherePK().Exec(ctx)
	if err != nil {
		return fmt.Errorf("update tenant policy: %w", err)
	}
	return nil
}
