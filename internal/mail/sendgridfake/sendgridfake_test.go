package sendgridfake

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

const valid = `{"personalizations":[{"to":[{"email":"a@example.com"}],"custom_args":{"invitation_id":"1"}}],
"from":{"email":"f@example.com"},"subject":"s","content":[{"type":"text/plain","value":"t"},{"type":"text/html","value":"<p>h</p>"}]}`

func TestValidateAcceptsAValidRequest(t *testing.T) {
	t.Parallel()
	if errs := Validate([]byte(valid)); len(errs) != 0 {
		t.Fatalf("valid request refused: %+v", errs)
	}
}

// Every rule has a request that breaks it, so none can pass by accident.
func TestValidateRefuses(t *testing.T) {
	t.Parallel()
	many := strings.Repeat(`{"to":[{"email":"a@example.com"}]},`, 1001)
	for _, tc := range []struct{ name, from, to string }{
		{"no personalizations", `"personalizations":[{"to":[{"email":"a@example.com"}],"custom_args":{"invitation_id":"1"}}]`, `"personalizations":[]`},
		{"too many personalizations", `"personalizations":[{"to":[{"email":"a@example.com"}],"custom_args":{"invitation_id":"1"}}]`, `"personalizations":[` + strings.TrimSuffix(many, ",") + `]`},
		{"no to", `"to":[{"email":"a@example.com"}]`, `"to":[]`},
		{"bad to", `"a@example.com"`, `"not an address"`},
		{"UTF-8 domain", `"a@example.com"`, `"jurgen@bücher.example"`},
		{"UTF-8 local part", `"a@example.com"`, `"日本@imp.example"`},
		{"UTF-8 from", `"f@example.com"`, `"f@bücher.example"`},
		{"duplicate recipient", `"to":[{"email":"a@example.com"}]`, `"to":[{"email":"a@example.com"},{"email":"A@example.com"}]`},
		{"no from", `"from":{"email":"f@example.com"},`, ``},
		{"bad from", `"f@example.com"`, `"Jane <f@example.com>"`},
		{"no subject", `"subject":"s",`, ``},
		{"subject line break", `"subject":"s"`, `"subject":"s\r\nBcc: x@example.com"`},
		{"no content", `"content":[{"type":"text/plain","value":"t"},{"type":"text/html","value":"<p>h</p>"}]`, `"content":[]`},
		{"empty content", `"value":"t"`, `"value":""`},
		{"html before text", `[{"type":"text/plain","value":"t"},{"type":"text/html","value":"<p>h</p>"}]`, `[{"type":"text/html","value":"<p>h</p>"},{"type":"text/plain","value":"t"}]`},
		{"custom arg not a string", `{"invitation_id":"1"}`, `{"invitation_id":1}`},
		{"unknown field", `"subject":"s",`, `"subject":"s","subjekt":"x",`},
		{"attachment not base64", `"subject":"s",`, `"subject":"s","attachments":[{"filename":"a.csv","content":"%%%"}],`},
		{"attachment without filename", `"subject":"s",`, `"subject":"s","attachments":[{"content":"YQ=="}],`},
		{"attachment type with a charset", `"subject":"s",`, `"subject":"s","attachments":[{"filename":"a.csv","type":"text/csv; charset=utf-8","content":"YQ=="}],`},
		{"content type with a charset", `"type":"text/plain"`, `"type":"text/plain; charset=utf-8"`},
		{"big substitutions", `"custom_args":{"invitation_id":"1"}`, `"custom_args":{"invitation_id":"1"},"substitutions":{"-k-":"` + strings.Repeat("x", 10001) + `"}`},
	} {
		body := strings.Replace(valid, tc.from, tc.to, 1)
		if body == valid {
			t.Fatalf("%s: the case does not change the request", tc.name)
		}
		if errs := Validate([]byte(body)); len(errs) == 0 {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// A name with a comma or semicolon passes SendGrid's checks (202) and the
// email is dropped: the fake keeps it apart, where a test sees it.
func TestNamesWithCommasAreAcceptedAndDropped(t *testing.T) {
	t.Parallel()
	s := New(t)
	body := strings.Replace(valid, `"to":[{"email":"a@example.com"}]`, `"to":[{"email":"a@example.com","name":"John Smith, Jr."}]},{"to":[{"email":"b@example.com","name":"Smith; John"}]},{"to":[{"email":"c@example.com","name":"Jane Doe"}]`, 1)
	if errs := Validate([]byte(body)); len(errs) != 0 {
		t.Fatalf("refused: %+v", errs)
	}
	req, _ := http.NewRequest("POST", s.URL+"/v3/mail/send", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d, want 202 as SendGrid answers", resp.StatusCode)
	}
	if m := s.Messages(); len(m) != 1 || m[0].To != "c@example.com" {
		t.Fatalf("delivered %+v, want only c@example.com", m)
	}
	d := s.Dropped()
	if len(d) != 2 || d[0].To != "a@example.com" || !strings.Contains(d[0].Reason, `"John Smith"`) || d[1].To != "b@example.com" {
		t.Fatalf("dropped %+v", d)
	}
}

// The account's click tracking (on, as in most accounts) rewrites the HTML
// links of a request that does not turn it off, as SendGrid does.
func TestClickTracking(t *testing.T) {
	t.Parallel()
	html := `"content":[{"type":"text/plain","value":"t https://x.example/a"},{"type":"text/html","value":"<p><a href=\"https://x.example/a\">a</a> <a clicktracking=off href=\"https://x.example/b\">b</a></p>"}]`
	base := strings.Replace(valid, `"content":[{"type":"text/plain","value":"t"},{"type":"text/html","value":"<p>h</p>"}]`, html, 1)
	for _, tc := range []struct {
		name, settings string
		account        bool
		htmlOK, textOK bool
	}{
		{"account default", ``, true, false, true},
		{"turned off in the request", `,"tracking_settings":{"click_tracking":{"enable":false,"enable_text":false}}`, true, true, true},
		{"text tracking asked for", `,"tracking_settings":{"click_tracking":{"enable":true,"enable_text":true}}`, false, false, false},
		{"account has it off", ``, false, true, true},
	} {
		s := New(t)
		s.SetAccountClickTracking(tc.account)
		body := strings.TrimSuffix(strings.TrimSpace(base), "}") + tc.settings + "}"
		send(t, s, body)
		m := s.Messages()[0]
		if strings.Contains(m.HTML, `href="https://x.example/a"`) != tc.htmlOK || strings.Contains(m.Text, "https://x.example/a") != tc.textOK ||
			!strings.Contains(m.HTML, `href="https://x.example/b"`) || m.ClickTracked == (tc.htmlOK && tc.textOK) {
			t.Errorf("%s: tracked=%v\n%s\n%s", tc.name, m.ClickTracked, m.Text, m.HTML)
		}
	}
	if errs := Validate([]byte(strings.TrimSuffix(strings.TrimSpace(valid), "}") + `,"tracking_settings":{"click_tracking":{"enable":"false"}}}`)); len(errs) == 0 {
		t.Error("click_tracking.enable as a string accepted")
	}
}

func send(t *testing.T, s *Server, body string) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.URL+"/v3/mail/send", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
}

// With SendGrid's OpenAPI description beside the project, every request is
// also held to it, as a validating proxy (Prism) in front of the fake would.
func TestRequestsHeldToSendGridsOpenAPI(t *testing.T) {
	t.Parallel()
	if _, err := openAPI(); err != nil {
		if os.Getenv("ONBOARD_REQUIRE_SHARED_TESTDATA") == "1" {
			t.Fatalf("SendGrid's OpenAPI description is required here: %v", err)
		}
		t.Skipf("SendGrid's OpenAPI description not beside the project (%v)", err)
	}
	for name, body := range map[string]string{
		// Refused by the description only: the fake's own checks pass them.
		"empty attachment type": strings.Replace(valid, `"subject":"s",`, `"subject":"s","attachments":[{"filename":"a.csv","type":"","content":"YQ=="}],`, 1),
		"unknown disposition":   strings.Replace(valid, `"subject":"s",`, `"subject":"s","attachments":[{"filename":"a.csv","disposition":"sideways","content":"YQ=="}],`, 1),
	} {
		errs := Validate([]byte(body))
		if len(errs) == 0 || !strings.Contains(errs[0].Message, "OpenAPI") {
			t.Errorf("%s: %+v, want refused by the OpenAPI description", name, errs)
		}
	}
}
