package testenv_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/onboard-dev/onboard/internal/testenv"
)

// The cluster serves keys of every slot, with its password, across its
// three masters.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := testenv.StartRedisCluster(t, "cluster-pw")
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
