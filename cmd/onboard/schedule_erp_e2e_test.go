package main_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/store"
)

func TestTwoSchedulersEnqueueEachRunOnce(t *testing.T) {
	t.Parallel()
	s := newSystem(t,
		"RESEND_SCHEDULE=*/2 * * * * *", // every two seconds, so the test sees several slots
		"EXPIRY_SCHEDULE=0 0 1 1 *", "ERP_REVERIFY_SCHEDULE=0 0 1 1 *",
		"OUTBOX_SWEEP_SCHEDULE=@every 1s", "OUTBOX_GRACE=0s")
	s.run("migrate")
	s.start("scheduler-1", "scheduler")
	s.start("scheduler-2", "scheduler")
	s.start("worker", "worker")
	runRE := regexp.MustCompile(`msg="task done" task_type=invite:resend task_id=(\S+)`)
	testenv.Eventually(t, 60*time.Second, "three nightly-resend runs", func() bool {
		return len(runRE.FindAllString(s.logs["worker"].String(), -1)) >= 3
	})
	_ = s.stop("scheduler-1")
	_ = s.stop("scheduler-2")
	runs := map[string]int{}
	for _, m := range runRE.FindAllStringSubmatch(s.logs["worker"].String(), -1) {
		runs[m[1]]++
	}
	for id, n := range runs {
		if n != 1 {
			t.Errorf("run %s ran %d times", id, n)
		}
	}
	// Both schedulers fired for the slots: the dedupe is what kept it to one run.
	enq := regexp.MustCompile(`msg="scheduled run enqueued" task_type=invite:resend task_id=(\S+)`)
	both := 0
	first := map[string]bool{}
	for _, m := range enq.FindAllStringSubmatch(s.logs["scheduler-1"].String(), -1) {
		first[m[1]] = true
	}
	for _, m := range enq.FindAllStringSubmatch(s.logs["scheduler-2"].String(), -1) {
		if first[m[1]] {
			both++
		}
	}
	if both == 0 {
		t.Fatal("the two schedulers never fired for the same slot; the test proves nothing")
	}
}

func TestERPConcurrencyBoundAcrossTwoWorkers(t *testing.T) {
	t.Parallel()
	const n, bound = 24, 3
	accounts := make([]erp.Account, n)
	for i := range accounts {
		accounts[i] = erp.Account{Number: fmt.Sprint(5000 + i), Name: fmt.Sprint("Co ", i), PriceTier: "silver"}
	}
	sim := erp.NewSimulator(accounts)
	sim.Token = "erp-token"
	sim.SetLatency(150 * time.Millisecond)
	srv := httptest.NewServer(sim)
	defer srv.Close()
	s := newSystem(t, "ERP_URL="+srv.URL, "ERP_TOKEN=erp-token", fmt.Sprint("ERP_CONCURRENCY=", bound), "WORKER_CONCURRENCY=20")
	s.run("migrate")
	key := s.newTenant("ERP Co")
	s.start("api", "api")
	var ids []string
	for i := range n {
		code, body := s.do(key, "POST", "/v1/customers", map[string]any{"company_name": "C", "account_number": fmt.Sprint(5000 + i), "email": fmt.Sprintf("c%d@example.com", i)})
		if code != 201 {
			t.Fatalf("create: %d %v", code, body)
		}
		ids = append(ids, body["customer"].(map[string]any)["id"].(string))
	}
	for _, id := range ids {
		if code, body := s.do(key, "POST", "/v1/customers/"+id+"/erp-verification", nil); code != 202 {
			t.Fatalf("verify: %d %v", code, body)
		}
	}
	s.start("worker-1", "worker")
	s.start("worker-2", "worker")
	testenv.Eventually(t, 90*time.Second, "every customer verified", func() bool {
		c, _ := s.db.NewSelect().Model((*store.Customer)(nil)).Where("erp_status = ?", store.ERPVerified).Count(context.Background())
		return c == n
	})
	if m := sim.MaxInFlight(); m > bound || m < 2 {
		t.Fatalf("the ERP saw %d requests at once; the bound is %d (and two workers must have contended)", m, bound)
	}
	code, body := s.do(key, "GET", "/v1/customers/"+ids[0], nil)
	if code != 200 || body["erp"].(map[string]any)["status"] != "verified" || len(body["features"].([]any)) != 4 {
		t.Fatalf("customer: %v", body)
	}
	// Every request named the tenant, for an ERP shared by several vendors.
	tenant, err := store.TenantByAPIKey(context.Background(), s.db, key)
	if err != nil {
		t.Fatal(err)
	}
	if seen := sim.TenantRequests(); len(seen) != 1 || seen[tenant.ID.String()] != sim.Requests() {
		t.Fatalf("the ERP saw tenants %v in %d requests, want %s on each", seen, sim.Requests(), tenant.ID)
	}
}
