package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// ImportKindInvitations is the type of an import in the upload history.
const ImportKindInvitations = "Create Customer Invitations"

// Import statuses.
const (
	ImportQueued     = "queued"
	ImportProcessing = "processing"
	ImportCompleted  = "completed"
	ImportFailed     = "failed"
)

// ImportChunkSize is the size of the pieces an upload is stored in: big
// enough that a 50 MiB file is fifty rows, small enough that reading the
// file back holds one piece in memory at a time.
const ImportChunkSize = 1 << 20

// Import is one uploaded file and the state of its processing. CheckpointRow
// is the last row (as numbered in the file) whose outcome is committed: a
// worker that resumes skips everything up to it.
type Import struct {
	bun.BaseModel `bun:"table:imports,alias:im"`

	ID            uuid.UUID `bun:"id,pk,type:uuid"`
	TenantID      uuid.UUID `bun:"tenant_id,type:uuid"`
	Kind          string    `bun:"kind"`
	Filename      string    `bun:"filename"`
	ContentType   string    `bun:"content_type"`
	Format        string    `bun:"format"`
	SizeBytes     int64     `bun:"size_bytes"`
	Sheet         string    `bun:"sheet"`
	Status        string    `bun:"status"`
	Error         string    `bun:"error"`
	ValidateERP   bool      `bun:"validate_erp"`
	DryRun        bool      `bun:"dry_run"`
	NotifyEmail   string    `bun:"notify_email"`
	TotalRows     int       `bun:"total_rows"`
	ProcessedRows int       `bun:"processed_rows"`
	Succeeded     int       `bun:"succeeded"`
	Failed        int       `bun:"failed"`
	CheckpointRow int       `bun:"checkpoint_row"`
	CreatedAt     time.Time `bun:"created_at"`
	StartedAt     time.Time `bun:"started_at,nullzero"`
	FinishedAt    time.Time `bun:"finished_at,nullzero"`
	UpdatedAt     time.Time `bun:"updated_at"`
}

// Finished reports whether the import is done, one way or the other.
func (im *Import) Finished() bool {
	return im.Status == ImportCompleted || im.Status == ImportFailed
}

type importChunk struct {
	bun.BaseModel `bun:"table:import_chunks"`

	ImportID uuid.UUID `bun:"import_id,pk,type:uuid"`
	Seq      int       `bun:"seq,pk"`
	Data     []byte    `bun:"data"`
}

// ImportError is one entry of an import's error log: a problem with one field
// of one row (Field "" for the row as a whole), with the row's values.
type ImportError struct {
	bun.BaseModel `bun:"table:import_errors,alias:ie"`

	ImportID      uuid.UUID `bun:"import_id,pk,type:uuid"`
	RowNumber     int       `bun:"row_number,pk"`
	Field         string    `bun:"field,pk"`
	Message       string    `bun:"message"`
	AccountNumber string    `bun:"account_number"`
	Email         string    `bun:"email"`
	FirstName     string    `bun:"first_name"`
	LastName      string    `bun:"last_name"`
}

// ImportedRow is a row of an import that succeeded (or, in a dry run, would
// have).
type ImportedRow struct {
	RowNumber     int    `bun:"row_number"`
	AccountNumber string `bun:"account_number"`
	Email         string `bun:"email"`
	FirstName     string `bun:"first_name"`
	LastName      string `bun:"last_name"`
}

// DryRunRow is a row a dry run found good.
type DryRunRow struct {
	bun.BaseModel `bun:"table:import_dry_run_rows"`

	ImportID        uuid.UUID `bun:"import_id,pk,type:uuid"`
	RowNumber       int       `bun:"row_number,pk"`
	AccountNumber   string    `bun:"account_number"`
	Email           string    `bun:"email"`
	EmailNormalized string    `bun:"email_normalized"`
	FirstName       string    `bun:"first_name"`
	LastName        string    `bun:"last_name"`
}

// CreateImport stores a new import, queued.
func CreateImport(ctx context.Context, db bun.IDB, im *Import) error {
	if im.ID == uuid.Nil {
		im.ID = uuid.Must(uuid.NewV7())
	}
	if im.Kind == "" {
		im.Kind = ImportKindInvitations
	}
	if im.Status == "" {
		im.Status = ImportQueued
	}
	if _, err := db.NewInsert().Model(im).Exec(ctx); err != nil {
		return fmt.Errorf("insert import: %w", err)
	}
	return nil
}

