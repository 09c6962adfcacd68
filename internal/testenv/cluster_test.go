package testenv_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/onboard-dev/onboard/internal/testenv"
)

// The cluster serves keys of every slot, with its password, across its
// three masters.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.ClusterOptions{Password: "cluster-pw"})
	rc := c.Client(t)
	ctx := context.Background()
	masters := map[string]bool{}
	for i := range 30 {
		key := fmt.Sprintf("k%d", i)
		if err := rc.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatal(err)
		}
		node, err := rc.MasterForKey(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		masters[node.Options().Addr] = true
	}
	if len(masters) != 3 {
		t.Fatalf("30 keys landed on %d masters, want all 3: %v", len(masters), masters)
	}
	if want := "redis-cluster://:cluster-pw@" + c.Addrs()[0] + "," + c.Addrs()[1] + "," + c.Addrs()[2]; c.URL() != want {
		t.Fatalf("URL %q, want %q", c.URL(), want)
	}
}

// With TLS the nodes answer only over TLS, clients' and the bus's, with a
// certificate the test's CA signed.
func TestRedisClusterTLS(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, testenv.ClusterOptions{TLS: true})
	rc := c.Client(t)
	ctx := context.Background()
	for i := range 10 {
		if err := rc.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.HasPrefix(c.URL(), "rediss-cluster://127.0.0.1:") || c.CAFile == "" {
		t.Fatalf("URL %q, CA %q", c.URL(), c.CAFile)
	}
	plain := redis.NewClient(&redis.Options{Addr: c.Addrs()[0], MaxRetries: -1})
	defer plain.Close()
	if err := plain.Ping(ctx).Err(); err == nil {
		t.Fatal("a node answered without TLS")
	}
}
