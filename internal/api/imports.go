package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/xuri/excelize/v2"

	"github.com/onboard-dev/onboard/internal/csvsafe"
	"github.com/onboard-dev/onboard/internal/emailaddr"
	"github.com/onboard-dev/onboard/internal/importer"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// DefaultMaxUploadBytes is the largest import file accepted by default.
const DefaultMaxUploadBytes = 50 << 20

// multipartOverhead is room in the request for the form's other fields and
// part headers beyond the file itself.
const multipartOverhead = 64 << 10

const xlsxContentType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

type importView struct {
	ID          uuid.UUID      `json:"id"`
	Type        string         `json:"type"`
	Status      string         `json:"status"`
	Filename    string         `json:"filename"`
	Format      *string        `json:"format"` // null: neither CSV nor XLSX (the import fails)
	SizeBytes   int64          `json:"size_bytes"`
	Sheet       string         `json:"sheet,omitempty"`
	DryRun      bool           `json:"dry_run"`
	ValidateERP bool           `json:"validate_erp"`
	NotifyEmail string         `json:"notify_email,omitempty"`
	TotalRows   int            `json:"total_rows"`
	Succeeded   int            `json:"succeeded"`
	Failed      int            `json:"failed"`
	Progress    importProgress `json:"progress"`
	Error       string         `json:"error,omitempty"`
	CreatedAt   time.Time      `json:"created_at"`
	StartedAt   *time.Time     `json:"started_at"`
	FinishedAt  *time.Time     `json:"finished_at"`
	Links       importLinks    `json:"links"`
}

type importProgress struct {
	RowsDone  int `json:"rows_done"`
	RowsTotal int `json:"rows_total"`
	Percent   int `json:"percent"`
}

type importLinks struct {
	Self   string `json:"self"`
	Errors string `json:"errors"`
	File   string `json:"file"`
}

func viewImport(im *store.Import) importView {
	p := importProgress{RowsDone: im.ProcessedRows, RowsTotal: im.TotalRows}
	switch {
	case im.Status == store.ImportCompleted:
		p.Percent = 100
	case im.TotalRows > 0:
		p.Percent = min(99, im.ProcessedRows*100/im.TotalRows)
	}
	self := "/v1/imports/" + im.ID.String()
	var format *string
	if im.Format != "" {
		format = &im.Format
	}
	return importView{
		ID: im.ID, Type: im.Kind, Status: im.Status, Filename: im.Filename, Format: format, SizeBytes: im.SizeBytes,
		Sheet: im.Sheet, DryRun: im.DryRun, ValidateERP: im.ValidateERP, NotifyEmail: im.NotifyEmail,
		TotalRows: im.TotalRows, Succeeded: im.Succeeded, Failed: im.Failed, Progress: p, Error: im.Error,
		CreatedAt: im.CreatedAt, StartedAt: timeOrNil(im.StartedAt), FinishedAt: timeOrNil(im.FinishedAt),
		Links: importLinks{Self: self, Errors: self + "/errors", File: self + "/file"},
	}
}

func (s *Server) maxUpload() int64 {
	if s.MaxUploadBytes > 0 {
		return s.MaxUploadBytes
	}
	return DefaultMaxUploadBytes
}

func tooLarge(limit int64) error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Field: "file",
		Message: fmt.Sprintf("the file is larger than the %d MiB limit; split it into smaller files", limit>>20)}
}

// upload is a file spooled to disk and the form's options.
type upload struct {
	file        *os.File
	size        int64
	filename    string
	contentType string
	opts        map[string]string
}

func (u *upload) close() {
	if u.file != nil {
		u.file.Close()
		os.Remove(u.file.Name())
	}
}

