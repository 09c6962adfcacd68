package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/internal/config"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/monitor"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/ratelimit"
	"github.com/onboard-dev/onboard/store"
)

func runAPI(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "api", "Serves the HTTP API on HTTP_ADDR, with the asynqmon dashboard at /monitor.\nOn SIGTERM it stops accepting connections and drains the open requests.")
	cfg, db, err := setup(ctx, env, fs, args)
	if err != nil {
		return err
	}
	defer db.Close()
	warnIfNotMigrated(ctx, env, db)
	removeStaleSpools(env)
	dispatcher, closeDispatcher := newDispatcher(cfg, db, env)
	defer closeDispatcher()
	h, closeAPI, err := newAPIHandler(cfg, db, dispatcher, env, metrics.New())
	if err != nil {
		return err
	}
	defer closeAPI()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("api: HTTP_ADDR: %w", err)
	}
	return serveHTTP(ctx, env, "api", ln, h, cfg.ShutdownTimeout)
}

// removeStaleSpools deletes the spooled uploads a killed api or worker left
// in the temporary directory.
func removeStaleSpools(env *environment) {
	if n := api.RemoveStaleSpools(os.TempDir(), time.Hour, time.Now()); n > 0 {
		env.log.Info("removed uploads spooled by a process that was killed", "files", n)
	}
}

// newAPIHandler is the API with the dashboard mounted: the same in `api`
// and `dev`. m gets the queue and outbox metrics besides the API's own.
func newAPIHandler(cfg *config.Config, db *bun.DB, dispatcher *outbox.Dispatcher, env *environment, m *metrics.Metrics) (http.Handler, func(), error) {
	rc, err := redisClient(cfg)
	if err != nil {
		return nil, nil, err
	}
	mon, closeMon := monitor.New(monitor.Options{Redis: cfg.Redis, User: cfg.MonitorUser, Password: cfg.MonitorPassword, ReadOnly: cfg.MonitorReadonly})
	inspector := asynq.NewInspector(cfg.Redis)
	m.WithQueues(inspector)
	m.WithOutbox(func(ctx context.Context) (metrics.Backlog, error) {
		notEnqueued, unfinished, oldest, err := store.OutboxBacklog(ctx, db)
		return metrics.Backlog{NotEnqueued: notEnqueued, Unfinished: unfinished, Oldest: oldest}, err
	})
	srv := &api.Server{
		Monitor:        mon,
		DB:             db,
		Dispatcher:     dispatcher,
		Log:            env.log,
		Now:            time.Now,
		Metrics:        m,
		MetricsToken:   cfg.MetricsToken,
		WebhookKey:     cfg.SendGridWebhookKey,
		RequestTimeout: cfg.RequestTimeout,
		ResendDailyCap: cfg.ResendDailyCap,
		MaxUploadBytes: cfg.ImportMaxBytes,
		Ready:          api.RedisReady(rc),
	}
	if cfg.RateLimitPerMinute > 0 {
		srv.RateLimit = ratelimit.NewTenants(rc, cfg.RateLimitPerMinute, cfg.RateLimitBurst)
	}
	return srv.Handler(), func() { closeMon(); inspector.Close(); rc.Close() }, nil
}

// redisClient is a go-redis client for REDIS_URL, for what onboard keeps in
// Redis itself (rate limits, the SendGrid pause, the ERP semaphore).
func redisClient(cfg *config.Config) (redis.UniversalClient, error) {
	rc, ok := cfg.Redis.MakeRedisClient().(redis.UniversalClient)
	if !ok {
		return nil, fmt.Errorf("unexpected Redis client type for REDIS_URL")
	}
	return rc, nil
}

// serveHTTP serves on ln until ctx ends, then drains open requests; what
// names the server in the log ("api", "metrics").
func serveHTTP(ctx context.Context, env *environment, what string, ln net.Listener, h http.Handler, drain time.Duration) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // uploads
		WriteTimeout:      5 * time.Minute, // CSV downloads
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	env.log.Info(what+" listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	env.log.Info(what+" draining", "timeout", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
