// Package asynqslog adapts log/slog to asynq's Logger, so asynq's own
// messages land in the same structured log as ours.
package asynqslog

import (
	"fmt"
	"log/slog"
	"os"
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
