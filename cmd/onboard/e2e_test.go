package main_test

// End-to-end tests: the real binary as child processes (api, worker,
// scheduler) against the real Postgres, a redis-server of the test's own and
// the SendGrid fake.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/mail/sendgridfake"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "onboard-e2e")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "onboard")
	// Tests run the binary with the race detector; benchmarks measure the
	// binary as it ships.
	flag.Parse()
	args := []string{"build", "-race", "-o", binary, "."}
	if f := flag.Lookup("test.bench"); f != nil && f.Value.String() != "" {
		args = []string{"build", "-o", binary, "."}
	}
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build onboard:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// system is one test's set of services and processes.
type system struct {
	t        testing.TB
	env      []string
	apiURL   string
	dsn      string
	db       *bun.DB
	redis    *testenv.Redis // nil when the test brings its own REDIS_URL
	sendgrid *sendgridfake.Server
	procs    map[string]*exec.Cmd
	logs     map[string]*testenv.SyncBuffer
}

func newSystem(t *testing.T, extraEnv ...string) *system { return newSystemB(t, extraEnv...) }

func newSystemB(t testing.TB, extraEnv ...string) *system {
	t.Helper()
	s := &system{
		t:        t,
		dsn:      storetest.NewPostgresDSN(t),
		sendgrid: sendgridfake.New(t),
		procs:    map[string]*exec.Cmd{},
		logs:     map[string]*testenv.SyncBuffer{},
	}
	s.db = storetest.Open(t, s.dsn)
	addr := testenv.FreeAddr(t)
	s.apiURL = "http://" + addr
	s.env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"DATABASE_URL=" + s.dsn,
		"HTTP_ADDR=" + addr,
		"PUBLIC_URL=https://portal.example.com",
		"SENDGRID_API_KEY=" + s.sendgrid.APIKey,
		"SENDGRID_API_URL=" + s.sendgrid.URL,
		"MAIL_FROM=invites@vendor.example.com",
		"LOG_FORMAT=text",
		"LOG_LEVEL=debug",
		"SHUTDOWN_TIMEOUT=5s",
		// The tests poll every 50 ms, faster than a tenant may; the limit
		// itself is tested in internal/api and internal/ratelimit.
		"RATE_LIMIT_PER_MINUTE=0",
	}, extraEnv...)
	// A test that brings its own REDIS_URL (a cluster, a dead address)
	// gets no redis-server of its own.
	if !slices.ContainsFunc(extraEnv, func(kv string) bool { return strings.HasPrefix(kv, "REDIS_URL=") }) {
		s.redis = testenv.StartRedis(t)
		s.env = append(s.env, "REDIS_URL="+s.redis.URL())
	}
	t.Cleanup(func() {
		for name := range s.procs {
			_ = s.stop(name)
		}
		if t.Failed() {
			for name, l := range s.logs {
				t.Logf("--- %s log:\n%s", name, l.String())
			}
		}
	})
	return s
}

