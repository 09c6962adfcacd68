package store

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// OutboxTask is a queue task recorded in the same transaction as the state it
// acts on. The API enqueues it right after commit; if Redis was unreachable
// then, or lost the task later, the scheduler's sweep enqueues it again. The
// task id is derived from the work, so a second enqueue of a task that is
// still in Redis is refused by asynq instead of running twice. The table's
// reruns column is the sweep's alone (TakeRerun) and not in the model, so
// that inserts and selects work on a database not yet migrated to it.
type OutboxTask struct {
	bun.BaseModel `bun:"table:outbox,alias:o"`

	TaskID      string        `bun:"task_id,pk"`
	TenantID    uuid.NullUUID `bun:"tenant_id,type:uuid"`
	TaskType    string        `bun:"task_type"`
	Queue       string        `bun:"queue"`
	Payload     []byte        `bun:"payload"`
	CreatedAt   time.Time     `bun:"created_at"`
	EnqueuedAt  time.Time     `bun:"enqueued_at,nullzero"`
	CompletedAt time.Time     `bun:"completed_at,nullzero"`
}

// AddOutbox records tasks to enqueue. A task id already recorded is kept as
// it is (the work it names is the same).
func AddOutbox(ctx context.Context, db bun.IDB, tasks ...*OutboxTask) error {
	if len(tasks) == 0 {
		return nil
	}
	if _, err := db.NewInsert().Model(&tasks).On("CONFLICT (task_id) DO NOTHING").Exec(ctx); err != nil {
		return fmt.Errorf("add outbox: %w", err)
	}
	return nil
}

// GetOutboxTask loads the record of one task.
func GetOutboxTask(ctx context.Context, db bun.IDB, taskID string) (*OutboxTask, error) {
	ot := new(OutboxTask)
	if err := db.NewSelect().Model(ot).Where("task_id = ?", taskID).Scan(ctx); err != nil {
		return nil, fmt.Errorf("outbox task %s: %w", taskID, notFound(err))
	}
	return ot, nil
}

// MarkEnqueued records that Redis holds the tasks.
func MarkEnqueued(ctx context.Context, db bun.IDB, taskIDs []string, now time.Time) error {
	if len(taskIDs) == 0 {
		return nil
	}
	_, err := db.NewUpdate().Model((*OutboxTask)(nil)).ModelTableExpr("outbox").
		Set("enqueued_at = ?", now.UTC()).
		Where("task_id IN (?)", bun.In(taskIDs)).Exec(ctx)
	if err != nil {
		return fmt.Errorf("mark enqueued: %w", err)
	}
	return nil
}

// MarkCompleted records that the task's work is finished, successfully or
// for good; the sweep stops watching it.
func MarkCompleted(ctx context.Context, db bun.IDB, taskID string, now time.Time) error {
	_, err := db.NewUpdate().Model((*OutboxTask)(nil)).ModelTableExpr("outbox").
		Set("completed_at = ?", now.UTC()).
		Where("task_id = ? AND completed_at IS NULL", taskID).Exec(ctx)
	if err != nil {
		return fmt.Errorf("mark completed: %w", err)
	}
	return nil
}

// TakeRerun records, if the task has been rerun fewer than max times, that
// the sweep is about to move it from archived back to pending: one rerun
// more, and enqueued now (so the sweep looks at it again after its Stale).
// It reports false, changing nothing, when the task had its max reruns.
func TakeRerun(ctx context.Context, db bun.IDB, taskID string, max int, now time.Time) (bool, error) {
	res, err := db.NewUpdate().Model((*OutboxTask)(nil)).ModelTableExpr("outbox").
		Set("reruns = reruns + 1").
		Set("enqueued_at = ?", now.UTC()).
		Where("task_id = ? AND completed_at IS NULL AND reruns < ?", taskID, max).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("take rerun: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("take rerun: %w", err)
	}
	return n == 1, nil
}

// OutboxNotEnqueued returns up to limit tasks recorded at or before `before` and
// never enqueued, oldest first.
func OutboxNotEnqueued(ctx context.Context, db bun.IDB, before time.Time, limit int) ([]*OutboxTask, error) {
	var tasks []*OutboxTask
	err := db.NewSelect().Model(&tasks).
		Where("enqueued_at IS NULL AND created_at <= ?", before.UTC()).
		Order("created_at", "task_id").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox not enqueued: %w", err)
	}
	return tasks, nil
}

// OutboxUnfinished returns a page (keyset on task_id) of tasks enqueued
// before `before` and not completed: candidates for a check against Redis.
func OutboxUnfinished(ctx context.Context, db bun.IDB, before time.Time, afterTaskID string, limit int) ([]*OutboxTask, error) {
	var tasks []*OutboxTask
	err := db.NewSelect().Model(&tasks).
		Where("completed_at IS NULL AND enqueued_at IS NOT NULL AND enqueued_at <= ? AND task_id > ?", before.UTC(), afterTaskID).
		Order("task_id").Limit(int64(limit)).Scan(ctx)
	if err != nil {
		return nil, fmt.Errorf("outbox unfinished: %w", err)
	}
	return tasks, nil
}

// PurgeCompletedOutbox deletes tasks completed before `before`.
func PurgeCompletedOutbox(ctx context.Context, db bun.IDB, before time.Time) (int64, error) {
	res, err := db.NewDelete().Model((*OutboxTask)(nil)).
		Where("completed_at IS NOT NULL AND completed_at < ?", before.UTC()).Exec(ctx)
	if err != nil {
		return 0, fmt.Errorf("purge outbox: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// OutboxBacklog counts unfinished work: recorded and not yet enqueued, and
// enqueued and not finished, with the creation time of the oldest (zero when
// there is none). Both counts read the outbox's partial indexes.
func OutboxBacklog(ctx context.Context, db bun.IDB) (notEnqueued, unfinished int, oldest time.Time, err error) {
	var row struct {
		NotEnqueued int       `bun:"not_enqueued"`
		Unfinished  int       `bun:"unfinished"`
		Oldest      time.Time `bun:"oldest,nullzero"`
	}
	err = db.NewSelect().Model((*OutboxTask)(nil)).
		ColumnExpr("COUNT(*) FILTER (WHERE enqueued_at IS NULL) AS not_enqueued").
		ColumnExpr("COUNT(*) FILTER (WHERE enqueued_at IS NOT NULL) AS unfinished").
		ColumnExpr("MIN(created_at) AS oldest").
		Where("completed_at IS NULL").
		Scan(ctx, &row)
	if err != nil {
		return 0, 0, time.Time{}, fmt.Errorf("outbox backlog: %w", err)
	}
	return row.NotEnqueued, row.Unfinished, row.Oldest, nil
}
