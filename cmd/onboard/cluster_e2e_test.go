package main_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// Every process on a Redis Cluster with a password (REDIS_URL=
// redis-cluster://…): asynq's queues, retries and server state, the
// outbox sweep's inspector, the per-tenant rate limit, the shared SendGrid
// pause, the dashboard and the queue metrics, with the queues spread over
// the cluster's nodes.
func TestRedisClusterEndToEnd(t *testing.T) {
	t.Parallel()
	const clusterPassword, monitorPassword, metricsToken = "cluster-pw-5c1e07", "monitor-pw-91aa3f", "metrics-tok-c4d2b8"
	// A node unreachable for 2 s counts as failed (Redis's default: 15 s).
	cluster := testenv.StartRedisCluster(t, testenv.ClusterOptions{Password: clusterPassword, NodeTimeout: 2 * time.Second})
	s := newSystem(t, "REDIS_URL="+cluster.URL(),
		"MONITOR_USER=ops", "MONITOR_PASSWORD="+monitorPassword, "METRICS_TOKEN="+metricsToken,
		// Ten requests at once, then one a minute.
		"RATE_LIMIT_PER_MINUTE=1", "RATE_LIMIT_BURST=10",
		// The scheduler enqueues a run every second, and its sweep checks
		// with the inspector every enqueued task older than a second.
		"EXPIRY_SCHEDULE=@every 1s", "OUTBOX_SWEEP_SCHEDULE=@every 1s", "OUTBOX_STALE=1s")
	s.run("migrate")
	keyA := s.newTenant("Cluster Co")
	keyB := s.newTenant("Busy Co")

	// A task the cluster lost: recorded and enqueued an hour ago, not in
	// Redis. The sweep must find it missing and enqueue it again.
	ctx := context.Background()
	hourAgo := time.Now().Add(-time.Hour)
	lost := jobs.NewScheduled(jobs.TypeInviteExpire, time.Date(2020, 1, 1, 1, 30, 0, 0, time.UTC))
	if err := outbox.Record(ctx, s.db, uuid.Nil, hourAgo, lost); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkEnqueued(ctx, s.db, []string{lost.ID}, hourAgo); err != nil {
		t.Fatal(err)
	}
	// SendGrid's first answer is a 429: the worker records the pause in
	// the cluster and the task is retried.
	s.sendgrid.FailNext(429, 1)

	s.start("api", "api")
	s.start("worker", "worker")
	s.start("scheduler", "scheduler")
	if code, body := request(t, s.apiURL, "", "GET", "/readyz", "", nil); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}

	// An invitation is emailed exactly once, after the 429 and the retry.
	invID := s.inviteCustomer(keyA, "5100", "dana.cole@customer.example.com")
	testenv.Eventually(t, 90*time.Second, "the delivery to be recorded sent", func() bool { return s.deliveryStates(t)["sent"] == 1 })
	msgs := s.sendgrid.Messages()
	if len(msgs) != 1 || msgs[0].To != "dana.cole@customer.example.com" || msgs[0].CustomArgs["invitation_id"] != invID {
		t.Fatalf("emails accepted: %+v, want one to dana.cole for invitation %s", msgs, invID)
	}
	if n := s.sendgrid.Requests(); n != 2 {
		t.Fatalf("%d requests to SendGrid, want the 429 and the retry", n)
	}

	// An import: import:process runs on the bulk queue, which the cluster
	// keeps on another master than critical (the emails) and default.
	insp := asynq.NewInspector(asynq.RedisClusterClientOpt{Addrs: cluster.Addrs(), Password: clusterPassword})
	defer insp.Close()
	master := func(queue string) string {
		nodes, err := insp.ClusterNodes(queue)
		if err != nil || len(nodes) == 0 {
			t.Fatalf("nodes of %s: %v %v", queue, nodes, err)
		}
		return nodes[0].Addr
	}
	if master(jobs.QueueBulk) == master(jobs.QueueCritical) {
		t.Fatalf("bulk and critical are on one node (%s): the import would not reach a second one", master(jobs.QueueBulk))
	}
	header, _, _ := strings.Cut(s.get(keyA, "/v1/imports/template.csv"), "\n") // without its sample row
	file := header + "\n" +
		"5200,lee.park@customer.example.com,Lee,Park\r\n" +
		"5201,not-an-email,Bad,Email\r\n"
	importID := s.upload(keyA, "customers.csv", []byte(file), "notify_email", "ops@cluster-co.example.com")["id"].(string)
	testenv.Eventually(t, 90*time.Second, "the import's invitation and confirmation to be recorded sent", func() bool { return s.deliveryStates(t)["sent"] == 3 })
	if st := s.importStatus(keyA, importID); st["status"] != "completed" || st["succeeded"] != 1.0 || st["failed"] != 1.0 {
		t.Fatalf("import status %v", st)
	}
	seen := map[string]int{}
	for _, m := range s.sendgrid.Messages() {
		seen[m.To]++
	}
	if len(seen) != 3 || seen["dana.cole@customer.example.com"] != 1 || seen["lee.park@customer.example.com"] != 1 || seen["ops@cluster-co.example.com"] != 1 {
		t.Fatalf("emails by recipient: %v, want one each to the invite, the imported row and the sender", seen)
	}

	// The per-tenant rate limit, shared through the cluster: tenant B's
	// eleventh request at once is refused; tenant A (five so far) is not.
	for i := range 10 {
		if code, body := s.send(keyB, "GET", "/v1/customers", "", nil); code != 200 {
			t.Fatalf("tenant B request %d: %d %s", i+1, code, body)
		}
	}
	req, _ := http.NewRequest("GET", s.apiURL+"/v1/customers", nil)
	req.Header.Set("Authorization", "Bearer "+keyB)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != 429 || ra < 1 {
		t.Fatalf("tenant B over its limit: %d, Retry-After %q; want 429 with a wait", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if code, body := s.send(keyA, "GET", "/v1/customers", "", nil); code != 200 {
		t.Fatalf("tenant A, under its limit: %d %s", code, body)
	}

	// The scheduler's runs reach the workers through the cluster: the lost
	// task recovered by the sweep, and at least one run of its own.
	testenv.Eventually(t, 60*time.Second, "the lost task and a scheduled run to complete", func() bool {
		var rows []store.OutboxTask
		if err := s.db.NewSelect().Model(&rows).Where("task_type = ? AND completed_at IS NOT NULL", jobs.TypeInviteExpire).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		recovered, scheduled := false, false
		for _, r := range rows {
			recovered = recovered || r.TaskID == lost.ID
			scheduled = scheduled || r.TaskID != lost.ID
		}
		return recovered && scheduled
	})

	// The dashboard: behind its credentials, every queue listed, the worker
	// among the servers, the cluster's layout.
	monitor := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", s.apiURL+"/monitor"+path, nil)
		req.SetBasicAuth("ops", monitorPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := request(t, s.apiURL, "", "GET", "/monitor/", "", nil); code != 401 {
		t.Fatalf("/monitor/ without credentials: %d, want 401", code)
	}
	if code, body := monitor("/"); code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("/monitor/: %d", code)
	}
	code, body := monitor("/api/queues")
	var queues struct {
		Queues []struct {
			Queue string `json:"queue"`
		} `json:"queues"`
	}
	if err := json.Unmarshal([]byte(body), &queues); code != 200 || err != nil {
		t.Fatalf("/monitor/api/queues: %d %s (%v)", code, body, err)
	}
	listed := map[string]bool{}
	for _, q := range queues.Queues {
		listed[q.Queue] = true
	}
	if !listed[jobs.QueueCritical] || !listed[jobs.QueueDefault] {
		t.Fatalf("/monitor/api/queues lists %v, want critical (invite:send) and default (invite:expire)", listed)
	}
	testenv.Eventually(t, 30*time.Second, "the worker among the dashboard's servers", func() bool {
		code, body := monitor("/api/servers")
		var servers struct {
			Servers []struct {
				Queues map[string]int `json:"queue_priorities"`
			} `json:"servers"`
		}
		_ = json.Unmarshal([]byte(body), &servers)
		return code == 200 && len(servers.Servers) == 1 && servers.Servers[0].Queues[jobs.QueueCritical] == jobs.QueueWeights[jobs.QueueCritical]
	})
	code, body = monitor("/api/redis_info")
	var info struct {
		Cluster bool `json:"cluster"`
	}
	if err := json.Unmarshal([]byte(body), &info); code != 200 || err != nil || !info.Cluster {
		t.Fatalf("/monitor/api/redis_info: %d %s", code, body)
	}

	// The queue metrics, read from every node that holds a queue.
	_, metrics := s.send(metricsToken, "GET", "/metrics", "", nil)
	for _, want := range []string{`asynq_tasks_processed_total{queue="critical"}`, `asynq_tasks_processed_total{queue="default"}`} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("API /metrics lacks %s", want)
		}
	}
	if code, body := request(t, s.apiURL, "", "GET", "/readyz", "", nil); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	for _, name := range []string{"scheduler", "worker"} {
		if err := s.stop(name); err != nil {
			t.Errorf("%s on SIGTERM: %v", name, err)
		}
	}

	// A master lost (no replica to take over): the other nodes still
	// answer PING, but the cluster refuses every command, and /readyz says so.
	cluster.StopNode(0)
	testenv.Eventually(t, 30*time.Second, "/readyz to report the cluster down", func() bool {
		code, body := request(t, s.apiURL, "", "GET", "/readyz", "", nil)
		return code == 503 && strings.Contains(string(body), "redis cluster state is fail")
	})
	if err := s.stop("api"); err != nil {
		t.Errorf("api on SIGTERM: %v", err)
	}
	for name, l := range s.logs {
		if strings.Contains(l.String(), clusterPassword) {
			t.Errorf("the %s log contains the cluster's password", name)
		}
		if strings.Contains(l.String(), "CROSSSLOT") || strings.Contains(l.String(), "MOVED") {
			t.Errorf("the %s log shows a cluster error:\n%s", name, l.String())
		}
	}
}

