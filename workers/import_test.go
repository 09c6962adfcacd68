package workers_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"
	"github.com/xuri/excelize/v2"

	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/importer"
	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/mail/sendgridfake"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
	"github.com/onboard-dev/onboard/workers"
)

// upload stores a file as the API does and returns its import.
func (f *fixture) upload(t testing.TB, content []byte, opts func(*store.Import)) *store.Import {
	t.Helper()
	ctx := context.Background()
	im := &store.Import{TenantID: f.tenant.ID, Filename: "customers.csv", SizeBytes: int64(len(content)), NotifyEmail: "sender@vendor.example.com", CreatedAt: t0, UpdatedAt: t0}
	if opts != nil {
		opts(im)
	}
	if err := store.CreateImport(ctx, f.db, im); err != nil {
		t.Fatal(err)
	}
	chunk := 100
	if len(content) > 1<<20 {
		chunk = store.ImportChunkSize
	}
	for seq := 0; len(content) > 0; seq++ {
		n := min(len(content), chunk) // small chunks: reading back crosses many
		if err := store.AddImportChunk(ctx, f.db, im.ID, seq, content[:n]); err != nil {
			t.Fatal(err)
		}
		content = content[n:]
	}
	return im
}

func (f *fixture) runTask(t testing.TB, job jobs.Job) error {
	t.Helper()
	task, err := jobs.Build(job.Type, job.ID, job.Payload)
	if err != nil {
		t.Fatal(err)
	}
	mux := asynq.NewServeMux()
	workers.Register(mux, f.deps)
	return mux.ProcessTask(context.Background(), task)
}

func (f *fixture) importNow(t testing.TB, im *store.Import) error {
	t.Helper()
	return f.runTask(t, jobs.NewImportProcess(f.tenant.ID.String(), im.ID.String()))
}

// drainOutbox runs the tasks the outbox holds (as the worker pool would)
// until none is left unrun.
func (f *fixture) drainOutbox(t *testing.T, done map[string]bool) {
	t.Helper()
	for {
		var tasks []*store.OutboxTask
		if err := f.db.NewSelect().Model(&tasks).Order("created_at", "task_id").Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		ran := false
		for _, ot := range tasks {
			if done[ot.TaskID] || (ot.TaskType != jobs.TypeInviteSend && ot.TaskType != jobs.TypeImportReport) {
				continue
			}
			done[ot.TaskID] = true
			ran = true
			if err := f.runTask(t, jobs.Job{Type: ot.TaskType, ID: ot.TaskID, Payload: ot.Payload}); err != nil {
				t.Fatalf("%s: %v", ot.TaskID, err)
			}
		}
		if !ran {
			return
		}
	}
}