// readUpload spools the multipart form to a temporary file before anything
// touches the database, so a slow client never holds a transaction open.
func (s *Server) readUpload(w http.ResponseWriter, r *http.Request) (*upload, error) {
	limit := s.maxUpload()
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "multipart/form-data" {
		return nil, &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Field: "file",
			Message: `send the file as multipart/form-data in a field named "file" (curl -F file=@customers.csv)`}
	}
	if r.ContentLength > limit+multipartOverhead {
		return nil, tooLarge(limit)
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit+multipartOverhead)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, badRequest("file", "the multipart form cannot be read: "+err.Error())
	}
	u := &upload{opts: map[string]string{}}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			u.close()
			return nil, tooLarge(limit)
		}
		if err != nil {
			u.close()
			return nil, badRequest("", "the multipart form cannot be read: "+err.Error())
		}
		if err := s.readPart(part, u, limit); err != nil {
			u.close()
			return nil, err
		}
	}
	if u.file == nil {
		return nil, invalid("file", `a file is required: a multipart field named "file" with a CSV or XLSX file`)
	}
	if u.size == 0 {
		u.close()
		return nil, invalid("file", "the file is empty")
	}
	return u, nil
}

// uploadOptions are the form fields an upload may carry besides "file".
var uploadOptions = []string{"dry_run", "validate_erp", "notify_email", "sheet"}

func (s *Server) readPart(part *multipart.Part, u *upload, limit int64) error {
	defer part.Close()
	name := part.FormName()
	if name != "file" {
		// Only the options are read, each once: a form of many other
		// fields is refused at the first one instead of being kept.
		if !slices.Contains(uploadOptions, name) {
			return badRequest(name, fmt.Sprintf("unknown form field %q; the fields are file, %s", name, strings.Join(uploadOptions, ", ")))
		}
		if _, dup := u.opts[name]; dup {
			return badRequest(name, fmt.Sprintf("form field %q is sent twice", name))
		}
		// A short text field; anything longer is not an option of ours.
		b, err := io.ReadAll(io.LimitReader(part, 1025))
		if err != nil {
			return uploadReadError(err, limit)
		}
		if len(b) > 1024 {
			return badRequest(name, fmt.Sprintf("field %q is too long", name))
		}
		u.opts[name] = strings.TrimSpace(string(b))
		return nil
	}
	if u.file != nil {
		return badRequest("file", "send one file per import")
	}
	f, err := os.CreateTemp("", SpoolPattern)
	if err != nil {
		return fmt.Errorf("spool upload: %w", err)
	}
	u.file, u.filename, u.contentType = f, part.FileName(), part.Header.Get("Content-Type")
	n, err := io.Copy(f, io.LimitReader(part, limit+1))
	u.size = n
	if err != nil {
		return uploadReadError(err, limit)
	}
	if n > limit {
		return tooLarge(limit)
	}
	return nil
}

func uploadReadError(err error, limit int64) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return tooLarge(limit)
	}
	return badRequest("file", "the upload was interrupted: "+err.Error())
}

func formBool(opts map[string]string, q map[string][]string, name string) (bool, error) {
	v, ok := opts[name]
	if !ok {
		if vs := q[name]; len(vs) > 0 {
			v = vs[0]
		}
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "0", "false", "no", "off":
		return false, nil
	case "1", "true", "yes", "on":
		return true, nil
	}
	return false, badRequest(name, name+" must be true or false")
}

func formText(opts map[string]string, q map[string][]string, name string) string {
	if v, ok := opts[name]; ok {
		return v
	}
	if vs := q[name]; len(vs) > 0 {
		return strings.TrimSpace(vs[0])
	}
	return ""
}

