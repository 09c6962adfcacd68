package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/google/uuid"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
	"github.com/xuri/excelize/v2"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// conformance holds the server's answers to openapi.json.
type conformance struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	seen   map[string]map[int]bool // "GET /v1/customers" → statuses answered
}

// exchange sends one request and checks the answer against the description:
// the route and its status are documented, the answer has a documented
// content type and, in JSON, validates against the schema; a request the
// server accepted (2xx) validates against the description too. hdr holds
// header names and values.
func (c *conformance) exchange(e *env, key, method, path, contentType string, body []byte, hdr ...string) response {
	c.t.Helper()
	build := func(base string) *http.Request {
		req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
		if err != nil {
			c.t.Fatal(err)
		}
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		return req
	}
	r := e.do("", build(e.srv.URL))

	req := build("")
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		c.t.Errorf("%s %s (answered %d) is not described in openapi.json: %v", method, path, r.code, err)
		return r
	}
	name := route.Method + " " + route.Path
	if c.seen[name] == nil {
		c.seen[name] = map[int]bool{}
	}
	c.seen[name][r.code] = true
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
	if r.code/100 == 2 {
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			c.t.Errorf("%s %s: the server accepted (%d) a request that openapi.json refuses: %v", method, path, r.code, err)
		}
	}
	doc := route.Operation.Responses.Status(r.code)
	if doc == nil {
		c.t.Errorf("%s answered %d (%s), which openapi.json does not document for it", name, r.code, snip(r.raw))
		return r
	}
	ct := r.hdr.Get("Content-Type")
	if doc.Value.Content.Get(ct) == nil {
		c.t.Errorf("%s answered %d as %q; openapi.json documents %v", name, r.code, ct, slices.Sorted(func(yield func(string) bool) {
			for k := range doc.Value.Content {
				if !yield(k) {
					return
				}
			}
		}))
		return r
	}
	if strings.HasPrefix(ct, "application/json") {
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: r.code, Header: r.hdr,
			Options: &openapi3filter.Options{IncludeResponseStatus: true}}
		out.SetBodyBytes([]byte(r.raw))
		if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
			c.t.Errorf("%s answered %d with a body that openapi.json does not describe: %v", name, r.code, err)
		}
	}
	return r
}

// want checks that a case answered what it is there to produce.
func (c *conformance) want(code int, r response, what string) response {
	c.t.Helper()
	if r.code != code {
		c.t.Errorf("%s: %d %s, want %d", what, r.code, snip(r.raw), code)
	}
	return r
}

