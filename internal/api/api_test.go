package api_test

import (
	"context"
	"crypto/ecdsa"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/ratelimit"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

type env struct {
	t         *testing.T
	db        *bun.DB
	srv       *httptest.Server
	inspector *asynq.Inspector
	now       time.Time
}

// newEnv serves the API over db, enqueueing to a redis-server of the test's
// own (or to nothing listening when redisDown).
func newEnv(t *testing.T, db *bun.DB, redisDown bool) *env {
	t.Helper()
	return newEnvWith(t, db, func(o *serverOptions) { o.redisDown = redisDown })
}

type serverOptions struct {
	redisDown  bool
	maxUpload  int64
	webhookKey *ecdsa.PublicKey
	rateLimit  api.RateLimiter
	metrics    *metrics.Metrics
	metricsKey string
	resendCap  int
	timeout    time.Duration
	log        io.Writer
	ready      func(context.Context) error // instead of a PING of the test's Redis
}

func newEnvWith(t *testing.T, db *bun.DB, configure func(*serverOptions)) *env {
	t.Helper()
	var o serverOptions
	configure(&o)
	var opt asynq.RedisClientOpt
	if o.redisDown {
		opt = asynq.RedisClientOpt{Addr: testenv.FreeAddr(t), DialTimeout: 100 * time.Millisecond}
	} else {
		opt = asynq.RedisClientOpt{Addr: testenv.StartRedis(t).Addr()}
	}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })
	logTo := o.log
	if logTo == nil {
		logTo = io.Discard
	}
	log := slog.New(slog.NewTextHandler(logTo, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := &env{t: t, db: db, inspector: insp, now: time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)}
	if o.ready == nil {
		o.ready = func(context.Context) error { return client.Ping() }
	}
	s := &api.Server{
		DB:             db,
		Dispatcher:     &outbox.Dispatcher{DB: db, Client: client, Log: log, EnqueueTimeout: 500 * time.Millisecond},
		Log:            log,
		Now:            func() time.Time { return e.now },
		Ready:          o.ready,
		MaxBodyBytes:   4096,
		MaxUploadBytes: o.maxUpload,
		WebhookKey:     o.webhookKey,
		RateLimit:      o.rateLimit,
		Metrics:        o.metrics,
		MetricsToken:   o.metricsKey,
		ResendDailyCap: o.resendCap,
		RequestTimeout: o.timeout,
	}
	e.srv = httptest.NewServer(s.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) tenant(name string) string {
	e.t.Helper()
	_, key, err := store.CreateTenant(context.Background(), e.db, name, "", e.now)
	if err != nil {
		e.t.Fatal(err)
	}
	return key
}

type response struct {
	code int
	body map[string]any
	raw  string
	hdr  http.Header
}

func (r response) errField(k string) string {
	e, _ := r.body["error"].(map[string]any)
	s, _ := e[k].(string)
	return s
}

func (e *env) call(key, method, path, body string) response {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	return e.do("", req)
}

func (e *env) create(key string, fields map[string]any) response {
	e.t.Helper()
	b, _ := json.Marshal(fields)
	return e.call(key, "POST", "/v1/customers", string(b))
}

func customer(account, email string, invite bool) map[string]any {
	return map[string]any{"company_name": "Acme " + account, "account_number": account, "email": email, "first_name": "Jane", "invite": invite}
}

func id(r response, obj string) string {
	m, _ := r.body[obj].(map[string]any)
	s, _ := m["id"].(string)
	return s
}

func TestAuthRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	for _, key := range []string{"", "obk_not-a-key"} {
		r := e.call(key, "GET", "/v1/customers", "")
		if r.code != 401 || r.errField("code") != "unauthorized" || r.hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("key %q: %d %s", key, r.code, r.raw)
		}
	}
}

func TestSaveVersusSaveAndInvite(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		e := newEnv(t, db, false)
		key := e.tenant("a")
		saved := e.create(key, customer("100", "saved@example.com", false))
		if saved.code != 201 || saved.body["invitation"].(map[string]any)["status"] != "saved" {
			t.Fatalf("save: %d %s", saved.code, saved.raw)
		}
		invited := e.create(key, customer("101", "Invited@Example.com", true))
		if invited.code != 201 || invited.body["invitation"].(map[string]any)["status"] != "pending" {
			t.Fatalf("save and invite: %d %s", invited.code, invited.raw)
		}
		if invited.body["invitation"].(map[string]any)["email"] != "Invited@Example.com" {
			t.Fatal("email not kept as typed")
		}
		var ds []store.Delivery
		if err := db.NewSelect().Model(&ds).Scan(context.Background()); err != nil {
			t.Fatal(err)
		}
		if len(ds) != 1 || ds[0].InvitationID.UUID.String() != id(invited, "invitation") || ds[0].State != store.DeliveryQueued {
			t.Fatalf("deliveries %+v: want one queued, for the invited customer", ds)
		}
		info, err := e.inspector.GetTaskInfo(jobs.QueueCritical, "invite:send:"+ds[0].ID.String())
		if err != nil || info.Type != jobs.TypeInviteSend {
			t.Fatalf("task not enqueued: %v %v", info, err)
		}
		if strings.Contains(string(info.Payload), "@") {
			t.Fatalf("task payload carries personal data: %s", info.Payload)
		}
		// Sending the saved customer's invitation later.
		r := e.call(key, "POST", "/v1/customers/"+id(saved, "customer")+"/invitations", "")
		if r.code != 202 || r.body["invitation"].(map[string]any)["status"] != "pending" {
			t.Fatalf("invite saved: %d %s", r.code, r.raw)
		}
		r = e.call(key, "POST", "/v1/customers/"+id(saved, "customer")+"/invitations", "")
		if r.code != 409 || !strings.Contains(r.errField("message"), "already been invited") {
			t.Fatalf("second invite: %d %s", r.code, r.raw)
		}
	})
}

func TestValidationMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	if r := e.create(key, customer("1", "jane@example.com", false)); r.code != 201 {
		t.Fatal(r.raw)
	}
	for _, tc := range []struct {
		name   string
		body   string
		status int
		field  string
		msg    string
	}{
		{"empty email", `{"company_name":"A","account_number":"2","email":""}`, 422, "email", "Customer Email field must not be empty"},
		{"invalid email", `{"company_name":"A","account_number":"2","email":"jane@"}`, 422, "email", "Customer Email must be valid"},
		{"display name", `{"company_name":"A","account_number":"2","email":"Jane <j@example.com>"}`, 422, "email", "Customer Email must be valid"},
		// SendGrid sends to no internationalised local part.
		{"UTF-8 local part", `{"company_name":"A","account_number":"2","email":"jürgen@bücher.example"}`, 422, "email", "Customer Email must be valid"},
		{"CJK local part", `{"company_name":"A","account_number":"2","email":"日本@imp.example"}`, 422, "email", "Customer Email must be valid"},
		{"empty account", `{"company_name":"A","account_number":" ","email":"x@example.com"}`, 422, "account_number", "Account Number field must not be empty"},
		{"duplicate email", `{"company_name":"A","account_number":"2","email":"jane@example.com"}`, 409, "email", "Provided email address is already in use"},
		{"duplicate email other case", `{"company_name":"A","account_number":"2","email":"JANE@Example.COM"}`, 409, "email", "Provided email address is already in use"},
		{"duplicate account", `{"company_name":"A","account_number":"1","email":"new@example.com"}`, 409, "account_number", "Account Number already belongs to another customer"},
		{"unknown field", `{"company_name":"A","account_number":"2","email":"x@example.com","colour":"red"}`, 400, "colour", `unknown field "colour"`},
		{"bad status", `{"company_name":"A","account_number":"2","email":"x@example.com","status":"vip"}`, 422, "status", "status must be active, inactive or blacklisted"},
		// Lengths are counted in characters, as an import counts them.
		{"long name", `{"company_name":"A","account_number":"2","email":"x@example.com","first_name":"` + strings.Repeat("é", 101) + `"}`, 422, "first_name", "first_name must be at most 100 characters"},
		{"long account", `{"company_name":"A","account_number":"` + strings.Repeat("7", 65) + `","email":"x@example.com"}`, 422, "account_number", "account_number must be at most 64 characters"},
		{"trailing data", `{"company_name":"A","account_number":"2","email":"x@example.com"} {}`, 400, "", "request body has data after the JSON object"},
		{"not json", `company_name=A`, 400, "", ""},
		{"too large", `{"company_name":"` + strings.Repeat("a", 5000) + `"}`, 413, "", ""},
	} {
		r := e.call(key, "POST", "/v1/customers", tc.body)
		if r.code != tc.status || r.errField("field") != tc.field || (tc.msg != "" && r.errField("message") != tc.msg) {
			t.Errorf("%s: %d %s, want %d field %q message %q", tc.name, r.code, r.raw, tc.status, tc.field, tc.msg)
		}
	}
	// 100 characters of two bytes each are a name of 100 characters.
	accented := customer("4", "zoe@example.com", false)
	accented["first_name"] = strings.Repeat("ë", 100)
	if r := e.create(key, accented); r.code != 201 {
		t.Fatalf("100 accented characters: %d %s", r.code, r.raw)
	}
	// An internationalised domain is fine (it goes to SendGrid as punycode).
	if r := e.create(key, customer("3", "jurgen@bücher.example", false)); r.code != 201 {
		t.Fatalf("IDN domain: %d %s", r.code, r.raw)
	}
	// A number for the account number is kept as its digits.
	r := e.create(key, map[string]any{"company_name": "N", "account_number": 145722, "email": "num@example.com"})
	if r.code != 201 || r.body["customer"].(map[string]any)["account_numbers"].([]any)[0] != "145722" {
		t.Fatalf("numeric account: %d %s", r.code, r.raw)
	}
}

