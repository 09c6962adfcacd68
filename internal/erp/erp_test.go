package erp_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/onboard-dev/onboard/internal/erp"
)

// tenant is the tenant the tests look accounts up for.
var tenant = uuid.MustParse("0b8e2f5c-3c56-4a77-9f3e-8a3f5d1f2b10")

func serve(t *testing.T, sim *erp.Simulator) string {
	t.Helper()
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestLookup(t *testing.T) {
	t.Parallel()
	sim := erp.NewSimulator([]erp.Account{{Number: "145722", Name: "Blue Yonder", Status: "active", PriceTier: "gold"}, {Number: "A/B 12", Name: "Slash"}})
	sim.Token = "secret"
	url := serve(t, sim)
	c := erp.NewREST(url, "secret", nil)
	ctx := context.Background()

	a, err := c.LookupAccount(ctx, tenant, "145722")
	if err != nil || a.Name != "Blue Yonder" || a.PriceTier != "gold" {
		t.Fatalf("found: %+v %v", a, err)
	}
	if a, err := c.LookupAccount(ctx, tenant, "A/B 12"); err != nil || a.Name != "Slash" {
		t.Fatalf("escaped number: %+v %v", a, err)
	}
	if _, err := c.LookupAccount(ctx, tenant, "999"); !errors.Is(err, erp.ErrNotFound) || erp.IsTemporary(err) {
		t.Fatalf("not found: %v", err)
	}
	sim.FailNext(503, 1)
	if _, err := c.LookupAccount(ctx, tenant, "145722"); !erp.IsTemporary(err) {
		t.Fatalf("503: %v, want temporary", err)
	}
	if _, err := erp.NewREST(url, "wrong", nil).LookupAccount(ctx, tenant, "145722"); err == nil || erp.IsTemporary(err) || errors.Is(err, erp.ErrNotFound) {
		t.Fatalf("bad token: %v, want permanent", err)
	}
	sim.SetLatency(time.Second)
	short := erp.NewREST(url, "secret", &http.Client{Timeout: 50 * time.Millisecond})
	if _, err := short.LookupAccount(ctx, tenant, "145722"); !erp.IsTemporary(err) {
		t.Fatalf("timeout: %v, want temporary", err)
	}
}

func TestSimulatorCountsConcurrency(t *testing.T) {
	t.Parallel()
	sim := erp.NewSimulator([]erp.Account{{Number: "1"}})
	sim.SetLatency(50 * time.Millisecond)
	c := erp.NewREST(serve(t, sim), "", nil)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() { _, _ = c.LookupAccount(context.Background(), tenant, "1") })
	}
	wg.Wait()
	if sim.Requests() != 5 || sim.MaxInFlight() < 2 || sim.MaxInFlight() > 5 {
		t.Fatalf("requests %d, max in flight %d", sim.Requests(), sim.MaxInFlight())
	}
}

func TestLoadAccountsCSV(t *testing.T) {
	t.Parallel()
	accts, err := erp.LoadAccountsCSV(bytes.NewReader(erp.SampleAccountsCSV))
	if err != nil || len(accts) < 10 {
		t.Fatalf("sample: %d %v", len(accts), err)
	}
	for _, bad := range []string{"", "number,name\n1,a\n", "account_number,name,status,price_tier\n,a,b,c\n", "account_number,name,status,price_tier\n1,a\n"} {
		if _, err := erp.LoadAccountsCSV(strings.NewReader(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// A failed lookup's message is shown to the tenant (on the customer, on the
// import): it names the kind of failure, never the ERP's address or its
// answer; Detail, for the log, has both.
func TestLookupErrorsDoNotNameTheERP(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	slow := erp.NewSimulator([]erp.Account{{Number: "1"}})
	slow.SetLatency(time.Second)
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "upstream db-7.corp.internal:5432 is down", http.StatusBadGateway)
	}))
	defer failing.Close()
	for _, tc := range []struct {
		url, want string
		client    *http.Client
	}{
		{closed.URL, "erp: ERP unreachable (connection refused)", nil},
		{serve(t, slow), "erp: ERP unreachable (timeout)", &http.Client{Timeout: 50 * time.Millisecond}},
		{"http://erp.invalid", "erp: ERP unreachable (its host name does not resolve)", nil},
		{failing.URL, "erp: HTTP 502: the ERP failed to answer", nil},
	} {
		_, err := erp.NewREST(tc.url, "", tc.client).LookupAccount(ctx, tenant, "1")
		if err == nil || err.Error() != tc.want || !erp.IsTemporary(err) {
			t.Errorf("%s: %v, want %q (temporary)", tc.url, err, tc.want)
			continue
		}
		host := strings.TrimPrefix(tc.url, "http://")
		if detail := erp.Detail(err); !strings.Contains(detail, host) && !strings.Contains(detail, "db-7.corp.internal") {
			t.Errorf("%s: Detail %q names neither the ERP nor its answer", tc.url, detail)
		}
	}
}

// Every lookup names its tenant, so that an ERP endpoint shared by several
// vendors can answer from that vendor's accounts only; the simulator
// refuses a request that does not.
func TestLookupNamesTheTenant(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("X-Onboard-Tenant"))
		mu.Unlock()
		w.Write([]byte(`{"account_number":"1","name":"One"}`))
	}))
	defer fake.Close()
	other := uuid.MustParse("7d1c9a4e-2b6f-4e0a-9c3d-5f8e1a2b3c4d")
	c := erp.NewREST(fake.URL, "", nil)
	for _, id := range []uuid.UUID{tenant, other} {
		if _, err := c.LookupAccount(context.Background(), id, "1"); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{tenant.String(), other.String()}; !slices.Equal(got, want) {
		t.Fatalf("X-Onboard-Tenant %q, want %q", got, want)
	}

	sim := erp.NewSimulator([]erp.Account{{Number: "1"}})
	url := serve(t, sim)
	if _, err := erp.NewREST(url, "", nil).LookupAccount(context.Background(), other, "1"); err != nil {
		t.Fatal(err)
	}
	if n := sim.TenantRequests(); len(n) != 1 || n[other.String()] != 1 {
		t.Fatalf("simulator saw tenants %v", n)
	}
	req, _ := http.NewRequest("GET", url+"/accounts/1", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("simulator without X-Onboard-Tenant: %d, want 400", resp.StatusCode)
	}
}