// AddImportChunk stores the seq-th piece of an import's file.
func AddImportChunk(ctx context.Context, db bun.IDB, importID uuid.UUID, seq int, data []byte) error {
	if _, err := db.NewInsert().Model(&importChunk{ImportID: importID, Seq: seq, Data: data}).Exec(ctx); err != nil {
		return fmt.Errorf("store upload: %w", err)
	}
	return nil
}

// GetImport loads one of the tenant's imports.
func GetImport(ctx context.Context, db bun.IDB, tenantID, id uuid.UUID) (*Import, error) {
	im := new(Import)
	if err := db.NewSelect().Model(im).Where("tenant_id = ? AND id = ?", tenantID, id).Scan(ctx); err != nil {
		return nil, fmt.Errorf("import %s: %w", id, notFound(err))
	}
	return im, nil
}

// ListImports returns a page of the tenant's imports, newest first, starting
// after the import before (uuid.Nil for the first page).
func ListImports(ctx context.Context, db bun.IDB, tenantID uuid.UUID, before uuid.UUID, limit int) ([]*Import, error) {
	ims := []*Import{}
	q := db.NewSelect().Model(&ims).Where("im.tenant_id = ?", tenantID)
	if before != uuid.Nil {
		// created_at then id: ids are UUIDv7, so they break ties in time order.
		q = q.Where("(im.created_at, im.id) < (SELECT created_at, id FROM imports WHERE tenant_id = ? AND id = ?)", tenantID, before)
	}
	if err := q.Order("im.created_at DESC", "im.id DESC").Limit(int64(limit)).Scan(ctx); err != nil {
		return nil, fmt.Errorf("list imports: %w", err)
	}
	return ims, nil
}

// ImportFile reads an import's original file back a chunk at a time, so that
// a large file is never held in memory whole.
func ImportFile(ctx context.Context, db bun.IDB, importID uuid.UUID) io.Reader {
	return &chunkReader{ctx: ctx, db: db, importID: importID}
}

type chunkReader struct {
	ctx      context.Context
	db       bun.IDB
	importID uuid.UUID
	seq      int
	buf      []byte
	done     bool
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.done {
			return 0, io.EOF
		}
		var c importChunk
		err := r.db.NewSelect().Model(&c).Where("import_id = ? AND seq = ?", r.importID, r.seq).Scan(r.ctx)
		if errors.Is(err, sql.ErrNoRows) {
			r.done = true
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read upload: %w", err)
		}
		r.seq++
		r.buf = c.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// StartImport moves a queued import to processing with its row count. An
// import already processing (a resumed task) keeps its counts.
func StartImport(ctx context.Context, db bun.IDB, im *Import, totalRows int, now time.Time) error {
	_, err := db.NewUpdate().Model((*Import)(nil)).
		Set("status = ?", ImportProcessing).
		Set("total_rows = ?", totalRows).
		Set("started_at = COALESCE(started_at, ?)", now.UTC()).
		Set("updated_at = ?", now.UTC()).
		Where("tenant_id = ? AND id = ? AND status IN (?)", im.TenantID, im.ID, bun.In([]string{ImportQueued, ImportProcessing})).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("start import: %w", err)
	}
	im.Status, im.TotalRows = ImportProcessing, totalRows
	if im.StartedAt.IsZero() {
		im.StartedAt = now.UTC()
	}
	return nil
}

// ErrCheckpointMoved means another worker committed rows of the same import
// since this one read its checkpoint: this worker's batch must not be kept.
var ErrCheckpointMoved = errors.New("import checkpoint moved: another worker is processing the import")

// ImportProgress is what one committed batch adds to an import.
type ImportProgress struct {
	FromRow, ToRow       int // checkpoint before and after the batch
	Processed, Succeeded int
	Failed               int
}

// AdvanceImport moves the import's checkpoint from p.FromRow to p.ToRow and
// adds the batch's counts, in the batch's transaction. It fails with
// ErrCheckpointMoved when the checkpoint is no longer p.FromRow, so a batch
// that another worker committed first, or one whose predecessor has not
// committed, is rolled back. On Postgres the row lock it takes holds a
// concurrent batch on the same import until this transaction ends.
func AdvanceImport(ctx context.Context, db bun.IDB, tenantID, id uuid.UUID, p ImportProgress, now time.Time) error {
	res, err := db.NewUpdate().Model((*Import)(nil)).
		Set("checkpoint_row = ?", p.ToRow).
		Set("processed_rows = processed_rows + ?", p.Processed).
		Set("succeeded = succeeded + ?", p.Succeeded).
		Set("failed = failed + ?", p.Failed).
		Set("updated_at = ?", now.UTC()).
		Where("tenant_id = ? AND id = ? AND status = ? AND checkpoint_row = ?", tenantID, id, ImportProcessing, p.FromRow).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("advance import: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrCheckpointMoved
	}
	return nil
}