func TestBlacklistedAndInactiveCannotBeInvited(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	for _, status := range []string{"blacklisted", "inactive"} {
		c := customer("B"+status, status+"@example.com", true)
		c["status"] = status
		r := e.create(key, c)
		if r.code != 422 || !strings.Contains(r.errField("message"), status) {
			t.Errorf("save and invite %s: %d %s", status, r.code, r.raw)
		}
		c["invite"] = false
		r = e.create(key, c)
		if r.code != 201 {
			t.Fatalf("save %s: %d %s", status, r.code, r.raw)
		}
		r = e.call(key, "POST", "/v1/customers/"+id(r, "customer")+"/invitations", "")
		if r.code != 422 {
			t.Errorf("invite %s later: %d %s", status, r.code, r.raw)
		}
	}
	var n int64
	n, _ = e.db.NewSelect().Model((*store.Delivery)(nil)).Count(context.Background())
	if n != 0 {
		t.Fatalf("%d deliveries queued for customers that cannot be invited", n)
	}
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	a, b := e.tenant("a"), e.tenant("b")
	saved := e.create(a, customer("100", "a-saved@example.com", false))
	pending := e.create(a, customer("101", "a-pending@example.com", true))
	custID, invID := id(saved, "customer"), id(pending, "invitation")

	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/customers/" + custID, ""},
		{"POST", "/v1/customers/" + custID + "/invitations", ""},
		{"POST", "/v1/invitations/" + invID + "/revoke", ""},
	} {
		if r := e.call(b, tc.method, tc.path, tc.body); r.code != 404 {
			t.Errorf("tenant B %s %s: %d, want 404", tc.method, tc.path, r.code)
		}
	}
	for _, path := range []string{"/v1/customers", "/v1/invitations", "/v1/invitations?status=pending", "/v1/customers?q=a-"} {
		r := e.call(b, "GET", path, "")
		if r.code != 200 || len(r.body["data"].([]any)) != 0 {
			t.Errorf("tenant B sees tenant A's data at %s: %s", path, r.raw)
		}
	}
	if r := e.call(b, "GET", "/v1/invitations?format=csv", ""); strings.Contains(r.raw, "a-pending") {
		t.Errorf("tenant B's CSV lists tenant A's invitation")
	}
	// B may use A's emails: uniqueness is per tenant.
	if r := e.create(b, customer("100", "a-saved@example.com", false)); r.code != 201 {
		t.Errorf("tenant B reusing an email of A: %d %s", r.code, r.raw)
	}
	// Nothing of A changed.
	if r := e.call(a, "GET", "/v1/customers/"+custID, ""); r.body["invitation"].(map[string]any)["status"] != "saved" {
		t.Errorf("tenant A's customer changed: %s", r.raw)
	}
}

