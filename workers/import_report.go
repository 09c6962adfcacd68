package workers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/csvsafe"
	"github.com/onboard-dev/onboard/internal/importer"
	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/templates"
)

// MaxReportAttachmentBytes bounds each CSV attached to an import's
// confirmation: SendGrid takes at most 30 MB per message, base64 grows files
// by a third, and a million-row list belongs in the API, not in a mailbox.
const MaxReportAttachmentBytes = 8 << 20

// handleImportReport emails the outcome of an import to its sender, with the
// rows that succeeded and the rows that failed as CSV attachments. The email
// is a delivery like an invitation's, claimed under a lease, so a retry or a
// duplicate task sends it once.
func (d *Deps) handleImportReport(ctx context.Context, t *asynq.Task) error {
	im, err := d.taskImport(ctx, t)
	if im == nil {
		return err
	}
	del, err := store.ImportReportDelivery(ctx, d.DB, im.ID)
	if errors.Is(err, store.ErrNotFound) {
		d.completed(ctx)
		return nil
	}
	if err != nil {
		return err
	}
	if err := d.held(ctx); err != nil {
		return err
	}
	now := d.now()
	claimed, err := store.ClaimDeliveries(ctx, d.DB, []uuid.UUID{del.ID}, d.sendLease(), now)
	if err != nil {
		return err
	}
	if len(claimed) == 0 {
		if n, err := store.LeasedDeliveries(ctx, d.DB, []uuid.UUID{del.ID}, now); err != nil || n > 0 {
			return errors.Join(err, store.ErrDeliveryLeased)
		}
		d.completed(ctx)
		return nil // sent or failed for good already
	}
	tenant, err := store.TenantByID(ctx, d.DB, im.TenantID)
	if err != nil {
		return d.releaseReport(ctx, del, err)
	}
	msg, err := d.importReportMessage(ctx, tenant, im)
	if err != nil {
		return d.releaseReport(ctx, del, err)
	}
	res, err := d.Mailer.Send(ctx, msg)
	switch {
	case err == nil:
		if err := d.recordSent(ctx, func(ctx context.Context) error {
			return store.MarkDeliveriesSent(ctx, d.DB, []uuid.UUID{del.ID}, res.MessageID, time.Time{}, d.now())
		}); err != nil {
			return err
		}
		d.completed(ctx)
		return nil
	case mail.IsTemporary(err) && !lastAttempt(ctx):
		return d.releaseReport(ctx, del, err)
	case mail.IsTemporary(err) && !d.outlived(claimed):
		// An outage of SendGrid longer than the task's retries: the report
		// goes on in a new task rather than be lost.
		err := d.handOver(ctx, im.TenantID, claimed, err, func([]string) jobs.Job {
			return jobs.NewImportReport(im.TenantID.String(), im.ID.String())
		})
		if err == nil {
			d.completed(ctx) // handed over to a new task
		}
		return err
	case mail.IsRefused(err):
		err := d.waitForFix(ctx, im.TenantID, claimed, err, func([]string) jobs.Job {
			return jobs.NewImportReport(im.TenantID.String(), im.ID.String())
		})
		if err == nil {
			d.completed(ctx) // handed over to a new task
		}
		return err
	}
	if ferr := store.FailDeliveries(context.WithoutCancel(ctx), d.DB, []uuid.UUID{del.ID}, err.Error(), d.now()); ferr != nil {
		return ferr
	}
	d.completed(ctx)
	return fmt.Errorf("import report %s: %w: %w", im.ID, err, asynq.SkipRetry)
}