// start runs `onboard <sub>` in the background.
func (s *system) start(name string, args ...string) {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = s.env
	if s.logs[name] == nil {
		s.logs[name] = &testenv.SyncBuffer{}
	}
	cmd.Stdout, cmd.Stderr = s.logs[name], s.logs[name]
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.procs[name] = cmd
	if args[0] == "api" {
		testenv.Eventually(s.t, 30*time.Second, "the api to answer /healthz", func() bool {
			resp, err := http.Get(s.apiURL + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
}

// stop sends SIGTERM and waits for the process to exit; it returns the
// exit error (nil for a clean, graceful exit).
func (s *system) stop(name string) error {
	cmd := s.procs[name]
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(20 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		err = fmt.Errorf("%s did not stop within 20s of SIGTERM", name)
	}
	delete(s.procs, name)
	return err
}

func (s *system) kill(name string) {
	cmd := s.procs[name]
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	delete(s.procs, name)
}

// run runs `onboard <args>` to completion and returns its stdout.
func (s *system) run(args ...string) string {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = s.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		s.t.Fatalf("onboard %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

func (s *system) newTenant(name string) string {
	s.t.Helper()
	out := s.run("tenant", "create", "--name", name, "--admin-email", "ops@"+strings.ReplaceAll(strings.ToLower(name), " ", "-")+".example.com")
	m := regexp.MustCompile(`api_key=(\S+)`).FindStringSubmatch(out)
	if m == nil {
		s.t.Fatalf("tenant create printed no key: %q", out)
	}
	return m[1]
}

func (s *system) do(key, method, path string, body any) (int, map[string]any) {
	s.t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	code, raw := s.send(key, method, path, "application/json", r)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return code, out
}

// send makes one request to the API with the tenant's key and returns the
// status and the whole body.
func (s *system) send(key, method, path, contentType string, body io.Reader) (int, []byte) {
	s.t.Helper()
	return request(s.t, s.apiURL, key, method, path, contentType, body)
}

// request makes one request to the API at base with a tenant's key.
func request(t testing.TB, base, key, method, path, contentType string, body io.Reader) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, body)
	req.Header.Set("Authorization", "Bearer "+key)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, raw
}

func (s *system) inviteCustomer(key, account, email string) string {
	s.t.Helper()
	code, body := s.do(key, "POST", "/v1/customers", map[string]any{
		"company_name": "Company " + account, "account_number": account, "email": email,
		"first_name": "Pat", "last_name": "Lee", "invite": true,
	})
	if code != 201 {
		s.t.Fatalf("create customer: %d %v", code, body)
	}
	return body["invitation"].(map[string]any)["id"].(string)
}

var tokenRE = regexp.MustCompile(`https://portal\.example\.com/invitations/accept\?token=([A-Za-z0-9_%-]+)`)

func tokenOf(t *testing.T, m sendgridfake.Received) string {
	t.Helper()
	for _, body := range []string{m.Text, m.HTML} {
		if sm := tokenRE.FindStringSubmatch(body); sm != nil {
			tok, _ := url.QueryUnescape(sm[1])
			return tok
		}
	}
	t.Fatalf("email to %s has no accept link", m.To)
	return ""
}

func (s *system) deliveryStates(t *testing.T) map[string]int {
	var rows []struct {
		State string `bun:"state"`
		N     int    `bun:"n"`
	}
	if err := s.db.NewSelect().Model((*store.Delivery)(nil)).Column("state").ColumnExpr("COUNT(*) AS n").Group("state").Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rows {
		out[r.State] = r.N
	}
	return out
}

func TestInviteEmailAcceptEndToEnd(t *testing.T) {
	t.Parallel()
	workerMetrics := testenv.FreeAddr(t)
	const monitorPassword, metricsToken = "monitor-pw-2bd1c9", "metrics-tok-77e0a4"
	s := newSystem(t, "METRICS_ADDR="+workerMetrics, "METRICS_TOKEN="+metricsToken,
		"MONITOR_USER=ops", "MONITOR_PASSWORD="+monitorPassword)
	s.run("migrate")
	key := s.newTenant("Parts Co")
	var tenantID string
	_ = s.db.NewSelect().Model((*store.Tenant)(nil)).Column("id").Limit(1).Scan(context.Background(), &tenantID)
	if out := s.run("tenant", "policy", "--id", tenantID, "--resend-max", "5", "--resend-interval", "48h"); !strings.Contains(out, "resend_max=5") || !strings.Contains(out, "resend_interval=48h") {
		t.Fatalf("tenant policy: %q", out)
	}
	s.start("api", "api")
	s.start("worker", "worker")

	invID := s.inviteCustomer(key, "145722", "pat.lee@customer.example.com")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	msgs, err := s.sendgrid.WaitForMessages(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	m := msgs[0]
	if m.To != "pat.lee@customer.example.com" || m.CustomArgs["invitation_id"] != invID || m.CustomArgs["tenant_id"] == "" {
		t.Fatalf("email: to %q custom_args %v", m.To, m.CustomArgs)
	}
	code, body := s.do(key, "POST", "/v1/invitations/accept", map[string]any{"token": tokenOf(t, m)})
	if code != 200 {
		t.Fatalf("accept: %d %v", code, body)
	}
	if role := body["user"].(map[string]any)["role"]; role != "admin" {
		t.Fatalf("role %v", role)
	}
	if code, _ := s.do(key, "POST", "/v1/invitations/accept", map[string]any{"token": tokenOf(t, m)}); code != 410 {
		t.Fatalf("second accept: %d, want 410", code)
	}

	// /metrics on the API (queues, outbox, what the API counted) and on
	// the worker (sends, SendGrid latency, tasks), behind METRICS_TOKEN.
	if code, _ := s.send("", "GET", "/metrics", "", nil); code != 401 {
		t.Fatalf("/metrics without the token: %d, want 401", code)
	}
	_, apiMetrics := s.send(metricsToken, "GET", "/metrics", "", nil)
	for _, want := range []string{
		`asynq_tasks_processed_total{queue="critical"}`,
		`asynq_queue_size{queue="critical"}`,
		`onboard_outbox_backlog{state="not_enqueued"}`,
		`onboard_invitations_total{event="created",tenant_id="` + tenantID + `"} 1`,
		`onboard_invitations_total{event="accepted",tenant_id="` + tenantID + `"} 1`,
	} {
		if !strings.Contains(string(apiMetrics), want) {
			t.Errorf("API /metrics lacks %s", want)
		}
	}
	req, _ := http.NewRequest("GET", "http://"+workerMetrics+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+metricsToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	workerBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`onboard_invitations_total{event="sent",tenant_id="` + tenantID + `"} 1`,
		`onboard_sendgrid_request_duration_seconds_count{status="202"} 1`,
		`onboard_task_duration_seconds_count{outcome="ok",task_type="invite:send"} 1`,
	} {
		if !strings.Contains(string(workerBody), want) {
			t.Errorf("worker /metrics lacks %s", want)
		}
	}
	// SIGTERM: both processes drain and exit cleanly.
	for _, name := range []string{"worker", "api"} {
		if err := s.stop(name); err != nil {
			t.Errorf("%s on SIGTERM: %v", name, err)
		}
	}
	if !strings.Contains(s.logs["worker"].String(), "metrics listening") || strings.Contains(s.logs["worker"].String(), "api listening") {
		t.Errorf("the worker's METRICS_ADDR listener is not logged as such")
	}
	if !strings.Contains(s.logs["worker"].String(), "All workers have finished") || !strings.Contains(s.logs["api"].String(), "api draining") {
		t.Error("the processes did not shut down gracefully")
	}
	// Debug logs of every process, start to stop: no API key, link token,
	// SendGrid key or password, in any form a log could take.
	token := tokenOf(t, m)
	for name, l := range s.logs {
		for what, secret := range map[string]string{"API key": key, "invitation token": token, "escaped token": url.QueryEscape(token),
			"SendGrid key": s.sendgrid.APIKey, "monitor password": monitorPassword, "metrics token": metricsToken} {
			if strings.Contains(l.String(), secret) {
				t.Errorf("the %s log contains the %s", name, what)
			}
		}
	}
}

func TestSendGrid500IsRetriedAndSendsOnce(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	s.run("migrate")
	key := s.newTenant("Retry Co")
	s.sendgrid.FailNext(500, 1)
	s.start("api", "api")
	s.start("worker", "worker")
	s.inviteCustomer(key, "1", "one@customer.example.com")
	testenv.Eventually(t, 90*time.Second, "the delivery to be sent", func() bool { return s.deliveryStates(t)["sent"] == 1 })
	if n := len(s.sendgrid.Messages()); n != 1 {
		t.Fatalf("%d emails accepted, want exactly 1", n)
	}
	if s.sendgrid.Requests() != 2 {
		t.Fatalf("%d requests, want the failed one and the retry", s.sendgrid.Requests())
	}
}

func TestWorkerKilledMidSendThenRestarted(t *testing.T) {
	t.Parallel()
	s := newSystem(t, "DELIVERY_LEASE=5s")
	s.run("migrate")
	key := s.newTenant("Crash Co")
	s.start("api", "api")
	// Every send takes long enough for the kill to land in the middle of it.
	s.sendgrid.SetLatency(3 * time.Second)
	const n = 4
	for i := range n {
		s.inviteCustomer(key, fmt.Sprint(1000+i), fmt.Sprintf("crash%d@customer.example.com", i))
	}
	s.start("worker", "worker")
	testenv.Eventually(t, 30*time.Second, "sends in flight", func() bool { return s.sendgrid.InFlight() > 0 })
	s.kill("worker")
	s.sendgrid.SetLatency(0)
	s.start("worker", "worker")
	// asynq recovers the killed worker's tasks once their lease expires.
	testenv.Eventually(t, 4*time.Minute, "every delivery to be sent", func() bool { return s.deliveryStates(t)["sent"] == n })
	seen := map[string]int{}
	for _, m := range s.sendgrid.Messages() {
		seen[m.To]++
	}
	if len(seen) != n {
		t.Fatalf("emails reached %d recipients, want %d: %v", len(seen), n, seen)
	}
	for to, c := range seen {
		if c != 1 {
			t.Errorf("%s got %d emails, want 1", to, c)
		}
	}
}

func TestRedisDownWhileAPIAcceptsThenUp(t *testing.T) {
	t.Parallel()
	s := newSystem(t, "OUTBOX_SWEEP_SCHEDULE=@every 1s", "OUTBOX_GRACE=0s")
	s.run("migrate")
	key := s.newTenant("Outage Co")
	s.start("api", "api")
	s.redis.Stop()
	s.inviteCustomer(key, "77", "outage@customer.example.com") // 201 although Redis is down
	s.redis.Start()
	s.start("worker", "worker")
	s.start("scheduler", "scheduler")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, err := s.sendgrid.WaitForMessages(ctx, 1); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "the delivery to be recorded sent", func() bool { return s.deliveryStates(t)["sent"] == 1 })
}

// TestTaskArchivedOnTheDashboardStillSends is the reproduction from the
// security review: an operator archives the pending invite:send of a Save
// and Invite on the dashboard (its HTTP API, as a script would call it).
// The scheduler's outbox sweep finds the work unfinished and runs the task
// again: the invitation email goes out, once, and the invitation has its
// send and its expiry.
func TestTaskArchivedOnTheDashboardStillSends(t *testing.T) {
	t.Parallel()
	s := newSystem(t, "MONITOR_USER=ops", "MONITOR_PASSWORD=archive-pw-41c2",
		"OUTBOX_SWEEP_SCHEDULE=@every 1s", "OUTBOX_GRACE=0s", "OUTBOX_STALE=1s")
	s.run("migrate")
	key := s.newTenant("Archive Co")
	s.start("api", "api")
	invID := s.inviteCustomer(key, "88", "archived@customer.example.com")

	// No worker runs yet: the task is pending when the operator archives it.
	req, _ := http.NewRequest("POST", s.apiURL+"/monitor/api/queues/critical/pending_tasks:archive_all", nil)
	req.SetBasicAuth("ops", "archive-pw-41c2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"archived":1`) {
		t.Fatalf("archive on the dashboard: %d %s", resp.StatusCode, body)
	}

	s.start("scheduler", "scheduler")
	s.start("worker", "worker")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	msgs, err := s.sendgrid.WaitForMessages(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if msgs[0].To != "archived@customer.example.com" {
		t.Fatalf("email to %s", msgs[0].To)
	}
	testenv.Eventually(t, 30*time.Second, "the send recorded and its outbox row completed", func() bool {
		n, _ := s.db.NewSelect().Model((*store.OutboxTask)(nil)).Where("task_type = ? AND completed_at IS NULL", "invite:send").Count(context.Background())
		return s.deliveryStates(t)["sent"] == 1 && n == 0
	})
	if !strings.Contains(s.logs["scheduler"].String(), "rerun=1") {
		t.Errorf("the scheduler's log does not say it ran the archived task again:\n%s", s.logs["scheduler"].String())
	}
	var inv store.Invitation
	if err := s.db.NewSelect().Model(&inv).Where("id = ?", invID).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if inv.State != store.InvitationPending || inv.SendCount != 1 || inv.ExpiresAt.IsZero() {
		t.Fatalf("invitation %+v, want pending, sent once, with an expiry", inv)
	}
	if n := len(s.sendgrid.Messages()); n != 1 {
		t.Fatalf("%d emails, want 1", n)
	}
}

func TestCommandsHelpAndErrors(t *testing.T) {
	t.Parallel()
	for _, sub := range [][]string{{"dev"}, {"api"}, {"worker"}, {"scheduler"}, {"migrate"}, {"tenant", "create"}, {"tenant", "policy"}} {
		cmd := exec.Command(binary, append(sub, "--help")...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		out := stdout.String()
		// Once, with its flags listed under a Flags: header that has any,
		// and no internal placeholder shown as a default.
		_, flags, hasFlags := strings.Cut(out, "\nFlags:\n")
		if err != nil || stderr.Len() > 0 || strings.Count(out, "Usage: onboard") != 1 ||
			(hasFlags && !strings.HasPrefix(flags, "  -")) || strings.Contains(out, "(default -1)") {
			t.Errorf("onboard %v --help: %v\nstdout:\n%s\nstderr:\n%s", sub, err, out, stderr.String())
		}
	}
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"nope"}, nil, "unknown subcommand"},
		{[]string{"tenant", "create"}, nil, "--name is required"},
		{[]string{"migrate"}, []string{"DATABASE_URL=mysql://x"}, "DATABASE_URL"},
		{[]string{"worker"}, []string{"SENDGRID_API_KEY="}, "SENDGRID_API_KEY"},
		{[]string{"api", "--bogus"}, nil, "onboard: api: flag provided but not defined: -bogus"},
		{[]string{"dev", "--addr", "127.0.0.1:0", "--data", t.TempDir()}, []string{"SENDGRID_API_KEY=SG.x"}, "dev: MAIL_FROM is required when SENDGRID_API_KEY is set"},
		{[]string{"dev", "--adr", "x"}, nil, "onboard: dev: flag provided but not defined: -adr"},
		{[]string{"tenant", "policy", "--id", "0b8e2f5c-3c56-4a77-9f3e-8a3f5d1f2b10", "--resend-max", "-1"}, nil, "--resend-max must be from 0 to 100"},
		{[]string{"tenant", "policy", "--id", "0b8e2f5c-3c56-4a77-9f3e-8a3f5d1f2b10", "--resend-interval", "90m"}, nil, "--resend-interval must be whole hours"},
		{[]string{"api"}, []string{"HTTP_ADDR=garbage"}, "HTTP_ADDR"},
	} {
		cmd := exec.Command(binary, tc.args...)
		cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, tc.env...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		line := strings.TrimSpace(stderr.String())
		if err == nil || !strings.Contains(line, tc.want) || strings.Count(line, "\n") != 0 || strings.Count(line, "onboard:") != 1 || stdout.Len() > 0 {
			t.Errorf("onboard %v: err %v, stderr %q, stdout %q: want one line containing %q on stderr alone", tc.args, err, line, stdout.String(), tc.want)
		}
	}
}

// A password that makes its URL unparsable (a space, a quote) or that the
// driver meets is not printed by a command that fails on it.
func TestStartupErrorsHidePasswords(t *testing.T) {
	t.Parallel()
	const password = "SecretPass456"
	for _, tc := range []struct{ name, value, want string }{
		{"DATABASE_URL", "postgres://root:Pg " + password + "@127.0.0.1:5432/db", "DATABASE_URL is not a valid URL"},
		{"DATABASE_URL", `postgres://root:Pg"` + password + "@127.0.0.1:5432/db", "DATABASE_URL is not a valid URL"},
		{"DATABASE_URL", "postgres://root:it's-" + password + "@127.0.0.1:1/db", "connect"},
		{"DATABASE_URL", "postgres://root:" + password + "@127.0.0.1:5432/db?connect_timeout=x", "connect_timeout"},
		{"REDIS_URL", "redis://:Pg " + password + "@127.0.0.1:6379/0", "REDIS_URL is not a valid URL"},
		{"REDIS_URL", `redis://:Pg"` + password + "@127.0.0.1:6379/0", "REDIS_URL is not a valid URL"},
		{"REDIS_URL", "rediss://default:it's " + password + "@127.0.0.1:6379/0", "REDIS_URL is not a valid URL"},
	} {
		cmd := exec.Command(binary, "migrate")
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), tc.name + "=" + tc.value}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		line := strings.TrimSpace(stderr.String())
		if err == nil || !strings.Contains(line, tc.want) || strings.Contains(line, password) {
			t.Errorf("%s=%q: err %v, stderr %q: want an error about %q without the password", tc.name, tc.value, err, line, tc.want)
		}
	}
}

// A database that was never migrated: the processes start and say so,
// /readyz answers 503 naming the cause until `onboard migrate` has run, and
// the tenant commands say what to run instead of a raw SQL error.
func TestUnmigratedDatabaseIsNamed(t *testing.T) {
	t.Parallel()
	s := newSystem(t, "DATABASE_URL="+storetest.NewUnmigratedPostgresDSN(t))
	const want = "database not migrated: run onboard migrate"
	for _, args := range [][]string{
		{"tenant", "create", "--name", "Early Co"},
		{"tenant", "policy", "--id", "0b8e2f5c-3c56-4a77-9f3e-8a3f5d1f2b10", "--resend-max", "2"},
	} {
		cmd := exec.Command(binary, args...)
		cmd.Env = s.env
		out, err := cmd.CombinedOutput()
		if line := strings.TrimSpace(string(out)); err == nil || line != "onboard: "+args[0]+" "+args[1]+": "+want {
			t.Errorf("onboard %v: %v %q", args, err, line)
		}
	}
	s.start("api", "api")
	s.start("worker", "worker")
	s.start("scheduler", "scheduler")
	readyz := func() (int, string) {
		code, body := request(t, s.apiURL, "", "GET", "/readyz", "", nil)
		return code, string(body)
	}
	if code, body := readyz(); code != 503 || !strings.Contains(body, want) {
		t.Fatalf("readyz before migrate: %d %s", code, body)
	}
	for _, name := range []string{"api", "worker", "scheduler"} {
		testenv.Eventually(t, 30*time.Second, name+" to warn that the database is not migrated", func() bool {
			return strings.Contains(s.logs[name].String(), "level=WARN msg=\""+want+"\"")
		})
	}
	s.run("migrate")
	if code, body := readyz(); code != 200 {
		t.Fatalf("readyz after migrate: %d %s", code, body)
	}
}

// The first SIGTERM drains; a second one exits at once, non-zero, for the
// operator who will not wait for SHUTDOWN_TIMEOUT.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	s := newSystem(t, "SHUTDOWN_TIMEOUT=2m")
	s.run("migrate")
	key := s.newTenant("Slow Co")
	s.start("api", "api")
	// An upload that stalls halfway: draining waits for it.
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.apiURL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/imports HTTP/1.1\r\nHost: onboard\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n"+
		"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.csv\"\r\n\r\nAccount Number,Customer Email\r\n", key)
	time.Sleep(300 * time.Millisecond)

	cmd := s.procs["api"]
	delete(s.procs, "api") // waited for here
	done := make(chan error, 1)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	go func() { done <- cmd.Wait() }()
	testenv.Eventually(t, 10*time.Second, "the api to drain", func() bool { return strings.Contains(s.logs["api"].String(), "api draining") })
	select {
	case err := <-done:
		t.Fatalf("the api exited with an upload open (%v): it did not drain", err)
	case <-time.After(time.Second):
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Fatalf("after a second SIGTERM: %v, want exit status 1", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("a second SIGTERM did not stop the api")
	}
	log := s.logs["api"].String()
	if !strings.Contains(log, "send the signal again to exit at once") || !strings.Contains(log, "second signal: exiting at once") {
		t.Fatalf("the api log does not say what the signals did:\n%s", log)
	}
}

