package api_test

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/xuri/excelize/v2"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// uploadForm is a multipart body as curl -F sends it: fields in the order
// given, the file wherever it falls.
func uploadForm(t *testing.T, filename string, content []byte, fields ...string) (string, *bytes.Buffer) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for i := 0; i+1 < len(fields); i += 2 {
		if err := mw.WriteField(fields[i], fields[i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if content != nil {
		fw, err := mw.CreateFormFile("file", filename)
		if err != nil {
			t.Fatal(err)
		}
		fw.Write(content)
	}
	mw.Close()
	return mw.FormDataContentType(), &body
}

func (e *env) do(key string, req *http.Request) response {
	e.t.Helper()
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	out := response{code: resp.StatusCode, raw: string(raw), hdr: resp.Header}
	_ = json.Unmarshal(raw, &out.body)
	return out
}

func (e *env) upload(key, filename string, content []byte, fields ...string) response {
	e.t.Helper()
	ct, body := uploadForm(e.t, filename, content, fields...)
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/imports", body)
	req.Header.Set("Content-Type", ct)
	return e.do(key, req)
}

func TestImportUploadHistoryAndFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("Parts")
	content := []byte("Account Number,Customer Email\r\n1,a@example.com\r\n")
	first := e.upload(key, `C:\Users\me\Desktop\customers "final".csv`, content, "notify_email", "me@vendor.example.com", "dry_run", "true")
	if first.code != http.StatusAccepted {
		t.Fatalf("%d %s", first.code, first.raw)
	}
	if first.body["status"] != "queued" || first.body["type"] != "Create Customer Invitations" || first.body["dry_run"] != true ||
		first.body["filename"] != "customers final.csv" || first.body["format"] != "csv" || first.hdr.Get("Location") != "/v1/imports/"+first.body["id"].(string) {
		t.Fatalf("upload answer %s", first.raw)
	}
	// The processing task is in Redis under the import's id.
	firstID := first.body["id"].(string)
	if _, err := e.inspector.GetTaskInfo(jobs.QueueBulk, jobs.NewImportProcess("", firstID).ID); err != nil {
		t.Fatalf("import:process not enqueued: %v", err)
	}

	// An XLSX named .csv is still a workbook: the content decides.
	x := excelize.NewFile()
	var xb bytes.Buffer
	x.Write(&xb)
	e.now = e.now.Add(time.Minute)
	second := e.upload(key, "looks-like.csv", xb.Bytes(), "validate_erp", "1", "sheet", "Customers")
	if second.code != http.StatusAccepted || second.body["format"] != "xlsx" || second.body["validate_erp"] != true || second.body["sheet"] != "Customers" {
		t.Fatalf("%d %s", second.code, second.raw)
	}

	hist := e.call(key, "GET", "/v1/imports", "")
	data, _ := hist.body["data"].([]any)
	if hist.code != 200 || len(data) != 2 || data[0].(map[string]any)["id"] != second.body["id"] || data[1].(map[string]any)["id"] != firstID {
		t.Fatalf("history %s", hist.raw)
	}
	page := e.call(key, "GET", "/v1/imports?limit=1", "")
	cursor, _ := page.body["next_cursor"].(string)
	rest := e.call(key, "GET", "/v1/imports?limit=1&cursor="+cursor, "")
	if d, _ := rest.body["data"].([]any); len(d) != 1 || d[0].(map[string]any)["id"] != firstID {
		t.Fatalf("second page %s", rest.raw)
	}

	got := e.call(key, "GET", "/v1/imports/"+firstID, "")
	progress, _ := got.body["progress"].(map[string]any)
	if got.code != 200 || got.body["total_rows"] != 0.0 || progress["rows_done"] != 0.0 || got.body["notify_email"] != "me@vendor.example.com" {
		t.Fatalf("status %s", got.raw)
	}
	file := e.call(key, "GET", "/v1/imports/"+firstID+"/file", "")
	if file.code != 200 || file.raw != string(content) || !strings.Contains(file.hdr.Get("Content-Disposition"), "customers final.csv") {
		t.Fatalf("file %d %q %v", file.code, file.raw, file.hdr)
	}
	tmpl := e.call(key, "GET", "/v1/imports/template.csv", "")
	if tmpl.code != 200 || !strings.HasPrefix(tmpl.raw, "Account Number,Customer Email,Customer First Name,Customer Last Name\r\n") {
		t.Fatalf("template %d %q", tmpl.code, tmpl.raw)
	}

	// Another tenant sees none of it.
	other := e.tenant("Other")
	if h := e.call(other, "GET", "/v1/imports", ""); h.raw != "{\"data\":[],\"next_cursor\":null}\n" {
		t.Fatalf("other tenant's history %s", h.raw)
	}
	for _, p := range []string{"", "/errors", "/file", "/errors?format=xlsx"} {
		if r := e.call(other, "GET", "/v1/imports/"+firstID+p, ""); r.code != 404 {
			t.Fatalf("other tenant GET %s: %d", p, r.code)
		}
	}
}

// A file that is neither CSV nor XLSX is accepted (its import fails saying
// what it is) and labelled as neither: format null, served back as bytes.
func TestImportUploadOfNeitherFormat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("Parts")
	for name, content := range map[string][]byte{
		"scan.png":     []byte("\x89PNG\r\n\x1A\n\x00\x00\x00\rIHDR"),
		"contract.pdf": []byte("%PDF-1.4\n%\xE2\xE3\xCF\xD3\n"),
		"customers.csv.zip": func() []byte {
			var b bytes.Buffer
			zw := zip.NewWriter(&b)
			w, _ := zw.Create("customers.csv")
			_, _ = io.WriteString(w, "Account Number,Customer Email\n1,a@example.com\n")
			_ = zw.Close()
			return b.Bytes()
		}(),
	} {
		up := e.upload(key, name, content)
		if up.code != http.StatusAccepted || up.body["format"] != nil {
			t.Fatalf("%s: %d %s", name, up.code, up.raw)
		}
		id := up.body["id"].(string)
		if got := e.call(key, "GET", "/v1/imports/"+id, ""); got.body["format"] != nil {
			t.Errorf("%s: %s", name, got.raw)
		}
		if file := e.call(key, "GET", "/v1/imports/"+id+"/file", ""); file.code != 200 || file.raw != string(content) || file.hdr.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s: file %d %q %v", name, file.code, file.raw, file.hdr)
		}
	}
}

