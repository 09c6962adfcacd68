package workers_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
	"github.com/onboard-dev/onboard/workers"
)

func (f *fixture) verify(t *testing.T, c *store.Customer) error {
	t.Helper()
	job := jobs.NewERPVerify(f.tenant.ID.String(), c.ID.String(), "test", "k")
	task, _ := jobs.Build(job.Type, job.ID, job.Payload)
	mux := asynq.NewServeMux()
	workers.Register(mux, f.deps)
	return mux.ProcessTask(context.Background(), task)
}

func TestERPVerifyOutcomes(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	sim := erp.NewSimulator([]erp.Account{{Number: "145722", Name: "Blue Yonder", Status: "active", PriceTier: "gold"}, {Number: "145723", Name: "Blue Yonder East", PriceTier: "gold"}, {Number: "145724"}, {Number: "145725"}})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	f.deps.ERP = erp.NewREST(srv.URL, "", nil)
	ctx := context.Background()
	newCust := func(accounts ...string) *store.Customer {
		c := &store.Customer{TenantID: f.tenant.ID, CompanyName: "C", AccountNumbers: accounts, CreatedAt: t0, UpdatedAt: t0}
		if err := store.InsertCustomer(ctx, f.db, c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	reload := func(c *store.Customer) *store.Customer {
		got, err := store.GetCustomer(ctx, f.db, f.tenant.ID, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	known := newCust("145722", "145723")
	if err := f.verify(t, known); err != nil {
		t.Fatal(err)
	}
	if got := reload(known); got.ERPStatus != store.ERPVerified || got.ERPName != "Blue Yonder" || got.ERPPriceTier != "gold" || !got.ERPCheckedAt.Equal(t0) {
		t.Fatalf("verified: %+v", got)
	}

	unknown := newCust("145724", "999")
	if err := f.verify(t, unknown); err != nil {
		t.Fatalf("not found must not retry: %v", err)
	}
	if got := reload(unknown); got.ERPStatus != store.ERPNotFound || got.ERPError == "" {
		t.Fatalf("not found: %+v", got)
	}

	// Down, then up: the first run asks for a retry and records nothing;
	// the retry verifies.
	flaky := newCust("145725")
	sim.FailNext(503, 1)
	if err := f.verify(t, flaky); err == nil {
		t.Fatal("ERP down: want an error so asynq retries")
	}
	if got := reload(flaky); got.ERPStatus != store.ERPUnverified {
		t.Fatalf("after a transient failure: %s", got.ERPStatus)
	}
	if err := f.verify(t, flaky); err != nil {
		t.Fatal(err)
	}
	if got := reload(flaky); got.ERPStatus != store.ERPVerified {
		t.Fatalf("after the ERP came back: %s", got.ERPStatus)
	}

	// Every lookup named the customer's tenant to the ERP (X-Onboard-Tenant).
	if seen := sim.TenantRequests(); len(seen) != 1 || seen[f.tenant.ID.String()] != sim.Requests() {
		t.Fatalf("the ERP saw tenants %v in %d requests, want %s on each", seen, sim.Requests(), f.tenant.ID)
	}

	// No ERP configured: recorded, no retry.
	f.deps.ERP = nil
	if err := f.verify(t, newCust("1")); err == nil {
		t.Fatal("want a permanent error")
	}
}

// Without an ERP the scheduled re-verification queues nothing: it would
// otherwise mark every active customer "error" every night.
func TestERPReverifyWithoutAnERPDoesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	f.deps.ERP = nil
	ctx := context.Background()
	c := &store.Customer{TenantID: f.tenant.ID, CompanyName: "C", AccountNumbers: []string{"145722"}, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertCustomer(ctx, f.db, c); err != nil {
		t.Fatal(err)
	}
	job := jobs.NewScheduled(jobs.TypeERPReverify, t0)
	task, _ := jobs.Build(job.Type, job.ID, job.Payload)
	mux := asynq.NewServeMux()
	workers.Register(mux, f.deps)
	if err := mux.ProcessTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	if n, err := f.db.NewSelect().TableExpr("outbox").Where("task_type = ?", jobs.TypeERPVerify).Count(ctx); err != nil || n != 0 {
		t.Fatalf("%d erp:verify tasks recorded (%v), want none", n, err)
	}
	if got, _ := store.GetCustomer(ctx, f.db, f.tenant.ID, c.ID); got.ERPStatus != store.ERPUnverified {
		t.Fatalf("customer's ERP status %s", got.ERPStatus)
	}
}

// An erp:verify whose last attempt could not reach the ERP records why on
// the customer, where the tenant reads it, in words that do not name the
// ERP's address; the worker's log has the address. Run by a real asynq
// server, which is what tells a handler it is on its last attempt.
func TestERPVerifyFailureNamesNoAddress(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	var logs testenv.SyncBuffer
	f.deps.Log = slog.New(slog.NewTextHandler(&logs, nil))
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	f.deps.ERP = erp.NewREST(closed.URL, "", nil)
	ctx := context.Background()
	c := &store.Customer{TenantID: f.tenant.ID, CompanyName: "C", AccountNumbers: []string{"145722"}, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertCustomer(ctx, f.db, c); err != nil {
		t.Fatal(err)
	}

	opt := asynq.RedisClientOpt{Addr: testenv.StartRedis(t).Addr()}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	job := jobs.NewERPVerify(f.tenant.ID.String(), c.ID.String(), "test", "k")
	if _, err := client.Enqueue(asynq.NewTask(job.Type, job.Payload, asynq.TaskID(job.ID), asynq.Queue(jobs.QueueDefault), asynq.MaxRetry(0))); err != nil {
		t.Fatal(err)
	}
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: 1, Queues: jobs.QueueWeights, TaskCheckInterval: 20 * time.Millisecond, Logger: asynqQuiet{}, ShutdownTimeout: time.Second})
	mux := asynq.NewServeMux()
	workers.Register(mux, f.deps)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)

	var got *store.Customer
	testenv.Eventually(t, 20*time.Second, "the failure recorded on the customer", func() bool {
		var err error
		got, err = store.GetCustomer(ctx, f.db, f.tenant.ID, c.ID)
		return err == nil && got.ERPStatus == store.ERPError
	})
	address := strings.TrimPrefix(closed.URL, "http://")
	if got.ERPError != "erp: ERP unreachable (connection refused)" || strings.Contains(got.ERPError, address) {
		t.Fatalf("erp.error %q, want the reason without the ERP's address %s", got.ERPError, address)
	}
	if !strings.Contains(logs.String(), address) {
		t.Fatalf("the log does not name the ERP's address:\n%s", logs.String())
	}
}
