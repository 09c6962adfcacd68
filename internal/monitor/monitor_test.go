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