// With Redis down, the libraries under the API complain (go-redis' pool,
// asynq's metrics collector): in the JSON log, as JSON.
func TestLibraryLogsAreJSON(t *testing.T) {
	t.Parallel()
	s := newSystem(t, "LOG_FORMAT=json", "LOG_LEVEL=info", "REDIS_URL=redis://"+testenv.FreeAddr(t)+"/0")
	s.start("api", "api")
	for _, path := range []string{"/readyz", "/metrics"} {
		if code, _ := request(t, s.apiURL, "", "GET", path, "", nil); path == "/readyz" && code != 503 {
			t.Fatalf("readyz with Redis down: %d", code)
		}
	}
	testenv.Eventually(t, 30*time.Second, "go-redis and the metrics collector to log", func() bool {
		l := s.logs["api"].String()
		return strings.Contains(l, `"component":"go-redis"`) && strings.Contains(l, "Failed to collect metrics data")
	})
	if err := s.stop("api"); err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(s.logs["api"].String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("not JSON: %s", line)
		}
	}
}

// The Procfile's lines, run as a Heroku-style platform runs them (in a
// shell, with PORT set): the web process listens on $PORT, and the worker
// drains for 25 s by default, inside the platform's 30 s before SIGKILL.
func TestProcfile(t *testing.T) {
	t.Parallel()
	procfile, err := os.ReadFile("../../Procfile")
	if err != nil {
		t.Fatal(err)
	}
	line := func(name string) string {
		for _, l := range strings.Split(string(procfile), "\n") {
			if cmd, ok := strings.CutPrefix(l, name+":"); ok {
				return strings.TrimSpace(cmd)
			}
		}
		t.Fatalf("the Procfile has no %s line", name)
		return ""
	}
	s := newSystem(t)
	s.run("migrate")
	port := strings.TrimPrefix(testenv.FreeAddr(t), "127.0.0.1:")
	var env []string
	for _, kv := range s.env {
		if !strings.HasPrefix(kv, "SHUTDOWN_TIMEOUT=") && !strings.HasPrefix(kv, "HTTP_ADDR=") {
			env = append(env, kv)
		}
	}
	env = append(env, "PATH="+filepath.Dir(binary)+":"+os.Getenv("PATH"), "PORT="+port)
	var logs = map[string]*testenv.SyncBuffer{}
	for _, name := range []string{"web", "worker"} {
		logs[name] = &testenv.SyncBuffer{}
		cmd := exec.Command("sh", "-c", line(name))
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = logs[name], logs[name]
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("--- %s log:\n%s", name, logs[name].String())
			}
		})
		if name == "worker" {
			testenv.Eventually(t, 30*time.Second, "the worker to start", func() bool { return strings.Contains(logs[name].String(), "worker started") })
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		}
	}
	testenv.Eventually(t, 30*time.Second, "the web process to answer on $PORT", func() bool {
		resp, err := http.Get("http://127.0.0.1:" + port + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	testenv.Eventually(t, 30*time.Second, "the worker to drain for 25s", func() bool {
		return strings.Contains(logs["worker"].String(), "worker stopping: finishing running tasks\" timeout=25s")
	})
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// upload posts a file to /v1/imports as curl -F does.
func (s *system) upload(key, filename string, content []byte, fields ...string) map[string]any {
	s.t.Helper()
	contentType, body := uploadForm(filename, content, fields...)
	code, raw := s.send(key, "POST", "/v1/imports", contentType, body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	if code != http.StatusAccepted {
		s.t.Fatalf("upload: %d %s", code, raw)
	}
	return out
}

// uploadForm is the multipart body of an import upload: the file and the
// form fields given as name, value pairs.
func uploadForm(filename string, content []byte, fields ...string) (contentType string, body *bytes.Buffer) {
	body = &bytes.Buffer{}
	mw := multipart.NewWriter(body)
	for i := 0; i+1 < len(fields); i += 2 {
		_ = mw.WriteField(fields[i], fields[i+1])
	}
	fw, _ := mw.CreateFormFile("file", filename)
	_, _ = fw.Write(content)
	_ = mw.Close()
	return mw.FormDataContentType(), body
}

func (s *system) importStatus(key, id string) map[string]any {
	s.t.Helper()
	code, body := s.do(key, "GET", "/v1/imports/"+id, nil)
	if code != 200 {
		s.t.Fatalf("import status: %d %v", code, body)
	}
	return body
}

func (s *system) get(key, path string) string {
	s.t.Helper()
	code, raw := s.send(key, "GET", path, "", nil)
	if code != 200 {
		s.t.Fatalf("GET %s: %d %s", path, code, raw)
	}
	return string(raw)
}

// The README's walk-through: the template with good and bad rows, uploaded,
// processed, the history, the error log and the confirmation email.
func TestImportEndToEnd(t *testing.T) {
	t.Parallel()
	s := newSystem(t)
	s.run("migrate")
	key := s.newTenant("Import Co")
	s.start("api", "api")
	s.start("worker", "worker")
	file := s.get(key, "/v1/imports/template.csv") +
		"100235,john.roe@example.com,John,Roe\r\n" +
		"100236,not-an-email,Bad,Email\r\n" +
		",nobody@example.com,No,Account\r\n" +
		"100238,JOHN.ROE@example.com,Same,Email\r\n"
	up := s.upload(key, "customers.csv", []byte(file), "notify_email", "me@vendor.example.com")
	id := up["id"].(string)
	testenv.Eventually(t, time.Minute, "the import to complete", func() bool { return s.importStatus(key, id)["status"] == "completed" })
	st := s.importStatus(key, id)
	if st["total_rows"] != 5.0 || st["succeeded"] != 2.0 || st["failed"] != 3.0 || st["progress"].(map[string]any)["percent"] != 100.0 {
		t.Fatalf("status %v", st)
	}
	_, hist := s.do(key, "GET", "/v1/imports", nil)
	if data := hist["data"].([]any); len(data) != 1 || data[0].(map[string]any)["type"] != "Create Customer Invitations" {
		t.Fatalf("history %v", hist)
	}
	log := s.get(key, "/v1/imports/"+id+"/errors")
	for _, want := range []string{
		"4,Customer Email,Customer Email must be valid,100236,not-an-email,Bad,Email",
		"5,Account Number,Account Number field must not be empty,,nobody@example.com,No,Account",
		"6,Customer Email,Provided email address is already in use,100238,JOHN.ROE@example.com,Same,Email",
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("error log lacks %q:\n%s", want, log)
		}
	}
	if got := s.get(key, "/v1/imports/"+id+"/file"); got != file {
		t.Fatalf("the original file came back different")
	}
	msgs, err := s.sendgrid.WaitForMessages(context.Background(), 3)
	if err != nil {
		t.Fatal(err)
	}
	var report *sendgridfake.Received
	for i, m := range msgs {
		if m.To == "me@vendor.example.com" {
			report = &msgs[i]
		}
	}
	if report == nil || len(report.Attachments) != 2 || !strings.Contains(string(report.Attachments[1].Content), "Customer Email must be valid") {
		t.Fatalf("confirmation email %+v", report)
	}
}

// A worker SIGKILLed in the middle of an import and started again finishes
// it with every row counted once: no customer, invitation, error-log entry
// or email twice, none missing.
func TestWorkerKilledMidImportThenRestarted(t *testing.T) {
	t.Parallel()
	// The scheduler's outbox sweep is part of the system: a kill between
	// a batch's commit and the enqueue of its tasks leaves them to it.
	s := newSystem(t, "DELIVERY_LEASE=5s", "OUTBOX_SWEEP_SCHEDULE=@every 1s", "OUTBOX_GRACE=1s")
	s.run("migrate")
	key := s.newTenant("Big Import Co")
	s.start("api", "api")
	s.start("scheduler", "scheduler")
	const rows = 40000
	var b strings.Builder
	b.WriteString("Account Number,Customer Email,First Name\n")
	bad := 0
	for i := range rows {
		email := fmt.Sprintf("user%d@big.example.com", i)
		if i%97 == 0 {
			email, bad = "broken-"+email[:4], bad+1
		}
		fmt.Fprintf(&b, "%d,%s,User %d\n", 900000+i, email, i)
	}
	up := s.upload(key, "big.csv", []byte(b.String()))
	id := up["id"].(string)
	s.start("worker", "worker")
	testenv.Eventually(t, 2*time.Minute, "the import to be partly done", func() bool {
		st := s.importStatus(key, id)
		done := st["progress"].(map[string]any)["rows_done"].(float64)
		return done >= 2000 && done < rows-5000
	})
	s.kill("worker")
	before := s.importStatus(key, id)["progress"].(map[string]any)["rows_done"].(float64)
	s.start("worker", "worker")
	testenv.Eventually(t, 5*time.Minute, "the import to complete", func() bool { return s.importStatus(key, id)["status"] == "completed" })
	st := s.importStatus(key, id)
	if st["total_rows"] != float64(rows) || st["succeeded"] != float64(rows-bad) || st["failed"] != float64(bad) {
		t.Fatalf("status %v (killed at %v rows)", st, before)
	}
	ctx := context.Background()
	count := func(q string, args ...any) int {
		var n int
		if err := s.db.QueryRowContext(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("SELECT count(*) FROM invitations WHERE import_id = ?", id); n != rows-bad {
		t.Fatalf("%d invitations, want %d", n, rows-bad)
	}
	if n := count("SELECT count(*) FROM customers"); n != rows-bad {
		t.Fatalf("%d customers, want %d", n, rows-bad)
	}
	if n := count("SELECT count(*) FROM import_errors WHERE import_id = ?", id); n != bad {
		t.Fatalf("%d error-log entries, want %d", n, bad)
	}
	testenv.Eventually(t, 5*time.Minute, "every invitation email to be sent", func() bool {
		return s.deliveryStates(t)["sent"] == rows-bad+1 // and the confirmation
	})
	seen := map[string]int{}
	for _, m := range s.sendgrid.Messages() {
		seen[m.To]++
	}
	if len(seen) != rows-bad+1 {
		t.Fatalf("emails reached %d recipients, want %d", len(seen), rows-bad+1)
	}
	for to, c := range seen {
		if c != 1 {
			t.Fatalf("%s got %d emails", to, c)
		}
	}
}
