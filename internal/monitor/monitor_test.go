package monitor_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
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

// TestDashboardRefusesChangesFromAnotherOrigin: a change that a browser
// marks as coming from another origin (a form on another site, posted with
// the operator's cached credentials) is refused before it reaches asynqmon;
// the dashboard's own page, and curl or a script (no browser headers), still
// change things; reading is never refused.
func TestDashboardRefusesChangesFromAnotherOrigin(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	defer client.Close()
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	queue := func() *asynq.QueueInfo {
		t.Helper()
		info, err := insp.GetQueueInfo("critical")
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	srv := serve(t, monitor.Options{Redis: opt, User: "ops", Password: "s3cret"})
	form := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}

	for _, tc := range []struct {
		name    string
		method  string
		path    string
		noAuth  bool
		headers map[string]string
		want    int
	}{
		{"curl or a script: no browser headers", "POST", "/monitor/api/queues/critical:pause", false, form, 204},
		{"a form on another site", "POST", "/monitor/api/queues/critical:pause", false, with(form, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"), 403},
		{"a form on another site, browser without Sec-Fetch-Site", "POST", "/monitor/api/queues/critical:pause", false, with(form, "Origin", "https://evil.example"), 403},
		{"a page on a sibling host (same site, another origin)", "POST", "/monitor/api/queues/critical:pause", false, with(form, "Sec-Fetch-Site", "same-site", "Origin", "http://other.127.0.0.1.nip.io"), 403},
		{"another site without credentials: refused, no prompt", "POST", "/monitor/api/queues/critical:pause", true, with(form, "Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"), 403},
		{"a DELETE from another site", "DELETE", "/monitor/api/queues/critical/pending_tasks:delete_all", false, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 403},
		{"the dashboard's own page", "POST", "/monitor/api/queues/critical:pause", false, map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": srv.URL}, 204},
		{"the dashboard's own page, browser without Sec-Fetch-Site", "POST", "/monitor/api/queues/critical:pause", false, map[string]string{"Origin": srv.URL}, 204},
		{"typed into the address bar or a bookmark", "POST", "/monitor/api/queues/critical:pause", false, map[string]string{"Sec-Fetch-Site": "none"}, 204},
		{"another site reading (a GET changes nothing)", "GET", "/monitor/api/queues", false, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case starts from a running queue holding one task.
			_, err := client.Enqueue(asynq.NewTask("invite:send", []byte(`{}`)), asynq.Queue("critical"), asynq.TaskID("probe"))
			if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
				t.Fatal(err)
			}
			if queue().Paused {
				if err := insp.UnpauseQueue("critical"); err != nil {
					t.Fatal(err)
				}
			}
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if !tc.noAuth {
				req.SetBasicAuth("ops", "s3cret")
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tc.want)
			}
			if resp.StatusCode == 403 && resp.Header.Get("WWW-Authenticate") != "" {
				t.Error("a refused cross-origin request asks for credentials")
			}
			info := queue()
			wantPaused := tc.path == "/monitor/api/queues/critical:pause" && tc.want == 204
			if info.Paused != wantPaused {
				t.Errorf("queue paused: %v, want %v", info.Paused, wantPaused)
			}
			if info.Size != 1 {
				t.Errorf("the queue holds %d tasks, want its 1", info.Size)
			}
		})
	}
}

// recorded is one request the dashboard answered, as the browser sent it.
type recorded struct {
	method, path, secFetchSite string
	withCredentials            bool
	status                     int
}

// recorder wraps the dashboard and keeps what it answered.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []recorded
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sw := &statusWriter{ResponseWriter: w, status: 200}
	rec.next.ServeHTTP(sw, r)
	_, _, auth := r.BasicAuth()
	rec.mu.Lock()
	rec.reqs = append(rec.reqs, recorded{r.Method, r.URL.Path, r.Header.Get("Sec-Fetch-Site"), auth, sw.status})
	rec.mu.Unlock()
}

