// Package testenv starts the real services a test needs, isolated to that
// test: a redis-server of its own on a free loopback port (so tests that run
// workers on the same queue names never see each other's tasks), stoppable
// and restartable on the same port to test outages, and a Redis Cluster of
// its own.
package testenv

import (
	"context"
	"fmt"
	mathrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis is a redis-server owned by one test.
type Redis struct {
	t    testing.TB
	Port int
	cmd  *exec.Cmd
}

// StartRedis starts a fresh, empty redis-server for the test; it is stopped
// when the test ends. The redis-server binary must be installed (.ci/run
// installs it): a missing one fails the test.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("testenv: redis-server is required: %v", err)
	}
	r := &Redis{t: t, Port: freePort(t)}
	r.Start()
	t.Cleanup(r.Stop)
	return r
}

// Addr is host:port of the server.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Start (re)starts the server on its port and waits until it answers.
func (r *Redis) Start() {
	r.t.Helper()
	r.cmd = exec.Command("redis-server", "--bind", "127.0.0.1", "--port", strconv.Itoa(r.Port),
		"--save", "", "--appendonly", "no", "--dir", r.t.TempDir())
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("testenv: start redis-server: %v", err)
	}
	if err := waitPing(&redis.Options{Addr: r.Addr()}); err != nil {
		r.t.Fatalf("testenv: %v", err)
	}
}

// waitPing waits until the redis-server at opt.Addr answers.
func waitPing(opt *redis.Options) error {
	c := redis.NewClient(opt)
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer: %w", opt.Addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a starting server, not waiting for work
	}
}

// Stop kills the server (its data is gone, as in an outage of a cache that
// keeps nothing on disk).
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

func freePort(t testing.TB) int {
	t.Helper()
	// Below the ephemeral range when it can: a port the kernel hands out
	// for :0 is also handed out for the outgoing connections of every
	// process here, so one free a moment ago may be taken by the time the
	// server it was found for binds it.
	if low := ephemeralLow(); low > 10000 {
		for range 100 {
			port := 10000 + mathrand.IntN(low-10000)
			if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				ln.Close()
				return port
			}
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ephemeralLow is the lowest port of Linux's ephemeral range, or 0.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 0
	}
	low, _ := strconv.Atoi(fields[0])
	return low
}

// FreeAddr returns a loopback address with a port nobody listens on now.
func FreeAddr(t testing.TB) string { return fmt.Sprintf("127.0.0.1:%d", freePort(t)) }

// Eventually polls cond until it holds or the deadline passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
