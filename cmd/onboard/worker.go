package main

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/asynqslog"
	"github.com/onboard-dev/onboard/internal/config"
	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/outbox"
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
	dispatcher, closeDispatcher := newDispatcher(cfg, db, env)
	defer closeDispatcher()
	mailer := mail.NewSendGrid(cfg.SendGridAPIKey, cfg.SendGridAPIURL, &http.Client{Timeout: 30 * time.Second})
	stop, err := startWorker(ctx, env, cfg, db, dispatcher, mailer)
	if err != nil {
		return err
	}
	<-ctx.Done()
	stop()
	return nil
}

// startWorker starts the worker pool (the same in `worker` and `dev`); stop
// finishes the running tasks for SHUTDOWN_TIMEOUT and hands the rest back.
func startWorker(ctx context.Context, env *environment, cfg *config.Config, db *bun.DB, dispatcher *outbox.Dispatcher, mailer workers.Mailer) (stop func(), err error) {
	deps := &workers.Deps{
		DB:               db,
		Mailer:           mailer,
		Dispatcher:       dispatcher,
		Log:              env.log,
		PublicURL:        cfg.PublicURL,
		From:             mail.Address{Email: cfg.MailFrom, Name: cfg.MailFromName},
		SendLease:        cfg.DeliveryLease,
		ImportUnzipLimit: cfg.ImportUnzipMaxBytes,
		ERPStaleAfter:    cfg.ERPStaleAfter,
	}
	closeRedis := func() {}
	if cfg.ERPURL != "" {
		deps.ERP = erp.NewREST(cfg.ERPURL, cfg.ERPToken, &http.Client{Timeout: erpTimeout})
		rc, ok := cfg.Redis.MakeRedisClient().(redis.UniversalClient)
		if !ok {
			return nil, fmt.Errorf("worker: unexpected Redis client type for REDIS_URL")
		}
		closeRedis = func() { rc.Close() }
		deps.ERPLimiter = &semaphore.Semaphore{Client: rc, Key: "onboard:erp:slots", Limit: cfg.ERPConcurrency, Lease: 2 * erpTimeout}
	}
	srv := asynq.NewServer(cfg.Redis, asynq.Config{
		Concurrency:     cfg.WorkerConcurrency,
		Queues:          jobs.QueueWeights,
		RetryDelayFunc:  workers.RetryDelay,
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