func (d *Deps) releaseReport(ctx context.Context, del *store.Delivery, cause error) error {
	if err := store.ReleaseDeliveries(context.WithoutCancel(ctx), d.DB, []uuid.UUID{del.ID}, cause.Error(), d.now()); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

func (d *Deps) importReportMessage(ctx context.Context, tenant *store.Tenant, im *store.Import) (mail.Message, error) {
	base := strings.TrimSuffix(path.Base(strings.ReplaceAll(im.Filename, `\`, "/")), path.Ext(im.Filename))
	if base == "" || base == "." || base == "/" {
		base = "import"
	}
	data := templates.ImportReport{
		TenantName: tenant.Name, Kind: im.Kind, ImportID: im.ID.String(), Filename: im.Filename,
		DryRun: im.DryRun, ImportFailed: im.Status == store.ImportFailed, Error: im.Error,
		TotalRows: im.TotalRows, Processed: im.ProcessedRows, Succeeded: im.Succeeded, Failed: im.Failed,
	}
	if data.Filename == "" {
		data.Filename = "the uploaded file"
	}
	var attachments []mail.Attachment
	if im.Succeeded > 0 {
		content, listed, truncated, err := succeededRowsCSV(ctx, d, im)
		if err != nil {
			return mail.Message{}, err
		}
		data.SucceededFile, data.SucceededListed, data.SucceededTruncated = base+"-succeeded.csv", listed, truncated
		attachments = append(attachments, mail.Attachment{Filename: data.SucceededFile, ContentType: attachmentCSVType, Content: content})
	}
	if im.Failed > 0 {
		content, listed, truncated, err := failedRowsCSV(ctx, d, im)
		if err != nil {
			return mail.Message{}, err
		}
		data.FailedFile, data.FailedListed, data.FailedTruncated = base+"-failed.csv", listed, truncated
		attachments = append(attachments, mail.Attachment{Filename: data.FailedFile, ContentType: attachmentCSVType, Content: content})
	}
	e, err := templates.RenderImportReport(data)
	if err != nil {
		return mail.Message{}, err
	}
	return mail.Message{
		From:    d.From,
		Subject: e.Subject, Text: e.Text, HTML: e.HTML,
		Personalizations: []mail.Personalization{{
			To:         mail.Address{Email: reportRecipient(tenant, im)},
			CustomArgs: map[string]string{"import_id": im.ID.String(), "tenant_id": tenant.ID.String()},
		}},
		Attachments: attachments,
		Categories:  []string{"import_report"},
	}, nil
}

// errAttachmentFull stops filling an attachment at its size limit.
var errAttachmentFull = errors.New("attachment full")

// attachmentCSVType is the type of the CSV attachments, bare: SendGrid
// refuses a type with parameters ("The attachment type cannot contain ';',
// or CRLF characters") and adds the charset itself. The BOM says UTF-8 to
// the programs that open the file.
const attachmentCSVType = "text/csv"

// utf8BOM starts each CSV attachment. Excel on Windows opens a CSV without
// one in the system's ANSI code page, so Zoë and 山田 would show as mojibake,
// and a failed-rows file fixed and saved there would be saved wrong; with it
// Excel reads (and keeps) UTF-8. The importer reads a BOM and drops it. The
// API's CSV downloads carry none: programs read those.
const utf8BOM = "\uFEFF"

// boundedCSV writes formula-safe CSV rows until MaxReportAttachmentBytes.
type boundedCSV struct {
	buf  bytes.Buffer
	w    *csvsafe.Writer
	rows int
	full bool
}

func newBoundedCSV(header []string) *boundedCSV {
	b := &boundedCSV{}
	b.buf.WriteString(utf8BOM)
	b.w = csvsafe.NewWriter(&b.buf)
	_ = b.w.Write(header)
	return b
}

func (b *boundedCSV) add(rec []string) error {
	mark := b.buf.Len()
	if err := b.w.Write(rec); err != nil {
		return err
	}
	if err := b.w.Flush(); err != nil {
		return err
	}
	if b.buf.Len() > MaxReportAttachmentBytes {
		b.buf.Truncate(mark)
		b.full = true
		return errAttachmentFull
	}
	b.rows++
	return nil
}

func (b *boundedCSV) done(err error) ([]byte, int, bool, error) {
	if err != nil && !errors.Is(err, errAttachmentFull) {
		return nil, 0, false, err
	}
	if err := b.w.Flush(); err != nil {
		return nil, 0, false, err
	}
	return b.buf.Bytes(), b.rows, b.full, nil
}

// succeededRowsCSV lists the rows that were invited, in the template's
// columns after the row number.
func succeededRowsCSV(ctx context.Context, d *Deps, im *store.Import) ([]byte, int, bool, error) {
	b := newBoundedCSV(append([]string{"Row"}, importer.TemplateHeader...))
	err := store.EachImportedRow(ctx, d.DB, im, func(r store.ImportedRow) error {
		return b.add([]string{strconv.Itoa(r.RowNumber), r.AccountNumber, r.Email, r.FirstName, r.LastName})
	})
	return b.done(err)
}

// failedRowsCSV lists the rows that failed in the upload format (the
// template's columns first), one line per row with every problem in Error,
// so the file can be fixed and uploaded again: Error and Row are columns the
// importer ignores.
func failedRowsCSV(ctx context.Context, d *Deps, im *store.Import) ([]byte, int, bool, error) {
	b := newBoundedCSV(append(append([]string{}, importer.TemplateHeader...), "Error", "Row"))
	var cur *store.ImportError
	var msgs []string
	flush := func() error {
		if cur == nil {
			return nil
		}
		return b.add([]string{cur.AccountNumber, cur.Email, cur.FirstName, cur.LastName, strings.Join(msgs, "; "), strconv.Itoa(cur.RowNumber)})
	}
	err := store.EachImportError(ctx, d.DB, im.ID, func(e *store.ImportError) error {
		if cur != nil && cur.RowNumber != e.RowNumber {
			if err := flush(); err != nil {
				return err
			}
			msgs = msgs[:0]
		}
		cur = e
		msgs = append(msgs, e.Message)
		return nil
	})
	if err == nil {
		err = flush()
	}
	return b.done(err)
}
