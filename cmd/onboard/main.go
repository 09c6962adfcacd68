// Command onboard runs every process of the onboard service: one binary, a
// subcommand per process. main only wires; the logic lives in the packages.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/asynqslog"
	"github.com/onboard-dev/onboard/internal/config"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/store"
)

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *environment, args []string) error
}

func commands() []command {
	return []command{
		{"dev", "run everything in one process on embedded defaults (no Postgres, Redis or SendGrid needed)", runDev},
		{"api", "serve the HTTP API and the asynqmon dashboard at /monitor", runAPI},
		{"worker", "run the asynq worker pool", runWorker},
		{"scheduler", "run the cron schedules (nightly resend, expiry, ERP re-verification, outbox sweep)", runScheduler},
		{"migrate", "apply database migrations (idempotent, safe to run concurrently)", runMigrate},
		{"tenant", "manage tenants: tenant create --name NAME [--admin-email E]; tenant policy --id ID …", runTenant},
	}
}

// environment is what every subcommand gets from main.
type environment struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	// logged is log for the signal handler's goroutine, once there is one.
	logged *atomic.Pointer[slog.Logger]
}

func main() {
	env := &environment{getenv: os.Getenv, stdout: os.Stdout, stderr: os.Stderr, logged: &atomic.Pointer[slog.Logger]{}}
	ctx := shutdownOnSignal(env)
	if err := run(ctx, env, os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		// Errors may echo a URL from the environment: mask its password.
		fmt.Fprintln(os.Stderr, "onboard: "+config.Redact(strings.ReplaceAll(err.Error(), "\n", "; ")))
		os.Exit(1)
	}
}

// shutdownOnSignal cancels the context at the first SIGINT or SIGTERM: a
// graceful stop (running tasks finish and open requests drain, for up to
// SHUTDOWN_TIMEOUT). A second one exits at once with status 1, for the
// operator who will not wait: tasks cut short go back to the queue when
// their lease runs out, as after a crash.
func shutdownOnSignal(env *environment) context.Context {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		sig := <-sigs
		env.signalLog().Info("stopping: finishing what is running; send the signal again to exit at once", "signal", sig.String())
		cancel()
		sig = <-sigs
		env.signalLog().Warn("second signal: exiting at once", "signal", sig.String())
		os.Exit(1)
	}()
	return ctx
}

// signalLog is the configured logger, or a plain one on stderr before the
// configuration is loaded.
func (env *environment) signalLog() *slog.Logger {
	if l := env.logged.Load(); l != nil {
		return l
	}
	return slog.New(slog.NewTextHandler(env.stderr, nil))
}

func run(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(env.stdout)
		if len(args) == 0 {
			return errors.New("a subcommand is required (see onboard --help)")
		}
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, env, args[1:])
		}
	}
	return fmt.Errorf("unknown subcommand %q (see onboard --help)", args[0])
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: onboard <subcommand> [flags]\n\nSubcommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nConfiguration comes from the environment; see README.md. Every subcommand takes --help.")
}

// newFlags makes a subcommand's flag set, which prints its help on --help.
func newFlags(env *environment, name, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stdout)
	// Written to the flag set's output, which parseFlags silences while the
	// flag package parses (it calls Usage on every error itself).
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: onboard %s [flags]\n\n%s\n", name, summary)
		var n int
		fs.VisitAll(func(*flag.Flag) { n++ })
		if n > 0 {
			fmt.Fprintln(w, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args: --help prints the help once, on the flag set's
// output; a usage error is one line, which main prefixes with "onboard: ".
func parseFlags(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.Usage()
		return err
	}
	if err != nil {
		return fmt.Errorf("%s: %v (see onboard %s --help)", fs.Name(), err, fs.Name())
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q (see onboard %s --help)", fs.Name(), fs.Arg(0), fs.Name())
	}
	return nil
}

// loadConfig reads the configuration and builds the logger it asks for.
func loadConfig(env *environment) (*config.Config, error) {
	cfg, err := config.Load(env.getenv)
	if err != nil {
		return nil, err
	}
	env.log = newLogger(env.stderr, cfg.LogFormat, cfg.LogLevel)
	if env.logged != nil {
		env.logged.Store(env.log)
		// Once per process (main's environment): go-redis and the standard
		// logger are package-level.
		asynqslog.Route(env.log)
	}
	return cfg, nil
}

func newLogger(w io.Writer, format, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

func now() time.Time { return time.Now() }

// setup parses a subcommand's flags, loads the configuration and opens the
// database: the start of every subcommand that touches state.
func setup(ctx context.Context, env *environment, fs *flag.FlagSet, args []string) (*config.Config, *bun.DB, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, err
	}
	cfg, err := loadConfig(env)
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, nil, err
	}
	return cfg, db, nil
}

// warnIfNotMigrated logs what the database lacks of the migrations this
// binary ships. The process starts anyway (a release phase may be migrating
// right now, and a database down at boot is not a reason to stop); /readyz
// answers 503 with the same words until it is done.
func warnIfNotMigrated(ctx context.Context, env *environment, db *bun.DB) {
	if err := store.CheckMigrated(ctx, db); err != nil {
		env.log.Warn(err.Error())
	}
}

// newDispatcher connects the outbox to Redis; close releases the
// connections.
func newDispatcher(cfg *config.Config, db *bun.DB, env *environment) (d *outbox.Dispatcher, close func()) {
	client := asynq.NewClient(cfg.Redis)
	inspector := asynq.NewInspector(cfg.Redis)
	d = &outbox.Dispatcher{DB: db, Client: client, Inspector: inspector, Log: env.log}
	return d, func() { client.Close(); inspector.Close() }
}
