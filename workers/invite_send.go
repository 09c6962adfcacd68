package workers

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/emailaddr"
	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/templates"
)

// handleInviteSend sends the invitation emails of a batch of deliveries.
//
// Each delivery is claimed before it is sent, so a retried or re-enqueued
// task never sends a delivery that is sent or being sent. One window remains:
// the provider accepted the email and the worker died before recording it;
// after the lease the delivery is sent again (with a new link, which retires
// the first). See README "Delivery guarantees".
func (d *Deps) handleInviteSend(ctx context.Context, t *asynq.Task) error {
	var p jobs.InviteSend
	if err := jobs.Decode(t, &p); err != nil {
		return err
	}
	tenantID, err := uuid.Parse(p.TenantID)
	if err != nil {
		return fmt.Errorf("invite:send: tenant id: %v: %w", err, asynq.SkipRetry)
	}
	ids := make([]uuid.UUID, 0, len(p.DeliveryIDs))
	for _, s := range p.DeliveryIDs {
		id, err := uuid.Parse(s)
		if err != nil {
			return fmt.Errorf("invite:send: delivery id: %v: %w", err, asynq.SkipRetry)
		}
		ids = append(ids, id)
	}
	if err := d.held(ctx); err != nil {
		return err
	}
	now := d.now()
	lease := d.sendLease()
	claimed, err := store.ClaimDeliveries(ctx, d.DB, ids, lease, now)
	if err != nil {
		return err
	}
	if len(claimed) == 0 {
		leased, err := store.LeasedDeliveries(ctx, d.DB, ids, now)
		if err != nil {
			return err
		}
		if leased > 0 {
			// Another worker holds them; if it died, its lease runs out and
			// a retry of this task takes over.
			return fmt.Errorf("invite:send: %d deliveries: %w", leased, store.ErrDeliveryLeased)
		}
		d.completed(ctx)
		return nil
	}
	tenant, err := store.TenantByID(ctx, d.DB, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return d.giveUp(ctx, claimed, fmt.Sprintf("tenant: %v", err), err)
	}
	if err != nil {
		// The database, not the tenant: try again later.
		return d.retryLater(ctx, claimed, err)
	}
	batch, skipped, err := d.prepareInvitations(ctx, tenant, claimed, now)
	if err != nil {
		return d.retryLater(ctx, claimed, err)
	}
	for reason, ids := range skipped {
		if err := store.FailDeliveries(ctx, d.DB, ids, reason, now); err != nil {
			return err
		}
	}
	if len(batch) > 0 {
		email, err := templates.RenderInvitation(templates.Invitation{TenantName: tenant.Name})
		if err != nil {
			return d.giveUp(ctx, claimed, err.Error(), err)
		}
		if err := d.sendBatch(ctx, tenant.ID, email, batch); err != nil {
			return err
		}
	}
	d.completed(ctx)
	return nil
}

// recipient is one claimed delivery ready to go out.
type recipient struct {
	delivery *store.Delivery
	perso    mail.Personalization
	expires  time.Time // the expiry the email announces
}

