package api_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// TestEveryRouteIsTenantScoped walks every route that takes a tenant's key
// with tenant B's key against tenant A's customers, invitations, imports,
// error logs and files: B reads nothing of A's and changes nothing. A route
// added without a case here fails the test.
func TestEveryRouteIsTenantScoped(t *testing.T) {
	t.Parallel()
	db := storetest.NewPostgres(t)
	e := newEnv(t, db, false)
	a, b := e.tenant("a"), e.tenant("b")
	ctx := context.Background()

	saved := e.create(a, customer("A-100", "a-saved@example.com", false))
	pending := e.create(a, customer("A-101", "a-pending@example.com", true))
	custID, invID := id(saved, "customer"), id(pending, "invitation")
	// A live link for A's pending invitation, as the send worker mints it.
	var ds []*store.Delivery
	if err := db.NewSelect().Model(&ds).Where("invitation_id = ?", uuid.MustParse(invID)).Scan(ctx); err != nil || len(ds) != 1 {
		t.Fatalf("delivery of A's invitation: %v", err)
	}
	tokens, err := store.IssueTokens(ctx, db, ds, e.now)
	if err != nil {
		t.Fatal(err)
	}
	tokenA := tokens[ds[0].ID]
	up := e.upload(a, "a-customers.csv", []byte("Account Number,Customer Email\r\nA-200,a-imported@example.com\r\n,no-account@example.com\r\n"))
	if up.code != 202 {
		t.Fatalf("A's upload: %d %s", up.code, up.raw)
	}
	importID, _ := up.body["id"].(string)
	if err := store.InsertImportErrors(ctx, db, []*store.ImportError{{ImportID: uuid.MustParse(importID), RowNumber: 3, Field: "Account Number", Message: "Account Number field must not be empty", Email: "no-account@example.com"}}); err != nil {
		t.Fatal(err)
	}

	before := snapshot(t, e)
	// What B must never see in any answer: A's ids, emails, file name, token.
	secretsOfA := []string{custID, invID, importID, "a-saved@", "a-pending@", "a-imported@", "a-customers.csv", "no-account@", tokenA}

	cases := map[string]struct{ path, body string }{
		"POST /v1/customers":                       {"/v1/customers", `{"company_name":"B","account_number":"B-1","email":"b@example.com"}`},
		"GET /v1/customers":                        {"/v1/customers?q=a-", ""},
		"GET /v1/customers/{id}":                   {"/v1/customers/" + custID, ""},
		"POST /v1/customers/{id}/invitations":      {"/v1/customers/" + custID + "/invitations", ""},
		"POST /v1/customers/{id}/erp-verification": {"/v1/customers/" + custID + "/erp-verification", ""},
		"GET /v1/invitations":                      {"/v1/invitations?format=csv", ""},
		"POST /v1/invitations/resend":              {"/v1/invitations/resend", `{"emails":["a-pending@example.com"]}`},
		"POST /v1/invitations/{id}/revoke":         {"/v1/invitations/" + invID + "/revoke", ""},
		"POST /v1/invitations/accept":              {"/v1/invitations/accept", fmt.Sprintf(`{"token":%q}`, tokenA)},
		"POST /v1/imports":                         {"", ""}, // B's own upload, below
		"GET /v1/imports":                          {"/v1/imports", ""},
		"GET /v1/imports/template.csv":             {"/v1/imports/template.csv", ""},
		"GET /v1/imports/{id}":                     {"/v1/imports/" + importID, ""},
		"GET /v1/imports/{id}/errors":              {"/v1/imports/" + importID + "/errors", ""},
		"GET /v1/imports/{id}/file":                {"/v1/imports/" + importID + "/file", ""},
	}
	for _, rt := range (&api.Server{}).Routes() {
		if !rt.Tenant {
			continue
		}
		name := rt.Method + " " + rt.Path
		c, ok := cases[name]
		if !ok {
			t.Errorf("%s takes a tenant's key but has no cross-tenant case here", name)
			continue
		}
		var r response
		if c.path == "" {
			r = e.upload(b, "b.csv", []byte("Account Number,Customer Email\r\nB-9,b9@example.com\r\n"))
		} else {
			r = e.call(b, rt.Method, c.path, c.body)
		}
		if strings.Contains(rt.Path, "{id}") && r.code != 404 {
			t.Errorf("%s with B's key on A's object: %d, want 404 (%s)", name, r.code, r.raw)
		}
		if name == "POST /v1/invitations/accept" && r.code != 404 {
			t.Errorf("B accepted A's token: %d %s", r.code, r.raw)
		}
		if r.code >= 500 {
			t.Errorf("%s: %d %s", name, r.code, r.raw)
		}
		for _, s := range secretsOfA {
			if strings.Contains(r.raw, s) && !(name == "POST /v1/invitations/resend" && s == "a-pending@") {
				t.Errorf("%s with B's key shows A's %q: %s", name, s, r.raw)
			}
		}
		if name == "POST /v1/invitations/resend" && !strings.Contains(r.raw, "no invitation has this email") {
			t.Errorf("B's resend of A's email: %s", r.raw)
		}
	}
	if after := snapshot(t, e); after != before {
		t.Errorf("B's calls changed A's data:\nbefore %s\nafter  %s", before, after)
	}
}

// snapshot is tenant A's rows in a comparable form (A is the first tenant).
func snapshot(t *testing.T, e *env) string {
	t.Helper()
	ctx := context.Background()
	var tenant store.Tenant
	if err := e.db.NewSelect().Model(&tenant).Where("name = 'a'").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, q := range []struct{ table, cols string }{
		{"customers", "id, status, erp_status, updated_at"},
		{"invitations", "id, state, delivery_status, send_count, updated_at"},
		{"deliveries", "id, state, event"},
		{"imports", "id, status"},
		{"outbox", "task_id"},
	} {
		var rows []map[string]any
		if err := e.db.NewSelect().TableExpr(q.table).ColumnExpr(q.cols).Where("tenant_id = ?", tenant.ID).OrderExpr("1").Scan(ctx, &rows); err != nil {
			t.Fatalf("%s: %v", q.table, err)
		}
		fmt.Fprintf(&out, "%s=%v ", q.table, rows)
	}
	return out.String()
}