func TestImportUploadRefusals(t *testing.T) {
	t.Parallel()
	db := storetest.NewPostgres(t)
	e := newEnv(t, db, false)
	key := e.tenant("Parts")
	if r := e.upload(key, "empty.csv", []byte{}); r.code != 422 || r.errField("field") != "file" {
		t.Fatalf("empty file: %d %s", r.code, r.raw)
	}
	if r := e.upload(key, "", nil, "dry_run", "true"); r.code != 422 || r.errField("field") != "file" {
		t.Fatalf("no file: %d %s", r.code, r.raw)
	}
	if r := e.upload(key, "a.csv", []byte("x"), "dry_run", "maybe"); r.code != 400 || r.errField("field") != "dry_run" {
		t.Fatalf("bad bool: %d %s", r.code, r.raw)
	}
	if r := e.upload(key, "a.csv", []byte("x"), "notify_email", "nope"); r.code != 422 || r.errField("field") != "notify_email" {
		t.Fatalf("bad notify_email: %d %s", r.code, r.raw)
	}
	if r := e.upload(key, "a.csv", []byte("x"), "notify_email", "jürgen@bücher.example"); r.code != 422 || r.errField("field") != "notify_email" {
		t.Fatalf("notify_email with a UTF-8 local part: %d %s", r.code, r.raw)
	}
	if r := e.call(key, "POST", "/v1/imports", `{"file":"x"}`); r.code != 415 {
		t.Fatalf("JSON body: %d %s", r.code, r.raw)
	}
	if r := e.upload("", "a.csv", []byte("x")); r.code != 401 {
		t.Fatalf("no key: %d", r.code)
	}
	n, _ := db.NewSelect().Table("imports").Count(context.Background())
	if n != 0 {
		t.Fatalf("%d imports stored from refused uploads", n)
	}
}

