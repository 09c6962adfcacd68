package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/emailaddr"
	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/importer"
	"github.com/onboard-dev/onboard/internal/invite"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// DefaultImportBatchRows is how many rows one transaction commits, with the
// checkpoint: enough that per-statement costs fade, few enough that a retry
// redoes little. Its emails go out as invite:send tasks of up to 1,000.
const DefaultImportBatchRows = 5000

// erpLookupsPerBatch bounds the ERP lookups one import runs at a time; the
// shared limiter bounds them across all workers.
const erpLookupsPerBatch = 8

// errImportStopped marks a failure that retrying cannot mend: the import
// fails with its message.
var errImportStopped = errors.New("the import cannot go on")

// handleImportProcess reads an uploaded file, a batch of rows at a time: each
// batch's customers, invitations, emails, error-log entries and checkpoint
// are committed together, so a worker that dies resumes after the last
// committed batch and every row counts once.
func (d *Deps) handleImportProcess(ctx context.Context, t *asynq.Task) error {
	im, err := d.taskImport(ctx, t)
	if im == nil {
		return err
	}
	if im.Finished() {
		d.completed(ctx)
		return nil
	}
	tenant, err := store.TenantByID(ctx, d.DB, im.TenantID)
	if err != nil {
		return err
	}
	err = d.runImport(ctx, tenant, im)
	switch {
	case err == nil:
		return d.finishImport(ctx, tenant, im, store.ImportCompleted, "")
	case errors.Is(err, importer.ErrFile), errors.Is(err, errImportStopped):
		return d.finishImport(ctx, tenant, im, store.ImportFailed, err.Error())
	case errors.Is(err, store.ErrCheckpointMoved):
		return err // another worker has it; if it died, a retry takes over
	case lastAttempt(ctx):
		// The tenant reads the reason: an ERP failure says what the ERP did
		// (its message names no address), anything else (a database
		// driver's error names hosts and users) goes to the log only.
		reason := "the import stopped after repeated failures of the service; the rows before the failure are imported, and uploading the file again imports the rest (those rows then read as already in use)"
		var erpErr *erp.Error
		if errors.As(err, &erpErr) {
			reason = "the import stopped after repeated failures: " + erpErr.Error()
		}
		d.Log.ErrorContext(ctx, "import failed after its last attempt", "import_id", im.ID, "err", err, "detail", erp.Detail(err))
		if ferr := d.finishImport(ctx, tenant, im, store.ImportFailed, reason); ferr != nil {
			return ferr
		}
		return fmt.Errorf("import %s: %w: %w", im.ID, err, asynq.SkipRetry)
	}
	return err
}

// taskImport loads the import an import:process or import:report task names.
// It returns nil when there is nothing to do: the import is gone (nil error)
// or cannot be loaded (the error).
func (d *Deps) taskImport(ctx context.Context, t *asynq.Task) (*store.Import, error) {
	var p jobs.ImportProcess // import:report's payload has the same shape
	if err := jobs.Decode(t, &p); err != nil {
		return nil, err
	}
	tenantID, err1 := uuid.Parse(p.TenantID)
	importID, err2 := uuid.Parse(p.ImportID)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("%s: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	im, err := store.GetImport(ctx, d.DB, tenantID, importID)
	if errors.Is(err, store.ErrNotFound) {
		d.completed(ctx)
		return nil, nil
	}
	return im, err
}

// finishImport records the outcome and, in the same transaction, queues the
// confirmation email to the sender.
func (d *Deps) finishImport(ctx context.Context, tenant *store.Tenant, im *store.Import, status, reason string) error {
	now := d.now()
	var queued []jobs.Job
	err := d.DB.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		finished, err := store.FinishImport(ctx, tx, im, status, reason, now)
		if err != nil || !finished {
			return err
		}
		if reportRecipient(tenant, im) == "" {
			return nil // nobody to tell; the history shows the outcome
		}
		del := &store.Delivery{
			ID: uuid.Must(uuid.NewV7()), TenantID: tenant.ID, ImportID: uuid.NullUUID{UUID: im.ID, Valid: true},
			Kind: store.DeliveryImportReport, State: store.DeliveryQueued, CreatedAt: now, UpdatedAt: now,
		}
		if err := store.InsertDeliveries(ctx, tx, []*store.Delivery{del}); err != nil {
			return err
		}
		job := jobs.NewImportReport(tenant.ID.String(), im.ID.String())
		queued = append(queued, job)
		return outbox.Record(ctx, tx, tenant.ID, now, job)
	})
	if err != nil {
		return err
	}
	d.Dispatcher.Dispatch(ctx, queued...)
	d.completed(ctx)
	d.Log.InfoContext(ctx, "import finished", "tenant_id", tenant.ID, "import_id", im.ID, "status", im.Status,
		"total_rows", im.TotalRows, "succeeded", im.Succeeded, "failed", im.Failed, "reason", reason)
	return nil
}

