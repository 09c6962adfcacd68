package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

func TestDispatchAndSweep(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storetest.NewPostgres(t)
	r := testenv.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	d := &outbox.Dispatcher{DB: db, Client: client, Inspector: insp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }, EnqueueTimeout: 500 * time.Millisecond}

	job := jobs.NewInviteSend(uuid.NewString(), []string{uuid.NewString()})
	if err := outbox.Record(ctx, db, uuid.Nil, now, job); err != nil {
		t.Fatal(err)
	}
	// Redis is down when the API dispatches: nothing is lost, the row waits.
	r.Stop()
	if failed := d.Dispatch(ctx, job); failed != 1 {
		t.Fatalf("dispatch with Redis down: %d failed, want 1", failed)
	}
	if _, err := d.Sweep(ctx, outbox.SweepOptions{}); err == nil {
		t.Fatal("sweep with Redis down reported success")
	}
	r.Start()
	res, err := d.Sweep(ctx, outbox.SweepOptions{Stale: time.Hour})
	if err != nil || res.Enqueued != 1 {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	info, err := insp.GetTaskInfo(jobs.QueueCritical, job.ID)
	if err != nil || info.Type != jobs.TypeInviteSend {
		t.Fatalf("task in Redis: %v %v", info, err)
	}
	// Sweeping again, or dispatching again, does not duplicate the task.
	if res, err := d.Sweep(ctx, outbox.SweepOptions{}); err != nil || res.Enqueued+res.Recovered != 0 {
		t.Fatalf("second sweep: %+v %v", res, err)
	}
	if failed := d.Dispatch(ctx, job); failed != 0 {
		t.Fatal("dispatching an enqueued task again failed")
	}
	if n, _ := insp.GetQueueInfo(jobs.QueueCritical); n.Size != 1 {
		t.Fatalf("queue holds %d tasks, want 1", n.Size)
	}
	// Redis loses everything (a restart without persistence): the sweep
	// finds the unfinished task missing and enqueues it again.
	r.Stop()
	r.Start()
	// A fresh client, as after a process restart: asynq's client remembers
	// which queues it registered and would not register them again.
	d.Client = asynq.NewClient(opt)
	defer d.Client.Close()
	res, err = d.Sweep(ctx, outbox.SweepOptions{})
	if err != nil || res.Recovered != 1 {
		t.Fatalf("sweep after Redis lost the task: %+v %v", res, err)
	}
	if _, err := insp.GetTaskInfo(jobs.QueueCritical, job.ID); err != nil {
		t.Fatalf("task not back in Redis: %v", err)
	}
	// Once the worker records completion the sweep stops watching it.
	if err := store.MarkCompleted(ctx, db, job.ID, now); err != nil {
		t.Fatal(err)
	}
	if err := insp.DeleteTask(jobs.QueueCritical, job.ID); err != nil {
		t.Fatal(err)
	}
	if res, err := d.Sweep(ctx, outbox.SweepOptions{}); err != nil || res.Recovered != 0 {
		t.Fatalf("sweep after completion: %+v %v", res, err)
	}
	if _, err := insp.GetTaskInfo(jobs.QueueCritical, job.ID); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Fatalf("a completed task was enqueued again: %v", err)
	}
}

// Redis lost its data and a long-running client enqueued again: the task is
// there, but its queue is not listed (asynq's client lists a queue once per
// process). The sweep says so once per Stale instead of "recovering" the
// task at every sweep.
func TestSweepFindsATaskWhoseQueueIsNotListed(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := storetest.NewPostgres(t)
	r := testenv.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	d := &outbox.Dispatcher{DB: db, Client: client, Inspector: insp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return now }}
	job := jobs.NewInviteSend(uuid.NewString(), []string{uuid.NewString()})
	if err := outbox.Record(ctx, db, uuid.Nil, now, job); err != nil {
		t.Fatal(err)
	}
	if failed := d.Dispatch(ctx, job); failed != 0 {
		t.Fatal("dispatch failed")
	}
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer rc.Close()
	if err := rc.SRem(ctx, "asynq:queues", jobs.QueueCritical).Err(); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	o := outbox.SweepOptions{Stale: time.Minute}
	if res, err := d.Sweep(ctx, o); err != nil || res.Unlisted != 1 || res.Recovered != 0 {
		t.Fatalf("sweep: %+v %v, want the task found unlisted, not recovered", res, err)
	}
	if res, err := d.Sweep(ctx, o); err != nil || res.Unlisted+res.Recovered != 0 {
		t.Fatalf("second sweep within Stale: %+v %v", res, err)
	}
}

// sweeper is a dispatcher on a test's own Redis and Postgres schema, with an
// asynq server whose handlers the test supplies.
type sweeper struct {
	d    *outbox.Dispatcher
	db   *bun.DB
	insp *asynq.Inspector
	opt  asynq.RedisClientOpt
}

