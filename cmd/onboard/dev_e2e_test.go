package main_test

// `onboard dev` end to end: the real binary as a child process with no
// Postgres, Redis or SendGrid in its environment, driven through the curl
// lines it prints, its API, its mail page and a real browser.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/onboard-dev/onboard/internal/testenv"
)

type devProcess struct {
	t        *testing.T
	data     string
	cmd      *exec.Cmd
	out      *testenv.SyncBuffer
	url      string
	key      string
	monUser  string
	monPass  string
	curlLine map[string]string // "invite", "import": the printed commands
}

var (
	bannerAPI     = regexp.MustCompile(`(?m)^  API +(http://\S+)$`)
	bannerKey     = regexp.MustCompile(`(?m)^  API key +(\S+)`)
	bannerMonitor = regexp.MustCompile(`(?m)^  Dashboard +\S+/monitor +user (\S+) +password (\S+)$`)
)

// startDev runs `onboard dev` on a free port with only PATH and HOME in its
// environment: whatever it needs, it brings.
func startDev(t *testing.T, data string) *devProcess { return startDevIn(t, "", data) }

// startDevIn is startDev run in the directory cwd ("": the test's).
func startDevIn(t *testing.T, cwd, data string) *devProcess {
	t.Helper()
	d := &devProcess{t: t, data: data, out: &testenv.SyncBuffer{}, curlLine: map[string]string{}}
	d.cmd = exec.Command(binary, "dev", "--data", data, "--addr", "127.0.0.1:0")
	d.cmd.Dir = cwd
	// RATE_LIMIT_PER_MINUTE=0: the test polls faster than a tenant may.
	d.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "SHUTDOWN_TIMEOUT=5s", "RATE_LIMIT_PER_MINUTE=0"}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			_ = d.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("--- onboard dev output:\n%s", d.out.String())
		}
	})
	testenv.Eventually(t, 60*time.Second, "onboard dev to print its banner and answer", func() bool {
		out := d.out.String()
		if !strings.Contains(out, "Import the sample file") {
			return false
		}
		resp, err := http.Get(bannerAPI.FindStringSubmatch(out)[1] + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	out := d.out.String()
	d.url = bannerAPI.FindStringSubmatch(out)[1]
	d.key = bannerKey.FindStringSubmatch(out)[1]
	m := bannerMonitor.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no dashboard credentials in the banner:\n%s", out)
	}
	d.monUser, d.monPass = m[1], m[2]
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if i+1 < len(lines) && strings.HasPrefix(lines[i+1], "  curl ") {
			switch {
			case strings.HasPrefix(l, "Invite a customer"):
				d.curlLine["invite"] = strings.TrimSpace(lines[i+1])
			case strings.HasPrefix(l, "Import the sample file"):
				d.curlLine["import"] = strings.TrimSpace(lines[i+1])
			}
		}
	}
	if !strings.Contains(out, d.url+"/dev/mail") || len(d.curlLine) != 2 {
		t.Fatalf("the banner lacks the mail page or a curl line:\n%s", out)
	}
	return d
}

// stop sends SIGTERM and expects a clean exit.
func (d *devProcess) stop() {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	if err := d.cmd.Wait(); err != nil {
		d.t.Fatalf("onboard dev on SIGTERM: %v", err)
	}
}

func (d *devProcess) kill() {
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	_ = d.cmd.Wait()
}

// curl runs one of the printed curl lines as a user pasting it would.
func (d *devProcess) curl(which string) map[string]any {
	d.t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		d.t.Fatalf("curl is required to run the printed lines: %v", err)
	}
	cmd := exec.Command("sh", "-c", d.curlLine[which])
	out, err := cmd.Output()
	if err != nil {
		d.t.Fatalf("%s: %v", d.curlLine[which], err)
	}
	var body map[string]any
	if err := json.Unmarshal(out, &body); err != nil {
		d.t.Fatalf("%s printed %q", d.curlLine[which], out)
	}
	return body
}

func (d *devProcess) request(method, path, contentType string, body io.Reader) (int, []byte) {
	d.t.Helper()
	return request(d.t, d.url, d.key, method, path, contentType, body)
}

func (d *devProcess) getJSON(path string, v any) {
	d.t.Helper()
	code, b := d.request("GET", path, "", nil)
	if code != 200 {
		d.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		d.t.Fatalf("GET %s: %v", path, err)
	}
}

type sinkEmail struct {
	ID          string `json:"id"`
	To          struct{ Email string }
	Subject     string
	Text        string
	Attachments []struct{ Filename string }
}