// prepareInvitations loads what the emails need and mints a fresh link, with
// the expiry it will have once sent, for each sendable delivery. Deliveries that must
// not go out (revoked, accepted, customer blacklisted) come back as skipped,
// grouped by reason.
func (d *Deps) prepareInvitations(ctx context.Context, tenant *store.Tenant, claimed []*store.Delivery, now time.Time) ([]recipient, map[string][]uuid.UUID, error) {
	invIDs := make([]uuid.UUID, 0, len(claimed))
	for _, dl := range claimed {
		if dl.InvitationID.Valid {
			invIDs = append(invIDs, dl.InvitationID.UUID)
		}
	}
	var invs []*store.Invitation
	if err := d.DB.NewSelect().Model(&invs).Where("tenant_id = ? AND id IN (?)", tenant.ID, bun.In(invIDs)).Scan(ctx); err != nil {
		return nil, nil, fmt.Errorf("load invitations: %w", err)
	}
	invByID := make(map[uuid.UUID]*store.Invitation, len(invs))
	custIDs := make([]uuid.UUID, 0, len(invs))
	for _, inv := range invs {
		invByID[inv.ID] = inv
		custIDs = append(custIDs, inv.CustomerID)
	}
	var custs []*store.Customer
	if err := d.DB.NewSelect().Model(&custs).Where("c.tenant_id = ? AND c.id IN (?)", tenant.ID, bun.In(custIDs)).Scan(ctx); err != nil {
		return nil, nil, fmt.Errorf("load customers: %w", err)
	}
	custByID := make(map[uuid.UUID]*store.Customer, len(custs))
	for _, c := range custs {
		custByID[c.ID] = c
	}

	skipped := map[string][]uuid.UUID{}
	var sendable []*store.Delivery
	for _, dl := range claimed {
		inv := invByID[dl.InvitationID.UUID]
		var cust *store.Customer
		if inv != nil {
			cust = custByID[inv.CustomerID]
		}
		switch {
		case inv == nil || cust == nil:
			skipped["invitation not found"] = append(skipped["invitation not found"], dl.ID)
		case inv.State != store.InvitationPending:
			r := "invitation is " + inv.State
			skipped[r] = append(skipped[r], dl.ID)
		case !cust.Invitable():
			r := "customer is " + cust.Status
			skipped[r] = append(skipped[r], dl.ID)
		case emailaddr.Validate(inv.Email) != nil:
			// Stored before a rule of emailaddr refused it (an
			// internationalised local part, a dotless domain): SendGrid
			// would refuse the address (and the batch with it), or no mail
			// would reach it.
			r := "the address is no longer accepted: " + addressProblem(inv.Email)
			skipped[r] = append(skipped[r], dl.ID)
		default:
			sendable = append(sendable, dl)
		}
	}
	if len(sendable) == 0 {
		return nil, skipped, nil
	}

	// The expiry the email announces; it becomes the invitation's only once
	// the email is recorded sent (MarkDeliveriesSent): a send that fails or
	// waits leaves the expiry, and so the contact's current link, as it was.
	expires := now.Add(tenant.InviteTTL()).UTC()
	var tokens map[uuid.UUID]string
	err := d.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		tokens, err = store.IssueTokens(ctx, tx, sendable, now)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("issue links: %w", err)
	}

	batch := make([]recipient, 0, len(sendable))
	for _, dl := range sendable {
		inv := invByID[dl.InvitationID.UUID]
		cust := custByID[inv.CustomerID]
		name := inv.FirstName
		if inv.LastName != "" {
			name = (name + " " + inv.LastName)
		}
		batch = append(batch, recipient{
			delivery: dl,
			expires:  expires,
			perso: mail.Personalization{
				To: mail.Address{Email: inv.Email, Name: templates.HeaderSafe(name)},
				Substitutions: templates.InvitationSubstitutions(templates.Recipient{
					ContactName: name,
					CompanyName: cust.CompanyName,
					AcceptURL:   d.PublicURL + "/invitations/accept?token=" + url.QueryEscape(tokens[dl.ID]),
					ExpiresAt:   expires,
				}),
				CustomArgs: map[string]string{
					"invitation_id": inv.ID.String(),
					"tenant_id":     inv.TenantID.String(),
					"delivery_id":   dl.ID.String(),
				},
			},
		})
	}
	return batch, skipped, nil
}

// sendBatch sends the batch as one request. A refusal that may be about a
// recipient (mail.MaySplit) is usually one bad recipient, so the batch is
// split in halves until the refusal is pinned on single deliveries and the
// rest go out. A refusal of the request as a whole (a revoked key, an
// unverified sender) is no recipient's: nothing is split, nothing fails,
// the emails wait (waitForFix).
func (d *Deps) sendBatch(ctx context.Context, tenantID uuid.UUID, email templates.Email, batch []recipient) error {
	msg := mail.Message{
		From:             d.From,
		Subject:          email.Subject,
		Text:             email.Text,
		HTML:             email.HTML,
		Categories:       []string{"invitation"},
		Personalizations: make([]mail.Personalization, len(batch)),
	}
	ids := make([]uuid.UUID, len(batch))
	for i, r := range batch {
		msg.Personalizations[i] = r.perso
		ids[i] = r.delivery.ID
	}
	res, err := d.Mailer.Send(ctx, msg)
	now := d.now()
	switch {
	case err == nil:
		// Record with a context that outlives the task's: the email is out.
		// One expiry for the batch: prepareInvitations stamps them all alike.
		if err := d.recordSent(ctx, func(ctx context.Context) error {
			return store.MarkDeliveriesSent(ctx, d.DB, ids, res.MessageID, batch[0].expires, now)
		}); err != nil {
			return err
		}
		d.Metrics.Invitations(batch[0].delivery.TenantID, metrics.InvitationSent, len(ids))
		return nil
	case mail.IsTemporary(err):
		switch {
		case !lastAttempt(ctx):
			return d.retryLater(ctx, deliveriesOf(batch), err)
		case d.outlived(deliveriesOf(batch)):
			return d.giveUp(ctx, deliveriesOf(batch), "gave up after retries: "+err.Error(), err)
		}
		return d.handOver(ctx, tenantID, deliveriesOf(batch), err, func(ids []string) jobs.Job {
			return jobs.NewInviteSend(tenantID.String(), ids)
		})
	case mail.IsRefused(err):
		return d.waitForFix(ctx, tenantID, deliveriesOf(batch), err, func(ids []string) jobs.Job {
			return jobs.NewInviteSend(tenantID.String(), ids)
		})
	case len(batch) > 1 && mail.MaySplit(err):
		half := len(batch) / 2
		errA := d.sendBatch(ctx, tenantID, email, batch[:half])
		errB := d.sendBatch(ctx, tenantID, email, batch[half:])
		return errors.Join(errA, errB)
	default:
		if ferr := store.FailDeliveries(context.WithoutCancel(ctx), d.DB, ids, err.Error(), now); ferr != nil {
			return ferr
		}
		d.Metrics.Invitations(batch[0].delivery.TenantID, metrics.InvitationFailed, len(ids))
		d.Log.WarnContext(ctx, "invitation email refused", "delivery_id", ids[0], "deliveries", len(ids), "err", err)
		return nil
	}
}

