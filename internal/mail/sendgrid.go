package mail

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"

	"github.com/onboard-dev/onboard/internal/netproblem"
)

// SendGrid sends through SendGrid's v3 mail send API. It makes one request
// per Send and never retries by itself: retries belong to the task queue,
// which backs off and keeps the delivery's state.
type SendGrid struct {
	apiKey  string
	baseURL string
	client  *rest.Client
}

// NewSendGrid returns a SendGrid mailer for the API key, talking to baseURL
// (https://api.sendgrid.com, or a fake in tests) through httpClient, whose
// timeout bounds a request.
func NewSendGrid(apiKey, baseURL string, httpClient *http.Client) *SendGrid {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 30 * time.Second}
	}
	return &SendGrid{apiKey: apiKey, baseURL: strings.TrimRight(baseURL, "/"), client: &rest.Client{HTTPClient: httpClient}}
}

// Send delivers m and returns SendGrid's message id (X-Message-Id).
func (s *SendGrid) Send(ctx context.Context, m Message) (Result, error) {
	if err := m.Validate(); err != nil {
		return Result{}, err
	}
	req := sendgrid.GetRequest(s.apiKey, "/v3/mail/send", s.baseURL)
	req.Method = rest.Post
	req.Body = sgmail.GetRequestBody(s.build(m))
	resp, err := s.client.SendWithContext(ctx, req)
	if err != nil {
		// Network failure or timeout: the request may or may not have
		// reached SendGrid; retrying is the safe side (see README). The
		// reason, shown to the tenant as a delivery's error, names the
		// kind of failure, not SENDGRID_API_URL.
		return Result{}, &SendError{Reason: "SendGrid unreachable" + netproblem.Describe(err), Temporary: true}
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return Result{MessageID: header(resp.Headers, "X-Message-Id")}, nil
	}
	return Result{}, classify(resp, time.Now())
}

func (s *SendGrid) build(m Message) *sgmail.SGMailV3 {
	v3 := sgmail.NewV3Mail()
	v3.SetFrom(sgmail.NewEmail(displayName(m.From.Name), wireAddress(m.From.Email)))
	if m.ReplyTo != nil {
		v3.SetReplyTo(sgmail.NewEmail(displayName(m.ReplyTo.Name), wireAddress(m.ReplyTo.Email)))
	}
	v3.Subject = headerSafe(m.Subject)
	// SendGrid requires text/plain before text/html.
	if m.Text != "" {
		v3.AddContent(sgmail.NewContent("text/plain", m.Text))
	}
	if m.HTML != "" {
		v3.AddContent(sgmail.NewContent("text/html", m.HTML))
	}
	for _, p := range m.Personalizations {
		sp := sgmail.NewPersonalization()
		sp.AddTos(sgmail.NewEmail(displayName(p.To.Name), wireAddress(p.To.Email)))
		for k, v := range p.Substitutions {
			sp.SetSubstitution(k, v)
		}
		// custom_args go on each personalization: SendGrid's own OpenAPI
		// types the top-level one as a string.
		for k, v := range p.CustomArgs {
			sp.SetCustomArg(k, v)
		}
		v3.AddPersonalizations(sp)
	}
	for _, a := range m.Attachments {
		att := sgmail.NewAttachment()
		att.SetContent(base64.StdEncoding.EncodeToString(a.Content))
		att.SetType(a.ContentType)
		att.SetFilename(headerSafe(a.Filename))
		att.SetDisposition("attachment")
		v3.AddAttachment(att)
	}
	if len(m.Categories) > 0 {
		v3.AddCategories(m.Categories...)
	}
	// Click tracking off, whatever the account's setting: SendGrid would
	// rewrite the single-use accept link through its own redirect, and the
	// token would then sit in its activity feed and in click events.
	v3.SetTrackingSettings(sgmail.NewTrackingSettings().SetClickTracking(
		sgmail.NewClickTrackingSetting().SetEnable(false).SetEnableText(false)))
	return v3
}