// mail reads every email on the mail page's JSON, page by page.
func (d *devProcess) mail() []sinkEmail {
	d.t.Helper()
	var all []sinkEmail
	before := ""
	for {
		var page struct {
			Emails     []sinkEmail `json:"emails"`
			NextBefore string      `json:"next_before"`
		}
		d.getJSON("/dev/mail?format=json&before="+before, &page)
		all = append(all, page.Emails...)
		if page.NextBefore == "" {
			return all
		}
		before = page.NextBefore
	}
}

func (d *devProcess) waitImport(id string, wantSucceeded, wantFailed float64) {
	d.t.Helper()
	var imp map[string]any
	testenv.Eventually(d.t, 3*time.Minute, "the import to finish", func() bool {
		d.getJSON("/v1/imports/"+id, &imp)
		return imp["status"] == "completed" || imp["status"] == "failed"
	})
	if imp["status"] != "completed" || imp["succeeded"] != wantSucceeded || imp["failed"] != wantFailed {
		d.t.Fatalf("import: %v, want completed with %v succeeded and %v failed", imp, wantSucceeded, wantFailed)
	}
}

var devTokenRE = regexp.MustCompile(`/invitations/accept\?token=([A-Za-z0-9_%-]+)`)

func TestDevRunsTheWholeSystemWithoutServers(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := startDev(t, data)

	// The two printed curl lines, as pasted.
	invited := d.curl("invite")
	if invited["invitation"] == nil {
		t.Fatalf("invite curl: %v", invited)
	}
	imported := d.curl("import")
	importID, _ := imported["id"].(string)
	if importID == "" {
		t.Fatalf("import curl: %v", imported)
	}
	// Four good rows; six bad ones, one of them refused by the ERP simulator.
	d.waitImport(importID, 4, 6)
	code, errorsCSV := d.request("GET", "/v1/imports/"+importID+"/errors", "", nil)
	for _, want := range []string{"Customer Email field must not be empty", "Customer Email must be valid", "Account Number field must not be empty", "Provided email address is already in use", "Account Number was not found in the ERP"} {
		if code != 200 || !bytes.Contains(errorsCSV, []byte(want)) {
			t.Errorf("error log lacks %q: %d\n%s", want, code, errorsCSV)
		}
	}

	// Every email in the sink: the single invite, four from the import and
	// the confirmation with its two files.
	var emails []sinkEmail
	testenv.Eventually(t, 2*time.Minute, "six emails on the mail page", func() bool {
		emails = d.mail()
		return len(emails) >= 6
	})
	byTo := map[string]sinkEmail{}
	for _, e := range emails {
		if _, dup := byTo[e.To.Email]; dup {
			t.Errorf("two emails to %s", e.To.Email)
		}
		byTo[e.To.Email] = e
	}
	for _, to := range []string{"buyer@northwind.example", "purchasing@contoso.example", "orders@fabrikam.example", "bikes@adventure-works.example", "toys@tailspin.example"} {
		if !devTokenRE.MatchString(byTo[to].Text) {
			t.Errorf("no invitation with an accept link for %s: %+v", to, byTo[to])
		}
	}
	report := byTo["admin@demo-vendor.example"]
	if !strings.Contains(report.Subject, "4 invited, 6 failed") || len(report.Attachments) != 2 {
		t.Fatalf("confirmation email: %+v", report)
	}
	resp, err := http.Get(d.url + "/dev/mail/" + report.ID + "/attachments/1")
	if err != nil {
		t.Fatal(err)
	}
	failed, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(failed, []byte("not-an-email")) {
		t.Fatalf("failed-rows attachment: %d %s", resp.StatusCode, failed)
	}

	// Accept the single invitation with the token from its email.
	tok, _ := url.QueryUnescape(devTokenRE.FindStringSubmatch(byTo["buyer@northwind.example"].Text)[1])
	code, body := d.request("POST", "/v1/invitations/accept", "application/json", strings.NewReader(fmt.Sprintf(`{"token":%q}`, tok)))
	if code != 200 || !bytes.Contains(body, []byte(`"role":"admin"`)) {
		t.Fatalf("accept: %d %s", code, body)
	}

	// A real browser: the mail page lists the invitation, and the dashboard
	// (with the printed credentials) shows the queues the tasks went through.
	page := testenv.DumpDOM(t, d.url+"/dev/mail", 5*time.Second)
	if !strings.Contains(page, "buyer@northwind.example") || !strings.Contains(page, "Demo Vendor invites Northwind Traders to its customer portal") {
		t.Fatalf("the mail page in Chromium does not list the invitation:\n%s", page)
	}
	dash := testenv.DumpDOM(t, strings.Replace(d.url, "http://", "http://"+d.monUser+":"+d.monPass+"@", 1)+"/monitor/", 15*time.Second)
	if !strings.Contains(dash, ">critical<") || !strings.Contains(dash, ">bulk<") {
		t.Fatalf("the dashboard in Chromium shows no critical and bulk queues")
	}

	// Stop and start on the same data directory: same key, same state.
	d.stop()
	key := d.key
	d = startDev(t, data)
	if d.key != key {
		t.Fatalf("the demo key changed across a restart: %s then %s", key, d.key)
	}
	var customers struct{ Data []map[string]any }
	d.getJSON("/v1/customers", &customers)
	if len(customers.Data) != 5 {
		t.Fatalf("after a restart: %d customers, want 5", len(customers.Data))
	}
	var imports struct{ Data []map[string]any }
	d.getJSON("/v1/imports", &imports)
	if len(imports.Data) != 1 || imports.Data[0]["id"] != importID {
		t.Fatalf("after a restart the import history is %v", imports.Data)
	}
	if n := len(d.mail()); n != len(emails) {
		t.Fatalf("after a restart the mail page has %d emails, want %d", n, len(emails))
	}
	d.stop()
}

