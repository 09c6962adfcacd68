// Package outbox owns "commit, then enqueue": jobs are recorded in the same
// database transaction as the state they act on, enqueued to asynq right
// after the commit, and swept into Redis again by the scheduler when the
// enqueue did not happen (Redis down at that moment), when Redis lost the
// task, or when the task was archived with its work unfinished. Task ids
// are derived from the work, so enqueueing twice never runs twice.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	RunTask(queue, id string) error
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
		if err := d.enqueue(ctx, j.Type, j.ID, j.Payload); err != nil && !errors.Is(err, errHeld) {
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
		return errHeld
	}
	return err
}

// errHeld is enqueue's answer when Redis already holds the task under its
// id: for a dispatch, success.
var errHeld = errors.New("redis already holds the task")

// SweepResult counts what one sweep did.
type SweepResult struct {
	Enqueued  int // recorded, never enqueued, now enqueued
	Recovered int // enqueued once, gone from Redis (lost, or deleted on the dashboard), enqueued again
	Unlisted  int // in Redis, but its queue unlisted (Redis lost its data): left as is
	Rerun     int // archived with its work unfinished: moved back to pending
	Stuck     int // archived with its work unfinished after MaxReruns: left to an operator
	Abandoned int // archived after its handler gave up for good (SkipRetry): marked completed
	Unreached int // still not enqueued (Redis down)
	Purged    int64
}

// DefaultMaxReruns is how many times the sweep runs an archived task again
// when SweepOptions.MaxReruns is zero.
const DefaultMaxReruns = 3

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
	// MaxReruns bounds how many times one task is run again after being
	// archived with its work unfinished (0: DefaultMaxReruns).
	MaxReruns int
	PageSize  int
}

// Sweep enqueues what was committed and not enqueued, re-enqueues what Redis
// lost, runs again what was archived with its work unfinished, and purges
// old completed rows. It pages through the outbox.
func (d *Dispatcher) Sweep(ctx context.Context, o SweepOptions) (SweepResult, error) {
	var r SweepResult
	if o.PageSize <= 0 {
		o.PageSize = 500
	}
	if o.MaxReruns <= 0 {
		o.MaxReruns = DefaultMaxReruns
	}
	now := d.now()
	for {
		rows, err := store.OutboxNotEnqueued(ctx, d.DB, now.Add(-o.Grace), o.PageSize)
		if err != nil {
			return r, err
		}
		var done []string
		for _, row := range rows {
			if err := d.enqueue(ctx, row.TaskType, row.TaskID, row.Payload); err != nil && !errors.Is(err, errHeld) {
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
				switch err := d.enqueue(ctx, row.TaskType, row.TaskID, row.Payload); {
				case errors.Is(err, errHeld):
					// The task is there but its queue is not listed: Redis
					// lost its data and came back, and asynq's clients list a
					// queue only once per process. Nothing is lost; the queue
					// is missing from the dashboard and the metrics until the
					// processes restart. Checked again after Stale, not at
					// every sweep.
					if err := store.MarkEnqueued(ctx, d.DB, []string{row.TaskID}, now); err != nil {
						return r, err
					}
					r.Unlisted++
					d.Log.WarnContext(ctx, "outbox sweep: Redis holds a task whose queue it does not list (did Redis lose its data?); restart the api, worker and scheduler so the queue shows on the dashboard and in the metrics",
						"task_id", row.TaskID, "queue", row.Queue)
				case err != nil:
					return r, fmt.Errorf("outbox sweep: re-enqueue %s: %w", row.TaskID, err)
				default:
					r.Recovered++
				}
			case err != nil:
				return r, fmt.Errorf("outbox sweep: inspect %s: %w", row.TaskID, err)
			case info.State == asynq.TaskStateCompleted:
				// The handler's own mark was lost; this only stops watching.
				if err := store.MarkCompleted(ctx, d.DB, row.TaskID, now); err != nil {
					return r, err
				}
			case info.State == asynq.TaskStateArchived:
				if err := d.archived(ctx, row, info, o.MaxReruns, now, &r); err != nil {
					return r, err
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

// archived settles an archived task whose outbox row is unfinished.
//
// Every handler marks its task's row completed when it records the outcome
// of the work, done or failed for good (a failed delivery, a failed import,
// an ERP error), before it returns. So an unfinished row means the database
// holds no outcome: the task was archived by hand on the dashboard while it
// was pending, scheduled or waiting for a retry, or asynq archived it after a
// last attempt that recorded nothing (the database unreachable, the worker
// killed). Either way the work is owed: the task goes back to pending under
// its own id (asynq keeps its payload and retry count), and its handler,
// which reloads everything, does what is left and nothing twice. Archiving
// is therefore no way to stop work; revoking an invitation is (the send
// then finds nothing to send and records that).
//
// Two exceptions keep a task archived. A handler that gave up with
// asynq.SkipRetry (a payload it cannot read) would give up again: the row
// is marked completed and the task counted as abandoned. And a task is run
// again at most maxReruns times, so a task whose every attempt dies (a file
// that kills the worker) is not run forever: after that it stays archived
// with its row unfinished, which keeps it in the outbox backlog metric and
// in the sweep's log (every Stale) until an operator, once the cause is
// fixed or the invitation revoked, runs it from the dashboard: its handler
// then records the outcome.
func (d *Dispatcher) archived(ctx context.Context, row *store.OutboxTask, info *asynq.TaskInfo, maxReruns int, now time.Time, r *SweepResult) error {
	if strings.Contains(info.LastErr, asynq.SkipRetry.Error()) {
		if err := store.MarkCompleted(ctx, d.DB, row.TaskID, now); err != nil {
			return err
		}
		r.Abandoned++
		d.Log.WarnContext(ctx, "outbox sweep: an archived task's handler gave up for good; left archived",
			"task_type", row.TaskType, "task_id", row.TaskID, "last_error", info.LastErr)
		return nil
	}
	ok, err := store.TakeRerun(ctx, d.DB, row.TaskID, maxReruns, now)
	if err != nil {
		return err
	}
	if !ok {
		// Looked at again after the sweep's Stale, not at every sweep.
		if err := store.MarkEnqueued(ctx, d.DB, []string{row.TaskID}, now); err != nil {
			return err
		}
		r.Stuck++
		d.Log.ErrorContext(ctx, "outbox sweep: an archived task's work is unfinished and it was run again the most times; left archived for an operator: run it from the dashboard once the cause is fixed",
			"task_type", row.TaskType, "task_id", row.TaskID, "queue", row.Queue, "reruns", maxReruns, "retried", info.Retried, "last_error", info.LastErr)
		return nil
	}
	if err := d.Inspector.RunTask(row.Queue, row.TaskID); err != nil {
		// Run or deleted on the dashboard meanwhile: not archived any more,
		// and what is gone the next sweep enqueues again.
		if cur, ierr := d.Inspector.GetTaskInfo(row.Queue, row.TaskID); errors.Is(ierr, asynq.ErrTaskNotFound) || (ierr == nil && cur.State != asynq.TaskStateArchived) {
			return nil
		}
		return fmt.Errorf("outbox sweep: run archived %s again: %w", row.TaskID, err)
	}
	r.Rerun++
	d.Log.InfoContext(ctx, "outbox sweep: an archived task's work is unfinished; running it again",
		"task_type", row.TaskType, "task_id", row.TaskID, "retried", info.Retried, "max_retry", info.MaxRetry, "last_error", info.LastErr)
	return nil
}