func TestAcceptIsSingleUse(t *testing.T) {
	t.Parallel()
	db := storetest.NewPostgres(t)
	e := newEnv(t, db, false)
	key, other := e.tenant("a"), e.tenant("b")
	r := e.create(key, customer("100", "jane@example.com", true))
	// Mint a link as the worker does when it sends.
	var d store.Delivery
	if err := db.NewSelect().Model(&d).Limit(1).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NewUpdate().Model((*store.Invitation)(nil)).Set("expires_at = ?", e.now.Add(time.Hour)).Where("id = ?", d.InvitationID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	tokens, err := store.IssueTokens(context.Background(), db, []*store.Delivery{&d}, e.now)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokens[d.ID]
	body := `{"token":"` + tok + `"}`
	if r := e.call(other, "POST", "/v1/invitations/accept", body); r.code != 404 {
		t.Errorf("accept with another tenant's key: %d", r.code)
	}
	if r := e.call(key, "POST", "/v1/invitations/accept", `{"token":"nope"}`); r.code != 404 {
		t.Errorf("unknown token: %d", r.code)
	}
	acc := e.call(key, "POST", "/v1/invitations/accept", body)
	if acc.code != 200 || acc.body["user"].(map[string]any)["role"] != "admin" || acc.body["user"].(map[string]any)["email"] != "jane@example.com" ||
		acc.body["customer"].(map[string]any)["id"] != id(r, "customer") || acc.body["invitation"].(map[string]any)["status"] != "accepted" {
		t.Fatalf("accept: %d %s", acc.code, acc.raw)
	}
	again := e.call(key, "POST", "/v1/invitations/accept", body)
	if again.code != 410 || !strings.Contains(again.errField("message"), "already been used") {
		t.Fatalf("second accept: %d %s", again.code, again.raw)
	}
	if r := e.call(key, "POST", "/v1/invitations/"+id(r, "invitation")+"/revoke", ""); r.code != 409 {
		t.Fatalf("revoking an accepted invitation: %d %s", r.code, r.raw)
	}
}

func TestRevokeFreesEmailAndCancelsEmail(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	r := e.create(key, customer("100", "jane@example.com", true))
	rv := e.call(key, "POST", "/v1/invitations/"+id(r, "invitation")+"/revoke", "")
	if rv.code != 200 || rv.body["invitation"].(map[string]any)["status"] != "revoked" {
		t.Fatalf("revoke: %d %s", rv.code, rv.raw)
	}
	var d store.Delivery
	_ = e.db.NewSelect().Model(&d).Limit(1).Scan(context.Background())
	if d.State != store.DeliveryFailed {
		t.Fatalf("queued email of a revoked invitation: %s", d.State)
	}
	if r := e.create(key, customer("200", "jane@example.com", false)); r.code != 201 {
		t.Fatalf("email not free after revoke: %d %s", r.code, r.raw)
	}
}

// A customer whose invitation was revoked is invited again through the API:
// the same contact, a new invitation and link. Once the email was taken by
// another customer, the answer says so.
func TestRevokedCustomerIsInvitedAgain(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	r := e.create(key, customer("100", "jane@example.com", true))
	cust, first := id(r, "customer"), id(r, "invitation")
	if rv := e.call(key, "POST", "/v1/invitations/"+first+"/revoke", ""); rv.code != 200 {
		t.Fatalf("revoke: %d %s", rv.code, rv.raw)
	}
	again := e.call(key, "POST", "/v1/customers/"+cust+"/invitations", "")
	inv, _ := again.body["invitation"].(map[string]any)
	if again.code != 202 || inv["id"] == first || inv["status"] != "pending" || inv["email"] != "jane@example.com" {
		t.Fatalf("invite again: %d %s", again.code, again.raw)
	}
	if r := e.call(key, "POST", "/v1/customers/"+cust+"/invitations", ""); r.code != 409 {
		t.Fatalf("invite twice: %d %s", r.code, r.raw)
	}
	// Revoked again, and the email taken by another customer meanwhile.
	if rv := e.call(key, "POST", "/v1/invitations/"+inv["id"].(string)+"/revoke", ""); rv.code != 200 {
		t.Fatalf("revoke: %d %s", rv.code, rv.raw)
	}
	if r := e.create(key, customer("200", "jane@example.com", false)); r.code != 201 {
		t.Fatalf("other customer: %d %s", r.code, r.raw)
	}
	if r := e.call(key, "POST", "/v1/customers/"+cust+"/invitations", ""); r.code != 409 || r.errField("message") != "Provided email address is already in use" {
		t.Fatalf("email taken: %d %s", r.code, r.raw)
	}
}

// An invitation past its expiry reads as expired at once, not only after the
// nightly expiry sweep: in its view, in the status filters, and for sending
// it again.
func TestInvitationPastItsExpiryIsExpired(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	_, inv, _ := e.sentInvitation(key, "1", "late@example.com")
	if _, err := e.db.NewUpdate().Model((*store.Invitation)(nil)).Set("expires_at = ?", e.now.Add(time.Hour)).
		Where("id = ?", uuid.MustParse(inv)).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	status := func(filter string) int {
		r := e.call(key, "GET", "/v1/invitations?status="+filter, "")
		return len(r.body["data"].([]any))
	}
	if status("pending") != 1 || status("expired") != 0 {
		t.Fatalf("before the expiry: pending %d, expired %d", status("pending"), status("expired"))
	}
	e.now = e.now.Add(2 * time.Hour) // the sweep has not run
	r := e.call(key, "GET", "/v1/invitations", "")
	if got := r.body["data"].([]any)[0].(map[string]any)["status"]; got != "expired" {
		t.Fatalf("status %v", got)
	}
	if status("pending") != 0 || status("expired") != 1 {
		t.Fatalf("after the expiry: pending %d, expired %d", status("pending"), status("expired"))
	}
	var c struct {
		CustomerID uuid.UUID `bun:"customer_id"`
	}
	if err := e.db.NewSelect().Table("invitations").Column("customer_id").Where("id = ?", uuid.MustParse(inv)).Scan(context.Background(), &c); err != nil {
		t.Fatal(err)
	}
	again := e.call(key, "POST", "/v1/customers/"+c.CustomerID.String()+"/invitations", "")
	if again.code != 202 || again.body["invitation"].(map[string]any)["status"] != "pending" {
		t.Fatalf("send again: %d %s", again.code, again.raw)
	}
}

func TestListFiltersAndPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	for i, acct := range []string{"1", "2", "3", "4", "5"} {
		c := customer(acct, "c"+acct+"@example.com", false)
		c["ranking"] = []string{"gold", "silver"}[i%2]
		if i == 4 {
			c["status"] = "blacklisted"
		}
		e.now = e.now.Add(24 * time.Hour)
		if r := e.create(key, c); r.code != 201 {
			t.Fatal(r.raw)
		}
	}
	seen := 0
	cursor := ""
	for {
		r := e.call(key, "GET", "/v1/customers?limit=2&cursor="+cursor, "")
		seen += len(r.body["data"].([]any))
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if seen != 5 {
		t.Fatalf("paging saw %d customers, want 5", seen)
	}
	for q, want := range map[string]int{
		"status=blacklisted":        1,
		"ranking=gold":              3,
		"created_after=2026-11-26":  3,
		"created_before=2026-11-26": 2,
		"q=c3@":                     1,
		"q=acme":                    5,
	} {
		r := e.call(key, "GET", "/v1/customers?"+q, "")
		if r.code != 200 || len(r.body["data"].([]any)) != want {
			t.Errorf("%s: %d customers (%d), want %d", q, len(r.body["data"].([]any)), r.code, want)
		}
	}
	for _, q := range []string{"created_after=yesterday", "limit=0", "cursor=!!", "status=vip"} {
		if r := e.call(key, "GET", "/v1/customers?"+q, ""); r.code != 400 {
			t.Errorf("%s: %d, want 400", q, r.code)
		}
	}
}

func TestPendingCSVIsSafe(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	c := customer("100", "jane@example.com", true)
	c["first_name"] = `=HYPERLINK("http://evil.example","click")`
	e.create(key, c)
	e.create(key, customer("101", "saved@example.com", false))
	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/invitations", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept", "text/csv")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || len(rows) != 2 {
		t.Fatalf("csv: %q", rows)
	}
	if rows[1][0] != "jane@example.com" || rows[1][1] != `'=HYPERLINK("http://evil.example","click")` {
		t.Fatalf("row %q", rows[1])
	}
}

