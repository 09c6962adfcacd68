package monitor_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/monitor"
	"github.com/onboard-dev/onboard/internal/testenv"
)

func serve(t *testing.T, o monitor.Options) *httptest.Server {
	t.Helper()
	h, closeMon := monitor.New(o)
	t.Cleanup(func() { closeMon() })
	mux := http.NewServeMux()
	mux.Handle(monitor.Path+"/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url, user, pass string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDashboardNeedsCredentials(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: r.Addr()})
	defer client.Close()
	if _, err := client.Enqueue(asynq.NewTask("invite:send", []byte(`{}`)), asynq.Queue("critical")); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, monitor.Options{Redis: asynq.RedisClientOpt{Addr: r.Addr()}, User: "ops", Password: "s3cret"})

	for _, tc := range []struct{ user, pass string }{{"", ""}, {"ops", "wrong"}, {"other", "s3cret"}} {
		if code, _ := get(t, srv.URL+"/monitor/", tc.user, tc.pass); code != 401 {
			t.Errorf("%q/%q: %d, want 401", tc.user, tc.pass, code)
		}
	}
	code, body := get(t, srv.URL+"/monitor/", "ops", "s3cret")
	if code != 200 || !strings.Contains(body, "<html") {
		t.Fatalf("dashboard with credentials: %d", code)
	}
	code, body = get(t, srv.URL+"/monitor/api/queues", "ops", "s3cret")
	if code != 200 {
		t.Fatalf("queues API: %d %s", code, body)
	}
	var queues struct {
		Queues []struct {
			Queue string `json:"queue"`
			Size  int    `json:"size"`
		} `json:"queues"`
	}
	if err := json.Unmarshal([]byte(body), &queues); err != nil || len(queues.Queues) != 1 || queues.Queues[0].Queue != "critical" || queues.Queues[0].Size != 1 {
		t.Fatalf("queues: %s (%v)", body, err)
	}
}

func TestDashboardRefusedWithoutConfiguredCredentials(t *testing.T) {
	t.Parallel()
	srv := serve(t, monitor.Options{Redis: asynq.RedisClientOpt{Addr: testenv.FreeAddr(t)}})
	if code, _ := get(t, srv.URL+"/monitor/", "", ""); code != 403 {
		t.Fatalf("%d, want 403", code)
	}
	if code, _ := get(t, srv.URL+"/monitor/", "ops", ""); code != 403 {
		t.Fatalf("%d, want 403", code)
	}
}

// TestDashboardRendersInABrowser loads the dashboard in headless Chromium:
// with credentials the single-page app runs, calls its API through the same
// auth and renders the queue table; without them nothing of it loads.
func TestDashboardRendersInABrowser(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: r.Addr()})
	defer client.Close()
	for _, q := range []string{"critical", "default", "bulk"} {
		if _, err := client.Enqueue(asynq.NewTask("probe:"+q, []byte(`{}`)), asynq.Queue(q)); err != nil {
			t.Fatal(err)
		}
	}
	for _, readOnly := range []bool{false, true} {
		srv := serve(t, monitor.Options{Redis: asynq.RedisClientOpt{Addr: r.Addr()}, User: "ops", Password: "s3cret", ReadOnly: readOnly})
		withCreds := strings.Replace(srv.URL, "http://", "http://ops:s3cret@", 1) + "/monitor/"
		raw := testenv.DumpDOM(t, withCreds, 15*time.Second)
		if want := fmt.Sprintf(`FLAG_READ_ONLY="%v"`, readOnly); !strings.Contains(raw, want) {
			t.Errorf("the page does not carry %s", want)
		}
		dom := visibleText(raw)
		for _, want := range []string{"Queues", "Queue State Size", "critical run 1", "default run 1", "bulk run 1"} {
			if !strings.Contains(dom, want) {
				t.Errorf("read-only=%v: the rendered dashboard lacks %q:\n%s", readOnly, want, dom)
			}
		}
		dom = visibleText(testenv.DumpDOM(t, srv.URL+"/monitor/", 5*time.Second))
		// Headless Chromium cancels the credentials prompt and shows nothing.
		if strings.Contains(dom, "critical") || strings.Contains(dom, "Queue State") {
			t.Errorf("without credentials the browser must not see the dashboard, got:\n%s", dom)
		}
	}
}

// visibleText is the page's text with tags, scripts and styles removed and
// whitespace collapsed.
func visibleText(dom string) string {
	for _, re := range []*regexp.Regexp{regexp.MustCompile(`(?s)<(script|style)[^>]*>.*?</(script|style)>`), regexp.MustCompile(`<[^>]+>`)} {
		dom = re.ReplaceAllString(dom, " ")
	}
	return strings.Join(strings.Fields(dom), " ")
}