func (f *fixture) reloadImport(t *testing.T, im *store.Import) *store.Import {
	t.Helper()
	got, err := store.GetImport(context.Background(), f.db, f.tenant.ID, im.ID)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func errorLog(t *testing.T, db bun.IDB, im *store.Import) []string {
	t.Helper()
	var out []string
	err := store.EachImportError(context.Background(), db, im.ID, func(e *store.ImportError) error {
		out = append(out, fmt.Sprintf("%d|%s|%s", e.RowNumber, e.Field, e.Message))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *fixture) existingCustomer(t *testing.T, account, email, status string) {
	t.Helper()
	ctx := context.Background()
	c := &store.Customer{TenantID: f.tenant.ID, CompanyName: "Existing " + account, Status: status, AccountNumbers: []string{account}, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertCustomer(ctx, f.db, c); err != nil {
		t.Fatal(err)
	}
	if email == "" {
		return
	}
	inv := &store.Invitation{TenantID: f.tenant.ID, CustomerID: c.ID, Email: email, EmailNormalized: strings.ToLower(email), State: store.InvitationPending, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertInvitation(ctx, f.db, inv); err != nil {
		t.Fatal(err)
	}
}

const mixedCSV = "Customer Email,Account #,First Name,Last Name,Notes\r\n" +
	"ann@example.com,1001,Ann,Able,ok\r\n" + // 2 good
	",1002,Bob,,\r\n" + // 3 empty email
	"not-an-email,1003,Cy,,\r\n" + // 4 invalid email
	"dee@example.com,,Dee,,\r\n" + // 5 empty account
	"\r\n" + // 6 blank, skipped but counted
	"ANN@example.com,1007,Ann,Again,\r\n" + // 7 email used by row 2
	"taken@example.com,1008,Tak,,\r\n" + // 8 email of an existing invitation
	"eve@example.com,2000,Eve,,\r\n" + // 9 blacklisted customer's account
	"fay@example.com,2001,Fay,,\r\n" + // 10 inactive customer's account
	"gus@example.com,1001,Gus,,\r\n" + // 11 account of row 2
	"hal@example.com,1012,Hal,,,Lee\r\n" + // 12 ragged: a value past the header
	"\"ivy@example.com\",\"1013\",\"Ivy\nMarie\",\"=HYPERLINK(\"\"http://x\"\")\",\r\n" + // 13 good: a name with a line break, a formula
	"jo@example.com,1014,Jo,,\r\n" // 14 good: row 13 is one spreadsheet row over two lines

// mixedCSVLog is the error log of mixedCSV, with the customers the tests
// give it (1999 taken, 2000 blacklisted, 2001 inactive).
var mixedCSVLog = []string{
	"3|Customer Email|Customer Email field must not be empty",
	"4|Customer Email|Customer Email must be valid",
	"5|Account Number|Account Number field must not be empty",
	"7|Customer Email|Provided email address is already in use",
	"8|Customer Email|Provided email address is already in use",
	"9|Account Number|" + importer.MsgAccountBlacklisted,
	"10|Account Number|" + importer.MsgAccountInactive,
	"11|Account Number|" + importer.MsgAccountRepeated,
	"12||the row has 6 fields; the header has 5",
}

func TestImportPartialSuccessLogsEveryBadRow(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		f := newFixture(t, db)
		withDispatcher(t, f)
		f.existingCustomer(t, "1999", "Taken@Example.com", store.CustomerActive)
		f.existingCustomer(t, "2000", "", store.CustomerBlacklisted)
		f.existingCustomer(t, "2001", "", store.CustomerInactive)
		im := f.upload(t, []byte(mixedCSV), nil)
		if err := f.importNow(t, im); err != nil {
			t.Fatal(err)
		}
		got := f.reloadImport(t, im)
		if got.Status != store.ImportCompleted || got.TotalRows != 12 || got.ProcessedRows != 12 || got.Succeeded != 3 || got.Failed != 9 {
			t.Fatalf("import %+v", got)
		}
		want := mixedCSVLog
		log := errorLog(t, db, im)
		if !slices.Equal(log, want) {
			t.Fatalf("error log:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
		}

		done := map[string]bool{}
		f.drainOutbox(t, done)
		var invited []string
		var report *struct{ subject, text string }
		var atts map[string][]byte
		for _, m := range f.fake.Messages() {
			if m.To == "sender@vendor.example.com" {
				report = &struct{ subject, text string }{m.Subject, m.Text}
				atts = map[string][]byte{}
				for _, a := range m.Attachments {
					atts[a.Filename] = a.Content
				}
				continue
			}
			invited = append(invited, m.To)
		}
		sort.Strings(invited)
		if !slices.Equal(invited, []string{"ann@example.com", "ivy@example.com", "jo@example.com"}) {
			t.Fatalf("invitations emailed to %v", invited)
		}
		if report == nil {
			t.Fatal("no confirmation email")
		}
		if !strings.Contains(report.subject, "3 invited, 9 failed") || !strings.Contains(report.text, im.ID.String()) {
			t.Fatalf("report: %q\n%s", report.subject, report.text)
		}
		ok := string(atts["customers-succeeded.csv"])
		if !strings.HasPrefix(ok, "\uFEFFRow,Account Number,Customer Email,Customer First Name,Customer Last Name\n") ||
			!strings.Contains(ok, "2,1001,ann@example.com,Ann,Able\n") || !strings.Contains(ok, `13,1013,ivy@example.com,"Ivy`+"\n"+`Marie","'=HYPERLINK(""http://x"")"`) {
			t.Fatalf("succeeded attachment:\n%s", ok)
		}
		failed := atts["customers-failed.csv"]
		// The failed rows come back in the upload format: the importer reads
		// the file again, with every row and its values.
		r, err := importer.OpenCSV(bytes.NewReader(failed))
		if err != nil {
			t.Fatalf("failed rows do not read back: %v\n%s", err, failed)
		}
		n := 0
		for {
			row, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			n++
			if n == 1 && (row.AccountNumber != "1002" || row.FirstName != "Bob") {
				t.Fatalf("first failed row %+v", row)
			}
		}
		if n != 9 || !strings.Contains(string(failed), "Customer Email field must not be empty") {
			t.Fatalf("%d failed rows:\n%s", n, failed)
		}

		// Run again (a duplicate task): nothing changes, nothing is sent.
		before := len(f.fake.Messages())
		if err := f.importNow(t, im); err != nil {
			t.Fatal(err)
		}
		f.drainOutbox(t, done)
		if again := f.reloadImport(t, im); again.Succeeded != 3 || again.Failed != 9 || len(f.fake.Messages()) != before {
			t.Fatalf("second run changed things: %+v, %d emails", again, len(f.fake.Messages()))
		}
	})
}

// TestImportOutcomeDoesNotDependOnBatches imports the same file in batches of
// every size: a row's outcome must not depend on whether the row it clashes
// with is in its batch, in the batch committing next to it (Postgres
// overlaps them) or already committed.
func TestImportOutcomeDoesNotDependOnBatches(t *testing.T) {
	t.Parallel()
	file := mixedCSV +
		"kim@example.com,3000,,,\r\n" + // 15 good: invites again a customer whose invitation was revoked
		"lee@example.com,3001,,,\r\n" + // 16 that customer's other account: it is invited now
		"mo@example.com,3000,,,\r\n" + // 17 the same account again
		"ann@example.com,1018,,,\r\n" // 18 email of row 2
	want := append(slices.Clone(mixedCSVLog),
		"16|Account Number|"+importer.MsgAccountInvited,
		"17|Account Number|"+importer.MsgAccountInvited,
		"18|Customer Email|Provided email address is already in use",
	)
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		for _, size := range []int{1, 2, 3, 4, 5, 7, 0} {
			t.Run(fmt.Sprint("batch=", size), func(t *testing.T) {
				ctx := context.Background()
				f := newFixture(t, db)
				withDispatcher(t, f)
				f.deps.ImportBatchRows = size
				f.existingCustomer(t, "1999", "Taken@Example.com", store.CustomerActive)
				f.existingCustomer(t, "2000", "", store.CustomerBlacklisted)
				f.existingCustomer(t, "2001", "", store.CustomerInactive)
				revoked := &store.Customer{TenantID: f.tenant.ID, CompanyName: "Two Accounts", AccountNumbers: []string{"3000", "3001"}, CreatedAt: t0, UpdatedAt: t0}
				if err := store.InsertCustomer(ctx, db, revoked); err != nil {
					t.Fatal(err)
				}
				old := &store.Invitation{TenantID: f.tenant.ID, CustomerID: revoked.ID, Email: "old@example.com", EmailNormalized: "old@example.com", State: store.InvitationRevoked, CreatedAt: t0, UpdatedAt: t0}
				if err := store.InsertInvitation(ctx, db, old); err != nil {
					t.Fatal(err)
				}
				im := f.upload(t, []byte(file), nil)
				if err := f.importNow(t, im); err != nil {
					t.Fatal(err)
				}
				got := f.reloadImport(t, im)
				if got.Status != store.ImportCompleted || got.ProcessedRows != 16 || got.Succeeded != 4 || got.Failed != 12 {
					t.Fatalf("import %+v", got)
				}
				if log := errorLog(t, db, im); !slices.Equal(log, want) {
					t.Fatalf("error log:\n%s\nwant:\n%s", strings.Join(log, "\n"), strings.Join(want, "\n"))
				}
				var invited []string
				err := db.NewSelect().Table("invitations").Column("email_normalized").
					Where("import_id = ?", im.ID).Order("import_row").Scan(ctx, &invited)
				if err != nil || !slices.Equal(invited, []string{"ann@example.com", "ivy@example.com", "jo@example.com", "kim@example.com"}) {
					t.Fatalf("invited %v %v", invited, err)
				}
				if c, err := store.CustomerByAccount(ctx, db, f.tenant.ID, "3001"); err != nil || c.ID != revoked.ID {
					t.Fatalf("customer of 3001: %+v %v", c, err)
				}
			})
		}
	})
}

func TestImportDryRunInvitesNobody(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	im := f.upload(t, []byte("Account Number,Customer Email\n1,a@example.com\n2,A@example.com\n1,b@example.com\n3,\n4,c@example.com\n"), func(im *store.Import) { im.DryRun = true })
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	got := f.reloadImport(t, im)
	if got.Status != store.ImportCompleted || got.Succeeded != 2 || got.Failed != 3 {
		t.Fatalf("import %+v", got)
	}
	want := []string{
		"3|Customer Email|Provided email address is already in use",
		"4|Account Number|" + importer.MsgAccountRepeated,
		"5|Customer Email|Customer Email field must not be empty",
	}
	if log := errorLog(t, f.db, im); !slices.Equal(log, want) {
		t.Fatalf("error log %q", log)
	}
	for _, table := range []string{"customers", "invitations"} {
		n, err := f.db.NewSelect().Table(table).Where("tenant_id = ?", f.tenant.ID).Count(context.Background())
		if err != nil || n != 0 {
			t.Fatalf("a dry run wrote %d %s (%v)", n, table, err)
		}
	}
	f.drainOutbox(t, map[string]bool{})
	msgs := f.fake.Messages()
	if len(msgs) != 1 || msgs[0].To != "sender@vendor.example.com" || !strings.HasPrefix(msgs[0].Subject, "Dry run of customers.csv: 2 rows would be invited, 3 would fail") {
		t.Fatalf("emails %+v", msgs)
	}
}

// workbook builds an XLSX file the way a spreadsheet program saves one:
// shared strings for text, numbers as numeric cells.
func workbook(t *testing.T, rows [][]any) []byte {
	t.Helper()
	x := excelize.NewFile()
	defer x.Close()
	for i, row := range rows {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := x.SetSheetRow("Sheet1", cell, &row); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := x.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestImportXLSXWithNumericAccounts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	content := workbook(t, [][]any{
		{"Account Number", "Email", "First Name"},
		{145722, "x1@example.com", "Xia"},
		{"00123", "x2@example.com", "Yu"},
		{145722.0, "x3@example.com", "Zed"},
	})
	im := f.upload(t, content, func(im *store.Import) { im.Filename = "book.xlsx" })
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	got := f.reloadImport(t, im)
	if got.Succeeded != 2 || got.Failed != 1 {
		t.Fatalf("import %+v, log %q", got, errorLog(t, f.db, im))
	}
	for _, acct := range []string{"145722", "00123"} {
		if _, err := store.CustomerByAccount(context.Background(), f.db, f.tenant.ID, acct); err != nil {
			t.Fatalf("account %s: %v", acct, err)
		}
	}
	if log := errorLog(t, f.db, im); !slices.Equal(log, []string{"4|Account Number|" + importer.MsgAccountRepeated}) {
		t.Fatalf("log %q", log)
	}
}

// A workbook as an ERP exports one: a cover sheet first, then the data,
// where a date, a 16-digit account typed into a number cell and the same
// digits typed as text sit in the account column.
func TestImportXLSXCoverSheetDatesAndLongNumbers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	x := excelize.NewFile()
	defer x.Close()
	_ = x.SetSheetName("Sheet1", "Export Summary")
	_ = x.SetSheetRow("Export Summary", "A1", &[]any{"Exported from the ERP", "4 customers"})
	_, _ = x.NewSheet("Customers")
	for i, row := range [][]any{
		{"Account Number", "Customer Email", "Customer First Name"},
		{time.Date(2024, 1, 2, 0, 0, 0, 0, time.UTC), "d1@example.com", "Dee"},
		{1234567890123450, "d2@example.com", "Long"},
		{"1234567890123456", "d3@example.com", "Text"},
		{145722, "d4@example.com", time.Date(1990, 2, 3, 0, 0, 0, 0, time.UTC)},
		{145723, "d5@example.com", "Fine"},
	} {
		cell, _ := excelize.CoordinatesToCellName(1, i+1)
		if err := x.SetSheetRow("Customers", cell, &row); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := x.Write(&buf); err != nil {
		t.Fatal(err)
	}
	im := f.upload(t, buf.Bytes(), func(im *store.Import) { im.Filename = "export.xlsx" })
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	got := f.reloadImport(t, im)
	log := errorLog(t, f.db, im)
	if got.Status != store.ImportCompleted || got.Succeeded != 2 || got.Failed != 3 {
		t.Fatalf("import %+v, log %q", got, log)
	}
	want := []string{
		"2|Account Number|Account Number is a date in the file; format the column as text and enter it again",
		"3|Account Number|" + importer.MsgAccountRounded,
		"5|Customer First Name|Customer First Name is a date in the file; format the column as text and enter it again",
	}
	if !slices.Equal(log, want) {
		t.Fatalf("log %q", log)
	}
	for _, acct := range []string{"1234567890123456", "145723"} {
		if _, err := store.CustomerByAccount(context.Background(), f.db, f.tenant.ID, acct); err != nil {
			t.Fatalf("account %s: %v", acct, err)
		}
	}
}

func TestImportOfABrokenFileFailsWithAMessage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	f.deps.ImportUnzipLimit = 1 << 20
	big := [][]any{{"Account Number", "Customer Email"}}
	for i := range 40000 {
		big = append(big, []any{i, fmt.Sprintf("user%d@example.com", i)})
	}
	cases := map[string]struct {
		content []byte
		want    string
	}{
		"missing column": {[]byte("Account Number,Name\n1,Ann\n"), `missing required column "Customer Email"`},
		"header only":    {[]byte("Account Number,Customer Email\r\n\r\n"), "the file has no rows below the header"},
		"not a file":     {[]byte("PK\x03\x04 not really a zip"), "the workbook cannot be read"},
		"legacy xls":     {[]byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1}, "legacy .xls"},
		"zip bomb":       {workbook(t, big), "larger than 1 MiB when decompressed"},
	}
	for name, c := range cases {
		im := f.upload(t, c.content, nil)
		if err := f.importNow(t, im); err != nil {
			t.Fatalf("%s: the task must end, not retry: %v", name, err)
		}
		got := f.reloadImport(t, im)
		if got.Status != store.ImportFailed || !strings.Contains(got.Error, c.want) {
			t.Fatalf("%s: %s %q", name, got.Status, got.Error)
		}
		if n, _ := f.db.NewSelect().Table("invitations").Where("import_id = ?", im.ID).Count(context.Background()); n != 0 {
			t.Fatalf("%s: %d invitations", name, n)
		}
	}
	f.drainOutbox(t, map[string]bool{})
	reports := 0
	for _, m := range f.fake.Messages() {
		if strings.Contains(m.Subject, "failed") && strings.Contains(m.Text, "could not be completed") {
			reports++
		}
	}
	if reports != len(cases) {
		t.Fatalf("%d failure reports, want %d", reports, len(cases))
	}
}

// flakyERP answers from a simulator but fails the lookups of one account
// until told otherwise: a batch that cannot be verified is retried.
type flakyERP struct {
	workers.AccountVerifier
	mu      sync.Mutex
	failing string
}

func (e *flakyERP) LookupAccount(ctx context.Context, tenantID uuid.UUID, number string) (erp.Account, error) {
	e.mu.Lock()
	fail := number == e.failing
	e.mu.Unlock()
	if fail {
		return erp.Account{}, &erp.Error{Reason: "ERP timed out", Temporary: true}
	}
	return e.AccountVerifier.LookupAccount(ctx, tenantID, number)
}

// interleavingERP answers every account and, on the first lookup of one, runs
// a hook: a stand-in for a request that lands between an import's checks and
// its commit.
type interleavingERP struct {
	once    sync.Once
	account string
	hook    func()
}

func (e *interleavingERP) LookupAccount(_ context.Context, _ uuid.UUID, number string) (erp.Account, error) {
	if number == e.account {
		e.once.Do(e.hook)
	}
	return erp.Account{Number: number, Name: "Company " + number}, nil
}

// TestImportRowTakenByAConcurrentRequest: an API request invites an email of
// a batch after the batch was checked (its ERP lookups run after the checks)
// and before it commits. The commit fails on the key; the batch is checked
// again and that row gets its error, in every batch layout.
func TestImportRowTakenByAConcurrentRequest(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		for _, size := range []int{2, 3, 0} {
			t.Run(fmt.Sprint("batch=", size), func(t *testing.T) {
				ctx := context.Background()
				f := newFixture(t, db)
				withDispatcher(t, f)
				f.deps.ImportBatchRows = size
				var csv strings.Builder
				csv.WriteString("Account Number,Customer Email\n")
				for i := range 7 {
					fmt.Fprintf(&csv, "%d,user%d@example.com\n", 800000+i, i)
				}
				f.deps.ERP = &interleavingERP{account: "800003", hook: func() {
					c := &store.Customer{TenantID: f.tenant.ID, CompanyName: "Walk-in", AccountNumbers: []string{"799999"}, CreatedAt: t0, UpdatedAt: t0}
					if err := store.InsertCustomer(ctx, db, c); err != nil {
						t.Error(err)
						return
					}
					inv := &store.Invitation{TenantID: f.tenant.ID, CustomerID: c.ID, Email: "user3@example.com", EmailNormalized: "user3@example.com", State: store.InvitationPending, CreatedAt: t0, UpdatedAt: t0}
					if err := store.InsertInvitation(ctx, db, inv); err != nil {
						t.Error(err)
					}
				}}
				im := f.upload(t, []byte(csv.String()), func(im *store.Import) { im.ValidateERP = true })
				if err := f.importNow(t, im); err != nil {
					t.Fatal(err)
				}
				got := f.reloadImport(t, im)
				if got.Status != store.ImportCompleted || got.ProcessedRows != 7 || got.Succeeded != 6 || got.Failed != 1 {
					t.Fatalf("import %+v", got)
				}
				if log := errorLog(t, db, im); !slices.Equal(log, []string{"5|Customer Email|" + importer.MsgEmailInUse}) {
					t.Fatalf("error log %q", log)
				}
				n, err := db.NewSelect().Table("invitations").Where("import_id = ?", im.ID).Count(ctx)
				if err != nil || n != 6 {
					t.Fatalf("%d invitations, %v", n, err)
				}
			})
		}
	})
}

