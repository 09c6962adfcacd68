package main_test

import (
	"archive/zip"
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/xuri/excelize/v2"

	"github.com/onboard-dev/onboard/internal/importer"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store/storetest"
)

// BenchmarkImport measures, in one run and on the same rows:
//
//   - raw COPY of the CSV into a plain table with the same unique index as
//     invitations' (tenant, email): the floor no import can beat;
//   - the full import of the CSV by the real worker binary: upload through
//     the API, count pass, validation, customers, accounts, invitations,
//     deliveries and outbox rows committed in checkpointed batches;
//   - bare excelize Rows() iteration over the XLSX version of the rows;
//   - the full import of that XLSX file.
//
// It prints rows/s for each and the ratios import/COPY (CSV) and
// import/Rows() (XLSX), and the worker's peak RSS. Sending is paused (the
// critical queue) so that the import is measured, not SendGrid.
//
//	BENCH_IMPORT_ROWS=100000 go test -run '^$' -bench Import -benchtime 1x -timeout 60m ./cmd/onboard
func BenchmarkImport(b *testing.B) {
	rows := 100_000
	if v := os.Getenv("BENCH_IMPORT_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	dir := b.TempDir()
	csvPath := filepath.Join(dir, "customers.csv")
	xlsxPath := filepath.Join(dir, "customers.xlsx")
	writeBenchCSV(b, csvPath, rows)
	writeBenchXLSX(b, xlsxPath, rows)
	for range b.N {
		b.StopTimer()
		s := newSystemB(b, "LOG_LEVEL=warn", "IMPORT_MAX_MB=500", "IMPORT_UNZIP_MAX_MB=4096")
		s.run("migrate")

		copyRate := rawCopy(b, s.dsn, csvPath, rows)
		floorRate := schemaFloor(b, storetest.NewPostgresDSN(b), csvPath, rows) // empty tables of their own
		rowsRate := excelizeRows(b, xlsxPath, "Sheet1", rows)
		readerRate := importerReads(b, xlsxPath, rows)

		s.startWithSendingPaused(b)

		b.StartTimer()
		csvElapsed := s.timedImport(b, s.newTenant("CSV Tenant"), csvPath, rows)
		csvRSS := peakRSS(b, s.procs["worker"].Process.Pid)
		xlsxElapsed := s.timedImport(b, s.newTenant("XLSX Tenant"), xlsxPath, rows)
		b.StopTimer()
		rss := peakRSS(b, s.procs["worker"].Process.Pid)

		csvRate := float64(rows) / csvElapsed.Seconds()
		xlsxRate := float64(rows) / xlsxElapsed.Seconds()
		b.ReportMetric(copyRate, "copy_rows/s")
		b.ReportMetric(floorRate, "schema_floor_rows/s")
		b.ReportMetric(csvRate/floorRate, "csv_import/schema_floor")
		b.ReportMetric(readerRate/rowsRate, "xlsx_reader/excelize_rows")
		b.ReportMetric(csvRate, "import_csv_rows/s")
		b.ReportMetric(csvRate/copyRate, "csv_import/copy")
		b.ReportMetric(rowsRate, "excelize_rows/s")
		b.ReportMetric(xlsxRate, "import_xlsx_rows/s")
		b.ReportMetric(xlsxRate/rowsRate, "xlsx_import/excelize_rows")
		b.ReportMetric(float64(csvRSS)/(1<<20), "worker_peak_rss_after_csv_MiB")
		b.ReportMetric(float64(rss)/(1<<20), "worker_peak_rss_MiB")
		b.Logf("%d rows: COPY %.0f rows/s; schema floor %.0f rows/s; CSV import %.0f rows/s (%.3f of COPY, %.2f of the schema floor, %s); excelize Rows() %.0f rows/s; importer's XLSX reader %.0f rows/s (%.2f of Rows()); XLSX import %.0f rows/s (%.3f of Rows(), %s); worker peak RSS %.0f MiB after the CSV, %.0f MiB after both",
			rows, copyRate, floorRate, csvRate, csvRate/copyRate, csvRate/floorRate, csvElapsed.Round(time.Millisecond), rowsRate, readerRate, readerRate/rowsRate, xlsxRate, xlsxRate/rowsRate, xlsxElapsed.Round(time.Millisecond), float64(csvRSS)/(1<<20), float64(rss)/(1<<20))
	}
}

// startWithSendingPaused starts the api and the worker with the critical
// queue paused, so that an import is measured, not SendGrid.
func (s *system) startWithSendingPaused(b *testing.B) {
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: s.redis.Addr()})
	defer insp.Close()
	s.start("api", "api")
	s.start("worker", "worker")
	// The queue exists once something was enqueued to it.
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr()})
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("bench:noop", nil), asynq.Queue(jobs.QueueCritical), asynq.ProcessIn(time.Hour)); err != nil {
		b.Fatal(err)
	}
	if err := insp.PauseQueue(jobs.QueueCritical); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkImportSharedStrings imports a workbook laid out as Excel saves