func TestResendChosenEmails(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	e.create(key, customer("1", "pending@example.com", true))
	e.create(key, customer("2", "saved@example.com", false))
	// The first email went out.
	if _, err := e.db.NewUpdate().Model((*store.Delivery)(nil)).Set("state = 'sent'").Where("1 = 1").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := e.call(key, "POST", "/v1/invitations/resend", `{"emails":["PENDING@example.com","saved@example.com","nobody@example.com","bad@","pending@EXAMPLE.com"]}`)
	if r.code != 202 {
		t.Fatalf("resend: %d %s", r.code, r.raw)
	}
	if got := r.body["resent"].([]any); len(got) != 1 || got[0] != "PENDING@example.com" {
		t.Fatalf("resent %v", got)
	}
	// Every address sent is answered, the second spelling of one too.
	if got := r.body["not_resent"].([]any); len(got) != 4 || !strings.Contains(r.raw, `"email":"pending@EXAMPLE.com"`) {
		t.Fatalf("not resent %v", got)
	}
	// A second request while the email is queued does not queue another.
	r = e.call(key, "POST", "/v1/invitations/resend", `{"emails":["pending@example.com"]}`)
	if len(r.body["resent"].([]any)) != 0 {
		t.Fatalf("resent twice: %s", r.raw)
	}
	if r := e.call(key, "POST", "/v1/invitations/resend", `{"all_pending":true}`); r.code != 202 {
		t.Fatalf("all pending: %d %s", r.code, r.raw)
	}
	if r := e.call(key, "POST", "/v1/invitations/resend", `{}`); r.code != 422 {
		t.Fatalf("empty resend: %d", r.code)
	}
}

// A resend whose every address is refused resends nothing (an empty list of
// addresses once matched every invitation of the tenant), and twenty
// requests at once for one invitation queue one email.
func TestResendOfRefusedOrConcurrentRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	for i := range 5 {
		e.create(key, customer(strconv.Itoa(i), fmt.Sprintf("p%d@example.com", i), true))
	}
	ctx := context.Background()
	if _, err := e.db.NewUpdate().Model((*store.Delivery)(nil)).Set("state = 'sent'").Where("1 = 1").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	queued := func() int {
		n, err := e.db.NewSelect().Model((*store.Delivery)(nil)).Where("state = 'queued'").Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	r := e.call(key, "POST", "/v1/invitations/resend", `{"emails":["not-an-email",""]}`)
	if r.code != 202 || len(r.body["resent"].([]any)) != 0 || queued() != 0 {
		t.Fatalf("refused addresses: %d %s, %d queued", r.code, r.raw, queued())
	}
	if !strings.Contains(r.raw, "Customer Email field must not be empty") || !strings.Contains(r.raw, "Customer Email must be valid") {
		t.Fatalf("reasons: %s", r.raw)
	}
	var wg sync.WaitGroup
	resent := make(chan int, 20)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := e.call(key, "POST", "/v1/invitations/resend", `{"emails":["p0@example.com"]}`)
			if r.code != 202 {
				t.Errorf("resend: %d %s", r.code, r.raw)
				return
			}
			resent <- len(r.body["resent"].([]any))
		}()
	}
	wg.Wait()
	close(resent)
	total := 0
	for n := range resent {
		total += n
	}
	if total != 1 || queued() != 1 {
		t.Fatalf("20 concurrent resends: %d accepted, %d queued; want 1", total, queued())
	}
}