func TestImportWithERPValidationResumesAfterAFailure(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	var accounts []erp.Account
	var csv strings.Builder
	csv.WriteString("Account Number,Customer Email\n")
	for i := range 2500 {
		n := fmt.Sprint(500000 + i)
		if i%10 != 3 { // every tenth account is unknown to the ERP
			accounts = append(accounts, erp.Account{Number: n, Name: "Company " + n, PriceTier: "silver"})
		}
		fmt.Fprintf(&csv, "%s,user%d@example.com\n", n, i)
	}
	sim := erp.NewSimulator(accounts)
	srv := httptest.NewServer(sim)
	defer srv.Close()
	flaky := &flakyERP{AccountVerifier: erp.NewREST(srv.URL, "", nil), failing: "501500"} // row 1002: the second batch
	f.deps.ERP = flaky
	f.deps.ImportBatchRows = 1000
	im := f.upload(t, []byte(csv.String()), func(im *store.Import) { im.ValidateERP = true })

	if err := f.importNow(t, im); err == nil || !strings.Contains(err.Error(), "ERP timed out") {
		t.Fatalf("want the ERP failure to retry the task, got %v", err)
	}
	mid := f.reloadImport(t, im)
	if mid.Status != store.ImportProcessing || mid.CheckpointRow != 1001 || mid.ProcessedRows != 1000 || mid.TotalRows != 2500 {
		t.Fatalf("after the failure: %+v", mid)
	}
	flaky.mu.Lock()
	flaky.failing = ""
	flaky.mu.Unlock()
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	got := f.reloadImport(t, im)
	if got.Status != store.ImportCompleted || got.ProcessedRows != 2500 || got.Succeeded != 2250 || got.Failed != 250 {
		t.Fatalf("import %+v", got)
	}
	log := errorLog(t, f.db, im)
	if len(log) != 250 || log[0] != "5|Account Number|"+importer.MsgAccountNotInERP {
		t.Fatalf("%d entries, first %q", len(log), log[0])
	}
	c, err := store.CustomerByAccount(context.Background(), f.db, f.tenant.ID, "500000")
	if err != nil || c.ERPStatus != store.ERPVerified || c.CompanyName != "Company 500000" || c.ERPPriceTier != "silver" {
		t.Fatalf("customer %+v %v", c, err)
	}
	// Every lookup named the import's tenant to the ERP.
	if seen := sim.TenantRequests(); len(seen) != 1 || seen[f.tenant.ID.String()] < 2500 {
		t.Fatalf("the ERP saw tenants %v, want %s on every lookup", seen, f.tenant.ID)
	}
	n, err := f.db.NewSelect().Table("invitations").Where("import_id = ?", im.ID).Count(context.Background())
	if err != nil || n != 2250 {
		t.Fatalf("%d invitations, %v", n, err)
	}
	f.drainOutbox(t, map[string]bool{})
	if got := len(f.fake.Messages()); got != 2251 {
		t.Fatalf("%d emails, want 2250 invitations and 1 report", got)
	}
}

