package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
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
	Ports []int
	ClusterOptions
	// CAFile is the PEM certificate that signed the nodes' certificate
	// (with TLS): a child process trusts it with SSL_CERT_FILE.
	CAFile string
	tls    *tls.Config // a client's, trusting CAFile
	nodes  []clusterNode
	logs   []*SyncBuffer
}

type clusterNode struct {
	cmd    *exec.Cmd
	bus    int           // the cluster bus's port
	exited chan struct{} // closed once the process has exited and been waited for
}

// ClusterOptions configure StartRedisCluster.
type ClusterOptions struct {
	Password string // every node's password; none when empty
	// TLS serves clients and the cluster bus over TLS only, with a
	// certificate for 127.0.0.1 signed by a CA of the test's own.
	TLS bool
	// NodeTimeout is how long a node may be unreachable before the others
	// count it failed (Redis's cluster-node-timeout; 0: its 15 s).
	NodeTimeout time.Duration
}

// StartRedisCluster starts a fresh three-master cluster for the test and
// waits until every node serves every slot. It is stopped when the test
// ends. redis-server and redis-cli (7.0 or later, for cluster-port) must be
// installed: a missing one fails the test.
func StartRedisCluster(t testing.TB, o ClusterOptions) *RedisCluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("testenv: %s is required: %v", bin, err)
		}
	}
	c := &RedisCluster{ClusterOptions: o}
	t.Cleanup(c.Stop)
	dir := t.TempDir()
	var tlsArgs, cliArgs []string
	if o.TLS {
		var certFile, keyFile string
		c.CAFile, certFile, keyFile, c.tls = writeCerts(t, dir)
		tlsArgs = []string{"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", c.CAFile,
			"--tls-auth-clients", "no", "--tls-cluster", "yes", "--tls-replication", "yes"}
		cliArgs = []string{"--tls", "--cacert", c.CAFile}
	}
	for range 3 {
		args := func(port, bus int) []string {
			listen := []string{"--port", strconv.Itoa(port)}
			if o.TLS {
				listen = append([]string{"--port", "0", "--tls-port", strconv.Itoa(port)}, tlsArgs...)
			}
			args := append([]string{"--bind", "127.0.0.1",
				"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(bus),
				"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
				"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir}, listen...)
			if o.Password != "" {
				args = append(args, "--requirepass", o.Password)
			}
			if o.NodeTimeout > 0 {
				args = append(args, "--cluster-node-timeout", strconv.FormatInt(o.NodeTimeout.Milliseconds(), 10))
			}
			return args
		}
		c.startNode(t, args)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append(append(cliArgs, "--cluster", "create"), c.Addrs()...)
	create := exec.CommandContext(ctx, "redis-cli", append(args, "--cluster-replicas", "0", "--cluster-yes")...)
	// REDISCLI_AUTH rather than -a, which would put the password on the
	// command line (and make redis-cli warn about it).
	create.Env = os.Environ()
	if o.Password != "" {
		create.Env = append(create.Env, "REDISCLI_AUTH="+o.Password)
	}
	var out bytes.Buffer
	create.Stdout, create.Stderr = &out, &out
	if err := create.Run(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out.String())
	}

	// Every node must agree before a client sees the cluster: all slots
	// served and all masters known, or a client may be told CLUSTERDOWN
	// or be sent to a node that has not heard of the others yet. A node
	// that has not met every other one a while after the create is
	// introduced again (CLUSTER MEET is idempotent): the create's meet
	// goes over the cluster bus, which a loaded machine may time out.
	for i, addr := range c.Addrs() {
		rc := redis.NewClient(&redis.Options{Addr: addr, Password: o.Password, TLSConfig: c.tls})
		var info string
		deadline := time.Now().Add(30 * time.Second)
		meetAgain := time.Now().Add(3 * time.Second)
		for {
			var err error
			info, err = rc.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") &&
				strings.Contains(info, "cluster_known_nodes:3") {
				break
			}
			if time.Now().After(deadline) {
				rc.Close()
				t.Fatalf("testenv: the cluster node on %s is not ready (%v):\n%s\nits output:\n%s", addr, err, info, c.logs[i].String())
			}
			if time.Now().After(meetAgain) {
				for j := range c.Ports {
					if j != i {
						_ = rc.Do(ctx, "CLUSTER", "MEET", "127.0.0.1", c.Ports[j], c.nodes[j].bus).Err()
					}
				}
				meetAgain = time.Now().Add(3 * time.Second)
			}
			time.Sleep(50 * time.Millisecond) // polling a forming cluster, not waiting for work
		}
		rc.Close()
	}
	return c
}

// startNode starts one node on free ports, its client port and its
// cluster bus's (the default bus port, the port plus 10000, may be taken
// or above 65535). freePort only finds ports that were free a moment ago,
// and the other test processes start servers too, so the node must be
// seen answering as itself (its process id) before it counts; a node that
// could not bind its ports exits, and is started again on others.
func (c *RedisCluster) startNode(t testing.TB, args func(port, bus int) []string) {
	t.Helper()
	var lastErr error
	var out *SyncBuffer
	for range 5 {
		port, bus := freePort(t), freePort(t)
		if port == bus {
			continue
		}
		cmd := exec.Command("redis-server", args(port, bus)...)
		out = &SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatalf("testenv: start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		lastErr = waitOwnServer(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port), Password: c.Password, TLSConfig: c.tls}, cmd.Process.Pid, exited)
		if lastErr == nil {
			c.nodes = append(c.nodes, clusterNode{cmd: cmd, exited: exited, bus: bus})
			c.Ports = append(c.Ports, port)
			c.logs = append(c.logs, out)
			return
		}
		_ = cmd.Process.Kill()
		<-exited
	}
	// A redis-server before 7.0 stops at --cluster-port, and says so.
	t.Fatalf("testenv: %v; its output:\n%s", lastErr, out.String())
}

// waitOwnServer waits until the redis-server at opt.Addr answers and is
// the process pid, or that process has exited.
func waitOwnServer(opt *redis.Options, pid int, exited <-chan struct{}) error {
	rc := redis.NewClient(opt)
	defer rc.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server for %s exited", opt.Addr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		info, err := rc.Info(ctx, "server").Result()
		cancel()
		if err == nil {
			if strings.Contains(info, "process_id:"+strconv.Itoa(pid)+"\r\n") {
				return nil
			}
			return fmt.Errorf("another redis-server answers on %s", opt.Addr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not answer: %w", opt.Addr, err)
		}
		time.Sleep(20 * time.Millisecond) // polling a starting server, not waiting for work
	}
}

// Addrs are host:port of the nodes.
func (c *RedisCluster) Addrs() []string {
	addrs := make([]string, len(c.Ports))
	for i, p := range c.Ports {
		addrs[i] = "127.0.0.1:" + strconv.Itoa(p)
	}
	return addrs
}

// URL is the REDIS_URL of the cluster: redis-cluster://[:PASSWORD@]every
// node, or rediss-cluster://… with TLS.
func (c *RedisCluster) URL() string {
	scheme := "redis-cluster://"
	if c.TLS {
		scheme = "rediss-cluster://"
	}
	auth := ""
	if c.Password != "" {
		auth = url.UserPassword("", c.Password).String() + "@"
	}
	return scheme + auth + strings.Join(c.Addrs(), ",")
}

// Client is a go-redis cluster client of the cluster, closed when the test
// ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Password: c.Password, TLSConfig: c.tls})
	t.Cleanup(func() { rc.Close() })
	return rc
}

// StopNode kills node i, a master with no replica: once the others count it
// failed (NodeTimeout), the cluster refuses every command (CLUSTERDOWN).
func (c *RedisCluster) StopNode(i int) {
	n := c.nodes[i]
	_ = n.cmd.Process.Kill()
	<-n.exited
}

// Stop kills every node.
func (c *RedisCluster) Stop() {
	for i := range c.nodes {
		c.StopNode(i)
	}
	c.nodes = nil
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
		c := StartRedisCluster(t, ClusterOptions{})
		f(t, func() redis.UniversalClient { return c.Client(t) })
	})
}

// writeCerts writes a CA and a certificate for 127.0.0.1 it signed to dir,
// and returns their files and a client configuration that trusts the CA.
func writeCerts(t testing.TB, dir string) (caFile, certFile, keyFile string, client *tls.Config) {
	t.Helper()
	now := time.Now()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "testenv CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature,
		// The nodes of a cluster are each other's clients on the bus.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "node.pem"), filepath.Join(dir, "node-key.pem")
	for file, block := range map[string]*pem.Block{
		caFile: {Type: "CERTIFICATE", Bytes: caDER}, certFile: {Type: "CERTIFICATE", Bytes: leafDER}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatalf("testenv: %v", err)
		}
	}
	roots := x509.NewCertPool()
	caCert, _ := x509.ParseCertificate(caDER)
	roots.AddCert(caCert)
	return caFile, certFile, keyFile, &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
}
