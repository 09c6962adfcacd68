package sendgridfake

import (
	"net/http"
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
