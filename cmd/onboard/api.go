package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/internal/config"
	"github.com/onboard-dev/onboard/internal/monitor"
	"github.com/onboard-dev/onboard/internal/outbox"
)

func runAPI(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "api", "Serves the HTTP API on HTTP_ADDR, with the asynqmon dashboard at /monitor.\nOn SIGTERM it stops accepting connections and drains the open requests.")
	cfg, db, err := setup(ctx, env, fs, args)
	if err != nil {
		return err
	}
	defer db.Close()
	dispatcher, closeDispatcher := newDispatcher(cfg, db, env)
	defer closeDispatcher()
	h, closeAPI := newAPIHandler(cfg, db, dispatcher, env)
	defer closeAPI()
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return err
	}
	return serveHTTP(ctx, env, ln, h, cfg.ShutdownTimeout)
}

// newAPIHandler is the API with the dashboard mounted: the same in `api`
// and `dev`.
func newAPIHandler(cfg *config.Config, db *bun.DB, dispatcher *outbox.Dispatcher, env *environment) (http.Handler, func()) {
	mon, closeMon := monitor.New(monitor.Options{Redis: cfg.Redis, User: cfg.MonitorUser, Password: cfg.MonitorPassword, ReadOnly: cfg.MonitorReadonly})
	srv := &api.Server{
		Monitor:        mon,
		DB:             db,
		Dispatcher:     dispatcher,
		Log:            env.log,
		Now:            time.Now,
		MaxUploadBytes: cfg.ImportMaxBytes,
		Ready:          func(ctx context.Context) error { return dispatcher.Client.Ping() },
	}
	return srv.Handler(), func() { closeMon() }
}

// serveHTTP serves on ln until ctx ends, then drains open requests.
func serveHTTP(ctx context.Context, env *environment, ln net.Listener, h http.Handler, drain time.Duration) error {
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       5 * time.Minute, // uploads
		WriteTimeout:      5 * time.Minute, // CSV downloads
		IdleTimeout:       2 * time.Minute,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	env.log.Info("api listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	env.log.Info("api draining", "timeout", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