func TestRedisDownStillAccepts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), true)
	key := e.tenant("a")
	r := e.create(key, customer("1", "jane@example.com", true))
	if r.code != 201 {
		t.Fatalf("%d %s", r.code, r.raw)
	}
	var rows []store.OutboxTask
	if err := e.db.NewSelect().Model(&rows).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || !rows[0].EnqueuedAt.IsZero() {
		t.Fatalf("outbox %+v: want one row waiting for the sweep", rows)
	}
	ready := e.call("", "GET", "/readyz", "")
	if ready.code != 503 || !strings.Contains(ready.raw, "redis") {
		t.Fatalf("readyz with Redis down: %d %s", ready.code, ready.raw)
	}
	if r := e.call("", "GET", "/healthz", ""); r.code != 200 {
		t.Fatalf("healthz: %d", r.code)
	}
}

func TestUnknownRoutesAndIDs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	for _, path := range []string{"/v1/customers/not-a-uuid", "/v1/customers/01a20726-0000-7000-8000-000000000000", "/nope"} {
		if r := e.call(key, "GET", path, ""); r.code != 404 || r.errField("code") == "" {
			t.Errorf("%s: %d %s", path, r.code, r.raw)
		}
	}
}

// The HTTP surface as clients meet it: 405 with Allow for a path served
// under other methods, one error shape with "field" always present, type
// errors naming the field in JSON terms, the auth scheme in any case, and
// content negotiation of the invitations list.
func TestHTTPSurface(t *testing.T) {
	t.Parallel()
	e := newEnv(t, storetest.NewPostgres(t), false)
	key := e.tenant("a")
	e.create(key, customer("1", "pending@example.com", true))
	e.create(key, customer("2", "saved@example.com", false))

	for _, c := range []struct{ method, path, allow string }{
		{"DELETE", "/v1/customers", "GET, HEAD, POST"},
		{"GET", "/v1/invitations/resend", "POST"},
		{"PUT", "/v1/imports/01a20726-0000-7000-8000-000000000000", "GET, HEAD"},
	} {
		r := e.call(key, c.method, c.path, "")
		if r.code != 405 || r.hdr.Get("Allow") != c.allow || r.errField("code") != "method_not_allowed" {
			t.Errorf("%s %s: %d Allow %q %s", c.method, c.path, r.code, r.hdr.Get("Allow"), r.raw)
		}
	}
	if r := e.call(key, "GET", "/v2/nothing", ""); r.code != 404 || r.hdr.Get("Allow") != "" {
		t.Errorf("unknown path: %d %s", r.code, r.raw)
	}

	r := e.call(key, "POST", "/v1/customers", `[]`)
	if r.code != 400 || r.errField("message") != "request body must be a JSON object" || !strings.Contains(r.raw, `"field":null`) {
		t.Errorf("array body: %d %s", r.code, r.raw)
	}
	r = e.call(key, "POST", "/v1/customers", `{"company_name":"A","account_number":true,"email":"x@example.com"}`)
	if r.code != 400 || r.errField("field") != "account_number" || !strings.Contains(r.errField("message"), "a string or a number") {
		t.Errorf("bool account: %d %s", r.code, r.raw)
	}
	r = e.call(key, "POST", "/v1/customers", `{"company_name":"A","account_number":"3","email":"x@example.com","invite":"yes"}`)
	if r.code != 400 || r.errField("field") != "invite" || !strings.Contains(r.errField("message"), "true or false") || strings.Contains(r.raw, "api.") {
		t.Errorf("string invite: %d %s", r.code, r.raw)
	}

	req, _ := http.NewRequest("GET", e.srv.URL+"/v1/invitations", nil)
	req.Header.Set("Authorization", "bearer "+key)
	if r := e.do("", req); r.code != 200 {
		t.Errorf("lower-case scheme: %d %s", r.code, r.raw)
	}

	get := func(path, accept string) response {
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		return e.do(key, req)
	}
	isCSV := func(r response) bool { return strings.HasPrefix(r.hdr.Get("Content-Type"), "text/csv") }
	for accept, want := range map[string]bool{
		"TEXT/CSV": true, "application/json, text/csv": false, "text/csv, application/json": true,
		"application/json;q=0.5, text/csv": true, "text/csv;q=0": false, "*/*": false,
	} {
		if r := get("/v1/invitations", accept); isCSV(r) != want {
			t.Errorf("Accept %q: csv %v, want %v", accept, isCSV(r), want)
		}
	}
	if r := get("/v1/invitations?format=xml", ""); r.code != 400 || r.errField("field") != "format" {
		t.Errorf("format=xml: %d %s", r.code, r.raw)
	}
	if r := get("/v1/invitations?format=csv&status=saved", ""); !isCSV(r) || !strings.Contains(r.raw, "saved@example.com") || strings.Contains(r.raw, "pending@example.com") {
		t.Errorf("saved as csv: %s", r.raw)
	}
	if r := get("/v1/invitations?format=csv", ""); !strings.Contains(r.raw, "pending@example.com") || strings.Contains(r.raw, "saved@example.com") {
		t.Errorf("pending list: %s", r.raw)
	}
}

