package outbox_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

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