// one: every text cell a reference into the shared strings table (which
// excelize indexes in memory), where BenchmarkImport's workbook has inline
// strings. It reports the worker's peak RSS, the figure that grows with
// such a file.
func BenchmarkImportSharedStrings(b *testing.B) {
	rows := 100_000
	if v := os.Getenv("BENCH_IMPORT_ROWS"); v != "" {
		rows, _ = strconv.Atoi(v)
	}
	path := filepath.Join(b.TempDir(), "customers.xlsx")
	writeSharedStringsXLSX(b, path, rows)
	for range b.N {
		b.StopTimer()
		// The reading alone, before the system starts: excelize's Rows()
		// resolving each text cell through its index of the table, and
		// the import's reader, which writes the text into the cells first.
		rowsRate := excelizeRows(b, path, "Customers", rows)
		readerRate := importerReads(b, path, rows)
		s := newSystemB(b, "LOG_LEVEL=warn", "IMPORT_MAX_MB=500", "IMPORT_UNZIP_MAX_MB=4096")
		s.run("migrate")
		s.startWithSendingPaused(b)
		idle := peakRSS(b, s.procs["worker"].Process.Pid)
		b.StartTimer()
		elapsed := s.timedImport(b, s.newTenant("Excel Tenant"), path, rows)
		b.StopTimer()
		rss := peakRSS(b, s.procs["worker"].Process.Pid)
		importRate := float64(rows) / elapsed.Seconds()
		b.ReportMetric(rowsRate, "excelize_rows/s")
		b.ReportMetric(readerRate/rowsRate, "xlsx_reader/excelize_rows")
		b.ReportMetric(importRate, "import_rows/s")
		b.ReportMetric(importRate/rowsRate, "xlsx_import/excelize_rows")
		b.ReportMetric(float64(rss)/(1<<20), "worker_peak_rss_MiB")
		b.Logf("%d rows, shared strings: excelize Rows() %.0f rows/s; importer's XLSX reader %.0f rows/s (%.2f of Rows()); import %.0f rows/s (%.3f of Rows(), %s); worker peak RSS %.0f MiB (%.0f MiB before the import)",
			rows, rowsRate, readerRate, readerRate/rowsRate, importRate, importRate/rowsRate, elapsed.Round(time.Millisecond), float64(rss)/(1<<20), float64(idle)/(1<<20))
	}
}

