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

	"github.com/sendgrid/rest"
	"github.com/sendgrid/sendgrid-go"
	sgmail "github.com/sendgrid/sendgrid-go/helpers/mail"
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
		// reached SendGrid; retrying is the safe side (see README).
		return Result{}, &SendError{Reason: err.Error(), Temporary: true}
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
// temporary (with SendGrid's X-RateLimit-Reset, or Retry-After, as the wait),
// every other status is permanent with SendGrid's own reason.
func classify(resp *rest.Response, now time.Time) error {
	e := &SendError{StatusCode: resp.StatusCode, Reason: reason(resp)}
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

func reason(resp *rest.Response) string {
	var body struct {
		Errors []struct {
			Message string  `json:"message"`
			Field   *string `json:"field"`
		} `json:"errors"`
	}
	if err := json.Unmarshal([]byte(resp.Body), &body); err == nil && len(body.Errors) > 0 {
		parts := make([]string, 0, len(body.Errors))
		for _, e := range body.Errors {
			if e.Field != nil && *e.Field != "" {
				parts = append(parts, fmt.Sprintf("%s: %s", *e.Field, e.Message))
			} else {
				parts = append(parts, e.Message)
			}
		}
		return strings.Join(parts, "; ")
	}
	text := strings.TrimSpace(resp.Body)
	if len(text) > 300 {
		text = text[:300]
	}
	if text == "" {
		text = http.StatusText(resp.StatusCode)
	}
	return text
}

func header(h map[string][]string, name string) string {
	return http.Header(h).Get(name)
}