// holder is a Mailer that can tell, before any work, that sends are on hold
// for every worker (ratelimit.SharedBackoff).
type holder interface {
	Hold(ctx context.Context) error
}

// held is the hold on sends, if there is one: the task then waits without
// claiming, minting links or calling SendGrid. On the task's last attempt
// there is no hold: the work goes on to be handed over, not archived.
func (d *Deps) held(ctx context.Context) error {
	h, ok := d.Mailer.(holder)
	if !ok || lastAttempt(ctx) {
		return nil
	}
	err := h.Hold(ctx)
	if err != nil {
		d.Log.DebugContext(ctx, "sends on hold for every worker", "err", err)
	}
	return err
}

// refusedWait is how long deliveries wait after SendGrid refused their
// request as a whole, by how often they were tried: 30s, doubling up to ten
// minutes. asynq does not count these retries (IsFailure), so its own
// backoff does not grow; a shared pause (ratelimit.SharedBackoff) may ask
// for longer.
func refusedWait(attempts int) time.Duration {
	return min(30*time.Second<<min(max(attempts-1, 0), 5), 10*time.Minute)
}

// waitForFix hands back deliveries whose request SendGrid refused as a
// whole, for a reason none of them caused (a revoked key, a sender that is
// not a verified Sender Identity, the message's own fields): none fails,
// they are queued again and go out once the configuration is mended. The
// task retries without using up its retries (IsFailure), backing off; if
// it is on its last attempt anyway (its retries went on earlier failures),
// the deliveries go to a new task (jobs.Again, through the outbox) instead
// of being left queued with no task to send them.
func (d *Deps) waitForFix(ctx context.Context, tenantID uuid.UUID, ds []*store.Delivery, cause error, again func(ids []string) jobs.Job) error {
	ids := idsOf(ds)
	attempts := 0
	for _, dl := range ds {
		attempts = max(attempts, dl.Attempts)
	}
	var se *mail.SendError
	if errors.As(cause, &se) && se.RetryAfter <= 0 {
		se.RetryAfter = refusedWait(attempts)
	}
	wait, _ := mail.RetryAfter(cause)
	bg := context.WithoutCancel(ctx)
	now := d.now()
	if !lastAttempt(ctx) {
		if err := store.ReleaseDeliveries(bg, d.DB, ids, cause.Error(), now); err != nil {
			return errors.Join(cause, err)
		}
		d.logRefusal(ctx, se, len(ids), wait)
		return cause
	}
	d.logRefusal(ctx, se, len(ids), wait)
	return d.handOver(ctx, tenantID, ds, cause, again)
}

// handOver gives deliveries whose task is on its last attempt to a new
// task (jobs.Again, through the outbox), queued again, instead of failing
// them or leaving them queued with no task to send them.
func (d *Deps) handOver(ctx context.Context, tenantID uuid.UUID, ds []*store.Delivery, cause error, again func(ids []string) jobs.Job) error {
	ids := idsOf(ds)
	attempts := 0
	strs := make([]string, len(ids))
	for i, dl := range ds {
		attempts = max(attempts, dl.Attempts)
		strs[i] = dl.ID.String()
	}
	job := jobs.Again(again(strs), attempts)
	bg := context.WithoutCancel(ctx)
	now := d.now()
	err := d.DB.RunInTx(bg, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := store.ReleaseDeliveries(ctx, tx, ids, cause.Error(), now); err != nil {
			return err
		}
		return outbox.Record(ctx, tx, tenantID, now, job)
	})
	if err != nil {
		return errors.Join(cause, err)
	}
	if d.Dispatcher != nil {
		d.Dispatcher.Dispatch(bg, job)
	}
	d.Log.WarnContext(ctx, "the task's last attempt: its emails wait in a new task", "task_id", job.ID, "deliveries", len(ids), "err", cause)
	return nil
}

