// Package outbox owns "commit, then enqueue": jobs are recorded in the same
// database transaction as the state they act on, enqueued to asynq right
// after the commit, and swept into Redis again by the scheduler when the
// enqueue did not happen (Redis down at that moment) or Redis lost the task.
// Task ids are derived from the work, so enqueueing twice never runs twice.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// Record stores jobs in the outbox; call it inside the transaction that
// commits the work they act on.
func Record(ctx context.Context, db bun.IDB, tenantID uuid.UUID, now time.Time, js ...jobs.Job) error {
	rows := make([]*store.OutboxTask, len(js))
	for i, j := range js {
		rows[i] = &store.OutboxTask{
			TaskID:    j.ID,
			TenantID:  uuid.NullUUID{UUID: tenantID, Valid: tenantID != uuid.Nil},
			TaskType:  j.Type,
			Queue:     j.Queue(),
			Payload:   j.Payload,
			CreatedAt: now.UTC(),
		}
	}
	return store.AddOutbox(ctx, db, rows...)
}

// Inspector is the part of asynq.Inspector the sweep needs.
type Inspector interface {
	GetTaskInfo(queue, id string) (*asynq.TaskInfo, error)
}

// Dispatcher enqueues recorded jobs.
type Dispatcher struct {
	DB        bun.IDB
	Client    *asynq.Client
	Inspector Inspector
	Log       *slog.Logger
	Now       func() time.Time
	// EnqueueTimeout bounds one enqueue so a request never hangs on a Redis
	// that does not answer; what timed out is left to the sweep.
	EnqueueTimeout time.Duration
}

func (d *Dispatcher) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Dispatch enqueues jobs already committed to the outbox. A failure is not
// the caller's failure: the work is committed and the sweep will enqueue it,
// so Dispatch logs and reports how many it could not enqueue.
func (d *Dispatcher) Dispatch(ctx context.Context, js ...jobs.Job) (failed int) {
	var done []string
	for _, j := range js {
		if err := d.enqueue(ctx, j.Type, j.ID, j.Payload); err != nil {
			failed++
			d.Log.WarnContext(ctx, "enqueue failed; the outbox sweep will retry", "task_type", j.Type, "task_id", j.ID, "err", err)
			continue
		}
		done = append(done, j.ID)
	}
	if err := store.MarkEnqueued(context.WithoutCancel(ctx), d.DB, done, d.now()); err != nil {
		// Harmless: the sweep enqueues again and asynq refuses the duplicate id.
		d.Log.WarnContext(ctx, "mark enqueued failed", "err", err)
	}
	return failed
}

func (d *Dispatcher) enqueue(ctx context.Context, taskType, taskID string, payload []byte) error {
	task, err := jobs.Build(taskType, taskID, payload)
	if err != nil {
		return err
	}
	timeout := d.EnqueueTimeout
	if timeout <= 0 {
		timeout = 3 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, err = d.Client.EnqueueContext(ctx, task)
	if errors.Is(err, asynq.ErrTaskIDConflict) {
		return nil // Redis already holds this work
	}
	return err
}

// SweepResult counts what one sweep did.
type SweepResult struct {
	Enqueued  int // recorded, never enqueued, now enqueued
	Recovered int // enqueued once, lost by Redis, enqueued again
	Abandoned int // archived by asynq after its last retry: marked completed
	Unreached int // still not enqueued (Redis down)
	Purged    int64
}

// SweepOptions tune a sweep.
type SweepOptions struct {
	// Grace leaves young outbox rows to the API's own dispatch.
	Grace time.Duration
	// Stale is how long an enqueued, unfinished task may go before the sweep
	// checks that Redis still holds it. Zero checks all (at `onboard dev`
	// start, when the in-process Redis is new).
	Stale time.Duration
	// KeepCompleted is how long completed rows stay for inspection.
	KeepCompleted time.Duration
	PageSize      int
}

// Sweep enqueues what was committed and not enqueued, re-enqueues what Redis
// lost, and purges old completed rows. It pages through the outbox.
func (d *Dispatcher) Sweep(ctx context.Context, o SweepOptions) (SweepResult, error) {
	var r SweepResult
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	now := d.now()
	for {
		rows, err := store.OutboxNotEnqueued(ctx, d.DB, now.Add(-o.Grace), o.PageSize)
		if err != nil {
			return r, err
		}
		var done []string
		for _, row := range rows {
			if err := d.enqueue(ctx, row.TaskType, row.TaskID, row.Payload); err != nil {
				r.Unreached++
				continue
			}
			done = append(done, row.TaskID)
		}
		if err := store.MarkEnqueued(ctx, d.DB, done, now); err != nil {
			return r, err
		}
		r.Enqueued += len(done)
		if len(rows) < o.PageSize || len(done) == 0 {
			break
		}
	}
	if r.Unreached > 0 {
		return r, fmt.Errorf("outbox sweep: %d tasks could not be enqueued", r.Unreached)
	}

	after := ""
	for d.Inspector != nil {
		rows, err := store.OutboxUnfinished(ctx, d.DB, now.Add(-o.Stale), after, o.PageSize)
		if err != nil {
			return r, err
		}
		for _, row := range rows {
			after = row.TaskID
			info, err := d.Inspector.GetTaskInfo(row.Queue, row.TaskID)
			switch {
			case errors.Is(err, asynq.ErrTaskNotFound), errors.Is(err, asynq.ErrQueueNotFound):
				if err := d.enqueue(ctx, row.TaskType, row.TaskID, row.Payload); err != nil {
					return r, fmt.Errorf("outbox sweep: re-enqueue %s: %w", row.TaskID, err)
				}
				r.Recovered++
			case err != nil:
				return r, fmt.Errorf("outbox sweep: inspect %s: %w", row.TaskID, err)
			case info.State == asynq.TaskStateArchived, info.State == asynq.TaskStateCompleted:
				// The handler records its own failure; this only stops watching.
				if err := store.MarkCompleted(ctx, d.DB, row.TaskID, now); err != nil {
					return r, err
				}
				if info.State == asynq.TaskStateArchived {
					r.Abandoned++
				}
			}
		}
		if len(rows) < o.PageSize {
			break
		}
	}

	if o.KeepCompleted > 0 {
		n, err := store.PurgeCompletedOutbox(ctx, d.DB, now.Add(-o.KeepCompleted))
		if err != nil {
			return r, err
		}
		r.Purged = n
	}
	return r, nil
}
