package main_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// BenchmarkNightlyResend seeds pending invitations across 10 tenants, runs
// the nightly resend with the real worker binary against the SendGrid fake
// adding 100 ms to every request, and reports emails/s, the total time and
// the worker's peak RSS, with the bare asynq throughput of no-op tasks
// measured in the same run as the baseline.
//
//	BENCH_INVITATIONS=100000 go test -run '^$' -bench NightlyResend -benchtime 1x ./cmd/onboard
func BenchmarkNightlyResend(b *testing.B) {
	total := 100_000
	if v := os.Getenv("BENCH_INVITATIONS"); v != "" {
		total, _ = strconv.Atoi(v)
	}
	const tenants = 10
	for range b.N {
		b.StopTimer()
		s := newSystemB(b, "WORKER_CONCURRENCY=20", "LOG_LEVEL=warn")
		s.sendgrid.SetLatency(100 * time.Millisecond)
		s.run("migrate")
		night := time.Now().UTC()
		seedPending(b, s, tenants, total/tenants, night.Add(-4*24*time.Hour))

		noop := noopThroughput(b, 20_000)

		s.start("worker", "worker")
		ctx := context.Background()
		client := asynq.NewClient(asynq.RedisClientOpt{Addr: s.redis.Addr()})
		defer client.Close()
		d := &outbox.Dispatcher{DB: s.db, Client: client, Log: quietLog()}
		job := jobs.NewScheduled(jobs.TypeInviteResend, night)
		start := time.Now()
		b.StartTimer()
		if err := outbox.Record(ctx, s.db, uuid.Nil, time.Now(), job); err != nil {
			b.Fatal(err)
		}
		d.Dispatch(ctx, job)
		testenv.Eventually(b, 10*time.Minute, "every resend sent", func() bool {
			n, _ := s.db.NewSelect().Model((*store.Delivery)(nil)).Where("state = ?", store.DeliverySent).Count(ctx)
			return int(n) >= total
		})
		elapsed := time.Since(start)
		b.StopTimer()
		rss := peakRSS(b, s.procs["worker"].Process.Pid)
		if n := len(s.sendgrid.Messages()); n != total {
			b.Fatalf("%d emails accepted, want %d", n, total)
		}
		emailsPerSec := float64(total) / elapsed.Seconds()
		b.ReportMetric(emailsPerSec, "emails/s")
		b.ReportMetric(elapsed.Seconds(), "total_s")
		b.ReportMetric(float64(rss)/(1<<20), "worker_peak_rss_MiB")
		b.ReportMetric(noop, "noop_tasks/s")
		b.ReportMetric(emailsPerSec/noop, "emails_per_noop_task")
		b.Logf("%d invitations, %d SendGrid requests: %.0f emails/s in %s; worker peak RSS %.0f MiB; bare asynq %.0f no-op tasks/s; ratio %.2f",
			total, s.sendgrid.Requests(), emailsPerSec, elapsed.Round(time.Millisecond), float64(rss)/(1<<20), noop, emailsPerSec/noop)
	}
}

// seedPending stores perTenant active customers with a pending invitation
// last sent at sentAt, for each of n tenants, in set-based batches.
func seedPending(b *testing.B, s *system, n, perTenant int, sentAt time.Time) {
	ctx := context.Background()
	const batch = 5000
	for ti := range n {
		ten, _, err := store.CreateTenant(ctx, s.db, fmt.Sprint("Tenant ", ti), "", sentAt)
		if err != nil {
			b.Fatal(err)
		}
		for start := 0; start < perTenant; start += batch {
			size := min(batch, perTenant-start)
			cs := make([]*store.Customer, size)
			accts := make([]store.CustomerAccount, size)
			invs := make([]*store.Invitation, size)
			for i := range size {
				k := start + i
				cs[i] = &store.Customer{ID: uuid.Must(uuid.NewV7()), TenantID: ten.ID, CompanyName: fmt.Sprint("Company ", k), Status: store.CustomerActive, ERPStatus: store.ERPUnverified, CreatedAt: sentAt, UpdatedAt: sentAt}
				accts[i] = store.CustomerAccount{TenantID: ten.ID, AccountNumber: fmt.Sprint(k), CustomerID: cs[i].ID}
				email := fmt.Sprintf("contact%d@tenant%d.example.com", k, ti)
				invs[i] = &store.Invitation{ID: uuid.Must(uuid.NewV7()), TenantID: ten.ID, CustomerID: cs[i].ID, Kind: store.KindVendor, Email: email, EmailNormalized: email,
					FirstName: "Pat", LastName: fmt.Sprint(k), Role: store.RoleAdmin, State: store.InvitationPending, DeliveryStatus: store.DeliverySent,
					SendCount: 1, LastSentAt: sentAt, ExpiresAt: sentAt.Add(ten.InviteTTL()), CreatedAt: sentAt, UpdatedAt: sentAt}
			}
			for _, q := range []func() error{
				func() error { _, err := s.db.NewInsert().Model(&cs).Exec(ctx); return err },
				func() error { _, err := s.db.NewInsert().Model(&accts).Exec(ctx); return err },
				func() error { _, err := s.db.NewInsert().Model(&invs).Exec(ctx); return err },
			} {
				if err := q(); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
}

// noopThroughput measures asynq itself: n enqueued no-op tasks processed by
// a server of the worker's concurrency on a Redis of its own.
func noopThroughput(b *testing.B, n int) float64 {
	r := testenv.StartRedis(b)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	defer client.Close()
	for i := range n {
		if _, err := client.Enqueue(asynq.NewTask("noop", nil), asynq.Queue(jobs.QueueDefault), asynq.TaskID(strconv.Itoa(i))); err != nil {
			b.Fatal(err)
		}
	}
	var done atomic.Int64
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: 20, Queues: jobs.QueueWeights, Logger: asynqNop{}})
	start := time.Now()
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { done.Add(1); return nil })); err != nil {
		b.Fatal(err)
	}
	testenv.Eventually(b, 5*time.Minute, "no-op tasks done", func() bool { return done.Load() >= int64(n) })
	elapsed := time.Since(start)
	srv.Shutdown()
	return float64(n) / elapsed.Seconds()
}

type asynqNop struct{}

func (asynqNop) Debug(...any) {}
func (asynqNop) Info(...any)  {}
func (asynqNop) Warn(...any)  {}
func (asynqNop) Error(...any) {}
func (asynqNop) Fatal(...any) {}

// peakRSS reads a process's high-water resident set from /proc.
func peakRSS(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