func TestImportByTwoWorkersAtOnceCountsEveryRowOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	var csv strings.Builder
	csv.WriteString("Account Number,Customer Email\n")
	for i := range 5000 {
		fmt.Fprintf(&csv, "%d,user%d@example.com\n", 700000+i, i)
	}
	im := f.upload(t, []byte(csv.String()), nil)
	f.deps.ImportBatchRows = 1000
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f.importNow(t, im) }()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, store.ErrCheckpointMoved) {
			t.Fatal(err)
		}
	}
	// The one that lost the race is retried by asynq: run the retry.
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	got := f.reloadImport(t, im)
	n, _ := f.db.NewSelect().Table("invitations").Where("import_id = ?", im.ID).Count(context.Background())
	if got.Status != store.ImportCompleted || got.Succeeded != 5000 || got.ProcessedRows != 5000 || got.Failed != 0 || n != 5000 {
		t.Fatalf("import %+v, %d invitations", got, n)
	}
}

// An import's internationalised addresses: a UTF-8 local part is refused
// with the standard message (SendGrid would refuse it); a UTF-8 domain is
// invited and, like the confirmation to ops@bücher.example, sent as punycode.
func TestImportInternationalAddresses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	csv := "Account Number,Customer Email\n" +
		"1,jurgen@bücher.example\n" +
		"2,jürgen@bücher.example\n" +
		"3,日本@imp.example\n"
	im := f.upload(t, []byte(csv), func(im *store.Import) { im.NotifyEmail = "ops@bücher.example" })
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	want := []string{"3|Customer Email|Customer Email must be valid", "4|Customer Email|Customer Email must be valid"}
	if log := errorLog(t, f.db, im); !slices.Equal(log, want) {
		t.Fatalf("error log %q, want %q", log, want)
	}
	f.drainOutbox(t, map[string]bool{})
	var to []string
	for _, m := range f.fake.Messages() {
		to = append(to, m.To)
	}
	sort.Strings(to)
	if !slices.Equal(to, []string{"jurgen@xn--bcher-kva.example", "ops@xn--bcher-kva.example"}) {
		t.Fatalf("emails to %q", to)
	}
}