// FinishImport records the end of an import: completed, or failed with a
// reason for its sender. It reports false when the import had already
// finished (a duplicate run), so the caller does not report it twice.
func FinishImport(ctx context.Context, db bun.IDB, im *Import, status, reason string, now time.Time) (bool, error) {
	res, err := db.NewUpdate().Model((*Import)(nil)).
		Set("status = ?", status).
		Set("error = ?", reason).
		Set("finished_at = ?", now.UTC()).
		Set("updated_at = ?", now.UTC()).
		Where("tenant_id = ? AND id = ? AND status IN (?)", im.TenantID, im.ID, bun.In([]string{ImportQueued, ImportProcessing})).
		Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("finish import: %w", err)
	}
	n, _ := res.RowsAffected()
	if n > 0 {
		im.Status, im.Error, im.FinishedAt = status, reason, now.UTC()
	}
	return n > 0, nil
}

// InsertImportErrors adds entries to error logs. An entry already there (the
// same row and field, written by an attempt whose commit was not seen) is
// kept as it is.
func InsertImportErrors(ctx context.Context, db bun.IDB, errs []*ImportError) error {
	if len(errs) == 0 {
		return nil
	}
	if _, err := db.NewInsert().Model(&errs).On("CONFLICT DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("insert import errors: %w", err)
	}
	return nil
}

// importErrorsPage returns the error log from the entry after (row, field),
// in row order.
func importErrorsPage(ctx context.Context, db bun.IDB, importID uuid.UUID, afterRow int, afterField string, limit int) ([]*ImportError, error) {
	var errs []*ImportError
	err := db.NewSelect().Model(&errs).
		Where("import_id = ?", importID).
		Where("(row_number > ? OR (row_number = ? AND field > ?))", afterRow, afterRow, afterField).
		Order("row_number", "field").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("import errors: %w", err)
	}
	return errs, nil
}

// EachImportError calls fn with every entry of an import's error log, in row
// order, a page at a time.
func EachImportError(ctx context.Context, db bun.IDB, importID uuid.UUID, fn func(*ImportError) error) error {
	row, field := 0, ""
	for {
		page, err := importErrorsPage(ctx, db, importID, row, field, 1000)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := fn(e); err != nil {
				return err
			}
		}
		if len(page) < 1000 {
			return nil
		}
		row, field = page[len(page)-1].RowNumber, page[len(page)-1].Field
	}
}