// createImport stores the upload and its options and queues its processing:
// 202 at once, whatever the size of the file.
func (s *Server) createImport(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	u, err := s.readUpload(w, r)
	if err != nil {
		return err
	}
	defer u.close()

	q := r.URL.Query()
	now := s.now()
	im := &store.Import{
		ID: uuid.Must(uuid.NewV7()), TenantID: tenant.ID, Kind: store.ImportKindInvitations, Status: store.ImportQueued,
		Filename: sanitizeFilename(u.filename), ContentType: u.contentType, SizeBytes: u.size,
		CreatedAt: now, UpdatedAt: now,
	}
	if im.ValidateERP, err = formBool(u.opts, q, "validate_erp"); err != nil {
		return err
	}
	if im.DryRun, err = formBool(u.opts, q, "dry_run"); err != nil {
		return err
	}
	if im.NotifyEmail = formText(u.opts, q, "notify_email"); im.NotifyEmail != "" && emailaddr.Validate(im.NotifyEmail) != nil {
		return invalid("notify_email", "notify_email must be a valid email address")
	}
	if im.Sheet = formText(u.opts, q, "sheet"); im.Sheet != "" {
		if err := checkText("sheet", im.Sheet, 100); err != nil {
			return err
		}
	}
	// The format is told from the content; a file that is neither fails its
	// import with a message, like any other unreadable file.
	im.Format = string(importer.Sniff(u.file, u.size))

	job := jobs.NewImportProcess(tenant.ID.String(), im.ID.String())
	err = s.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if err := store.CreateImport(ctx, tx, im); err != nil {
			return err
		}
		if _, err := u.file.Seek(0, io.SeekStart); err != nil {
			return err
		}
		buf := make([]byte, store.ImportChunkSize)
		for seq := 0; ; seq++ {
			n, err := io.ReadFull(u.file, buf)
			if n > 0 {
				if err := store.AddImportChunk(ctx, tx, im.ID, seq, buf[:n]); err != nil {
					return err
				}
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read spooled upload: %w", err)
			}
		}
		return outbox.Record(ctx, tx, tenant.ID, now, job)
	})
	if err != nil {
		return err
	}
	s.Dispatcher.Dispatch(r.Context(), job)
	w.Header().Set("Location", "/v1/imports/"+im.ID.String())
	return writeJSON(w, http.StatusAccepted, viewImport(im))
}

// sanitizeFilename keeps the base name a browser or curl sent, as one line of
// text: it is shown in the history and put back in Content-Disposition.
func sanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '"' {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, ""))
	if utf8.RuneCountInString(name) > 200 {
		name = string([]rune(name)[:200])
	}
	if strings.TrimSpace(name) == "" {
		return "upload"
	}
	return name
}

func (s *Server) listImports(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	before, err := decodeCursor(r.URL.Query().Get("cursor"))
	if err != nil {
		return err
	}
	limit, err := pageLimit(r, 50, 200)
	if err != nil {
		return err
	}
	ims, err := store.ListImports(r.Context(), s.DB, tenant.ID, before, limit)
	if err != nil {
		return err
	}
	out := struct {
		Data       []importView `json:"data"`
		NextCursor *string      `json:"next_cursor"`
	}{Data: make([]importView, len(ims))}
	for i, im := range ims {
		out.Data[i] = viewImport(im)
	}
	if len(ims) == limit {
		out.NextCursor = encodeCursor(ims[len(ims)-1].ID)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) tenantImport(r *http.Request) (*store.Import, error) {
	id, err := pathID(r)
	if err != nil {
		return nil, err
	}
	return store.GetImport(r.Context(), s.DB, tenantOf(r.Context()).ID, id)
}

func (s *Server) getImport(w http.ResponseWriter, r *http.Request) error {
	im, err := s.tenantImport(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewImport(im))
}

func attachment(w http.ResponseWriter, contentType, filename string) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	disposition := mime.FormatMediaType("attachment", map[string]string{"filename": filename})
	if disposition == "" {
		disposition = "attachment" // a name mime cannot encode: the browser picks one
	}
	w.Header().Set("Content-Disposition", disposition)
}

var errorLogHeader = append([]string{"row", "field", "message"}, importer.TemplateHeader...)

// importErrors streams the error log, a page at a time, as CSV (formula-safe)
// or XLSX.
func (s *Server) importErrors(w http.ResponseWriter, r *http.Request) error {
	im, err := s.tenantImport(r)
	if err != nil {
		return err
	}
	format := strings.ToLower(r.URL.Query().Get("format"))
	if format == "" && acceptPrefers(r, xlsxContentType, "text/csv") {
		format = "xlsx"
	}
	base := "import-" + im.ID.String() + "-errors"
	switch format {
	case "", "csv":
	case "xlsx":
		return s.importErrorsXLSX(w, r, im, base+".xlsx")
	default:
		return badRequest("format", "format must be csv or xlsx")
	}
	attachment(w, "text/csv; charset=utf-8", base+".csv")
	cw := csvsafe.NewWriter(w)
	if err := cw.Write(errorLogHeader); err != nil {
		return err
	}
	err = store.EachImportError(r.Context(), s.DB, im.ID, func(e *store.ImportError) error {
		return cw.Write([]string{strconv.Itoa(e.RowNumber), e.Field, e.Message, e.AccountNumber, e.Email, e.FirstName, e.LastName})
	})
	if ferr := cw.Flush(); err == nil {
		err = ferr
	}
	if err != nil {
		// Headers are out: a truncated file is the only signal left.
		s.Log.ErrorContext(r.Context(), "import error log", "import_id", im.ID, "err", err)
	}
	return nil
}

