package templates

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// substitute does what SendGrid does with a personalization's substitutions.
func substitute(s string, subs map[string]string) string {
	for k, v := range subs {
		s = strings.ReplaceAll(s, k, v)
	}
	return s
}

func TestInvitationGolden(t *testing.T) {
	t.Parallel()
	e, err := RenderInvitation(Invitation{TenantName: "Parts & Co <Dealer>\r\nBcc: evil@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	subs := InvitationSubstitutions(Recipient{
		ContactName: `Jane "<b>" O'Neil`,
		CompanyName: "Acme <script>alert(1)</script>\nInc",
		AcceptURL:   "http://localhost:8080/invitations/accept?token=abc_DEF-123",
		ExpiresAt:   time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC),
	})
	got := map[string]string{
		"invitation.subject.golden": substitute(e.Subject, subs),
		"invitation.txt.golden":     substitute(e.Text, subs),
		"invitation.html.golden":    substitute(e.HTML, subs),
	}
	if s := got["invitation.subject.golden"]; strings.ContainsAny(s, "\r\n") {
		t.Fatalf("subject has a line break: %q", s)
	}
	if h := got["invitation.html.golden"]; strings.Contains(h, "<script>") || strings.Contains(h, "<Dealer>") || strings.Contains(h, `"<b>"`) {
		t.Fatalf("HTML not escaped:\n%s", h)
	}
	for _, part := range []string{"invitation.txt.golden", "invitation.html.golden"} {
		if !strings.Contains(got[part], "http://localhost:8080/invitations/accept?token=abc_DEF-123") {
			t.Fatalf("%s lacks the accept link", part)
		}
	}
	for name, body := range got {
		path := filepath.Join("testdata", name)
		if *update {
			if err := os.MkdirAll("testdata", 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run go test ./templates -update)", err)
		}
		if string(want) != body {
			t.Errorf("%s differs from the golden file; if the change is intended run go test ./templates -update\ngot:\n%s", name, body)
		}
	}
}

// The report says the emails go out after it, so "invited" does not read
// as "delivered"; a dry run, which sends nothing, does not say it.
func TestImportReportSaysTheEmailsFollow(t *testing.T) {
	t.Parallel()
	for _, dry := range []bool{false, true} {
		e, err := RenderImportReport(ImportReport{TenantName: "Parts", Filename: "c.csv", ImportID: "1", TotalRows: 2, Succeeded: 2, DryRun: dry})
		if err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{"text": e.Text, "html": e.HTML} {
			if says := strings.Contains(body, "invitation emails are being sent now"); says == dry {
				t.Errorf("dry run %v, %s: says the emails are being sent: %v\n%s", dry, name, says, body)
			}
		}
	}
}
