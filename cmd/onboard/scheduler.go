package main

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/robfig/cron/v3"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/config"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
)

func runScheduler(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "scheduler", "Runs the cron schedules: the nightly resend (RESEND_SCHEDULE), the expiry\nsweep (EXPIRY_SCHEDULE), ERP re-verification (ERP_REVERIFY_SCHEDULE) and the\noutbox sweep (OUTBOX_SWEEP_SCHEDULE).\nAny number of schedulers may run: each scheduled run is recorded under a\ntask id naming its slot, so it is enqueued once, and the outbox sweep is\nidempotent.")
	cfg, db, err := setup(ctx, env, fs, args)
	if err != nil {
		return err
	}
	defer db.Close()
	warnIfNotMigrated(ctx, env, db)
	dispatcher, closeDispatcher := newDispatcher(cfg, db, env)
	defer closeDispatcher()
	stop, err := startScheduler(ctx, env, cfg, db, dispatcher)
	if err != nil {
		return err
	}
	<-ctx.Done()
	stop()
	return nil
}

// startScheduler starts the cron schedules (the same in `scheduler` and
// `dev`); stop waits for a running job to finish.
func startScheduler(ctx context.Context, env *environment, cfg *config.Config, db *bun.DB, dispatcher *outbox.Dispatcher) (stop func(), err error) {
	c := cron.New(cron.WithParser(config.CronParser), cron.WithLocation(time.UTC),
		cron.WithChain(cron.SkipIfStillRunning(cron.DiscardLogger)))

	// A scheduled run goes through the outbox like any other work: recorded
	// under its slot's task id (a second scheduler's record of the same slot
	// is a no-op), then enqueued; if Redis is down at the slot, the sweep
	// enqueues it later instead of the run being lost.
	scheduled := func(taskType, spec string) error {
		var id cron.EntryID
		id, err := c.AddFunc(spec, func() {
			entry := c.Entry(id)
			slot := entry.Prev // the tick this run stands for, the same in every scheduler
			job := jobs.NewScheduled(taskType, slot)
			if err := recordSlot(ctx, env, db, job, entry.Next); err != nil {
				if ctx.Err() != nil {
					return // shutting down: a second scheduler, if one runs, records the slot
				}
				env.log.Error("scheduled run not recorded; this slot is skipped", "task_type", taskType, "slot", slot, "err", err)
				return
			}
			if dispatcher.Dispatch(ctx, job) > 0 {
				env.log.Warn("scheduled run recorded; the outbox sweep will enqueue it", "task_type", taskType, "task_id", job.ID)
				return
			}
			env.log.Info("scheduled run enqueued", "task_type", taskType, "task_id", job.ID)
		})
		return err
	}
	if err := scheduled(jobs.TypeInviteResend, cfg.ResendSchedule); err != nil {
		return nil, err
	}
	if err := scheduled(jobs.TypeInviteExpire, cfg.ExpirySchedule); err != nil {
		return nil, err
	}
	if err := scheduled(jobs.TypeERPReverify, cfg.ERPReverifySchedule); err != nil {
		return nil, err
	}
	if _, err := c.AddFunc(cfg.OutboxSweepSchedule, func() {
		// A deadline, so that a database that stops answering shows in the
		// log instead of holding the sweep (and, skipped while it runs,
		// every later one) in silence; the next sweep goes on from there.
		ctx, cancel := context.WithTimeout(ctx, sweepTimeout)
		defer cancel()
		r, err := dispatcher.Sweep(ctx, outbox.SweepOptions{Grace: cfg.OutboxGrace, Stale: cfg.OutboxStale, KeepCompleted: 7 * 24 * time.Hour})
		if err != nil {
			env.log.Warn("outbox sweep", "err", err, "enqueued", r.Enqueued, "recovered", r.Recovered, "rerun", r.Rerun)
			return
		}
		if r.Enqueued+r.Recovered+r.Unlisted+r.Rerun+r.Stuck+r.Abandoned > 0 {
			env.log.Info("outbox sweep", "enqueued", r.Enqueued, "recovered", r.Recovered, "unlisted", r.Unlisted, "rerun", r.Rerun, "stuck", r.Stuck, "abandoned", r.Abandoned, "purged", r.Purged)
		}
	}); err != nil {
		return nil, err
	}
	c.Start()
	env.log.Info("scheduler started", "resend", cfg.ResendSchedule, "expiry", cfg.ExpirySchedule, "erp_reverify", cfg.ERPReverifySchedule, "outbox_sweep", cfg.OutboxSweepSchedule)
	return func() { <-c.Stop().Done() }, nil
}

// sweepTimeout bounds one outbox sweep.
const sweepTimeout = 5 * time.Minute

// recordSlot records a scheduled run in the outbox, each attempt under a
// deadline: a database that is down or silent at the slot is tried again,
// with backoff and a warning each time, until it answers or the entry's
// next slot comes (which stands for the same work), so that a short outage
// at 02:00 delays the night's run instead of skipping it.
func recordSlot(ctx context.Context, env *environment, db *bun.DB, job jobs.Job, next time.Time) error {
	wait := time.Second
	for {
		attempt, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := outbox.Record(attempt, db, uuid.Nil, time.Now(), job)
		cancel()
		if err == nil {
			return nil
		}
		if !next.IsZero() && time.Now().Add(wait).After(next) {
			return err
		}
		env.log.Warn("record scheduled run; trying again", "task_id", job.ID, "in", wait.String(), "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}
