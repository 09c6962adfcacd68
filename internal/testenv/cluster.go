package testenv

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of three masters (no replicas) owned by
// one test, each node a redis-server on free loopback ports.
type RedisCluster struct {
	Ports    []int
	Password string // every node's requirepass ("" for none)
	cmds     []*exec.Cmd
}

// StartRedisCluster starts a fresh three-master cluster for the test, with
// password as every node's password when it is not empty, and waits until
// every node serves every slot. It is stopped when the test ends.
// redis-server and redis-cli (7.0 or later, for cluster-port) must be
// installed: a missing one fails the test.
func StartRedisCluster(t testing.TB, password string) *RedisCluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("testenv: %s is required: %v", bin, err)
		}
	}
	c := &RedisCluster{Password: password}
	t.Cleanup(c.Stop)
	dir := t.TempDir()
	for range 3 {
		// The cluster bus gets a free port of its own: the default, the
		// port plus 10000, may be taken or above 65535.
		port, bus := freePort(t), freePort(t)
		args := []string{"--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
			"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir}
		if password != "" {
			args = append(args, "--requirepass", password)
		}
		cmd := exec.Command("redis-server", args...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("testenv: start redis-server: %v", err)
		}
		c.cmds = append(c.cmds, cmd)
		c.Ports = append(c.Ports, port)
	}
	for _, addr := range c.Addrs() {
		waitPing(t, &redis.Options{Addr: addr, Password: password})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	create := exec.CommandContext(ctx, "redis-cli", append(append([]string{"--cluster", "create"}, c.Addrs()...),
		"--cluster-replicas", "0", "--cluster-yes")...)
	// REDISCLI_AUTH rather than -a, which would put the password on the
	// command line (and make redis-cli warn about it).
	create.Env = os.Environ()
	if password != "" {
		create.Env = append(create.Env, "REDISCLI_AUTH="+password)
	}
	var out bytes.Buffer
	create.Stdout, create.Stderr = &out, &out
	if err := create.Run(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out.String())
	}

	// Every node must agree before a client sees the cluster: all slots
	// served and all masters known, or a client may be told CLUSTERDOWN
	// or be sent to a node that has not heard of the others yet.
	for _, addr := range c.Addrs() {
		rc := redis.NewClient(&redis.Options{Addr: addr, Password: password})
		var info string
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			info, err = rc.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				rc.Close()
				t.Fatalf("testenv: the cluster node on %s is not ready (%v):\n%s", addr, err, info)
			}
			time.Sleep(50 * time.Millisecond) // polling a forming cluster, not waiting for work
		}
		rc.Close()
	}
	return c
}

// Addrs are host:port of the nodes.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Ports))
	for i, p := range c.Ports {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return addrs
}

// URL is the REDIS_URL of the cluster: redis-cluster://[:PASSWORD@]every node.
func (c *RedisCluster) URL() string {
	auth := ""
	if c.Password != "" {
		auth = url.UserPassword("", c.Password).String() + "@"
	}
	return "redis-cluster://" + auth + strings.Join(c.Addrs(), ",")
}

// Client is a go-redis cluster client of the cluster, closed when the test
// ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Password: c.Password})
	t.Cleanup(func() { rc.Close() })
	return rc
}

// Stop kills every node.
func (c *RedisCluster) Stop() {
	for _, cmd := range c.cmds {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	c.cmds = nil
}

// EachRedis runs f twice, as parallel subtests: "server", on a redis-server
// of its own, and "cluster", on a Redis Cluster of its own (where keys land
// on whichever node owns their slot). connect makes a new client, as
// another process would have; it is closed when the subtest ends.
func EachRedis(t *testing.T, f func(t *testing.T, connect func() redis.UniversalClient)) {
	t.Helper()
	t.Run("server", func(t *testing.T) {
		t.Parallel()
		r := StartRedis(t)
		f(t, func() redis.UniversalClient {
			c := redis.NewClient(&redis.Options{Addr: r.Addr()})
			t.Cleanup(func() { c.Close() })
			return c
		})
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		c := StartRedisCluster(t, "")
		f(t, func() redis.UniversalClient { return c.Client(t) })
	})
}
