package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onboard-dev/onboard/internal/api"
	"github.com/onboard-dev/onboard/internal/testenv"
)

func TestRedisReadyOnAServer(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer rc.Close()
	ready := api.RedisReady(rc)
	if err := ready(context.Background()); err != nil {
		t.Fatalf("ready with Redis up: %v", err)
	}
	r.Stop()
	if err := ready(context.Background()); err == nil {
		t.Fatal("ready with Redis down")
	}
}

// A cluster that lost a master still answers PING from the other nodes;
// readiness goes by the cluster's state.
func TestRedisReadyOnACluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.ClusterOptions{NodeTimeout: time.Second})
	rc := c.Client(t)
	ready := api.RedisReady(rc)
	ctx := context.Background()
	if err := ready(ctx); err != nil {
		t.Fatalf("ready with every node up: %v", err)
	}
	c.StopNode(2)
	var err error
	testenv.Eventually(t, 30*time.Second, "readiness to see the cluster down", func() bool {
		err = ready(ctx)
		return err != nil && strings.Contains(err.Error(), "redis cluster state is fail")
	})
	// What PING alone would have said:
	live := redis.NewClient(&redis.Options{Addr: c.Addrs()[0]})
	defer live.Close()
	if err := live.Ping(ctx).Err(); err != nil {
		t.Fatalf("a live node refused PING (%v): the state check is not what told", err)
	}
}