// find returns the requests with that method and path.
func (rec *recorder) find(method, path string) []recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []recorded
	for _, r := range rec.reqs {
		if r.method == method && r.path == path {
			out = append(out, r)
		}
	}
	return out
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// TestDashboardActionsInABrowser drives headless Chromium as an operator:
// signed in to the dashboard (the browser caches the credentials), the
// operator opens a page of another site, which posts a form to the
// dashboard's pause URL; the browser sends it with the cached credentials
// and it is refused, the queue keeps running. Back on the dashboard, the
// operator hovers the queue's row and clicks Pause: the dashboard's own
// request passes and the queue is paused.
func TestDashboardActionsInABrowser(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	defer client.Close()
	for _, q := range []string{"critical", "default"} {
		if _, err := client.Enqueue(asynq.NewTask("probe:"+q, []byte(`{}`)), asynq.Queue(q)); err != nil {
			t.Fatal(err)
		}
	}
	insp := asynq.NewInspector(opt)
	defer insp.Close()
	paused := func(q string) bool {
		t.Helper()
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		return info.Paused
	}

	h, closeMon := monitor.New(monitor.Options{Redis: opt, User: "ops", Password: "s3cret"})
	t.Cleanup(func() { closeMon() })
	mux := http.NewServeMux()
	mux.Handle(monitor.Path+"/", h)
	rec := &recorder{next: mux}
	dash := httptest.NewServer(rec)
	t.Cleanup(dash.Close)
	pauseURL := dash.URL + "/monitor/api/queues/critical:pause"
	// Another site: localhost is another site than 127.0.0.1 to a browser.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, `<!doctype html><html><body>
<form id="f" method="POST" action=%q><input type="hidden" name="x" value="1"></form>
<script>document.getElementById("f").submit()</script>
</body></html>`, pauseURL)
	}))
	t.Cleanup(evil.Close)
	evilURL := strings.Replace(evil.URL, "127.0.0.1", "localhost", 1) + "/cute-cats"

	b := testenv.StartBrowser(t)
	text := func() string {
		var s string
		b.Eval(`document.body ? document.body.innerText : ""`, &s)
		return s
	}
	b.Navigate(strings.Replace(dash.URL, "http://", "http://ops:s3cret@", 1) + "/monitor/")
	testenv.Eventually(t, 30*time.Second, "the dashboard to render its queues", func() bool {
		return strings.Contains(text(), "critical") && strings.Contains(text(), "default")
	})

	b.Navigate(evilURL)
	testenv.Eventually(t, 30*time.Second, "the other site's form to reach the dashboard", func() bool {
		return len(rec.find("POST", "/monitor/api/queues/critical:pause")) > 0
	})
	got := rec.find("POST", "/monitor/api/queues/critical:pause")
	if len(got) != 1 || got[0].status != 403 || got[0].secFetchSite != "cross-site" {
		t.Fatalf("the other site's form: %+v, want one POST, cross-site, refused with 403", got)
	}
	if !got[0].withCredentials {
		t.Fatalf("the browser did not send its cached credentials with the form, so this test proves nothing: %+v", got[0])
	}
	if paused("critical") {
		t.Fatal("another site's form paused the queue")
	}

	// Back on the dashboard, without credentials in the URL: the browser
	// sends the cached ones.
	b.Navigate(dash.URL + "/monitor/")
	testenv.Eventually(t, 30*time.Second, "the dashboard to render its queues again", func() bool {
		return strings.Contains(text(), "critical") && strings.Contains(text(), "default")
	})
	// The row's actions show while the mouse is over its last cell.
	const actionsCell = `(() => {
		const row = [...document.querySelectorAll("tbody tr")].find(r => r.cells.length > 1 && r.cells[0].innerText.trim() === "critical");
		return row ? row.cells[row.cells.length - 1] : null;
	})()`
	type point struct{ X, Y float64 }
	var cell *point
	b.Eval(`(() => { const c = `+actionsCell+`; if (!c) return null; const r = c.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`, &cell)
	if cell == nil {
		t.Fatalf("no row for the critical queue:\n%s", text())
	}
	b.MouseMove(cell.X, cell.Y)
	var button *point
	testenv.Eventually(t, 10*time.Second, "the row's Pause button to show on hover", func() bool {
		b.Eval(`(() => { const c = `+actionsCell+`; const btn = c && c.querySelector("button"); if (!btn) return null; const r = btn.getBoundingClientRect(); return {x: r.x + r.width / 2, y: r.y + r.height / 2}; })()`, &button)
		return button != nil
	})
	b.Click(button.X, button.Y)
	testenv.Eventually(t, 10*time.Second, "the dashboard's own Pause to pause the queue", func() bool { return paused("critical") })
	got = rec.find("POST", "/monitor/api/queues/critical:pause")
	if len(got) != 2 || got[1].status != 204 || got[1].secFetchSite != "same-origin" {
		t.Fatalf("pause requests: %+v, want the dashboard's own, same-origin, answered 204", got)
	}
	if paused("default") {
		t.Fatal("the click paused another queue")
	}
}