// The dashboard on a Redis Cluster: every queue, wherever its slot puts it,
// is listed and inspected, and the operations the dashboard offers (pause,
// run, archive, delete) act on the node that holds the queue.
func TestDashboardOnCluster(t *testing.T) {
	t.Parallel()
	cluster := testenv.StartRedisCluster(t, testenv.ClusterOptions{Password: "cluster-s3cret"})
	opt := asynq.RedisClusterClientOpt{Addrs: cluster.Addrs(), Password: cluster.Password}
	client := asynq.NewClient(opt)
	defer client.Close()
	for _, q := range []string{"critical", "default", "bulk"} {
		if _, err := client.Enqueue(asynq.NewTask("probe:"+q, []byte(`{}`)), asynq.Queue(q), asynq.TaskID("pending-"+q)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := client.Enqueue(asynq.NewTask("probe:later", []byte(`{}`)), asynq.Queue("default"), asynq.TaskID("scheduled-default"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}
	srv := serve(t, monitor.Options{Redis: opt, User: "ops", Password: "s3cret"})
	api := srv.URL + "/monitor/api"
	call := func(method, path string, want int) string {
		t.Helper()
		req, _ := http.NewRequest(method, api+path, nil)
		req.SetBasicAuth("ops", "s3cret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		return string(b)
	}
	type queue struct {
		Queue  string `json:"queue"`
		Size   int    `json:"size"`
		Paused bool   `json:"paused"`
	}
	queues := func() map[string]queue {
		var body struct{ Queues []queue }
		if err := json.Unmarshal([]byte(call("GET", "/queues", 200)), &body); err != nil {
			t.Fatal(err)
		}
		m := map[string]queue{}
		for _, q := range body.Queues {
			m[q.Queue] = q
		}
		return m
	}
	taskIDs := func(path string) []string {
		var body struct{ Tasks []struct{ ID string } }
		if err := json.Unmarshal([]byte(call("GET", path, 200)), &body); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, task := range body.Tasks {
			ids = append(ids, task.ID)
		}
		return ids
	}

	if got := queues(); len(got) != 3 || got["critical"].Size != 1 || got["default"].Size != 2 || got["bulk"].Size != 1 {
		t.Fatalf("queues: %+v", got)
	}
	for _, q := range []string{"critical", "default", "bulk"} {
		call("GET", "/queues/"+q, 200)
		if ids := taskIDs("/queues/" + q + "/pending_tasks"); len(ids) != 1 || ids[0] != "pending-"+q {
			t.Fatalf("%s pending: %v", q, ids)
		}
	}
	for _, path := range []string{"/queue_stats", "/servers", "/scheduler_entries"} {
		call("GET", path, 200)
	}
	var info struct {
		Cluster        bool
		QueueLocations []struct {
			Queue string
			Nodes []string
		} `json:"queue_locations"`
	}
	if err := json.Unmarshal([]byte(call("GET", "/redis_info", 200)), &info); err != nil {
		t.Fatal(err)
	}
	if !info.Cluster || len(info.QueueLocations) != 3 {
		t.Fatalf("redis_info: %+v", info)
	}
	nodes := map[string]bool{}
	for _, l := range info.QueueLocations {
		if len(l.Nodes) == 0 {
			t.Fatalf("queue %s is on no node: %+v", l.Queue, info)
		}
		nodes[l.Nodes[0]] = true
	}
	// The slots of critical, default and bulk fall on two of the three
	// masters' ranges: the dashboard reads more than one node.
	if len(nodes) < 2 {
		t.Fatalf("the queues are all on one node: %+v", info)
	}

	call("POST", "/queues/critical:pause", 204)
	if !queues()["critical"].Paused {
		t.Fatal("critical not paused")
	}
	call("POST", "/queues/critical:resume", 204)
	call("POST", "/queues/default/scheduled_tasks/scheduled-default:run", 204)
	if ids := taskIDs("/queues/default/pending_tasks"); len(ids) != 2 {
		t.Fatalf("default pending after running the scheduled task: %v", ids)
	}
	call("POST", "/queues/bulk/pending_tasks/pending-bulk:archive", 204)
	if ids := taskIDs("/queues/bulk/archived_tasks"); len(ids) != 1 || ids[0] != "pending-bulk" {
		t.Fatalf("bulk archived: %v", ids)
	}
	call("POST", "/queues/bulk/archived_tasks:run_all", 200)
	call("DELETE", "/queues/critical/pending_tasks/pending-critical", 204)
	if got := queues(); got["critical"].Size != 0 || got["default"].Size != 2 || got["bulk"].Size != 1 || got["critical"].Paused {
		t.Fatalf("queues after the operations: %+v", got)
	}
}
