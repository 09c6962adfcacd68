package asynqslog

import (
	"context"
	"encoding/json"
	"log"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onboard-dev/onboard/internal/testenv"
)

// Route changes process-wide loggers: this test is the package's only one
// that does, and it runs alone.
func TestRouteSendsLibraryLogsToSlog(t *testing.T) {
	var out testenv.SyncBuffer
	Route(slog.New(slog.NewJSONHandler(&out, nil)))

	// What asynq's metrics collector does when Redis is down.
	log.Printf("Failed to collect metrics data: %v", "dial tcp: connection refused")

	// go-redis logs a dial that failed after its retries.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rc := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.Ping(ctx).Err(); err == nil {
		t.Fatal("ping of a closed port succeeded")
	}
	rc.Close()

	var sawStd, sawRedis bool
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a line that is not JSON: %q", line)
		}
		switch {
		case rec["component"] == "log" && rec["level"] == "WARN" && rec["msg"] == "Failed to collect metrics data: dial tcp: connection refused":
			sawStd = true
		case rec["component"] == "go-redis" && rec["level"] == "WARN" && strings.Contains(rec["msg"].(string), "failed to dial"):
			sawRedis = true
		}
	}
	if !sawStd || !sawRedis {
		t.Fatalf("standard log routed: %v, go-redis routed: %v; log:\n%s", sawStd, sawRedis, out.String())
	}
}