func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rc.Close() })
	db := storetest.NewPostgres(t)
	// Two API processes on one Redis share each tenant's allowance.
	limiter := func(o *serverOptions) { o.rateLimit = ratelimit.NewTenants(rc, 60, 2) }
	e1, e2 := newEnvWith(t, db, limiter), newEnvWith(t, db, limiter)
	a, b := e1.tenant("a"), e1.tenant("b")
	codes := []int{e1.call(a, "GET", "/v1/customers", "").code, e2.call(a, "GET", "/v1/customers", "").code}
	third := e1.call(a, "GET", "/v1/customers", "")
	if codes[0] != 200 || codes[1] != 200 || third.code != 429 || third.errField("code") != "rate_limited" {
		t.Fatalf("burst of 2 then: %v %d %s", codes, third.code, third.raw)
	}
	if ra, err := strconv.Atoi(third.hdr.Get("Retry-After")); err != nil || ra < 1 || ra > 2 {
		t.Fatalf("Retry-After %q, want 1 (one request a second)", third.hdr.Get("Retry-After"))
	}
	if r := e2.call(b, "GET", "/v1/customers", ""); r.code != 200 {
		t.Fatalf("tenant B limited by A: %d", r.code)
	}
	// Health checks are not a tenant's requests.
	if r := e1.call("", "GET", "/healthz", ""); r.code != 200 {
		t.Fatalf("healthz: %d", r.code)
	}
}

func TestResendCapPerInvitationPerDay(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, storetest.NewPostgres(t), func(o *serverOptions) { o.resendCap = 2 })
	key := e.tenant("a")
	_, inv, _ := e.sentInvitation(key, "1", "capped@example.com")
	markSent := func() {
		ctx := context.Background()
		var ds []*store.Delivery
		if err := e.db.NewSelect().Model(&ds).Where("invitation_id = ? AND state = 'queued'", uuid.MustParse(inv)).Scan(ctx); err != nil || len(ds) != 1 {
			t.Fatalf("queued delivery: %v %d", err, len(ds))
		}
		if _, err := store.ClaimDeliveries(ctx, e.db, []uuid.UUID{ds[0].ID}, time.Minute, e.now); err != nil {
			t.Fatal(err)
		}
		if err := store.MarkDeliveriesSent(ctx, e.db, []uuid.UUID{ds[0].ID}, "m", time.Time{}, e.now); err != nil {
			t.Fatal(err)
		}
	}
	r := e.call(key, "POST", "/v1/invitations/resend", `{"emails":["capped@example.com"]}`)
	if r.code != 202 || len(r.body["resent"].([]any)) != 1 {
		t.Fatalf("second email of the day: %d %s", r.code, r.raw)
	}
	markSent()
	r = e.call(key, "POST", "/v1/invitations/resend", `{"emails":["capped@example.com"]}`)
	if r.code != 202 || len(r.body["resent"].([]any)) != 0 || !strings.Contains(r.raw, "emailed 2 times in the last 24 hours") {
		t.Fatalf("third email of the day: %d %s", r.code, r.raw)
	}
	// A day later the invitation may be emailed again.
	e.now = e.now.Add(25 * time.Hour)
	if r := e.call(key, "POST", "/v1/invitations/resend", `{"emails":["capped@example.com"]}`); len(r.body["resent"].([]any)) != 1 {
		t.Fatalf("the next day: %d %s", r.code, r.raw)
	}
}

// A request whose work outlives REQUEST_TIMEOUT answers 503, not a hung
// connection (here the deadline has passed before the first query).
func TestRequestTimeoutAnswers503(t *testing.T) {
	t.Parallel()
	e := newEnvWith(t, storetest.NewPostgres(t), func(o *serverOptions) { o.timeout = time.Nanosecond })
	key := e.tenant("a")
	// /v1/invitations streams its CSV form; its JSON pages are bounded too.
	for _, path := range []string{"/v1/customers", "/v1/invitations", "/v1/imports"} {
		r := e.call(key, "GET", path, "")
		if r.code != 503 || r.errField("code") != "timeout" {
			t.Errorf("GET %s: %d %s, want 503 timeout", path, r.code, r.raw)
		}
	}
}