func snip(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// refuseAll is a rate limiter whose allowance is always spent.
type refuseAll struct{}

func (refuseAll) Allow(context.Context, uuid.UUID) (bool, time.Duration, error) {
	return false, 3 * time.Second, nil
}

// TestOpenAPIDescribesEveryAnswer drives every route into each answer it
// gives (its success, each refusal, no key, the rate limit, a timeout, an
// internal error, a dependency down) and holds openapi.json to what the
// server does: every answer's status is documented for its route, with the
// content type it is sent as and, in JSON, a body that validates; a request
// the server accepted validates against the description; every documented
// status is produced by a case here; a path answers 405 with an Allow that
// lists exactly the documented methods; a documented limit maximum is the
// server's. /openapi.json serves the file byte for byte.
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := storetest.NewPostgresDSN(t)
	db := storetest.Open(t, dsn)
	sg := newSigner(t)
	webhookKey := sg.publicKey(t)

	// The server as configured in production, and as it answers when a
	// tenant's allowance is spent, when requests time out, when the
	// database is gone, and when Redis is down with nothing optional set.
	main := newEnvWith(t, db, func(o *serverOptions) {
		o.webhookKey, o.metrics, o.metricsKey, o.maxUpload = webhookKey, metrics.New(), "scrape-token", 64<<10
	})
	limited := newEnvWith(t, db, func(o *serverOptions) { o.webhookKey, o.rateLimit = webhookKey, refuseAll{} })
	slow := newEnvWith(t, db, func(o *serverOptions) { o.webhookKey, o.timeout = webhookKey, time.Nanosecond })
	closedDB := storetest.Open(t, dsn)
	broken := newEnvWith(t, closedDB, func(o *serverOptions) { o.webhookKey = webhookKey })
	closedDB.Close()
	bare := newEnvWith(t, db, func(o *serverOptions) { o.redisDown = true })
	key := main.tenant("Parts")

	served := main.call("", "GET", "/openapi.json", "")
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if served.code != 200 || served.raw != string(file) {
		t.Fatalf("/openapi.json: %d, not the file byte for byte", served.code)
	}
	doc, err := openapi3.NewLoader().LoadFromData(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(ctx); err != nil {
		t.Fatalf("openapi.json is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	c := &conformance{t: t, doc: doc, router: router, seen: map[string]map[int]bool{}}
	jsonCT := "application/json"
	call := func(e *env, key, method, path, body string) response {
		t.Helper()
		var b []byte
		if body != "" {
			b = []byte(body)
		}
		return c.exchange(e, key, method, path, jsonCT, b)
	}
	seq := 0
	newCustomer := func(invite bool, extra ...string) string {
		t.Helper()
		seq++
		fields := map[string]any{"company_name": "Acme", "account_number": fmt.Sprint(1000 + seq), "email": fmt.Sprintf("c%d@example.com", seq), "invite": invite}
		for i := 0; i+1 < len(extra); i += 2 {
			fields[extra[i]] = extra[i+1]
		}
		b, _ := json.Marshal(fields)
		return string(b)
	}
	created := func(r response) (customer, invitation string) {
		t.Helper()
		if r.code != 201 {
			t.Fatalf("create: %d %s", r.code, r.raw)
		}
		return id(r, "customer"), id(r, "invitation")
	}
	// token mints a link of a pending invitation, as the worker does.
	token := func(invitation string) string {
		t.Helper()
		var d store.Delivery
		if err := db.NewSelect().Model(&d).Where("invitation_id = ?", uuid.MustParse(invitation)).Limit(1).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := db.NewUpdate().Model((*store.Invitation)(nil)).Set("expires_at = ?", main.now.Add(time.Hour)).Where("id = ?", d.InvitationID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		tokens, err := store.IssueTokens(ctx, db, []*store.Delivery{&d}, main.now)
		if err != nil {
			t.Fatal(err)
		}
		return `{"token":"` + tokens[d.ID] + `"}`
	}
	multipartForm := func(filename string, content []byte, fields ...string) (string, []byte) {
		ct, body := uploadForm(t, filename, content, fields...)
		return ct, body.Bytes()
	}
	upload := func(e *env, key, filename string, content []byte, fields ...string) response {
		t.Helper()
		ct, body := multipartForm(filename, content, fields...)
		return c.exchange(e, key, "POST", "/v1/imports", ct, body)
	}
	signed := func(e *env, at time.Time, body []byte, sig string) response {
		t.Helper()
		ts := strconv.FormatInt(at.Unix(), 10)
		if sig == "" {
			sig = sg.sign(t, ts, body)
		}
		return c.exchange(e, "", "POST", "/v1/webhooks/sendgrid", jsonCT, body,
			eventwebhook.TimestampHTTPHeader, ts, eventwebhook.VerificationHTTPHeader, sig)
	}
	big := `{"company_name":"` + strings.Repeat("x", 8192) + `"}`

	// Each route's successful request, with the ids of main's data; the
	// other servers get the same requests.
	savedCust, _ := created(call(main, key, "POST", "/v1/customers", newCustomer(false)))
	_, pendingInv := created(call(main, key, "POST", "/v1/customers", newCustomer(true)))
	csvFile := []byte("Account Number,Customer Email\r\n1,a@example.com\r\n")
	imp := c.want(202, upload(main, key, "customers.csv", csvFile, "dry_run", "true", "notify_email", "me@vendor.example.com"), "CSV upload")
	importID, _ := imp.body["id"].(string)
	_, toAccept := created(call(main, key, "POST", "/v1/customers", newCustomer(true)))
	acceptBody := token(toAccept)
	type request struct {
		method, path string
		send         func(e *env, key, path string) response
	}
	jsonReq := func(method, path, body string) request {
		return request{method, path, func(e *env, key, p string) response { return call(e, key, method, p, body) }}
	}
	uploadCT, uploadBody := multipartForm("customers.csv", csvFile)
	good := []request{
		{"POST", "/v1/customers", func(e *env, key, p string) response { return call(e, key, "POST", p, newCustomer(true)) }},
		jsonReq("GET", "/v1/customers?status=active&limit=10", ""),
		jsonReq("GET", "/v1/customers/"+savedCust, ""),
		jsonReq("POST", "/v1/customers/"+savedCust+"/invitations", ""),
		jsonReq("POST", "/v1/customers/"+savedCust+"/erp-verification", ""),
		jsonReq("GET", "/v1/invitations", ""),
		jsonReq("POST", "/v1/invitations/resend", `{"emails":["c2@example.com"]}`),
		jsonReq("POST", "/v1/invitations/"+pendingInv+"/revoke", ""),
		jsonReq("POST", "/v1/invitations/accept", acceptBody),
		{"POST", "/v1/imports", func(e *env, key, p string) response { return c.exchange(e, key, "POST", p, uploadCT, uploadBody) }},
		jsonReq("GET", "/v1/imports", ""),
		jsonReq("GET", "/v1/imports/template.csv", ""),
		jsonReq("GET", "/v1/imports/"+importID, ""),
		jsonReq("GET", "/v1/imports/"+importID+"/errors", ""),
		jsonReq("GET", "/v1/imports/"+importID+"/file", ""),
		{"POST", "/v1/webhooks/sendgrid", func(e *env, _, p string) response { return signed(e, e.now, []byte(`[]`), "") }},
		jsonReq("GET", "/healthz", ""),
		jsonReq("GET", "/readyz", ""),
		jsonReq("GET", "/openapi.json", ""),
		{"GET", "/metrics", func(e *env, _, p string) response {
			return c.exchange(e, "", "GET", p, "", nil, "Authorization", "Bearer scrape-token")
		}},
	}
	if len(good) != len((&api.Server{}).Routes()) {
		t.Fatalf("%d routes have a request here; the server has %d", len(good), len((&api.Server{}).Routes()))
	}
	for _, g := range good {
		r := g.send(main, key, g.path)
		if r.code/100 != 2 {
			t.Errorf("%s %s: %d %s, want a success", g.method, g.path, r.code, snip(r.raw))
		}
	}
	// The same requests without a key, over a spent allowance, with no time
	// to do the work, with the database gone, and with Redis down and
	// nothing optional configured: whatever each answers must be
	// documented.
	other := strings.NewReplacer(savedCust, uuid.NewString(), pendingInv, uuid.NewString(), importID, uuid.NewString())
	for _, g := range good {
		g.send(main, "", g.path)
		for _, e := range []*env{limited, slow, broken, bare} {
			g.send(e, key, other.Replace(g.path))
		}
	}

	// Each route's refusals.
	unknown := "/" + uuid.NewString()
	c.want(400, call(main, key, "POST", "/v1/customers", `{"company_name":"A","bogus":1}`), "unknown JSON field")
	c.want(400, call(main, key, "POST", "/v1/customers", `{"company_name":`), "malformed JSON")
	c.want(409, call(main, key, "POST", "/v1/customers", newCustomer(false, "email", "c1@example.com")), "email in use")
	c.want(409, call(main, key, "POST", "/v1/customers", newCustomer(false, "account_number", "1001")), "account number in use")
	c.want(413, call(main, key, "POST", "/v1/customers", big), "body over the limit")
	c.want(422, call(main, key, "POST", "/v1/customers", `{"account_number":"9","email":"x@example.com"}`), "no company")
	c.want(201, call(main, key, "POST", "/v1/customers", `{"company_name":"Multi","account_numbers":["77","78"],"email":"multi@example.com"}`), "account_numbers alone")
	for _, q := range []string{"status=gone", "created_after=yesterday", "cursor=%21", "limit=0"} {
		c.want(400, call(main, key, "GET", "/v1/customers?"+q, ""), "GET /v1/customers?"+q)
	}
	c.want(404, call(main, key, "GET", "/v1/customers"+unknown, ""), "unknown customer")
	c.want(409, call(main, key, "POST", "/v1/customers/"+savedCust+"/invitations", ""), "invited twice")
	blacklisted, _ := created(call(main, key, "POST", "/v1/customers", newCustomer(false, "status", "blacklisted")))
	c.want(422, call(main, key, "POST", "/v1/customers/"+blacklisted+"/invitations", ""), "blacklisted")
	c.want(404, call(main, key, "POST", "/v1/customers"+unknown+"/invitations", ""), "invite unknown customer")
	c.want(404, call(main, key, "POST", "/v1/customers"+unknown+"/erp-verification", ""), "verify unknown customer")
	for _, q := range []string{"status=gone", "format=xml", "cursor=%21", "limit=0"} {
		c.want(400, call(main, key, "GET", "/v1/invitations?"+q, ""), "GET /v1/invitations?"+q)
	}
	c.want(200, c.exchange(main, key, "GET", "/v1/invitations?format=csv", "", nil), "pending list as CSV")
	c.want(400, call(main, key, "POST", "/v1/invitations/resend", `{"email":["x@example.com"]}`), "resend with an unknown field")
	c.want(413, call(main, key, "POST", "/v1/invitations/resend", `{"emails":["`+strings.Repeat("x", 8192)+`"]}`), "resend body over the limit")
	c.want(422, call(main, key, "POST", "/v1/invitations/resend", `{}`), "resend of nothing")
	c.want(202, call(main, key, "POST", "/v1/invitations/resend", `{"all_pending":true}`), "resend all")
	c.want(404, call(main, key, "POST", "/v1/invitations"+unknown+"/revoke", ""), "revoke unknown")
	c.want(200, call(main, key, "POST", "/v1/invitations/"+pendingInv+"/revoke", ""), "revoke again")
	_, savedInv := created(call(main, key, "POST", "/v1/customers", newCustomer(false)))
	c.want(200, call(main, key, "POST", "/v1/invitations/"+savedInv+"/revoke", ""), "revoke a saved invitation")
	var accepted string
	if err := db.NewSelect().Model((*store.Invitation)(nil)).Column("id").Where("state = ?", store.InvitationAccepted).Scan(ctx, &accepted); err != nil {
		t.Fatal(err)
	}
	c.want(409, call(main, key, "POST", "/v1/invitations/"+accepted+"/revoke", ""), "revoke accepted")
	c.want(410, call(main, key, "POST", "/v1/invitations/accept", acceptBody), "accept twice")
	c.want(404, call(main, key, "POST", "/v1/invitations/accept", `{"token":"nope"}`), "unknown token")
	c.want(422, call(main, key, "POST", "/v1/invitations/accept", `{"token":" "}`), "empty token")
	c.want(400, call(main, key, "POST", "/v1/invitations/accept", `{"token":1}`), "token of another type")
	c.want(413, call(main, key, "POST", "/v1/invitations/accept", `{"token":"`+strings.Repeat("x", 8192)+`"}`), "accept body over the limit")
	{
		// The contact became a portal user another way meanwhile.
		takenCust, takenInv := created(call(main, key, "POST", "/v1/customers", newCustomer(true)))
		_, otherInv := created(call(main, key, "POST", "/v1/customers", newCustomer(false)))
		var inv store.Invitation
		if err := db.NewSelect().Model(&inv).Where("id = ?", uuid.MustParse(takenInv)).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		body := token(takenInv)
		u := &store.User{ID: uuid.New(), TenantID: inv.TenantID, CustomerID: uuid.MustParse(takenCust), InvitationID: uuid.MustParse(otherInv),
			Email: inv.Email, EmailNormalized: inv.EmailNormalized, Role: store.RoleAdmin, CreatedAt: main.now}
		if _, err := db.NewInsert().Model(u).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		c.want(409, call(main, key, "POST", "/v1/invitations/accept", body), "accept an email that became a user")
	}

	c.want(400, upload(main, key, "a.csv", csvFile, "dry_run", "maybe"), "dry_run=maybe")
	c.want(400, upload(main, key, "a.csv", csvFile, "validate_erp", "sometimes"), "validate_erp=sometimes")
	c.want(400, upload(main, key, "a.csv", csvFile, "f0", "x"), "unknown form field")
	c.want(413, upload(main, key, "big.csv", bytes.Repeat([]byte("1,a@example.com\n"), 5000)), "file over IMPORT_MAX_MB")
	c.want(415, call(main, key, "POST", "/v1/imports", `{"file":"x"}`), "JSON upload")
	c.want(422, upload(main, key, "", nil, "dry_run", "true"), "no file")
	c.want(422, upload(main, key, "a.csv", csvFile, "notify_email", "nope"), "bad notify_email")
	x := excelize.NewFile()
	var xlsx bytes.Buffer
	if err := x.Write(&xlsx); err != nil {
		t.Fatal(err)
	}
	xlsxImport := c.want(202, upload(main, key, "book.xlsx", xlsx.Bytes()), "XLSX upload")
	legacy := c.want(202, upload(main, key, "old.xls", []byte{0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1, 0, 0}), "legacy .xls upload (fails when processed)")
	if legacy.body["format"] != nil {
		t.Errorf("an upload that is neither CSV nor XLSX has format %v, want null", legacy.body["format"])
	}
	for _, im := range []response{xlsxImport, legacy} {
		iid, _ := im.body["id"].(string)
		c.want(200, call(main, key, "GET", "/v1/imports/"+iid+"/file", ""), "file of "+fmt.Sprint(im.body["filename"]))
		c.want(200, call(main, key, "GET", "/v1/imports/"+iid, ""), "import "+fmt.Sprint(im.body["filename"]))
	}
	c.want(200, call(main, key, "GET", "/v1/imports", ""), "history with every format")
	for _, q := range []string{"cursor=%21", "limit=0"} {
		c.want(400, call(main, key, "GET", "/v1/imports?"+q, ""), "GET /v1/imports?"+q)
	}
	c.want(404, call(main, key, "GET", "/v1/imports"+unknown, ""), "unknown import")
	c.want(200, call(main, key, "GET", "/v1/imports/"+importID+"/errors?format=xlsx", ""), "error log as XLSX")
	c.want(400, call(main, key, "GET", "/v1/imports/"+importID+"/errors?format=pdf", ""), "error log as PDF")
	c.want(404, call(main, key, "GET", "/v1/imports"+unknown+"/errors", ""), "errors of an unknown import")
	c.want(404, call(main, key, "GET", "/v1/imports"+unknown+"/file", ""), "file of an unknown import")

	c.want(400, signed(main, main.now.Add(-time.Hour), []byte(`[]`), ""), "webhook signed an hour ago")
	c.want(400, signed(main, main.now, []byte(`{}`), ""), "webhook body not an array")
	c.want(401, signed(main, main.now, []byte(`[]`), "c2lnbmF0dXJl"), "webhook with a bad signature")
	c.want(401, c.exchange(main, "", "POST", "/v1/webhooks/sendgrid", jsonCT, []byte(`[]`)), "webhook unsigned")
	c.want(413, signed(main, main.now, bytes.Repeat([]byte(" "), 5<<20+1), ""), "webhook body over 5 MiB")
	c.want(401, c.exchange(main, "", "GET", "/metrics", "", nil), "metrics without the token")
	clusterDown := newEnvWith(t, db, func(o *serverOptions) {
		o.ready = func(context.Context) error {
			return &api.NotReady{Reason: "redis cluster state is fail (some slots have no reachable master)"}
		}
	})
	c.want(503, c.exchange(clusterDown, "", "GET", "/readyz", "", nil), "readyz with a Redis Cluster down")

	// A documented limit maximum is the server's.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			for _, p := range op.Parameters {
				if p.Value.Name != "limit" || p.Value.In != "query" {
					continue
				}
				max := p.Value.Schema.Value.Max
				if max == nil {
					t.Errorf("%s %s: limit has no maximum", method, path)
					continue
				}
				at := fmt.Sprintf("%s?limit=%d", path, int(*max))
				c.want(200, call(main, key, method, at, ""), method+" "+at)
				over := fmt.Sprintf("%s?limit=%d", path, int(*max)+1)
				c.want(400, call(main, key, method, over, ""), method+" "+over+" (over the documented maximum)")
			}
		}
	}

	// A path answers 405 to a method it is not described with, and Allow
	// names the described ones (HEAD with GET).
	for path, item := range doc.Paths.Map() {
		var allow []string
		for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"} {
			if item.GetOperation(m) != nil || (m == "HEAD" && item.Get != nil) {
				allow = append(allow, m)
			}
		}
		concrete := strings.ReplaceAll(path, "{id}", uuid.NewString())
		r := main.call(key, "DELETE", concrete, "")
		if r.code != 405 || r.hdr.Get("Allow") != strings.Join(allow, ", ") || r.errField("code") != "method_not_allowed" {
			t.Errorf("DELETE %s: %d Allow %q %s, want 405 with Allow %q", path, r.code, r.hdr.Get("Allow"), snip(r.raw), strings.Join(allow, ", "))
		}
	}
	if doc.Components.Responses["MethodNotAllowed"] == nil {
		t.Error("openapi.json does not describe the 405 answer (components.responses.MethodNotAllowed)")
	}

	// Every documented answer was produced above.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			for status := range op.Responses.Map() {
				code, err := strconv.Atoi(status)
				if err != nil || !c.seen[name][code] {
					t.Errorf("openapi.json documents %s for %s, which no case here produced", status, name)
				}
			}
		}
	}
}