// writeSharedStringsXLSX writes the bench rows the way Excel stores them:
// account numbers as numbers, every text cell an index into
// xl/sharedStrings.xml (three unique strings a row, as emails and last
// names are here).
func writeSharedStringsXLSX(b *testing.B, path string, rows int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	z := zip.NewWriter(f)
	part := func(name, body string) {
		w, err := z.Create(name)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.WriteString(w, body)
	}
	const xmlHead = `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>`
	part("[Content_Types].xml", xmlHead+`<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>`)
	part("_rels/.rels", xmlHead+`<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>`)
	part("xl/workbook.xml", xmlHead+`<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Customers" sheetId="1" r:id="rId1"/></sheets></workbook>`)
	part("xl/_rels/workbook.xml.rels", xmlHead+`<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>`)
	w, err := z.Create("xl/worksheets/sheet1.xml")
	if err != nil {
		b.Fatal(err)
	}
	bw := bufio.NewWriter(w)
	// Strings 0-3 are the header, 4 is "Pat"; row i's email and last name
	// are 5+2i and 6+2i.
	fmt.Fprint(bw, xmlHead+`<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c><c r="C1" t="s"><v>2</v></c><c r="D1" t="s"><v>3</v></c></row>`)
	for i := range rows {
		n := i + 2
		fmt.Fprintf(bw, `<row r="%d"><c r="A%d"><v>%d</v></c><c r="B%d" t="s"><v>%d</v></c><c r="C%d" t="s"><v>4</v></c><c r="D%d" t="s"><v>%d</v></c></row>`, n, n, 1_000_000+i, n, 5+2*i, n, n, 6+2*i)
	}
	fmt.Fprint(bw, `</sheetData></worksheet>`)
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	w, err = z.Create("xl/sharedStrings.xml")
	if err != nil {
		b.Fatal(err)
	}
	bw = bufio.NewWriter(w)
	fmt.Fprintf(bw, xmlHead+`<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" uniqueCount="%d">`, 5+2*rows)
	for _, t := range []string{"Account Number", "Customer Email", "Customer First Name", "Customer Last Name", "Pat"} {
		fmt.Fprintf(bw, `<si><t>%s</t></si>`, t)
	}
	for i := range rows {
		r := benchRow(i)
		fmt.Fprintf(bw, `<si><t>%s</t></si><si><t>%s</t></si>`, r[1], r[3])
	}
	fmt.Fprint(bw, `</sst>`)
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := z.Close(); err != nil {
		b.Fatal(err)
	}
}

func benchRow(i int) []string {
	return []string{strconv.Itoa(1_000_000 + i), fmt.Sprintf("contact%d@customer%d.example.com", i, i%977), "Pat", fmt.Sprint("Lee ", i)}
}

func writeBenchCSV(b *testing.B, path string, rows int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "Account Number,Customer Email,Customer First Name,Customer Last Name")
	for i := range rows {
		r := benchRow(i)
		fmt.Fprintf(w, "%s,%s,%s,%s\n", r[0], r[1], r[2], r[3])
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	f.Close()
}

// writeBenchXLSX writes the rows as a spreadsheet program would: account
// numbers as numeric cells, the rest as text.
func writeBenchXLSX(b *testing.B, path string, rows int) {
	x := excelize.NewFile()
	defer x.Close()
	sw, err := x.NewStreamWriter("Sheet1")
	if err != nil {
		b.Fatal(err)
	}
	if err := sw.SetRow("A1", []any{"Account Number", "Customer Email", "Customer First Name", "Customer Last Name"}); err != nil {
		b.Fatal(err)
	}
	for i := range rows {
		r := benchRow(i)
		cell, _ := excelize.CoordinatesToCellName(1, i+2)
		if err := sw.SetRow(cell, []any{1_000_000 + i, r[1], r[2], r[3]}); err != nil {
			b.Fatal(err)
		}
	}
	if err := sw.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := x.SaveAs(path); err != nil {
		b.Fatal(err)
	}
}

// rawCopy loads the CSV with COPY into a plain table carrying the unique
// index invitations have on (tenant, email).
func rawCopy(b *testing.B, dsn, path string, rows int) float64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`CREATE TABLE bench_copy (tenant_id uuid NOT NULL DEFAULT '00000000-0000-0000-0000-000000000001', account_number text, email text, first_name text, last_name text)`,
		`CREATE UNIQUE INDEX bench_copy_email ON bench_copy (tenant_id, email)`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	tag, err := conn.PgConn().CopyFrom(ctx, f, `COPY bench_copy (account_number, email, first_name, last_name) FROM STDIN WITH (FORMAT csv, HEADER true)`)
	elapsed := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if int(tag.RowsAffected()) != rows {
		b.Fatalf("COPY loaded %d rows, want %d", tag.RowsAffected(), rows)
	}
	return float64(rows) / elapsed.Seconds()
}

