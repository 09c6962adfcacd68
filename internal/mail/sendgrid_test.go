package mail_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/mail/sendgridfake"
)

func message(to ...string) mail.Message {
	m := mail.Message{
		From:    mail.Address{Email: "invites@vendor.example.com", Name: "Vendor"},
		Subject: "Hello -name-",
		Text:    "Hi -name-, -link-",
		HTML:    "<p>Hi -name-, <a href=\"-link-\">accept</a></p>",
	}
	for _, t := range to {
		m.Personalizations = append(m.Personalizations, mail.Personalization{
			To:            mail.Address{Email: t},
			Substitutions: map[string]string{"-name-": t, "-link-": "https://x.example/" + t},
			CustomArgs:    map[string]string{"invitation_id": "inv-" + t, "tenant_id": "t1"},
		})
	}
	return m
}

func TestSendGridSendsAndSubstitutes(t *testing.T) {
	t.Parallel()
	fake := sendgridfake.New(t)
	sg := mail.NewSendGrid(fake.APIKey, fake.URL, nil)
	m := message("a@example.com", "b@example.com")
	m.Attachments = []mail.Attachment{{Filename: "ok.csv", ContentType: "text/csv", Content: []byte("a,b\n")}}
	res, err := sg.Send(context.Background(), m)
	if err != nil || res.MessageID == "" {
		t.Fatalf("send: %v %v", res, err)
	}
	got := fake.Messages()
	if len(got) != 2 || fake.Requests() != 1 {
		t.Fatalf("%d emails in %d requests", len(got), fake.Requests())
	}
	if got[1].To != "b@example.com" || got[1].Subject != "Hello b@example.com" || !strings.Contains(got[1].Text, "https://x.example/b@example.com") ||
		got[1].CustomArgs["invitation_id"] != "inv-b@example.com" || string(got[1].Attachments[0].Content) != "a,b\n" || got[1].MessageID != res.MessageID {
		t.Fatalf("second email: %+v", got[1])
	}
}

func TestSendGridClassifiesAnswers(t *testing.T) {
	t.Parallel()
	recipient := `{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to","help":null}]}`
	silent := `{"errors":[{"message":"Bad Request","field":null,"help":null}]}`
	fromField := `{"errors":[{"message":"The from email does not contain a valid address.","field":"from.email","help":null}]}`
	for _, tc := range []struct {
		status                    int
		body                      string
		temporary, retry, refused bool
		account, split            bool
	}{
		{429, "", true, true, false, false, false},
		{500, "", true, false, false, false, false},
		{503, "", true, false, false, false, false},
		{400, recipient, false, false, false, false, true},
		{400, silent, false, false, false, false, true},
		{400, fromField, false, false, true, false, false},
		{401, "", false, false, true, true, false},
		{403, "", false, false, true, true, false},
		{404, "", false, false, true, true, false},
		{413, "", false, false, false, false, true},
	} {
		fake := sendgridfake.New(t)
		fake.FailNextWith(tc.status, tc.body, 1)
		_, err := mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), message("a@example.com"))
		var se *mail.SendError
		if !errors.As(err, &se) || mail.IsTemporary(err) != tc.temporary || mail.IsRefused(err) != tc.refused ||
			se.AccountLevel() != tc.account || mail.MaySplit(err) != tc.split {
			t.Errorf("%d %s: %v, want temporary=%v refused=%v account=%v split=%v", tc.status, tc.body, err, tc.temporary, tc.refused, tc.account, tc.split)
		}
		if _, ok := mail.RetryAfter(err); ok != tc.retry {
			t.Errorf("%d: retry-after given %v, want %v", tc.status, ok, tc.retry)
		}
	}
}

// A revoked key and an unverified sender are refusals of the account: no
// recipient caused them, the emails must wait.
func TestSendGridAccountRefusals(t *testing.T) {
	t.Parallel()
	fake := sendgridfake.New(t)
	_, err := mail.NewSendGrid("SG.wrong", fake.URL, nil).Send(context.Background(), message("a@example.com"))
	if !mail.IsRefused(err) || mail.IsTemporary(err) || mail.MaySplit(err) || !strings.Contains(err.Error(), "authorization") {
		t.Fatalf("wrong key: %v", err)
	}
	fake.SetVerifiedSenders("someone@vendor.example.com")
	_, err = mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), message("a@example.com"))
	var se *mail.SendError
	if !errors.As(err, &se) || se.StatusCode != 403 || !se.Refused || !se.AccountLevel() || !strings.Contains(se.Reason, "from: The from address does not match a verified Sender Identity") {
		t.Fatalf("unverified sender: %v", err)
	}
	fake.SetVerifiedSenders("Invites@Vendor.example.com")
	if _, err := mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), message("a@example.com")); err != nil {
		t.Fatalf("verified sender: %v", err)
	}
	fake.SetAPIKey("SG.rotated")
	if _, err := mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), message("a@example.com")); !mail.IsRefused(err) {
		t.Fatalf("revoked key: %v", err)
	}
	if _, err := mail.NewSendGrid("SG.rotated", fake.URL, nil).Send(context.Background(), message("a@example.com")); err != nil {
		t.Fatalf("new key: %v", err)
	}
}