// importErrorsXLSX writes the error log with excelize's StreamWriter, which
// spills to a temporary file instead of growing in memory. Cells are typed
// text, so a value such as =HYPERLINK(…) is shown, never evaluated.
func (s *Server) importErrorsXLSX(w http.ResponseWriter, r *http.Request, im *store.Import, filename string) error {
	f := excelize.NewFile()
	defer f.Close()
	sheet := "Errors"
	if err := f.SetSheetName("Sheet1", sheet); err != nil {
		return err
	}
	sw, err := f.NewStreamWriter(sheet)
	if err != nil {
		return err
	}
	row := 1
	addRow := func(vals []any) error {
		cell, err := excelize.CoordinatesToCellName(1, row)
		if err != nil {
			return err
		}
		row++
		return sw.SetRow(cell, vals)
	}
	header := make([]any, len(errorLogHeader))
	for i, h := range errorLogHeader {
		header[i] = h
	}
	if err := addRow(header); err != nil {
		return err
	}
	err = store.EachImportError(r.Context(), s.DB, im.ID, func(e *store.ImportError) error {
		return addRow([]any{e.RowNumber, e.Field, e.Message, e.AccountNumber, e.Email, e.FirstName, e.LastName})
	})
	if err != nil {
		return err
	}
	if err := sw.Flush(); err != nil {
		return err
	}
	attachment(w, xlsxContentType, filename)
	if _, err := f.WriteTo(w); err != nil {
		s.Log.ErrorContext(r.Context(), "import error log", "import_id", im.ID, "err", err)
	}
	return nil
}

// importFile streams the original upload back, a stored chunk at a time.
func (s *Server) importFile(w http.ResponseWriter, r *http.Request) error {
	im, err := s.tenantImport(r)
	if err != nil {
		return err
	}
	ct := "application/octet-stream"
	switch importer.Format(im.Format) {
	case importer.FormatCSV:
		ct = "text/csv"
	case importer.FormatXLSX:
		ct = xlsxContentType
	}
	attachment(w, ct, im.Filename)
	w.Header().Set("Content-Length", strconv.FormatInt(im.SizeBytes, 10))
	if _, err := io.Copy(w, store.ImportFile(r.Context(), s.DB, im.ID)); err != nil {
		s.Log.ErrorContext(r.Context(), "import file", "import_id", im.ID, "err", err)
	}
	return nil
}

func (s *Server) importTemplate(w http.ResponseWriter, r *http.Request) error {
	attachment(w, "text/csv; charset=utf-8", "customer-invitations-template.csv")
	_, err := w.Write(importer.TemplateCSV())
	return err
}

// SpoolPattern names the temporary files an upload is spooled to (the API)
// and a workbook is opened from (the worker).
const SpoolPattern = "onboard-upload-*"

// RemoveStaleSpools deletes spooled uploads in dir older than maxAge: a
// process killed mid-upload (SIGKILL, or a second SIGTERM cutting the drain
// short) never ran its cleanup, and the files hold customers' emails. An
// upload cannot last that long (the server's read timeout is 5 minutes), so
// an old file belongs to no running request. It returns how many it removed.
func RemoveStaleSpools(dir string, maxAge time.Duration, now time.Time) int {
	paths, _ := filepath.Glob(filepath.Join(dir, SpoolPattern))
	n := 0
	for _, p := range paths {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > maxAge && os.Remove(p) == nil {
			n++
		}
	}
	return n
}
