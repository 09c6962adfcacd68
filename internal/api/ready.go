package api

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// NotReady is a failed readiness check whose reason names no address, user
// or database, so /readyz answers it as it is. Any other error of a check is
// answered as "unreachable" (and logged): /readyz answers anyone.
type NotReady struct{ Reason string }

func (e *NotReady) Error() string { return e.Reason }

// RedisReady is Redis's part of /readyz (Server.Ready): PING and, on a Redis
// Cluster, the cluster's own state. A cluster that has lost a master (and
// has no replica to take over) still answers PING from its other nodes
// while it refuses every command with CLUSTERDOWN.
func RedisReady(rc redis.UniversalClient) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := rc.Ping(ctx).Err(); err != nil {
			return err
		}
		cc, ok := rc.(*redis.ClusterClient)
		if !ok {
			return nil
		}
		info, err := cc.ClusterInfo(ctx).Result()
		if err != nil {
			return err
		}
		for _, line := range strings.Split(info, "\n") {
			if state, ok := strings.CutPrefix(strings.TrimSpace(line), "cluster_state:"); ok {
				if state == "ok" {
					return nil
				}
				return &NotReady{Reason: fmt.Sprintf("redis cluster state is %s (some slots have no reachable master)", state)}
			}
		}
		return &NotReady{Reason: "redis cluster info has no cluster_state"}
	}
}
