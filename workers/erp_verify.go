package workers

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// AccountVerifier looks an account number of a tenant up in the ERP.
type AccountVerifier interface {
	LookupAccount(ctx context.Context, tenantID uuid.UUID, number string) (erp.Account, error)
}

// Limiter bounds concurrent ERP requests across every worker process.
type Limiter interface {
	Acquire(ctx context.Context) (release func(), err error)
}

// handleERPVerify checks every account number of a customer against the ERP
// and records the outcome on the customer: verified (all known), not_found
// (permanent, no retry) or error (the ERP was down through every retry).
func (d *Deps) handleERPVerify(ctx context.Context, t *asynq.Task) error {
	var p jobs.ERPVerify
	if err := jobs.Decode(t, &p); err != nil {
		return err
	}
	tenantID, err1 := uuid.Parse(p.TenantID)
	customerID, err2 := uuid.Parse(p.CustomerID)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("erp:verify: %v: %w", err, asynq.SkipRetry)
	}
	c, err := store.GetCustomer(ctx, d.DB, tenantID, customerID)
	if errors.Is(err, store.ErrNotFound) {
		d.completed(ctx)
		return nil // deleted since: nothing to verify
	}
	if err != nil {
		return err
	}
	if d.ERP == nil {
		return d.recordERP(ctx, c, store.ERPResult{Status: store.ERPError, Error: "no ERP is configured (ERP_URL)"}, asynq.SkipRetry)
	}
	result := store.ERPResult{Status: store.ERPVerified}
	for _, number := range c.AccountNumbers {
		acct, err := d.lookup(ctx, c.TenantID, number)
		if err != nil && !errors.Is(err, erp.ErrNotFound) {
			// The customer gets the reason; the log gets the cause, which
			// may name the ERP's address.
			d.Log.WarnContext(ctx, "erp lookup failed", "tenant_id", c.TenantID, "customer_id", c.ID, "err", erp.Detail(err))
		}
		switch {
		case errors.Is(err, erp.ErrNotFound):
			return d.recordERP(ctx, c, store.ERPResult{Status: store.ERPNotFound, Error: fmt.Sprintf("account %s is not known to the ERP", number)}, nil)
		case erp.IsTemporary(err) && !lastAttempt(ctx):
			return err // asynq backs off; the customer keeps its last outcome
		case err != nil:
			return d.recordERP(ctx, c, store.ERPResult{Status: store.ERPError, Error: err.Error()}, asynq.SkipRetry)
		}
		if result.Name == "" {
			result.Name, result.PriceTier = acct.Name, acct.PriceTier
		}
	}
	return d.recordERP(ctx, c, result, nil)
}

// lookup asks the ERP within the shared concurrency bound.
func (d *Deps) lookup(ctx context.Context, tenantID uuid.UUID, number string) (erp.Account, error) {
	if d.ERPLimiter != nil {
		release, err := d.ERPLimiter.Acquire(ctx)
		if err != nil {
			return erp.Account{}, &erp.Error{Reason: "no ERP request slot could be taken", Temporary: true, Err: err}
		}
		defer release()
	}
	return d.ERP.LookupAccount(ctx, tenantID, number)
}

func (d *Deps) recordERP(ctx context.Context, c *store.Customer, r store.ERPResult, stop error) error {
	if err := store.RecordERPResult(ctx, d.DB, c.TenantID, c.ID, r, d.now()); err != nil {
		return err
	}
	d.completed(ctx)
	if stop != nil && r.Error != "" {
		return fmt.Errorf("erp:verify %s: %s: %w", c.ID, r.Error, stop)
	}
	return nil
}

// handleERPReverify queues a verification of every customer that is
// unverified, failed last time, or was checked longer than ERPStaleAfter
// ago, a page at a time.
func (d *Deps) handleERPReverify(ctx context.Context, t *asynq.Task) error {
	var p jobs.Scheduled
	if err := jobs.Decode(t, &p); err != nil {
		return err
	}
	if d.ERP == nil {
		// Without an ERP every customer would be marked "error" each night
		// (compose leaves ERP_URL empty unless set); there is nothing to check.
		d.Log.InfoContext(ctx, "erp re-verification skipped: no ERP is configured (ERP_URL)", "slot", p.Slot)
		d.completed(ctx)
		return nil
	}
	stale := d.ERPStaleAfter
	if stale <= 0 {
		stale = 30 * 24 * time.Hour
	}
	now := d.now()
	after := uuid.Nil
	total := 0
	for {
		cs, err := store.CustomersDueForVerification(ctx, d.DB, now.Add(-stale), after, 1000)
		if err != nil {
			return err
		}
		if len(cs) == 0 {
			break
		}
		js := make([]jobs.Job, len(cs))
		for i, c := range cs {
			js[i] = jobs.NewERPVerify(c.TenantID.String(), c.ID.String(), "schedule", p.Slot)
		}
		err = d.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return outbox.Record(ctx, tx, uuid.Nil, now, js...)
		})
		if err != nil {
			return err
		}
		d.Dispatcher.Dispatch(ctx, js...)
		total += len(cs)
		after = cs[len(cs)-1].ID
	}
	d.Log.InfoContext(ctx, "erp re-verification queued", "customers", total, "slot", p.Slot)
	d.completed(ctx)
	return nil
}