// schemaFloor writes the rows into the tables an import fills, with nothing
// else: COPY into a staging table, then one INSERT … SELECT per table
// (customers, their accounts, invitations, deliveries), in one transaction,
// with every index, constraint and foreign key of the real schema. No row
// rules, no checkpoints, no outbox: the floor an import on this schema
// cannot beat, on this machine, now.
func schemaFloor(b *testing.B, dsn, path string, rows int) float64 {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	const tenant = "00000000-0000-7000-8000-00000000f100"
	if _, err := conn.Exec(ctx, `INSERT INTO tenants (id, name, api_key_hash, api_key_prefix, created_at) VALUES ($1, 'schema floor', '\xf100', 'floor', now())`, tenant); err != nil {
		b.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	start := time.Now()
	tx, err := conn.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE floor_rows (account_number text, email text, first_name text, last_name text) ON COMMIT DROP`); err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, f, `COPY floor_rows FROM STDIN WITH (FORMAT csv, HEADER true)`); err != nil {
		b.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE floor_ids ON COMMIT DROP AS SELECT *, gen_random_uuid() AS customer_id, gen_random_uuid() AS invitation_id FROM floor_rows`); err != nil {
		b.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO customers (id, tenant_id, company_name, created_at, updated_at) SELECT customer_id, $1, '', now(), now() FROM floor_ids`,
		`INSERT INTO customer_accounts (tenant_id, account_number, customer_id) SELECT $1, account_number, customer_id FROM floor_ids`,
		`INSERT INTO invitations (id, tenant_id, customer_id, kind, email, email_normalized, first_name, last_name, state, delivery_status, created_at, updated_at)
		 SELECT invitation_id, $1, customer_id, 'vendor', email, lower(email), first_name, last_name, 'pending', 'queued', now(), now() FROM floor_ids`,
		`INSERT INTO deliveries (id, tenant_id, invitation_id, kind, state, created_at, updated_at)
		 SELECT gen_random_uuid(), $1, invitation_id, 'invitation', 'queued', now(), now() FROM floor_ids`,
	} {
		if _, err := tx.Exec(ctx, q, tenant); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	return float64(rows) / time.Since(start).Seconds()
}

// importerReads reads the workbook with the import's own reader (what the
// count pass and each batch read): its speed against bare Rows() is the
// share of an XLSX import that is reading.
func importerReads(b *testing.B, path string, rows int) float64 {
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	r, _, err := importer.Open(f, importer.XLSXOptions{UnzipSizeLimit: 4 << 30})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	n := 0
	for {
		if _, err := r.Next(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			b.Fatal(err)
		}
		n++
	}
	if n != rows {
		b.Fatalf("the importer read %d rows, want %d", n, rows)
	}
	return float64(rows) / time.Since(start).Seconds()
}

// excelizeRows iterates the workbook with excelize's streaming reader and
// nothing else: the floor for an XLSX import.
func excelizeRows(b *testing.B, path, sheet string, rows int) float64 {
	start := time.Now()
	f, err := excelize.OpenFile(path, excelize.Options{RawCellValue: true})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	it, err := f.Rows(sheet)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for it.Next() {
		if _, err := it.Columns(excelize.Options{RawCellValue: true}); err != nil {
			b.Fatal(err)
		}
		n++
	}
	it.Close()
	elapsed := time.Since(start)
	if n != rows+1 {
		b.Fatalf("excelize read %d rows, want %d", n, rows+1)
	}
	return float64(rows) / elapsed.Seconds()
}

// timedImport uploads a file through the API and waits for its import to
// complete; the time runs from the upload to completion.
func (s *system) timedImport(b *testing.B, key, path string, rows int) time.Duration {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		fw, _ := mw.CreateFormFile("file", filepath.Base(path))
		_, err := io.Copy(fw, f)
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	start := time.Now()
	code, raw := s.send(key, "POST", "/v1/imports", mw.FormDataContentType(), pr)
	var out struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(raw, &out); err != nil || code != http.StatusAccepted {
		b.Fatalf("upload: %d %s", code, raw)
	}
	var st map[string]any
	testenv.Eventually(b, 30*time.Minute, "the import to complete", func() bool {
		_, st = s.do(key, "GET", "/v1/imports/"+out.ID, nil)
		return st["status"] == "completed" || st["status"] == "failed"
	})
	elapsed := time.Since(start)
	if st["status"] != "completed" || st["succeeded"] != float64(rows) {
		b.Fatalf("import ended %v", st)
	}
	return elapsed
}
