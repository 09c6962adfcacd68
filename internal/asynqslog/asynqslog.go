// Package asynqslog routes the logs of asynq and the libraries under it
// into log/slog, so that their messages land in the same structured log as
// ours instead of as plain lines in the middle of a JSON stream: asynq's
// own Logger, go-redis' internal logger, and the standard library's default
// logger, which asynq's metrics collector and asynqmon write to (neither
// takes a logger).
package asynqslog

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Logger is an asynq.Logger writing to a slog.Logger.
type Logger struct{ L *slog.Logger }

func (l Logger) Debug(args ...any) { l.L.Debug(fmt.Sprint(args...), "component", "asynq") }
func (l Logger) Info(args ...any)  { l.L.Info(fmt.Sprint(args...), "component", "asynq") }
func (l Logger) Warn(args ...any)  { l.L.Warn(fmt.Sprint(args...), "component", "asynq") }
func (l Logger) Error(args ...any) { l.L.Error(fmt.Sprint(args...), "component", "asynq") }

// Fatal logs and exits, as asynq expects of it.
func (l Logger) Fatal(args ...any) {
	l.L.Error(fmt.Sprint(args...), "component", "asynq")
	os.Exit(1)
}

// Redis is go-redis' internal logger writing to a slog.Logger. go-redis
// logs what goes wrong below the commands (a dial that failed, a pool in
// trouble): warnings.
type Redis struct{ L *slog.Logger }

func (l Redis) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: ")
	l.L.WarnContext(ctx, msg, "component", "go-redis")
}

// Route sends go-redis' internal logger and the standard library's default
// logger to l, for the whole process: both are package-level in their
// libraries, so main calls this once, with the logger the configuration
// asks for. Lines of the standard logger are warnings (what writes there
// reports a failure: "Failed to collect metrics data: …", "error: could not
// delete task …", net/http's "http: Accept error").
func Route(l *slog.Logger) {
	redis.SetLogger(Redis{L: l})
	log.SetFlags(0)
	log.SetPrefix("")
	log.SetOutput(slog.NewLogLogger(l.With("component", "log").Handler(), slog.LevelWarn).Writer())
}
