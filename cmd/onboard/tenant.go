package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/onboard-dev/onboard/internal/emailaddr"
	"github.com/onboard-dev/onboard/store"
)

func runTenant(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] != "create" {
		if len(args) > 0 && (args[0] == "--help" || args[0] == "-h") {
			fmt.Fprintln(env.stdout, "Usage: onboard tenant create --name NAME [--admin-email E]")
			return nil
		}
		return errors.New("tenant: usage: onboard tenant create --name NAME [--admin-email E]")
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
	t, key, err := store.CreateTenant(ctx, db, *name, *admin, now())
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "tenant_id=%s\napi_key=%s\n", t.ID, key)
	return nil
}