// The confirmation's CSVs open right in Excel on Windows: UTF-8 with a BOM
// (without one Excel reads the ANSI code page and Zoë, 山田 come out
// garbled), typed text/csv (SendGrid refuses a type with a charset). The
// failed rows, fixed and uploaded again, read back with their names intact.
func TestImportReportCSVsCarryABOM(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	csv := "Account Number,Customer Email,First Name,Last Name\n" +
		"1,zoe@example.com,Zoë,Ågren\n" +
		",taro@example.com,太郎,山田\n"
	im := f.upload(t, []byte(csv), nil)
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	f.drainOutbox(t, map[string]bool{})
	var atts []sendgridfake.Attachment
	for _, m := range f.fake.Messages() {
		if m.To == "sender@vendor.example.com" {
			atts = m.Attachments
		}
	}
	if len(atts) != 2 {
		t.Fatalf("%d attachments", len(atts))
	}
	for _, a := range atts {
		if a.Type != "text/csv" || !bytes.HasPrefix(a.Content, []byte("\uFEFF")) || !utf8.Valid(a.Content) {
			t.Errorf("%s: type %q, starts %q", a.Filename, a.Type, a.Content[:min(8, len(a.Content))])
		}
	}
	if !strings.Contains(string(atts[0].Content), "Zoë,Ågren") {
		t.Errorf("succeeded rows:\n%s", atts[0].Content)
	}
	r, err := importer.OpenCSV(bytes.NewReader(atts[1].Content))
	if err != nil {
		t.Fatal(err)
	}
	row, err := r.Next()
	if err != nil || row.Email != "taro@example.com" || row.FirstName != "太郎" || row.LastName != "山田" {
		t.Fatalf("failed row read back: %+v %v", row, err)
	}
}

// The confirmation email waits too when SendGrid refuses the sender, and
// goes out once the sender is verified.
func TestImportReportWaitsForTheFix(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	f.fake.SetVerifiedSenders("someone-else@vendor.example.com")
	im := f.upload(t, []byte("Account Number,Customer Email\n,nobody@example.com\n"), nil)
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	report := jobs.NewImportReport(f.tenant.ID.String(), im.ID.String())
	err := f.runTask(t, report)
	if !mail.IsRefused(err) || errors.Is(err, asynq.SkipRetry) || workers.IsFailure(err) {
		t.Fatalf("refused: %v, want a wait", err)
	}
	d, err := store.ImportReportDelivery(context.Background(), f.db, im.ID)
	if err != nil || d.State != store.DeliveryQueued || !strings.Contains(d.LastError, "verified Sender Identity") {
		t.Fatalf("report delivery %+v %v", d, err)
	}
	f.fake.SetVerifiedSenders("invites@vendor.example.com")
	if err := f.runTask(t, report); err != nil {
		t.Fatal(err)
	}
	if m := f.fake.Messages(); len(m) != 1 || m[0].To != "sender@vendor.example.com" {
		t.Fatalf("emails %+v", m)
	}
}