func newSweeper(t *testing.T) *sweeper {
	t.Helper()
	db := storetest.NewPostgres(t)
	r := testenv.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })
	return &sweeper{
		d:  &outbox.Dispatcher{DB: db, Client: client, Inspector: insp, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), EnqueueTimeout: time.Second},
		db: db, insp: insp, opt: opt,
	}
}

// serve runs an asynq server with these handlers until the test ends.
func (s *sweeper) serve(t *testing.T, handlers map[string]asynq.HandlerFunc) {
	t.Helper()
	srv := asynq.NewServer(s.opt, asynq.Config{
		Concurrency: 2, Queues: jobs.QueueWeights, TaskCheckInterval: 20 * time.Millisecond,
		Logger: quietAsynq{}, ShutdownTimeout: time.Second,
	})
	mux := asynq.NewServeMux()
	for typ, h := range handlers {
		mux.HandleFunc(typ, h)
	}
	if err := srv.Start(mux); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
}

// record commits a job to the outbox and enqueues it with these options
// added to the job's own (later options win).
func (s *sweeper) record(t *testing.T, job jobs.Job, opts ...asynq.Option) {
	t.Helper()
	ctx := context.Background()
	if err := outbox.Record(ctx, s.db, uuid.Nil, time.Now(), job); err != nil {
		t.Fatal(err)
	}
	task, err := jobs.Build(job.Type, job.ID, job.Payload)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.d.Client.Enqueue(task, opts...); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkEnqueued(ctx, s.db, []string{job.ID}, time.Now()); err != nil {
		t.Fatal(err)
	}
}

func (s *sweeper) sweep(t *testing.T) outbox.SweepResult {
	t.Helper()
	r, err := s.d.Sweep(context.Background(), outbox.SweepOptions{})
	if err != nil {
		t.Fatalf("sweep: %+v %v", r, err)
	}
	return r
}

func (s *sweeper) state(t *testing.T, job jobs.Job) asynq.TaskState {
	t.Helper()
	info, err := s.insp.GetTaskInfo(job.Queue(), job.ID)
	if err != nil {
		t.Fatal(err)
	}
	return info.State
}

func (s *sweeper) completed(t *testing.T, job jobs.Job) bool {
	t.Helper()
	var row store.OutboxTask
	if err := s.db.NewSelect().Model(&row).Where("task_id = ?", job.ID).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	return !row.CompletedAt.IsZero()
}

// TestSweepRunsArchivedWorkAgain: a task archived while its work is
// unfinished (its outbox row not completed) goes back to pending under its
// own id; the sweep leaves it alone once it is pending, and lets it be once
// its handler has marked the work done.
func TestSweepRunsArchivedWorkAgain(t *testing.T) {
	t.Parallel()
	s := newSweeper(t)
	job := jobs.NewInviteSend(uuid.NewString(), []string{uuid.NewString()})
	s.record(t, job)
	// An operator archives the pending task on the dashboard.
	if err := s.insp.ArchiveTask(job.Queue(), job.ID); err != nil {
		t.Fatal(err)
	}
	if r := s.sweep(t); r.Rerun != 1 || r.Abandoned+r.Stuck+r.Recovered != 0 {
		t.Fatalf("sweep: %+v, want the archived task run again", r)
	}
	if st := s.state(t, job); st != asynq.TaskStatePending {
		t.Fatalf("task %s after the sweep, want pending", st)
	}
	if s.completed(t, job) {
		t.Fatal("the sweep marked unfinished work completed")
	}
	if r := s.sweep(t); r.Rerun+r.Recovered+r.Abandoned+r.Stuck != 0 {
		t.Fatalf("second sweep: %+v, want nothing to do", r)
	}

	// The handler runs it and marks the work done, as every handler does.
	var runs atomic.Int32
	s.serve(t, map[string]asynq.HandlerFunc{jobs.TypeInviteSend: func(ctx context.Context, _ *asynq.Task) error {
		runs.Add(1)
		id, _ := asynq.GetTaskID(ctx)
		return store.MarkCompleted(ctx, s.db, id, time.Now())
	}})
	testenv.Eventually(t, 20*time.Second, "the task to run and complete", func() bool {
		return s.state(t, job) == asynq.TaskStateCompleted && s.completed(t, job)
	})
	if r := s.sweep(t); r.Rerun+r.Recovered+r.Abandoned+r.Stuck != 0 {
		t.Fatalf("sweep after completion: %+v", r)
	}
	if n := runs.Load(); n != 1 {
		t.Fatalf("the task ran %d times, want 1", n)
	}
}