// EachImportedRow calls fn with every row of the import that succeeded (in a
// dry run: would have), in row order, a page at a time.
func EachImportedRow(ctx context.Context, db bun.IDB, im *Import, fn func(ImportedRow) error) error {
	after := 0
	for {
		var page []ImportedRow
		var err error
		if im.DryRun {
			err = db.NewSelect().Model((*DryRunRow)(nil)).
				Column("row_number", "account_number", "email", "first_name", "last_name").
				Where("import_id = ? AND row_number > ?", im.ID, after).
				Order("row_number").Limit(1000).Scan(ctx, &page)
		} else {
			err = db.NewSelect().TableExpr("invitations AS i").
				ColumnExpr("i.import_row AS row_number").
				ColumnExpr("(SELECT min(ca.account_number) FROM customer_accounts AS ca WHERE ca.customer_id = i.customer_id) AS account_number").
				ColumnExpr("i.email, i.first_name, i.last_name").
				Where("i.tenant_id = ? AND i.import_id = ? AND i.import_row > ?", im.TenantID, im.ID, after).
				Order("i.import_row").Limit(1000).Scan(ctx, &page)
		}
		if err != nil {
			return fmt.Errorf("imported rows: %w", err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].RowNumber
	}
}

// InsertDryRunRows records the rows a dry run found good. A row already
// there (an attempt whose commit was not seen) is kept.
func InsertDryRunRows(ctx context.Context, db bun.IDB, rows []*DryRunRow) error {
	if len(rows) == 0 {
		return nil
	}
	if _, err := db.NewInsert().Model(&rows).Exec(ctx); err != nil {
		return fmt.Errorf("insert dry run rows: %w", err)
	}
	return nil
}

// DryRunTaken tells which of the emails (normalised) and account numbers an
// earlier row of the dry run already uses.
func DryRunTaken(ctx context.Context, db bun.IDB, importID uuid.UUID, emails, accounts []string) (map[string]bool, map[string]bool, error) {
	takenEmails, takenAccounts := map[string]bool{}, map[string]bool{}
	if len(emails) > 0 {
		var got []string
		err := db.NewSelect().Model((*DryRunRow)(nil)).Column("email_normalized").
			Where("import_id = ? AND email_normalized IN (?)", importID, bun.In(emails)).Scan(ctx, &got)
		if err != nil {
			return nil, nil, fmt.Errorf("dry run emails: %w", err)
		}
		for _, e := range got {
			takenEmails[e] = true
		}
	}
	if len(accounts) > 0 {
		var got []string
		err := db.NewSelect().Model((*DryRunRow)(nil)).Column("account_number").
			Where("import_id = ? AND account_number IN (?)", importID, bun.In(accounts)).Scan(ctx, &got)
		if err != nil {
			return nil, nil, fmt.Errorf("dry run accounts: %w", err)
		}
		for _, a := range got {
			takenAccounts[a] = true
		}
	}
	return takenEmails, takenAccounts, nil
}

// EmailsInUse tells which of the normalised emails the tenant already holds,
// in a live invitation or a portal account: EmailInUse for a batch.
func EmailsInUse(ctx context.Context, db bun.IDB, tenantID uuid.UUID, emails []string) (map[string]bool, error) {
	inUse := map[string]bool{}
	if len(emails) == 0 {
		return inUse, nil
	}
	var got []string
	err := db.NewSelect().Model((*Invitation)(nil)).Column("email_normalized").
		Where("tenant_id = ? AND email_normalized IN (?) AND state <> ?", tenantID, bun.In(emails), InvitationRevoked).
		UnionAll(db.NewSelect().Model((*User)(nil)).Column("email_normalized").
			Where("tenant_id = ? AND email_normalized IN (?)", tenantID, bun.In(emails))).
		Scan(ctx, &got)
	if err != nil {
		return nil, fmt.Errorf("emails in use: %w", err)
	}
	for _, e := range got {
		inUse[e] = true
	}
	return inUse, nil
}

// AccountHolder is the customer that holds an account number, and whether it
// has a live vendor invitation.
type AccountHolder struct {
	AccountNumber string    `bun:"account_number"`
	CustomerID    uuid.UUID `bun:"customer_id,type:uuid"`
	Status        string    `bun:"status"`
	Invited       bool      `bun:"invited"`
	// InvitedBy is the import whose row invited the customer, if one did.
	InvitedBy uuid.NullUUID `bun:"invited_by,type:uuid"`
	// Accounts is how many account numbers the customer holds.
	Accounts int `bun:"accounts"`
}

// AccountHolders finds the tenant's customers holding any of the account
// numbers.
func AccountHolders(ctx context.Context, db bun.IDB, tenantID uuid.UUID, accounts []string) (map[string]AccountHolder, error) {
	out := map[string]AccountHolder{}
	if len(accounts) == 0 {
		return out, nil
	}
	var got []AccountHolder
	err := db.NewSelect().TableExpr("customer_accounts AS ca").
		Join("JOIN customers AS c ON c.id = ca.customer_id").
		ColumnExpr("ca.account_number, ca.customer_id, c.status").
		ColumnExpr("EXISTS (SELECT 1 FROM invitations AS i WHERE i.customer_id = ca.customer_id AND i.kind = ? AND i.state <> ?) AS invited", KindVendor, InvitationRevoked).
		ColumnExpr("(SELECT i.import_id FROM invitations AS i WHERE i.customer_id = ca.customer_id AND i.kind = ? AND i.state <> ? LIMIT 1) AS invited_by", KindVendor, InvitationRevoked).
		ColumnExpr("(SELECT count(*) FROM customer_accounts AS other WHERE other.customer_id = ca.customer_id) AS accounts").
		Where("ca.tenant_id = ? AND ca.account_number IN (?)", tenantID, bun.In(accounts)).
		Scan(ctx, &got)
	if err != nil {
		return nil, fmt.Errorf("account holders: %w", err)
	}
	for _, h := range got {
		out[h.AccountNumber] = h
	}
	return out, nil
}

// ImportReportDelivery is the confirmation email of an import, if one was
// queued.
func ImportReportDelivery(ctx context.Context, db bun.IDB, importID uuid.UUID) (*Delivery, error) {
	d := new(Delivery)
	err := db.NewSelect().Model(d).Where("import_id = ? AND kind = ?", importID, DeliveryImportReport).Limit(1).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("import report delivery: %w", notFound(err))
	}
	return d, nil
}