func TestReadyzSaysWhenTheDatabaseIsNotMigrated(t *testing.T) {
	t.Parallel()
	db := storetest.Open(t, storetest.NewUnmigratedPostgresDSN(t))
	e := newEnv(t, db, false)
	r := e.call("", "GET", "/readyz", "")
	if r.code != 503 || !strings.Contains(r.raw, `"database":"database not migrated: run onboard migrate"`) {
		t.Fatalf("readyz before migrate: %d %s", r.code, r.raw)
	}
	if _, err := store.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}
	if r := e.call("", "GET", "/readyz", ""); r.code != 200 {
		t.Fatalf("readyz after migrate: %d %s", r.code, r.raw)
	}
	// Once ready, the answer is kept: probes cost no more queries.
	if _, err := db.NewDelete().TableExpr("bun_migrations").Where("TRUE").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := e.call("", "GET", "/readyz", ""); r.code != 200 {
		t.Fatalf("readyz after a positive answer: %d %s", r.code, r.raw)
	}
}

// /readyz answers anyone: it names what is down with a fixed reason, and the
// driver's errors (addresses, user and database names) go to the log only.
func TestReadyzTellsWhatIsDownNotWhy(t *testing.T) {
	t.Parallel()
	cfg, err := pgx.ParseConfig(storetest.PostgresURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = "onboard_no_such_database"
	db := bun.NewDB(stdlib.OpenDB(*cfg), pgdialect.New())
	t.Cleanup(func() { db.Close() })
	var logs testenv.SyncBuffer
	e := newEnvWith(t, db, func(o *serverOptions) { o.redisDown = true; o.log = &logs })
	r := e.call("", "GET", "/readyz", "")
	if want := `{"down":{"database":"unreachable","redis":"unreachable"},"status":"unavailable"}` + "\n"; r.code != 503 || r.raw != want {
		t.Fatalf("readyz: %d %s, want 503 %s", r.code, r.raw, want)
	}
	for _, detail := range []string{"onboard_no_such_database", "connection refused"} {
		if !strings.Contains(logs.String(), detail) {
			t.Errorf("the log does not say %q:\n%s", detail, logs.String())
		}
	}
	// A check's reason that names nothing internal (a Redis Cluster's
	// state) is answered as it is.
	cluster := newEnvWith(t, storetest.NewPostgres(t), func(o *serverOptions) {
		o.ready = func(context.Context) error {
			return fmt.Errorf("cluster info: %w", &api.NotReady{Reason: "redis cluster state is fail (some slots have no reachable master)"})
		}
	})
	if r := cluster.call("", "GET", "/readyz", ""); r.code != 503 || !strings.Contains(r.raw, `"redis":"redis cluster state is fail (some slots have no reachable master)"`) {
		t.Fatalf("readyz with the cluster down: %d %s", r.code, r.raw)
	}
}

// dbAt is a handle on a Postgres at addr that is never pinged.
func dbAt(t *testing.T, addr string) *bun.DB {
	t.Helper()
	cfg, err := pgx.ParseConfig("postgres://onboard@" + addr + "/onboard?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	db := bun.NewDB(stdlib.OpenDB(*cfg), pgdialect.New())
	t.Cleanup(func() { db.Close() })
	return db
}

// A database that refuses connections is an outage: 503 with Retry-After,
// which clients and their alerting retry, not a 500 that reads as a bug.
func TestDatabaseDownAnswers503(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dbAt(t, testenv.FreeAddr(t)), false)
	r := e.call("some-key", "GET", "/v1/customers", "")
	if r.code != 503 || r.errField("code") != "unavailable" || r.hdr.Get("Retry-After") == "" {
		t.Fatalf("%d %v %s", r.code, r.hdr, r.raw)
	}
}

// A database that accepts connections and never answers (a network
// partition) holds no request past its deadline, the API key's look-up
// included, and /readyz names it alone: Redis has a deadline of its own.
func TestSilentDatabaseAnswersWithinTheDeadline(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var held []net.Conn // open, never answered
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	e := newEnvWith(t, dbAt(t, ln.Addr().String()), func(o *serverOptions) {
		o.timeout = 200 * time.Millisecond
		// A healthy Redis, answering while its check's deadline lasts.
		o.ready = func(ctx context.Context) error { return ctx.Err() }
	})
	if r := e.call("some-key", "GET", "/v1/customers", ""); r.code != 503 || r.errField("code") != "timeout" {
		t.Fatalf("GET /v1/customers: %d %s", r.code, r.raw)
	}
	if r := e.call("", "GET", "/readyz", ""); r.code != 503 || r.raw != `{"down":{"database":"unreachable"},"status":"unavailable"}`+"\n" {
		t.Fatalf("readyz: %d %s", r.code, r.raw)
	}
}