// TestSweepLeavesArchivedTasksThatGaveUp: a task archived after its handler
// recorded the outcome and gave up stays archived: its row is completed by
// the handler, and when that mark was lost the handler's SkipRetry says
// running it again cannot help. A handler that gives up without recording
// anything (a payload it cannot read) is not run again either.
func TestSweepLeavesArchivedTasksThatGaveUp(t *testing.T) {
	t.Parallel()
	s := newSweeper(t)
	var runs atomic.Int32
	s.serve(t, map[string]asynq.HandlerFunc{
		jobs.TypeInviteSend: func(ctx context.Context, _ *asynq.Task) error {
			runs.Add(1)
			id, _ := asynq.GetTaskID(ctx)
			// As giveUp does: the failure recorded, the row completed.
			if err := store.MarkCompleted(ctx, s.db, id, time.Now()); err != nil {
				return err
			}
			return fmt.Errorf("gave up after retries: SendGrid 500: %w", asynq.SkipRetry)
		},
		jobs.TypeERPVerify: func(ctx context.Context, _ *asynq.Task) error {
			runs.Add(1)
			return fmt.Errorf("erp:verify: bad customer id: %w", asynq.SkipRetry)
		},
	})
	recorded := jobs.NewInviteSend(uuid.NewString(), []string{uuid.NewString()})
	unreadable := jobs.NewERPVerify(uuid.NewString(), "not-a-uuid", "api", "k1")
	// Its retries used up: this first attempt is its last.
	s.record(t, recorded, asynq.MaxRetry(0))
	s.record(t, unreadable)
	testenv.Eventually(t, 20*time.Second, "both tasks archived", func() bool {
		return s.state(t, recorded) == asynq.TaskStateArchived && s.state(t, unreadable) == asynq.TaskStateArchived
	})
	if r := s.sweep(t); r.Rerun+r.Stuck != 0 || r.Abandoned != 1 {
		t.Fatalf("sweep: %+v, want only the unreadable task abandoned", r)
	}
	if !s.completed(t, unreadable) {
		t.Fatal("the abandoned task is still watched")
	}
	// The handler's completion mark lost (the database blinked): still not
	// run again.
	if _, err := s.db.NewUpdate().Model((*store.OutboxTask)(nil)).Set("completed_at = NULL").Where("task_id = ?", recorded.ID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r := s.sweep(t); r.Rerun+r.Stuck != 0 || r.Abandoned != 1 {
		t.Fatalf("sweep: %+v, want the recorded task left archived", r)
	}
	for _, j := range []jobs.Job{recorded, unreadable} {
		if st := s.state(t, j); st != asynq.TaskStateArchived {
			t.Errorf("%s is %s, want archived", j.Type, st)
		}
	}
	if n := runs.Load(); n != 2 {
		t.Fatalf("%d runs, want one each", n)
	}
}

// TestSweepRerunsADyingTaskABoundedNumberOfTimes: a task whose every attempt
// ends without recording anything (here: an error on its last attempt, as a
// worker killed mid-task would be archived by asynq) is run again
// DefaultMaxReruns times, then left archived and unfinished for an
// operator: still in the outbox backlog, not run forever.
func TestSweepRerunsADyingTaskABoundedNumberOfTimes(t *testing.T) {
	t.Parallel()
	s := newSweeper(t)
	var runs atomic.Int32
	s.serve(t, map[string]asynq.HandlerFunc{jobs.TypeImportProcess: func(context.Context, *asynq.Task) error {
		runs.Add(1)
		return errors.New("the worker died")
	}})
	job := jobs.NewImportProcess(uuid.NewString(), uuid.NewString())
	s.record(t, job, asynq.MaxRetry(0))
	for i := 1; i <= outbox.DefaultMaxReruns; i++ {
		testenv.Eventually(t, 20*time.Second, fmt.Sprintf("attempt %d archived", i), func() bool {
			return runs.Load() == int32(i) && s.state(t, job) == asynq.TaskStateArchived
		})
		if r := s.sweep(t); r.Rerun != 1 || r.Stuck+r.Abandoned != 0 {
			t.Fatalf("sweep %d: %+v, want a rerun", i, r)
		}
	}
	testenv.Eventually(t, 20*time.Second, "the last rerun archived", func() bool {
		return runs.Load() == int32(outbox.DefaultMaxReruns+1) && s.state(t, job) == asynq.TaskStateArchived
	})
	for range 2 {
		if r := s.sweep(t); r.Rerun+r.Abandoned != 0 || r.Stuck != 1 {
			t.Fatalf("sweep after the reruns: %+v, want it stuck", r)
		}
	}
	if s.state(t, job) != asynq.TaskStateArchived || s.completed(t, job) {
		t.Fatal("the stuck task must stay archived and unfinished")
	}
	if _, unfinished, _, err := store.OutboxBacklog(context.Background(), s.db); err != nil || unfinished != 1 {
		t.Fatalf("outbox backlog: %d unfinished (%v), want the stuck task", unfinished, err)
	}
	if n := runs.Load(); n != int32(outbox.DefaultMaxReruns+1) {
		t.Fatalf("%d runs, want %d", n, outbox.DefaultMaxReruns+1)
	}
}

type quietAsynq struct{}

func (quietAsynq) Debug(...any)      {}
func (quietAsynq) Info(...any)       {}
func (quietAsynq) Warn(...any)       {}
func (quietAsynq) Error(...any)      {}
func (quietAsynq) Fatal(args ...any) { panic(fmt.Sprint(args...)) }