// classify turns a non-2xx answer into a SendError: 429 and 5xx are
// temporary (with SendGrid's X-RateLimit-Reset, or Retry-After, as the
// wait); a 400 that may be about a recipient and a 413 are permanent; every
// other refusal (401, 403, 404, …, and a 400 naming only the message's own
// fields) is of the request as a whole, which no recipient caused.
func classify(resp *rest.Response, now time.Time) error {
	e := &SendError{StatusCode: resp.StatusCode, Reason: reason(resp)}
	switch {
	case resp.StatusCode == http.StatusBadRequest:
		e.Refused = messageLevel(resp.Body)
	case resp.StatusCode == http.StatusRequestEntityTooLarge:
	case resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests:
		e.Refused = true
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
		e.Temporary = true
		if reset, err := strconv.ParseInt(header(resp.Headers, "X-RateLimit-Reset"), 10, 64); err == nil {
			if d := time.Unix(reset, 0).Sub(now); d > 0 {
				e.RetryAfter = d
			}
		} else if secs, err := strconv.Atoi(header(resp.Headers, "Retry-After")); err == nil && secs > 0 {
			e.RetryAfter = time.Duration(secs) * time.Second
		}
		// Never wait longer than a day on a provider's word.
		e.RetryAfter = min(e.RetryAfter, 24*time.Hour)
	}
	return e
}

// maxReason bounds the reason a failure keeps (on the delivery and its
// invitation, and in logs): room for several of SendGrid's messages.
const maxReason = 1000

// reason is what SendGrid said, as text: the message (with its field) of
// each error of its error list, not the raw body. SendGrid answers a batch
// with one error per bad recipient, so the list is cut at whole entries,
// saying how many were left out. A body of another shape (a proxy's error
// page) gives the status and the start of the body on one line, cut on a
// character boundary: the reason is stored as UTF-8 text.
func reason(resp *rest.Response) string {
	if msgs := errorMessages(resp.Body); len(msgs) > 0 {
		var b strings.Builder
		for i, m := range msgs {
			if i > 0 && b.Len()+2+len(m) > maxReason {
				fmt.Fprintf(&b, "; and %d more", len(msgs)-i)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(truncate(m, maxReason))
		}
		return b.String()
	}
	status := http.StatusText(resp.StatusCode)
	text := oneLine(resp.Body)
	if text == "" {
		return status
	}
	return status + ": " + truncate(text, 200)
}

// messageLevel reports whether a 400's errors are all about the message's
// own fields (from, reply_to, subject, content, attachments, headers,
// tracking settings…), none about a personalization (a recipient, its
// substitutions or custom args) and none silent about the field: then no
// recipient caused it.
func messageLevel(body string) bool {
	var doc struct {
		Errors []map[string]json.RawMessage `json:"errors"`
	}
	if json.Unmarshal([]byte(body), &doc) != nil || len(doc.Errors) == 0 {
		return false
	}
	for _, e := range doc.Errors {
		f := jsonText(e["field"])
		if f == "" || f == "personalizations" || strings.HasPrefix(f, "personalizations.") || strings.HasPrefix(f, "personalizations[") {
			return false
		}
	}
	return true
}

// errorMessages reads SendGrid's error list ({"errors":[{"message":…,
// "field":…,"help":…}]}), each entry as "field: message", tolerating
// fields of other types than its OpenAPI description says; duplicates are
// kept once. It also takes a lone {"message":…} or {"error":…}.
func errorMessages(body string) []string {
	var doc struct {
		Errors  []map[string]json.RawMessage `json:"errors"`
		Message json.RawMessage              `json:"message"`
		Error   json.RawMessage              `json:"error"`
	}
	if json.Unmarshal([]byte(body), &doc) != nil {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	add := func(m string) {
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	for _, e := range doc.Errors {
		msg, field := jsonText(e["message"]), jsonText(e["field"])
		switch {
		case msg == "":
			continue
		case field != "":
			add(field + ": " + msg)
		default:
			add(msg)
		}
	}
	if len(out) == 0 {
		add(jsonText(doc.Message))
		add(jsonText(doc.Error))
	}
	return out
}

// jsonText is a JSON value as one line of text: a string's content, null
// as nothing, anything else as its JSON.
func jsonText(v json.RawMessage) string {
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		s = string(v)
	}
	return oneLine(s)
}

// oneLine is s as storable text on one line: valid UTF-8, no control
// characters (no NUL, which Postgres text cannot hold), blanks collapsed.
func oneLine(s string) string {
	return strings.Join(strings.Fields(headerSafe(strings.ToValidUTF8(s, "\uFFFD"))), " ")
}

// truncate cuts s to at most n bytes on a character boundary, marking the
// cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func header(h map[string][]string, name string) string {
	return http.Header(h).Get(name)
}