// outageGiveUp is how long SendGrid may fail for a delivery (5xx, 429,
// timeouts, no connection) before it is failed: past a task's retries
// (about an hour) the emails go on in new tasks, so that an outage of
// SendGrid or of the network delays them instead of failing them.
const outageGiveUp = 72 * time.Hour

// outlived tells deliveries that have waited out outageGiveUp.
func (d *Deps) outlived(ds []*store.Delivery) bool {
	for _, dl := range ds {
		if d.now().Sub(dl.CreatedAt) < outageGiveUp {
			return false
		}
	}
	return true
}

// logRefusal says, once per refusal SendGrid answered (not per held
// attempt), that the emails wait and what to mend.
func (d *Deps) logRefusal(ctx context.Context, se *mail.SendError, n int, wait time.Duration) {
	if se == nil || se.Held {
		return
	}
	hint := "mend the message's own fields (MAIL_FROM, the templates)"
	switch se.StatusCode {
	case 401:
		hint = "check SENDGRID_API_KEY: SendGrid does not take it (revoked, deleted or mistyped)"
	case 403:
		hint = "check that MAIL_FROM is a verified Sender Identity in SendGrid and that SENDGRID_API_KEY may send mail"
	case 404:
		hint = "check SENDGRID_API_URL"
	}
	d.Log.ErrorContext(ctx, "SendGrid refused the whole request: no email failed, they wait until the configuration is mended",
		"status", se.StatusCode, "reason", se.Reason, "deliveries", n, "retry_in", wait.Round(time.Second).String(), "hint", hint)
}

func deliveriesOf(batch []recipient) []*store.Delivery {
	out := make([]*store.Delivery, len(batch))
	for i, r := range batch {
		out[i] = r.delivery
	}
	return out
}

func idsOf(ds []*store.Delivery) []uuid.UUID {
	ids := make([]uuid.UUID, len(ds))
	for i, dl := range ds {
		ids[i] = dl.ID
	}
	return ids
}

// retryLater hands the deliveries back to the queue and lets asynq back off.
func (d *Deps) retryLater(ctx context.Context, ds []*store.Delivery, cause error) error {
	if err := store.ReleaseDeliveries(context.WithoutCancel(ctx), d.DB, idsOf(ds), cause.Error(), d.now()); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// sendLease is how long a send holds its deliveries.
func (d *Deps) sendLease() time.Duration {
	if d.SendLease > 0 {
		return d.SendLease
	}
	return 3 * time.Minute
}

// recordSent records emails SendGrid has accepted, trying again while the
// database fails (a failover, a dropped connection) for up to half the
// lease: given up on, the deliveries stay leased, and when the lease runs
// out another attempt sends them a second time. It runs on a context that
// outlives the task's: the emails are out.
func (d *Deps) recordSent(ctx context.Context, record func(context.Context) error) error {
	ctx = context.WithoutCancel(ctx)
	deadline := time.Now().Add(d.sendLease() / 2)
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := record(ctx)
		if err == nil || time.Now().Add(wait).After(deadline) {
			return err
		}
		d.Log.WarnContext(ctx, "recording emails SendGrid accepted failed; trying again", "err", err, "in", wait)
		time.Sleep(wait)
	}
}

// giveUp records a permanent failure and stops the retries.
func (d *Deps) giveUp(ctx context.Context, ds []*store.Delivery, reason string, cause error) error {
	if err := store.FailDeliveries(context.WithoutCancel(ctx), d.DB, idsOf(ds), reason, d.now()); err != nil {
		return errors.Join(cause, err)
	}
	if len(ds) > 0 {
		d.Metrics.Invitations(ds[0].TenantID, metrics.InvitationFailed, len(ds))
	}
	d.completed(ctx)
	return fmt.Errorf("%v: %w", cause, asynq.SkipRetry)
}

// addressProblem is why emailaddr refuses an address, without the
// "Customer Email must be valid" every refusal starts with.
func addressProblem(addr string) string {
	err := emailaddr.Validate(addr)
	if err == nil {
		return ""
	}
	_, why, found := strings.Cut(err.Error(), "\n")
	if !found {
		return err.Error()
	}
	return why
}