// REDIS_URL=rediss-cluster://…: the API and the worker reach every node over
// TLS, each node's certificate checked against the address the cluster
// gave for it (the processes trust the test's CA through SSL_CERT_FILE).
func TestRedisClusterTLSEndToEnd(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t, testenv.ClusterOptions{Password: "cluster-tls-pw", TLS: true})
	s := newSystem(t, "REDIS_URL="+cluster.URL(), "SSL_CERT_FILE="+cluster.CAFile, "MONITOR_USER=ops", "MONITOR_PASSWORD=monitor-pw")
	s.run("migrate")
	key := s.newTenant("TLS Co")
	s.start("api", "api")
	s.start("worker", "worker")
	if code, body := request(t, s.apiURL, "", "GET", "/readyz", "", nil); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	s.inviteCustomer(key, "7100", "tls@customer.example.com")
	testenv.Eventually(t, 60*time.Second, "the delivery to be recorded sent", func() bool { return s.deliveryStates(t)["sent"] == 1 })
	if msgs := s.sendgrid.Messages(); len(msgs) != 1 || msgs[0].To != "tls@customer.example.com" {
		t.Fatalf("emails accepted: %+v, want one", msgs)
	}
	req, _ := http.NewRequest("GET", s.apiURL+"/monitor/api/redis_info", nil)
	req.SetBasicAuth("ops", "monitor-pw")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info struct {
		Cluster bool `json:"cluster"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); resp.StatusCode != 200 || err != nil || !info.Cluster {
		t.Fatalf("/monitor/api/redis_info: %d (%v) cluster=%v", resp.StatusCode, err, info.Cluster)
	}
	for _, name := range []string{"worker", "api"} {
		if err := s.stop(name); err != nil {
			t.Errorf("%s on SIGTERM: %v", name, err)
		}
	}
}