func reportRecipient(tenant *store.Tenant, im *store.Import) string {
	if im.NotifyEmail != "" {
		return im.NotifyEmail
	}
	return tenant.AdminEmail
}

func (d *Deps) openImport(ctx context.Context, im *store.Import) (importer.Reader, error) {
	r, _, err := importer.Open(store.ImportFile(ctx, d.DB, im.ID), importer.XLSXOptions{
		Sheet: im.Sheet, UnzipSizeLimit: d.ImportUnzipLimit,
	})
	return r, err
}

// runImport counts the rows first, so that progress is "rows done of rows
// total" and a file that is broken halfway (a damaged row, a line too long)
// fails before anyone is invited, then commits the rows after the checkpoint
// in batches.
func (d *Deps) runImport(ctx context.Context, tenant *store.Tenant, im *store.Import) error {
	if im.Status == store.ImportQueued || im.TotalRows == 0 {
		// Processing from now: the history shows the count pass under way.
		if err := store.StartImport(ctx, d.DB, im, 0, d.now()); err != nil {
			return err
		}
		total, err := d.countImportRows(ctx, im)
		if err != nil {
			return err
		}
		if err := store.StartImport(ctx, d.DB, im, total, d.now()); err != nil {
			return err
		}
	}
	r, err := d.openImport(ctx, im)
	if err != nil {
		return err
	}
	defer r.Close()
	size := d.ImportBatchRows
	if size <= 0 {
		size = DefaultImportBatchRows
	}
	p := &batchPipeline{d: d, tenant: tenant, im: im, overlap: store.DialectOfDB(d.DB) == store.Postgres}
	defer p.abandon()
	batch := make([]importer.Row, 0, size)
	for {
		row, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return errors.Join(err, p.finish(ctx))
		}
		if row.Number <= im.CheckpointRow {
			continue // committed by an earlier attempt
		}
		batch = append(batch, row)
		if len(batch) == size {
			if err := p.submit(ctx, batch); err != nil {
				return err
			}
			batch = make([]importer.Row, 0, size) // the pipeline keeps the last one
		}
	}
	if len(batch) > 0 {
		if err := p.submit(ctx, batch); err != nil {
			return err
		}
	}
	return p.finish(ctx)
}

