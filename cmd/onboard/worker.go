package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/asynqslog"
	"github.com/onboard-dev/onboard/internal/config"
	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/ratelimit"
	"github.com/onboard-dev/onboard/internal/semaphore"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/workers"
)

// erpTimeout bounds one ERP lookup.
const erpTimeout = 15 * time.Second

func runWorker(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "worker", "Runs the asynq worker pool on the critical, default and bulk queues.\nOn SIGTERM it stops taking tasks, lets running ones finish for\nSHUTDOWN_TIMEOUT and hands the rest back to Redis.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return err
	}
	// Checked before connecting: a worker that cannot send is a
	// configuration error, whatever the database says.
	if err := cfg.RequireMail(); err != nil {
		return err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return err
	}
	defer db.Close()
	warnIfNotMigrated(ctx, env, db)
	removeStaleSpools(env)
	dispatcher, closeDispatcher := newDispatcher(cfg, db, env)
	defer closeDispatcher()
	mailer := mail.NewSendGrid(cfg.SendGridAPIKey, cfg.SendGridAPIURL, &http.Client{Timeout: 30 * time.Second})
	m := metrics.New()
	stop, err := startWorker(ctx, env, cfg, db, dispatcher, mailer, m)
	if err != nil {
		return err
	}
	defer stop()
	if cfg.MetricsAddr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", cfg.MetricsAddr)
	if err != nil {
		return fmt.Errorf("worker: METRICS_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler(cfg.MetricsToken))
	return serveHTTP(ctx, env, "metrics", ln, mux, cfg.ShutdownTimeout)
}

// startWorker starts the worker pool (the same in `worker` and `dev`); stop
// finishes the running tasks for SHUTDOWN_TIMEOUT and hands the rest back.
func startWorker(ctx context.Context, env *environment, cfg *config.Config, db *bun.DB, dispatcher *outbox.Dispatcher, mailer workers.Mailer, m *metrics.Metrics) (stop func(), err error) {
	rc, err := redisClient(cfg)
	if err != nil {
		return nil, err
	}
	deps := &workers.Deps{
		DB: db,
		// A 429 pauses every worker (the pause is in Redis); the timing
		// is of real requests only.
		Mailer:           &ratelimit.SharedBackoff{Next: m.Mailer(mailer), Client: rc},
		Metrics:          m,
		Dispatcher:       dispatcher,
		Log:              env.log,
		PublicURL:        cfg.PublicURL,
		From:             mail.Address{Email: cfg.MailFrom, Name: cfg.MailFromName},
		SendLease:        cfg.DeliveryLease,
		ImportUnzipLimit: cfg.ImportUnzipMaxBytes,
		ERPStaleAfter:    cfg.ERPStaleAfter,
		ResendDailyCap:   cfg.ResendDailyCap,
	}
	closeRedis := func() { rc.Close() }
	if cfg.ERPURL != "" {
		deps.ERP = m.ERP(erp.NewREST(cfg.ERPURL, cfg.ERPToken, &http.Client{Timeout: erpTimeout}))
		deps.ERPLimiter = &semaphore.Semaphore{Client: rc, Key: "onboard:erp:slots", Limit: cfg.ERPConcurrency, Lease: 2 * erpTimeout}
	}
	srv := asynq.NewServer(cfg.Redis, asynq.Config{
		Concurrency: cfg.WorkerConcurrency,
		Queues:      jobs.QueueWeights,
		// asynq looks for new work once a second when every queue is empty:
		// an invitation or an upload would wait up to that long before a
		// worker noticed it. A look costs Redis one small script call.
		TaskCheckInterval: 200 * time.Millisecond,
		RetryDelayFunc:    workers.RetryDelay,
		// A send SendGrid refused as a whole (revoked key, unverified
		// sender) waits without using up the task's retries.
		IsFailure:       workers.IsFailure,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Logger:          asynqslog.Logger{L: env.log},
		BaseContext:     func() context.Context { return context.WithoutCancel(ctx) },
	})
	mux := asynq.NewServeMux()
	workers.Register(mux, deps)
	if err := srv.Start(mux); err != nil {
		closeRedis()
		return nil, err
	}
	env.log.Info("worker started", "concurrency", cfg.WorkerConcurrency, "queues", jobs.QueueWeights)
	return func() {
		env.log.Info("worker stopping: finishing running tasks", "timeout", cfg.ShutdownTimeout)
		srv.Shutdown()
		closeRedis()
	}, nil
}
