package sendgridfake

import (
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