func TestSendGridNetworkFailuresAreTemporary(t *testing.T) {
	t.Parallel()
	fake := sendgridfake.New(t)
	fake.SetLatency(2 * time.Second)
	sg := mail.NewSendGrid(fake.APIKey, fake.URL, &http.Client{Timeout: 100 * time.Millisecond})
	// The reason, a delivery's error the tenant sees, names the kind of
	// failure and not the address of SENDGRID_API_URL.
	if _, err := sg.Send(context.Background(), message("a@example.com")); !mail.IsTemporary(err) || !strings.Contains(err.Error(), "SendGrid unreachable (timeout)") || strings.Contains(err.Error(), fake.URL) {
		t.Fatalf("timeout: %v, want temporary", err)
	}
	closed := sendgridfake.NewServer()
	closed.Close()
	if _, err := mail.NewSendGrid("k", closed.URL, nil).Send(context.Background(), message("a@example.com")); !mail.IsTemporary(err) || !strings.Contains(err.Error(), "SendGrid unreachable (connection refused)") || strings.Contains(err.Error(), strings.TrimPrefix(closed.URL, "http://")) {
		t.Fatalf("closed server: %v, want temporary", err)
	}
	if len(fake.Messages()) != 0 {
		t.Fatal("an email whose request timed out was recorded as accepted")
	}
}

func TestHeadersCannotBeInjected(t *testing.T) {
	t.Parallel()
	fake := sendgridfake.New(t)
	m := message("a@example.com")
	m.Subject = "Hi\r\nBcc: evil@example.com"
	m.From.Name = "Vendor\nX-Evil: 1"
	m.Personalizations[0].To.Name = "Jane\r\nBcc: x@example.com"
	if _, err := mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), m); err != nil {
		t.Fatalf("send: %v (the fake refuses line breaks in headers)", err)
	}
	if s := fake.Messages()[0].Subject; strings.ContainsAny(s, "\r\n") {
		t.Fatalf("subject %q", s)
	}
}

func TestInvalidMessagesArePermanent(t *testing.T) {
	t.Parallel()
	sg := mail.NewSendGrid("k", "http://127.0.0.1:1", nil)
	tooMany := make([]string, 1001)
	for i := range tooMany {
		tooMany[i] = "a@example.com"
	}
	for name, m := range map[string]mail.Message{
		"no recipients": message(),
		"too many":      message(tooMany...),
		"no subject":    func() mail.Message { m := message("a@example.com"); m.Subject = ""; return m }(),
	} {
		if _, err := sg.Send(context.Background(), m); err == nil || mail.IsTemporary(err) {
			t.Errorf("%s: %v, want a permanent error", name, err)
		}
	}
}

// SendGrid answers 202 to a recipient name with `,` or `;` and then drops
// the email; every name onboard sends is made safe, and still reads right.
func TestNamesAreSafeForSendGrid(t *testing.T) {
	t.Parallel()
	fake := sendgridfake.New(t)
	m := message("a@example.com", "b@example.com", "c@example.com")
	m.From.Name = "Parts, Inc."
	m.ReplyTo = &mail.Address{Email: "help@vendor.example.com", Name: "Help; Desk"}
	m.Personalizations[0].To.Name = "John Smith, Jr."
	m.Personalizations[1].To.Name = "Smith;John"
	m.Personalizations[2].To.Name = " ,Jane ;; Doe, "
	if _, err := mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if d := fake.Dropped(); len(d) != 0 {
		t.Fatalf("SendGrid would drop %d emails: %+v", len(d), d)
	}
	want := []string{"John Smith Jr.", "Smith John", "Jane Doe"}
	got := fake.Messages()
	if len(got) != 3 {
		t.Fatalf("%d emails", len(got))
	}
	if got[0].FromName != "Parts Inc." || got[0].ReplyTo != "Help Desk <help@vendor.example.com>" {
		t.Errorf("from %q, reply-to %q", got[0].FromName, got[0].ReplyTo)
	}
	for i, w := range want {
		if got[i].ToName != w {
			t.Errorf("name %d: %q, want %q", i, got[i].ToName, w)
		}
	}
}

