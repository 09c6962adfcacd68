// Package workers owns the asynq handlers: one per task type, each with its
// dependencies passed in. A handler reloads everything from the database
// (payloads carry ids), so a retry or a duplicate enqueue finds the work done
// and does nothing twice.
package workers

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// Mailer sends one email, possibly to many recipients at once.
type Mailer interface {
	Send(ctx context.Context, m mail.Message) (mail.Result, error)
}

// Deps are what the handlers need.
type Deps struct {
	DB         *bun.DB
	Mailer     Mailer
	Dispatcher *outbox.Dispatcher
	Log        *slog.Logger
	Now        func() time.Time
	PublicURL  string       // base of the links in emails
	From       mail.Address // sender of every email
	// SendLease is how long a claimed delivery belongs to the worker that
	// claimed it: longer than a send can take, so a live worker is never
	// overtaken, short enough that a dead worker's emails go out soon after.
	SendLease time.Duration

	ERP        AccountVerifier // nil when no ERP is configured
	ERPLimiter Limiter         // bounds ERP requests across all workers
	// ERPStaleAfter is how old a verification may be before the scheduled
	// run checks the customer again.
	ERPStaleAfter time.Duration

	// ImportUnzipLimit caps an XLSX upload decompressed (0: the importer's
	// default), so that a zip bomb fails its import, not the worker.
	ImportUnzipLimit int64
	// ImportBatchRows is the rows an import commits at a time (0:
	// DefaultImportBatchRows).
	ImportBatchRows int

	// ResendDailyCap is the most emails one invitation gets in 24 hours
	// (0: no cap).
	ResendDailyCap int

	// Metrics counts sends, import rows and tasks (nil: not counted).
	Metrics *metrics.Metrics
}

func (d *Deps) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Register installs every handler on mux.
func Register(mux *asynq.ServeMux, d *Deps) {
	mux.Use(logTasks(d.Log, d.Metrics))
	mux.HandleFunc(jobs.TypeInviteSend, d.handleInviteSend)
	mux.HandleFunc(jobs.TypeInviteResend, d.handleInviteResend)
	mux.HandleFunc(jobs.TypeInviteExpire, d.handleInviteExpire)
	mux.HandleFunc(jobs.TypeERPVerify, d.handleERPVerify)
	mux.HandleFunc(jobs.TypeERPReverify, d.handleERPReverify)
	mux.HandleFunc(jobs.TypeImportProcess, d.handleImportProcess)
	mux.HandleFunc(jobs.TypeImportReport, d.handleImportReport)
}

// IsFailure is the asynq.Config.IsFailure of every worker: a send that
// SendGrid refused as a whole, for a reason no email caused (a revoked key,
// an unverified sender), is not the task's failure, so asynq retries it
// without counting the retry, and the task never runs out of retries (and
// its emails never fail) while the configuration is wrong.
func IsFailure(err error) bool {
	return err != nil && !mail.IsRefused(err)
}

// RetryDelay backs off exponentially from one second to ten minutes, with
// jitter so that a fleet of workers does not retry in step, and honours a
// provider's own retry-after (SendGrid's X-RateLimit-Reset) when it is longer.
// A send refused as a whole waits what the handler or the shared pause
// named (its retries are not counted, so n does not grow).
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	if mail.IsRefused(err) {
		d, ok := mail.RetryAfter(err)
		if !ok {
			d = 30 * time.Second
		}
		return d + time.Duration(rand.Int64N(int64(d/10)+1))
	}
	d := time.Second << min(n, 10)
	if d > 10*time.Minute {
		d = 10 * time.Minute
	}
	d += time.Duration(rand.Int64N(int64(d/2) + 1))
	if after, ok := mail.RetryAfter(err); ok && after > d {
		d = after
	}
	return d
}

// completed records in the outbox that the task's work is finished, so the
// sweep stops watching it.
func (d *Deps) completed(ctx context.Context) {
	id, ok := asynq.GetTaskID(ctx)
	if !ok {
		return
	}
	if err := store.MarkCompleted(context.WithoutCancel(ctx), d.DB, id, d.now()); err != nil {
		// The sweep will find the task completed in Redis and mark it then.
		d.Log.WarnContext(ctx, "mark task completed", "task_id", id, "err", err)
	}
}

// lastAttempt reports whether a failure now archives the task.
func lastAttempt(ctx context.Context) bool {
	n, ok1 := asynq.GetRetryCount(ctx)
	max, ok2 := asynq.GetMaxRetry(ctx)
	return ok1 && ok2 && n >= max
}

func logTasks(log *slog.Logger, m *metrics.Metrics) asynq.MiddlewareFunc {
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			start := time.Now()
			err := next.ProcessTask(ctx, t)
			id, _ := asynq.GetTaskID(ctx)
			retry, _ := asynq.GetRetryCount(ctx)
			attrs := []any{"task_type", t.Type(), "task_id", id, "retry", retry, "duration_ms", time.Since(start).Milliseconds()}
			if tenant := tenantOf(t); tenant != "" {
				attrs = append(attrs, "tenant_id", tenant)
			}
			switch {
			case err == nil:
				log.InfoContext(ctx, "task done", append(attrs, "outcome", "ok")...)
				m.Task(t.Type(), "ok", time.Since(start))
			case errors.Is(err, asynq.SkipRetry):
				log.WarnContext(ctx, "task failed for good", append(attrs, "outcome", "failed", "err", err)...)
				m.Task(t.Type(), "failed", time.Since(start))
			default:
				log.WarnContext(ctx, "task will retry", append(attrs, "outcome", "retry", "err", err)...)
				m.Task(t.Type(), "retry", time.Since(start))
			}
			return err
		})
	}
}

func tenantOf(t *asynq.Task) string {
	var p struct {
		TenantID string `json:"tenant_id"`
	}
	if jobs.Decode(t, &p) != nil {
		return ""
	}
	return p.TenantID
}
