package workers_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/ratelimit"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
	"github.com/onboard-dev/onboard/workers"
)

// The same, through a real asynq server configured as `onboard worker` is
// (IsFailure, RetryDelay): while SendGrid refuses the sender, the task
// retries without using up its retries, a task already on its last attempt
// hands its emails to a new task instead of being archived with them, and
// once the sender is verified every email goes out exactly once, after
// few requests.
func TestRefusedSendsWaitInTheQueue(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	r, client, insp := f.withQueue(t)
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rc.Close() })
	// Short pauses, so the test does not wait minutes.
	f.deps.Mailer = &ratelimit.SharedBackoff{Next: f.deps.Mailer, Client: rc,
		RefusedPause: 50 * time.Millisecond, RefusedPauseMax: 200 * time.Millisecond, ProbeWait: 20 * time.Millisecond}
	f.fake.SetVerifiedSenders("someone-else@vendor.example.com")

	var first, last []*store.Delivery
	for i := range 10 {
		first = append(first, f.pendingDelivery(t, "A"+string(rune('a'+i)), "a"+string(rune('a'+i))+"@example.com", store.CustomerActive))
	}
	for i := range 5 {
		last = append(last, f.pendingDelivery(t, "B"+string(rune('a'+i)), "b"+string(rune('a'+i))+"@example.com", store.CustomerActive))
	}
	ids := func(ds []*store.Delivery) []string {
		out := make([]string, len(ds))
		for i, d := range ds {
			out[i] = d.ID.String()
		}
		return out
	}
	ctx := context.Background()
	job := jobs.NewInviteSend(f.tenant.ID.String(), ids(first))
	if err := outbox.Record(ctx, f.db, f.tenant.ID, time.Now(), job); err != nil {
		t.Fatal(err)
	}
	f.deps.Dispatcher.Dispatch(ctx, job)
	// A task whose retries are all used up: its first attempt is its last.
	lastJob := jobs.NewInviteSend(f.tenant.ID.String(), ids(last))
	if err := outbox.Record(ctx, f.db, f.tenant.ID, time.Now(), lastJob); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Enqueue(asynq.NewTask(lastJob.Type, lastJob.Payload, asynq.TaskID(lastJob.ID), asynq.Queue(jobs.QueueCritical), asynq.MaxRetry(0))); err != nil {
		t.Fatal(err)
	}

	startWorker(t, f, r.Addr(), 4)

	// Refused for a while: several pauses go by.
	testenv.Eventually(t, 20*time.Second, "SendGrid refuses a few times", func() bool { return f.fake.Requests() >= 4 })
	info, err := insp.GetTaskInfo(jobs.QueueCritical, job.ID)
	if err != nil || info.Retried != 0 || info.State == asynq.TaskStateArchived {
		t.Fatalf("waiting task %+v %v: want its retries not counted", info, err)
	}
	if archived, _ := insp.ListArchivedTasks(jobs.QueueCritical); len(archived) != 0 {
		t.Fatalf("%d tasks archived, the emails with them", len(archived))
	}
	var again []*store.OutboxTask
	if err := f.db.NewSelect().Model(&again).Where("task_id LIKE ?", lastJob.ID+":again-%").Scan(ctx); err != nil || len(again) != 1 {
		t.Fatalf("the last attempt's emails were not handed to a new task: %v %v", again, err)
	}
	for _, d := range append(append([]*store.Delivery{}, first...), last...) {
		if s := f.state(t, d.ID); s.State == store.DeliveryFailed || s.State == store.DeliverySent {
			t.Fatalf("while refused, a delivery is %s", s.State)
		}
	}

	f.fake.SetVerifiedSenders("invites@vendor.example.com")
	testenv.Eventually(t, 20*time.Second, "every email sent after the fix", func() bool {
		for _, d := range append(append([]*store.Delivery{}, first...), last...) {
			if f.state(t, d.ID).State != store.DeliverySent {
				return false
			}
		}
		return true
	})
	seen := map[string]int{}
	for _, m := range f.fake.Messages() {
		seen[m.To]++
	}
	if len(seen) != 15 || len(f.fake.Messages()) != 15 {
		t.Fatalf("%d emails to %d addresses, want 15 once each", len(f.fake.Messages()), len(seen))
	}
	// Few requests: about one per pause, not one per email or per retry.
	if n := f.fake.Requests(); n > 15 {
		t.Errorf("%d requests to SendGrid for 15 emails", n)
	}
	t.Logf("%d requests in all", f.fake.Requests())
}

// startWorker runs an asynq server on addr configured as `onboard worker`
// is (RetryDelay, IsFailure), polling often so tests do not wait, until the
// test ends.
func startWorker(t *testing.T, f *fixture, addr string, concurrency int) {
	t.Helper()
	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: addr}, asynq.Config{
		Concurrency: concurrency, Queues: jobs.QueueWeights, TaskCheckInterval: 20 * time.Millisecond, DelayedTaskCheckInterval: 20 * time.Millisecond,
		RetryDelayFunc: workers.RetryDelay, IsFailure: workers.IsFailure, Logger: asynqQuiet{}, ShutdownTimeout: time.Second,
	})
	mux := asynq.NewServeMux()
	workers.Register(mux, f.deps)
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

type asynqQuiet struct{}

func (asynqQuiet) Debug(...any)      {}
func (asynqQuiet) Info(...any)       {}
func (asynqQuiet) Warn(...any)       {}
func (asynqQuiet) Error(...any)      {}
func (asynqQuiet) Fatal(args ...any) { panic(fmt.Sprint(args...)) }