func TestImportUploadTooLarge(t *testing.T) {
	t.Parallel()
	db := storetest.NewPostgres(t)
	e := newEnvWith(t, db, func(s *serverOptions) { s.maxUpload = 1 << 20 })
	key := e.tenant("Parts")
	big := bytes.Repeat([]byte("1,a@example.com\n"), (1<<20)/16+1)
	if r := e.upload(key, "big.csv", big); r.code != 413 || r.errField("field") != "file" {
		t.Fatalf("too large: %d %s", r.code, r.raw)
	}
	// Streamed without a Content-Length, the limit holds as well.
	ct, body := uploadForm(t, "big.csv", big)
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/imports", io.MultiReader(body))
	req.Header.Set("Content-Type", ct)
	if r := e.do(key, req); r.code != 413 {
		t.Fatalf("chunked too large: %d %s", r.code, r.raw)
	}
	if r := e.upload(key, "ok.csv", big[:1<<20]); r.code != 202 {
		t.Fatalf("at the limit: %d %s", r.code, r.raw)
	}
}

func TestImportErrorLogDownloads(t *testing.T) {
	t.Parallel()
	db := storetest.NewPostgres(t)
	e := newEnv(t, db, false)
	key := e.tenant("Parts")
	up := e.upload(key, "c.csv", []byte("x"))
	id := uuid.MustParse(up.body["id"].(string))
	err := store.InsertImportErrors(context.Background(), db, []*store.ImportError{
		{ImportID: id, RowNumber: 3, Field: "Customer Email", Message: "Customer Email must be valid", AccountNumber: "=1+2", Email: "@SUM(A1)", FirstName: "-x", LastName: "+y"},
		{ImportID: id, RowNumber: 2, Field: "Account Number", Message: "Account Number field must not be empty", Email: "a@example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := e.call(key, "GET", "/v1/imports/"+id.String()+"/errors", "")
	if r.code != 200 || !strings.HasPrefix(r.hdr.Get("Content-Type"), "text/csv") {
		t.Fatalf("%d %v", r.code, r.hdr)
	}
	recs, err := csv.NewReader(strings.NewReader(r.raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"row", "field", "message", "Account Number", "Customer Email", "Customer First Name", "Customer Last Name"},
		{"2", "Account Number", "Account Number field must not be empty", "", "a@example.com", "", ""},
		{"3", "Customer Email", "Customer Email must be valid", "'=1+2", "'@SUM(A1)", "'-x", "'+y"},
	}
	if len(recs) != 3 || strings.Join(recs[1], "|") != strings.Join(want[1], "|") || strings.Join(recs[2], "|") != strings.Join(want[2], "|") || strings.Join(recs[0], "|") != strings.Join(want[0], "|") {
		t.Fatalf("error log CSV:\n%s", r.raw)
	}

	x := e.call(key, "GET", "/v1/imports/"+id.String()+"/errors?format=xlsx", "")
	if x.code != 200 {
		t.Fatalf("xlsx %d %s", x.code, x.raw)
	}
	f, err := excelize.OpenReader(strings.NewReader(x.raw))
	if err != nil {
		t.Fatal(err)
	}
	rows, err := f.GetRows("Errors")
	if err != nil || len(rows) != 3 || rows[2][3] != "=1+2" || rows[1][0] != "2" {
		t.Fatalf("xlsx rows %q %v", rows, err)
	}
	if formula, _ := f.GetCellFormula("Errors", "D3"); formula != "" {
		t.Fatalf("a value became a formula: %q", formula)
	}
	if r := e.call(key, "GET", "/v1/imports/"+id.String()+"/errors?format=pdf", ""); r.code != 400 {
		t.Fatalf("format=pdf: %d", r.code)
	}
	// Accept chooses the XLSX log when it prefers it, by q-value.
	const xlsxType = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
	for accept, want := range map[string]string{
		xlsxType:                      xlsxType,
		"text/csv;q=0.5, " + xlsxType: xlsxType,
		xlsxType + ";q=0.1, text/csv": "text/csv; charset=utf-8",
		xlsxType + ";q=0":             "text/csv; charset=utf-8",
		"*/*":                         "text/csv; charset=utf-8",
	} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/v1/imports/"+id.String()+"/errors", nil)
		req.Header.Set("Accept", accept)
		if r := e.do(key, req); r.code != 200 || r.hdr.Get("Content-Type") != want {
			t.Errorf("Accept %q: %d %s, want %s", accept, r.code, r.hdr.Get("Content-Type"), want)
		}
	}
}

// An upload's form holds the file and a few options: a field of any other
// name is refused at once (naming it and the fields there are), before the
// rest of the form is read, so a form of many fields costs the API nothing.
func TestImportUploadRefusesUnknownFields(t *testing.T) {
	t.Parallel()
	db := storetest.NewPostgres(t)
	e := newEnv(t, db, false)
	key := e.tenant("Parts")
	file := []byte("Account Number,Customer Email\r\n1,a@example.com\r\n")

	r := e.upload(key, "a.csv", file, "dryrun", "true")
	if r.code != 400 || r.errField("field") != "dryrun" || r.errField("message") != `unknown form field "dryrun"; the fields are file, dry_run, validate_erp, notify_email, sheet` {
		t.Fatalf("misspelt option: %d %s", r.code, r.raw)
	}
	if r := e.upload(key, "a.csv", file, "sheet", "A", "sheet", "B"); r.code != 400 || r.errField("field") != "sheet" || !strings.Contains(r.errField("message"), "twice") {
		t.Fatalf("option sent twice: %d %s", r.code, r.raw)
	}

	// The reported form: 1 KiB fields f0, f1, … up to the size limit, then
	// a small file. It is streamed, and the answer comes after the first.
	const fields = 48 << 10
	value := strings.Repeat("x", 1024)
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		for i := range fields {
			if err := mw.WriteField(fmt.Sprintf("f%d", i), value); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		fw, _ := mw.CreateFormFile("file", "a.csv")
		fw.Write(file)
		pw.CloseWithError(mw.Close())
	}()
	body := &countingReader{r: pr}
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/imports", body)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	r = e.do(key, req)
	pr.CloseWithError(io.ErrClosedPipe)
	if r.code != 400 || r.errField("field") != "f0" || !strings.Contains(r.errField("message"), `unknown form field "f0"`) {
		t.Fatalf("form of %d fields: %d %s", fields, r.code, r.raw)
	}
	if n := body.n.Load(); n > 8<<20 {
		t.Fatalf("the API read %d bytes of a form it refused at its first field", n)
	}
	if n, _ := db.NewSelect().Table("imports").Count(context.Background()); n != 0 {
		t.Fatalf("%d imports stored from refused uploads", n)
	}
}

type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// Spooled uploads a killed process left behind are removed; one that may
// belong to a running upload, and other files, are not.
func TestRemoveStaleSpools(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	write := func(name string, age time.Duration) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("Account Number,Customer Email\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := write("onboard-upload-123", 2*time.Hour)
	staleXLSX := write("onboard-upload-456.xlsx", 2*time.Hour)
	fresh := write("onboard-upload-789", time.Minute)
	other := write("report.csv", 2*time.Hour)
	if n := api.RemoveStaleSpools(dir, time.Hour, now); n != 2 {
		t.Fatalf("removed %d, want 2", n)
	}
	for p, want := range map[string]bool{stale: false, staleXLSX: false, fresh: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}
