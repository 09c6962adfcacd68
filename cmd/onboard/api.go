package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/internal/monitor"
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

	mon, closeMon := monitor.New(monitor.Options{Redis: cfg.Redis, User: cfg.MonitorUser, Password: cfg.MonitorPassword, ReadOnly: cfg.MonitorReadonly})
	defer closeMon()

	srv := &api.Server{
		Monitor:        mon,
		DB:             db,
		Dispatcher:     dispatcher,
		Log:            env.log,
		Now:            time.Now,
		MaxUploadBytes: cfg.ImportMaxBytes,
		Ready:          func(ctx context.Context) error { return dispatcher.Client.Ping() },
	}
	return serveHTTP(ctx, env, cfg.HTTPAddr, srv.Handler(), cfg.ShutdownTimeout)
}

// serveHTTP serves until ctx ends, then drains open requests.
func serveHTTP(ctx context.Context, env *environment, addr string, h http.Handler, drain time.Duration) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
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
