package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onboard-dev/onboard/internal/emailaddr"
	"github.com/onboard-dev/onboard/store"
)

const tenantUsage = "usage: onboard tenant create --name NAME [--admin-email E] | onboard tenant policy --id ID [--resend-max N] [--resend-interval D] [--invite-ttl D]"

func runTenant(ctx context.Context, env *environment, args []string) error {
	if len(args) > 0 && args[0] == "policy" {
		return runTenantPolicy(ctx, env, args[1:])
	}
	if len(args) == 0 || args[0] != "create" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintln(env.stdout, "Usage: onboard tenant create --name NAME [--admin-email E]\n       onboard tenant policy --id ID [--resend-max N] [--resend-interval D] [--invite-ttl D]")
			return nil
		}
		return errors.New("tenant: " + tenantUsage)
	}
	fs := newFlags(env, "tenant create", "Creates a tenant (a vendor) and prints its id and API key. The key is shown\nonce and stored only as a hash: keep it.")
	name := fs.String("name", "", "the tenant's name, shown in invitation emails (required)")
	admin := fs.String("admin-email", "", "where import confirmations go when an upload names no notify_email")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	*name = strings.TrimSpace(*name)
	if *name == "" {
		return errors.New("tenant create: --name is required")
	}
	if *admin != "" {
		if err := emailaddr.Validate(*admin); err != nil {
			return fmt.Errorf("tenant create: --admin-email %q is not a valid email address", *admin)
		}
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := store.CheckMigrated(ctx, db); err != nil {
		return fmt.Errorf("tenant create: %w", err)
	}
	t, key, err := store.CreateTenant(ctx, db, *name, *admin, now())
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "tenant_id=%s\napi_key=%s\n", t.ID, key)
	return nil
}

func runTenantPolicy(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "tenant policy", "Shows or changes a tenant's invitation policy: how long a link stays valid\nand how the nightly run resends pending invitations.")
	id := fs.String("id", "", "the tenant id (required)")
	resendMax := fs.Int("resend-max", 0, "resend a pending invitation at most this many times (0 to 100)")
	interval := fs.Duration("resend-interval", 0, "no sooner than this after the last send, whole hours (e.g. 72h)")
	ttl := fs.Duration("invite-ttl", 0, "how long a link stays valid after a send, whole hours (e.g. 336h)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// A flag left out keeps the tenant's value (0 is a value of --resend-max).
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	tenantID, err := uuid.Parse(*id)
	if err != nil {
		return errors.New("tenant policy: --id must be a tenant id")
	}
	switch {
	case set["resend-max"] && (*resendMax < 0 || *resendMax > 100):
		return errors.New("tenant policy: --resend-max must be from 0 to 100")
	case set["resend-interval"] && *interval < time.Hour:
		return errors.New("tenant policy: --resend-interval must be at least 1h")
	case set["invite-ttl"] && *ttl < time.Hour:
		return errors.New("tenant policy: --invite-ttl must be at least 1h")
	// The policy is kept in whole hours; 90m silently becoming 1h would
	// resend earlier than asked.
	case set["resend-interval"] && *interval%time.Hour != 0:
		return errors.New("tenant policy: --resend-interval must be whole hours (e.g. 72h)")
	case set["invite-ttl"] && *ttl%time.Hour != 0:
		return errors.New("tenant policy: --invite-ttl must be whole hours (e.g. 336h)")
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := store.CheckMigrated(ctx, db); err != nil {
		return fmt.Errorf("tenant policy: %w", err)
	}
	t, err := store.TenantByID(ctx, db, tenantID)
	if err != nil {
		return err
	}
	if set["resend-max"] {
		t.ResendMax = *resendMax
	}
	if set["resend-interval"] {
		t.ResendIntervalHours = int(interval.Hours())
	}
	if set["invite-ttl"] {
		t.InviteTTLHours = int(ttl.Hours())
	}
	if err := store.UpdateTenantPolicy(ctx, db, t); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "tenant_id=%s\nresend_max=%d\nresend_interval=%dh\ninvite_ttl=%dh\n", t.ID, t.ResendMax, t.ResendIntervalHours, t.InviteTTLHours)
	return nil
}