// SendGrid takes ASCII addresses only: an internationalised domain goes as
// punycode; an internationalised local part cannot go at all, and is refused
// before any request.
func TestSendGridAddressesAreASCII(t *testing.T) {
	t.Parallel()
	fake := sendgridfake.New(t)
	sg := mail.NewSendGrid(fake.APIKey, fake.URL, nil)
	m := message("jurgen@bücher.example", "ops@例子.广告")
	m.From.Email = "invites@Bücher.example"
	if _, err := sg.Send(context.Background(), m); err != nil {
		t.Fatalf("send: %v", err)
	}
	got := fake.Messages()
	if len(got) != 2 || got[0].To != "jurgen@xn--bcher-kva.example" || got[1].To != "ops@xn--fsqu00a.xn--4rr70v" || got[0].From != "invites@xn--bcher-kva.example" {
		t.Fatalf("emails %+v", got)
	}
	_, err := sg.Send(context.Background(), message("a@example.com", "jürgen@bücher.example"))
	if err == nil || mail.IsTemporary(err) || !strings.Contains(err.Error(), "recipient 2") || strings.Contains(err.Error(), "jürgen") {
		t.Fatalf("UTF-8 local part: %v, want a permanent error naming recipient 2 (not its address)", err)
	}
	if fake.Requests() != 1 {
		t.Fatalf("%d requests, want none for the refused message", fake.Requests()-1)
	}
}

// Every email turns SendGrid's click tracking off, whatever the account's
// setting: the single-use link must reach the recipient as it is, not
// through SendGrid's redirect (and its activity feed).
func TestSendGridTurnsClickTrackingOff(t *testing.T) {
	t.Parallel()
	fake := sendgridfake.New(t)
	fake.SetAccountClickTracking(true)
	if _, err := mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), message("a@example.com")); err != nil {
		t.Fatal(err)
	}
	m := fake.Messages()[0]
	if m.ClickTracked || !strings.Contains(m.HTML, `href="https://x.example/a@example.com"`) {
		t.Fatalf("links rewritten by click tracking: %s", m.HTML)
	}
}

// A failure keeps what SendGrid said: the message and field of each of its
// errors, never the raw body cut mid-JSON (or mid-character, which the
// database would refuse).
func TestSendGridFailureReasons(t *testing.T) {
	t.Parallel()
	var many []string
	for i := range 40 {
		many = append(many, fmt.Sprintf(`{"message":"Does not contain a valid address.","field":"personalizations.%d.to","help":"http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"}`, i))
	}
	for _, tc := range []struct {
		name, body string
		want       []string
		most       int
	}{
		{"many errors", `{"errors":[` + strings.Join(many, ",") + `]}`,
			[]string{"HTTP 400): personalizations.0.to: Does not contain a valid address.; personalizations.1.to: ", "; and ", " more"}, 1100},
		{"fields of other types", `{"errors":[{"message":"The from address does not match a verified Sender Identity.","field":["from"],"help":{"url":"https://sendgrid.com/docs"}},{"message":"Bad Request","field":null,"help":null}],"id":"x"}`,
			[]string{`["from"]: The from address does not match a verified Sender Identity.; Bad Request`}, 300},
		{"duplicates once", `{"errors":[{"message":"Bad Request","field":null},{"message":"Bad Request","field":null}]}`,
			[]string{"HTTP 400): Bad Request"}, 100},
		{"a proxy's page", "<html>\n<body>" + strings.Repeat("é", 150) + "\x00</body></html>",
			[]string{"HTTP 400): Bad Request: <html> <body>éé", "…"}, 300},
	} {
		fake := sendgridfake.New(t)
		fake.FailNextWith(400, tc.body, 1)
		_, err := mail.NewSendGrid(fake.APIKey, fake.URL, nil).Send(context.Background(), message("a@example.com"))
		if err == nil {
			t.Fatalf("%s: no error", tc.name)
		}
		got := err.Error()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
		if len(got) > tc.most || !utf8.ValidString(got) || strings.ContainsAny(got, "{}\n\x00") {
			t.Errorf("%s: %d bytes, valid UTF-8 %v: %q", tc.name, len(got), utf8.ValidString(got), got)
		}
	}
}