// TestDevRestartLosesNoWork kills `onboard dev` right after the API accepted
// an import and an invitation: the tasks die with the in-process Redis, and
// the outbox sweep at the next start brings them back.
func TestDevRestartLosesNoWork(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	d := startDev(t, data)

	const rows = 1500
	var csv bytes.Buffer
	csv.WriteString("Account Number,Customer Email,Customer First Name,Customer Last Name\r\n")
	for i := range rows {
		fmt.Fprintf(&csv, "A%05d,person%d@bulk.example,First%d,Last%d\r\n", i, i, i, i)
	}
	contentType, form := uploadForm("customers.csv", csv.Bytes())
	code, body := d.request("POST", "/v1/imports", contentType, form)
	if code != 202 {
		t.Fatalf("upload: %d %s", code, body)
	}
	var imp struct{ ID string }
	_ = json.Unmarshal(body, &imp)
	code, body = d.request("POST", "/v1/customers", "application/json", strings.NewReader(`{"company_name":"Solo","account_number":"S1","email":"solo@single.example","invite":true}`))
	if code != 201 {
		t.Fatalf("invite: %d %s", code, body)
	}
	d.kill()

	d = startDev(t, data)
	t.Logf("restart: %s", regexp.MustCompile(`.*re-enqueued.*`).FindString(d.out.String()))
	d.waitImport(imp.ID, rows, 0)
	want := map[string]bool{"solo@single.example": true}
	for i := range rows {
		want[fmt.Sprintf("person%d@bulk.example", i)] = true
	}
	testenv.Eventually(t, 3*time.Minute, "an email to every invited customer", func() bool {
		got := map[string]bool{}
		for _, e := range d.mail() {
			got[e.To.Email] = true
		}
		for to := range want {
			if !got[to] {
				return false
			}
		}
		return true
	})
	d.stop()
}

// The data directory: the printed lines name it absolutely, so they work
// pasted in another directory, and a second dev on it is refused (it would
// make a demo tenant of its own and overwrite dev.json).
func TestDevDataDirectory(t *testing.T) {
	t.Parallel()
	cwd := t.TempDir()
	d := startDevIn(t, cwd, "state") // relative to dev's directory, not the test's
	want := "-F file=@" + filepath.Join(cwd, "state", "sample-customers.csv") + " "
	if !strings.Contains(d.curlLine["import"], want) {
		t.Fatalf("the import line does not name the sample file absolutely (%q):\n%s", want, d.curlLine["import"])
	}
	if imported := d.curl("import"); imported["id"] == nil {
		t.Fatalf("import curl run in another directory: %v", imported)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := exec.CommandContext(ctx, binary, "dev", "--data", filepath.Join(cwd, "state"), "--addr", "127.0.0.1:0")
	second.Env = d.cmd.Env
	var stdout, stderr bytes.Buffer
	second.Stdout, second.Stderr = &stdout, &stderr
	err := second.Run()
	line := strings.TrimSpace(stderr.String())
	if err == nil || line != "onboard: dev: another onboard dev is running on "+filepath.Join(cwd, "state")+" (stop it, or give this one another --data)" || stdout.Len() > 0 {
		t.Fatalf("a second dev on the same directory: %v, stderr %q, stdout %q", err, line, stdout.String())
	}
	var customers struct{ Data []map[string]any }
	d.getJSON("/v1/customers", &customers) // the first one is unharmed
	d.stop()
}