func (d *Deps) countImportRows(ctx context.Context, im *store.Import) (int, error) {
	r, err := d.openImport(ctx, im)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n := 0
	for {
		if _, err := r.Next(); err != nil {
			if errors.Is(err, io.EOF) && n == 0 {
				// Most likely the template sent back unfilled, or rows on
				// another sheet: say so rather than report "0 invited".
				return 0, fmt.Errorf("%w: the file has no rows below the header", importer.ErrFile)
			}
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return 0, err
		}
		n++
		if n%50000 == 0 && ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// batchPipeline commits an import's batches in order, and on Postgres
// overlaps them: while batch k commits, batch k+1 is read, checked and
// loaded in a transaction of its own, which moves the checkpoint only once k
// has committed. An import is bound by Postgres writing four tables and their
// indexes per row, so a second transaction at work uses the server's other
// core instead of leaving it idle (BENCHMARKS.md).
//
// Batch k+1 is checked before k has committed, so it is checked against the
// database and against what k takes (its claims): the same answer as after
// k's commit. When a commit fails on a key that a concurrent request took,
// both batches are redone one at a time, checked again.
type batchPipeline struct {
	d       *Deps
	tenant  *store.Tenant
	im      *store.Import
	overlap bool
	// inFlight is the batch committing, or nil.
	inFlight *batchCommit
}

// batchCommit is one batch's transaction, run in a goroutine.
type batchCommit struct {
	plan   *batchPlan
	done   chan struct{}
	queued []jobs.Job
	err    error
}

// errEarlierBatchFailed rolls a batch back whose predecessor did not commit:
// its checkpoint would not follow on.
var errEarlierBatchFailed = errors.New("the batch before it did not commit")

func (p *batchPipeline) submit(ctx context.Context, rows []importer.Row) error {
	if !p.overlap {
		return p.commitAlone(ctx, rows)
	}
	var prev *batchCommit
	var taken *claims
	from := p.im.CheckpointRow
	if prev = p.inFlight; prev != nil {
		taken, from = &prev.plan.taken, prev.plan.progress.ToRow
	}
	plan, err := p.d.planBatch(ctx, p.tenant, p.im, rows, from, taken)
	if err != nil {
		return errors.Join(err, p.finish(ctx))
	}
	next := p.start(ctx, plan, prev)
	if prev == nil {
		p.inFlight = next
		return nil
	}
	err = p.settle(ctx, prev)
	if err == nil {
		p.inFlight = next
		return nil
	}
	<-next.done // it rolls back: its predecessor failed
	p.inFlight = nil
	if !isKeyConflict(err) {
		return err
	}
	if err := p.commitAlone(ctx, prev.plan.rows); err != nil {
		return err
	}
	return p.commitAlone(ctx, rows)
}

// finish waits for the batch in flight; a key conflict redoes it alone.
func (p *batchPipeline) finish(ctx context.Context) error {
	c := p.inFlight
	if c == nil {
		return nil
	}
	p.inFlight = nil
	err := p.settle(ctx, c)
	if isKeyConflict(err) {
		return p.commitAlone(ctx, c.plan.rows)
	}
	return err
}

// abandon waits for a transaction still running when the import stops
// early, so that none outlives the task.
func (p *batchPipeline) abandon() {
	if p.inFlight != nil {
		<-p.inFlight.done
	}
}

func (p *batchPipeline) start(ctx context.Context, plan *batchPlan, prev *batchCommit) *batchCommit {
	c := &batchCommit{plan: plan, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.queued, c.err = p.d.commitBatch(ctx, p.tenant, p.im, plan, prev)
	}()
	return c
}

// settle waits for a batch's transaction; once it committed, it enqueues the
// batch's emails and moves the import on.
func (p *batchPipeline) settle(ctx context.Context, c *batchCommit) error {
	<-c.done
	if c.err != nil {
		return c.err
	}
	p.d.Dispatcher.Dispatch(ctx, c.queued...)
	pr := c.plan.progress
	p.d.Metrics.ImportRows(p.tenant.ID, pr.Succeeded, pr.Failed)
	if !p.im.DryRun {
		p.d.Metrics.Invitations(p.tenant.ID, metrics.InvitationCreated, len(c.plan.invitations))
	}
	p.im.CheckpointRow = pr.ToRow
	p.im.ProcessedRows += pr.Processed
	p.im.Succeeded += pr.Succeeded
	p.im.Failed += pr.Failed
	return nil
}

// commitAlone plans and commits one batch with nothing else in flight. A key
// that a concurrent request took between the checks and the inserts fails
// the transaction; checking again turns it into that row's error.
func (p *batchPipeline) commitAlone(ctx context.Context, rows []importer.Row) error {
	for attempt := 1; ; attempt++ {
		plan, err := p.d.planBatch(ctx, p.tenant, p.im, rows, p.im.CheckpointRow, nil)
		if err != nil {
			return err
		}
		err = p.settle(ctx, p.start(ctx, plan, nil))
		if !isKeyConflict(err) || attempt == 3 {
			return err
		}
	}
}

func isKeyConflict(err error) bool {
	return errors.Is(err, store.ErrEmailInUse) || errors.Is(err, store.ErrAccountInUse) || errors.Is(err, store.ErrAlreadyInvited)
}

// rowOutcome is what became of one row of a batch.
type rowOutcome struct {
	row        importer.Row
	email      string // normalised
	errs       []importer.FieldError
	customerID uuid.UUID // an existing customer to invite, or uuid.Nil
	// customerAccounts is how many account numbers that customer holds.
	customerAccounts int
	account          *erp.Account // the ERP's record, when verified
}

func (o *rowOutcome) fail(field, msg string) {
	o.errs = append(o.errs, importer.FieldError{Field: field, Message: msg})
}

func (o *rowOutcome) failed(field string) bool {
	for _, e := range o.errs {
		if e.Field == field {
			return true
		}
	}
	return false
}

// claims are the emails, account numbers and existing customers that a
// batch's good rows take.
type claims struct {
	emails, accounts map[string]bool
	customers        map[uuid.UUID]bool
}

// batchPlan is everything one batch writes, worked out before its
// transaction.
type batchPlan struct {
	rows        []importer.Row
	progress    store.ImportProgress
	logEntries  []*store.ImportError
	customers   []*store.Customer
	invitations []*store.Invitation
	dryRows     []*store.DryRunRow
	taken       claims
	now         time.Time
}

// planBatch applies the row rules to a batch that follows the checkpoint
// from: each row alone, then against the tenant's data, what the batch
// before it takes (taken, when that one has not committed yet) and the rows
// before it in the batch; and the ERP, when asked.
func (d *Deps) planBatch(ctx context.Context, tenant *store.Tenant, im *store.Import, rows []importer.Row, from int, taken *claims) (*batchPlan, error) {
	out := make([]*rowOutcome, len(rows))
	for i, r := range rows {
		out[i] = &rowOutcome{row: r, errs: importer.Validate(r)}
		if len(out[i].errs) == 0 {
			out[i].email = emailaddr.Normalize(r.Email)
		}
	}
	if err := d.checkAgainstDatabase(ctx, tenant, im, out); err != nil {
		return nil, err
	}
	if taken != nil {
		// What the database will say once the batch before has committed.
		for _, o := range out {
			if o.email == "" {
				continue // the row is wrong on its own
			}
			if taken.emails[o.email] && !o.failed(importer.ColEmail) {
				o.fail(importer.ColEmail, importer.MsgEmailInUse)
			}
			switch {
			case o.failed(importer.ColAccountNumber):
			case o.customerID != uuid.Nil && taken.customers[o.customerID]:
				o.fail(importer.ColAccountNumber, invitedByEarlierRow(o.customerAccounts))
			case taken.accounts[o.row.AccountNumber]:
				o.fail(importer.ColAccountNumber, importer.MsgAccountRepeated)
			}
		}
	}
	if im.ValidateERP {
		if err := d.verifyImportAccounts(ctx, im, out); err != nil {
			return nil, err
		}
	}
	plan := &batchPlan{
		rows:     rows,
		progress: store.ImportProgress{FromRow: from, ToRow: rows[len(rows)-1].Number, Processed: len(rows)},
		taken:    claims{emails: map[string]bool{}, accounts: map[string]bool{}, customers: map[uuid.UUID]bool{}},
		now:      d.now(),
	}
	// Within the batch, the first row to use an email or account number keeps
	// it; so does the first row to invite an existing customer again, which
	// may hold several account numbers. The messages are the ones the
	// database gives once the earlier row has committed.
	for _, o := range out {
		if len(o.errs) > 0 {
			continue
		}
		if plan.taken.emails[o.email] {
			o.fail(importer.ColEmail, importer.MsgEmailInUse)
		}
		switch {
		case o.customerID != uuid.Nil && plan.taken.customers[o.customerID]:
			o.fail(importer.ColAccountNumber, invitedByEarlierRow(o.customerAccounts))
		case plan.taken.accounts[o.row.AccountNumber]:
			o.fail(importer.ColAccountNumber, importer.MsgAccountRepeated)
		}
		if len(o.errs) == 0 {
			plan.taken.emails[o.email], plan.taken.accounts[o.row.AccountNumber] = true, true
			if o.customerID != uuid.Nil {
				plan.taken.customers[o.customerID] = true
			}
		}
	}
	plan.build(tenant, im, out)
	return plan, nil
}

// build turns the outcomes into the rows to write.
func (plan *batchPlan) build(tenant *store.Tenant, im *store.Import, out []*rowOutcome) {
	now := plan.now
	for _, o := range out {
		r := o.row
		if len(o.errs) > 0 {
			plan.progress.Failed++
			for _, e := range o.errs {
				plan.logEntries = append(plan.logEntries, &store.ImportError{
					ImportID: im.ID, RowNumber: r.Number, Field: e.Field, Message: e.Message,
					AccountNumber: r.AccountNumber, Email: r.Email, FirstName: r.FirstName, LastName: r.LastName,
				})
			}
			continue
		}
		plan.progress.Succeeded++
		if im.DryRun {
			plan.dryRows = append(plan.dryRows, &store.DryRunRow{
				ImportID: im.ID, RowNumber: r.Number, AccountNumber: r.AccountNumber,
				Email: r.Email, EmailNormalized: o.email, FirstName: r.FirstName, LastName: r.LastName,
			})
			continue
		}
		customerID := o.customerID
		if customerID == uuid.Nil {
			c := &store.Customer{
				ID: uuid.Must(uuid.NewV7()), TenantID: tenant.ID, Status: store.CustomerActive,
				AccountNumbers: []string{r.AccountNumber}, CreatedAt: now, UpdatedAt: now,
			}
			if o.account != nil {
				c.CompanyName, c.ERPName, c.ERPPriceTier = o.account.Name, o.account.Name, o.account.PriceTier
				c.ERPStatus, c.ERPCheckedAt = store.ERPVerified, now
			}
			plan.customers = append(plan.customers, c)
			customerID = c.ID
		}
		plan.invitations = append(plan.invitations, &store.Invitation{
			ID: uuid.Must(uuid.NewV7()), TenantID: tenant.ID, CustomerID: customerID, Kind: store.KindVendor,
			Email: r.Email, EmailNormalized: o.email, FirstName: r.FirstName, LastName: r.LastName,
			Role: store.RoleAdmin, State: store.InvitationPending, DeliveryStatus: store.DeliveryQueued,
			ImportID: uuid.NullUUID{UUID: im.ID, Valid: true}, ImportRow: r.Number, CreatedAt: now, UpdatedAt: now,
		})
	}
}

// commitBatch writes a batch and moves the checkpoint in one transaction.
// The checkpoint goes last: after the batch before it (prev) has committed,
// so the two load their rows at the same time but commit in order; a batch
// whose predecessor failed rolls back. A second worker on the same import
// fails there too (the checkpoint moved), or earlier on a key the first one
// holds.
func (d *Deps) commitBatch(ctx context.Context, tenant *store.Tenant, im *store.Import, plan *batchPlan, prev *batchCommit) ([]jobs.Job, error) {
	var queued []jobs.Job
	err := store.RunInBulkTx(ctx, d.DB, func(ctx context.Context, tx *store.BulkTx) error {
		if err := store.InsertImportErrors(ctx, tx, plan.logEntries); err != nil {
			return err
		}
		if im.DryRun {
			if err := store.InsertDryRunRows(ctx, tx, plan.dryRows); err != nil {
				return err
			}
		} else {
			if err := store.InsertCustomers(ctx, tx, plan.customers); err != nil {
				return err
			}
			if err := store.InsertInvitations(ctx, tx, plan.invitations); err != nil {
				return err
			}
			var err error
			if queued, err = invite.QueueEmails(ctx, tx, tenant.ID, plan.invitations, plan.now); err != nil {
				return err
			}
		}
		if prev != nil {
			select {
			case <-prev.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			if prev.err != nil {
				return errEarlierBatchFailed
			}
		}
		return store.AdvanceImport(ctx, tx, tenant.ID, im.ID, plan.progress, plan.now)
	})
	return queued, err
}

// checkAgainstDatabase applies the rules that need the tenant's data: an
// email already in use, an account number held by a blacklisted, inactive or
// already invited customer, and in a dry run what earlier rows would have
// taken.
func (d *Deps) checkAgainstDatabase(ctx context.Context, tenant *store.Tenant, im *store.Import, out []*rowOutcome) error {
	var emails, accounts []string
	for _, o := range out {
		if len(o.errs) == 0 {
			emails = append(emails, o.email)
			accounts = append(accounts, o.row.AccountNumber)
		}
	}
	if len(emails) == 0 {
		return nil
	}
	inUse, err := store.EmailsInUse(ctx, d.DB, tenant.ID, emails)
	if err != nil {
		return err
	}
	holders, err := store.AccountHolders(ctx, d.DB, tenant.ID, accounts)
	if err != nil {
		return err
	}
	dryEmails, dryAccounts := map[string]bool{}, map[string]bool{}
	if im.DryRun {
		if dryEmails, dryAccounts, err = store.DryRunTaken(ctx, d.DB, im.ID, emails, accounts); err != nil {
			return err
		}
	}
	for _, o := range out {
		if len(o.errs) > 0 {
			continue
		}
		if inUse[o.email] || dryEmails[o.email] {
			o.fail(importer.ColEmail, importer.MsgEmailInUse)
		}
		switch h, held := holders[o.row.AccountNumber]; {
		case dryAccounts[o.row.AccountNumber]:
			o.fail(importer.ColAccountNumber, importer.MsgAccountRepeated)
		case !held:
		case h.Status == store.CustomerBlacklisted:
			o.fail(importer.ColAccountNumber, importer.MsgAccountBlacklisted)
		case h.Status == store.CustomerInactive:
			o.fail(importer.ColAccountNumber, importer.MsgAccountInactive)
		case h.InvitedBy.Valid && h.InvitedBy.UUID == im.ID:
			o.fail(importer.ColAccountNumber, invitedByEarlierRow(h.Accounts))
		case h.Invited:
			o.fail(importer.ColAccountNumber, importer.MsgAccountInvited)
		default:
			// An active customer whose invitations were all revoked: the row
			// invites it again.
			o.customerID, o.customerAccounts = h.CustomerID, h.Accounts
		}
	}
	return nil
}

// invitedByEarlierRow is the message for a row whose customer an earlier row
// of the file invited. A customer with one account number got it from that
// row; one with several may have been invited through another.
func invitedByEarlierRow(customerAccounts int) string {
	if customerAccounts > 1 {
		return importer.MsgAccountInvited
	}
	return importer.MsgAccountRepeated
}

// verifyImportAccounts looks every still-good row's account number up in the
// ERP, a few at a time: an account the ERP does not know is that row's error;
// an ERP that cannot answer fails the batch, which is retried from the
// checkpoint with backoff.
func (d *Deps) verifyImportAccounts(ctx context.Context, im *store.Import, out []*rowOutcome) error {
	if d.ERP == nil {
		return fmt.Errorf("%w: ERP validation was asked for, but no ERP is configured (ERP_URL)", errImportStopped)
	}
	byAccount := map[string][]*rowOutcome{}
	var order []string
	for _, o := range out {
		if len(o.errs) > 0 {
			continue
		}
		if _, seen := byAccount[o.row.AccountNumber]; !seen {
			order = append(order, o.row.AccountNumber)
		}
		byAccount[o.row.AccountNumber] = append(byAccount[o.row.AccountNumber], o)
	}
	type result struct {
		acct erp.Account
		err  error
	}
	results := make([]result, len(order))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, erpLookupsPerBatch)
	var wg sync.WaitGroup
	var stopOnce sync.Once
	var stop error // the failure that stopped the batch, not the lookups it cancelled
	for i, number := range order {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			acct, err := d.lookup(ctx, im.TenantID, number)
			results[i] = result{acct, err}
			if err != nil && !errors.Is(err, erp.ErrNotFound) {
				stopOnce.Do(func() {
					// The import's error gets the reason; the log the cause.
					d.Log.WarnContext(ctx, "erp lookup failed", "tenant_id", im.TenantID, "import_id", im.ID, "err", erp.Detail(err))
					stop = fmt.Errorf("ERP lookup of account %s: %w", number, err)
					cancel() // the batch is retried whole; stop asking
				})
			}
		}()
	}
	wg.Wait()
	if stop != nil {
		return stop
	}
	// Without a stop, the only lookup errors left are accounts not found.
	for i, number := range order {
		for _, o := range byAccount[number] {
			if results[i].err != nil {
				o.fail(importer.ColAccountNumber, importer.MsgAccountNotInERP)
			} else {
				o.account = &results[i].acct
			}
		}
	}
	return nil
}
