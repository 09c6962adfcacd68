// Package sendgridfake is a local SendGrid v3 mail send endpoint for tests.
// It serves real HTTP on 127.0.0.1 (so a child process can use it), checks
// what SendGrid checks and answers as SendGrid does (202 with X-Message-Id,
// or 400/401/413 with SendGrid's error body), applies substitutions, and
// keeps one Received per recipient. Failures and latency can be injected.
//
// When SendGrid's own OpenAPI description of mail send is beside the
// project (../shared/testdata/sendgrid-oai), every request is also validated
// against it, formats asserted (an address is format "email": ASCII), as a
// validating proxy such as Prism would; its violations answer 400.
//
// What SendGrid accepts with 202 and then drops, the fake drops too, where a
// test can see it (Dropped, GET /dropped): a recipient name with `,` or `;`,
// which SendGrid's documented limitations forbid and which makes it read the
// name as an address and drop the email as Invalid. And as in an account
// with click tracking on (SetAccountClickTracking), the HTML links of a
// request that does not turn it off are rewritten through a redirect
// (Received.ClickTracked).
package sendgridfake

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// MaxBody is SendGrid's limit on the size of a mail send request.
const MaxBody = 30 << 20

// Received is one email as its recipient would see it.
type Received struct {
	To          string
	ToName      string
	From        string
	FromName    string
	ReplyTo     string // "Name <email>" as sent, or empty
	Subject     string
	Text        string
	HTML        string
	CustomArgs  map[string]string
	Categories  []string
	Attachments []Attachment
	MessageID   string
	Request     int // 1-based index of the request that carried it
	// ClickTracked: SendGrid's click tracking rewrote the links (the
	// request did not turn it off and the account has it on).
	ClickTracked bool
}

// Dropped is an email SendGrid accepted (202) and then dropped, as its
// activity feed and a "dropped" event would show it.
type Dropped struct {
	Received
	Reason string
}

// Attachment is a decoded attachment.
type Attachment struct {
	Filename, Type string
	Content        []byte
}

// MarshalJSON shows text attachments (the CSVs onboard sends) as text.
func (a Attachment) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Filename string `json:"filename"`
		Type     string `json:"type"`
		Content  string `json:"content"`
	}{a.Filename, a.Type, string(a.Content)})
}

// Server is the fake.
type Server struct {
	URL    string
	APIKey string

	srv      *httptest.Server
	mu       sync.Mutex
	messages []Received
	dropped  []Dropped
	requests int
	failures []failure // answers to give next, in order
	latency  time.Duration
	inFlight atomic.Int32
	// noClickTracking is the account's click tracking turned off; it is on
	// by default, as in most accounts, so that a request that does not
	// turn it off has its links rewritten.
	noClickTracking bool
	key             string          // the key accepted now (APIKey until SetAPIKey)
	senders         map[string]bool // verified Sender Identities; nil: any sender
}

// New starts a fake for the test and stops it when the test ends.
func New(t testing.TB) *Server {
	s := NewServer()
	t.Cleanup(s.Close)
	return s
}

// NewServer starts a fake; Close stops it.
func NewServer() *Server {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := &Server{APIKey: "SG.fake-" + hex.EncodeToString(b[:])}
	s.key = s.APIKey
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	s.URL = s.srv.URL
	return s
}

// Close stops the server.
func (s *Server) Close() {
	if s.srv != nil {
		s.srv.Close()
	}
}

// NewHandler is a fake with the given API key to serve yourself (see
// cmd/sendgridfake): POST /v3/mail/send as SendGrid, and GET /messages
// listing what it accepted, as JSON, for a person to look at.
func NewHandler(apiKey string) (*Server, http.Handler) {
	s := &Server{APIKey: apiKey, key: apiKey}
	mux := http.NewServeMux()
	mux.HandleFunc("/v3/mail/send", s.serve)
	mux.HandleFunc("GET /messages", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Messages())
	})
	mux.HandleFunc("GET /dropped", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(s.Dropped())
	})
	return s, mux
}

type failure struct {
	status int
	body   string // empty: SendGrid's error list with one "injected failure"
}

// FailNext answers the next n requests with status (429 comes with
// X-RateLimit-Reset one second ahead).
func (s *Server) FailNext(status, n int) { s.FailNextWith(status, "", n) }

// FailNextWith answers the next n requests with status and body as it is
// (SendGrid's error list of many entries, a proxy's HTML page…).
func (s *Server) FailNextWith(status int, body string, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.failures = append(s.failures, failure{status, body})
	}
}

// SetLatency delays every answer, as the real API's round trip does. A
// client that gives up during the delay has not had its email accepted.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// SetAPIKey makes key the one the account takes: any other, APIKey
// included, is answered 401 as a revoked key is.
func (s *Server) SetAPIKey(key string) {
	s.mu.Lock()
	s.key = key
	s.mu.Unlock()
}

// SetVerifiedSenders limits the senders to these verified Sender
// Identities (none given: any sender, the default): a request from another
// address is answered 403, as SendGrid does, with its message.
func (s *Server) SetVerifiedSenders(emails ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.senders = map[string]bool{}
	for _, e := range emails {
		s.senders[strings.ToLower(e)] = true
	}
}

// SetAccountClickTracking sets the account's click tracking (on unless
// turned off), which applies to requests that do not set their own.
func (s *Server) SetAccountClickTracking(on bool) {
	s.mu.Lock()
	s.noClickTracking = !on
	s.mu.Unlock()
}

// Messages returns every accepted email, one per recipient.
func (s *Server) Messages() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.messages...)
}

// Dropped returns every email accepted with 202 and then dropped, as
// SendGrid does with them.
func (s *Server) Dropped() []Dropped {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Dropped(nil), s.dropped...)
}

// Requests counts the requests that reached the fake, accepted or not.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// InFlight counts requests being answered now.
func (s *Server) InFlight() int { return int(s.inFlight.Load()) }

// WaitForMessages polls until at least n emails were accepted or ctx ends.
func (s *Server) WaitForMessages(ctx context.Context, n int) ([]Received, error) {
	for {
		if m := s.Messages(); len(m) >= n {
			return m, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("sendgridfake: %d emails accepted, waited for %d: %w", len(s.Messages()), n, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// FieldError is one violation, shaped as SendGrid reports it.
type FieldError struct {
	Message string  `json:"message"`
	Field   *string `json:"field"`
	Help    *string `json:"help"`
}

func field(name, msg string) FieldError { return FieldError{Message: msg, Field: &name} }

func writeErrors(w http.ResponseWriter, status int, errs ...FieldError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": errs})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	s.mu.Lock()
	s.requests++
	reqNo := s.requests
	latency := s.latency
	key, senders := s.key, s.senders
	var fail failure
	if len(s.failures) > 0 {
		fail, s.failures = s.failures[0], s.failures[1:]
	}
	s.mu.Unlock()

	switch {
	case r.Method != http.MethodPost || r.URL.Path != "/v3/mail/send":
		writeErrors(w, http.StatusNotFound, FieldError{Message: "not found"})
		return
	case r.Header.Get("Authorization") != "Bearer "+key:
		writeErrors(w, http.StatusUnauthorized, FieldError{Message: "The provided authorization grant is invalid, expired, or revoked"})
		return
	case !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"):
		writeErrors(w, http.StatusUnsupportedMediaType, FieldError{Message: "Content-Type should be application/json."})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody+1))
	if err != nil || len(body) > MaxBody {
		writeErrors(w, http.StatusRequestEntityTooLarge, FieldError{Message: "The JSON payload you have included in your request is too large."})
		return
	}
	// The body is read, so the server now notices a client that hangs up:
	// a request whose client went away before the answer is not accepted.
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	if fail.status != 0 {
		if fail.status == http.StatusTooManyRequests {
			w.Header().Set("X-RateLimit-Reset", strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10))
		}
		if fail.body != "" {
			w.WriteHeader(fail.status)
			_, _ = io.WriteString(w, fail.body)
			return
		}
		writeErrors(w, fail.status, FieldError{Message: fmt.Sprintf("injected failure %d", fail.status)})
		return
	}
	req, errs := parse(body)
	if len(errs) > 0 {
		writeErrors(w, http.StatusBadRequest, errs...)
		return
	}
	if senders != nil && !senders[strings.ToLower(req.From.Email)] {
		// SendGrid's own answer (sendgrid-ruby#489 shows it whole).
		writeErrors(w, http.StatusForbidden, field("from", "The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved. Visit https://sendgrid.com/docs/for-developers/sending-email/sender-identity/ to see the Sender Identity requirements"))
		return
	}
	msgID := messageID()
	s.mu.Lock()
	account := !s.noClickTracking
	s.mu.Unlock()
	received, dropped := req.expand(msgID, reqNo, account)
	w.Header().Set("X-Message-Id", msgID)
	w.WriteHeader(http.StatusAccepted)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	s.mu.Lock()
	s.messages = append(s.messages, received...)
	s.dropped = append(s.dropped, dropped...)
	s.mu.Unlock()
}

func messageID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])[:22]
}

type email struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

type personalization struct {
	To            []email           `json:"to"`
	Cc            []email           `json:"cc,omitempty"`
	Bcc           []email           `json:"bcc,omitempty"`
	Subject       string            `json:"subject,omitempty"`
	Substitutions map[string]string `json:"substitutions,omitempty"`
	CustomArgs    map[string]any    `json:"custom_args,omitempty"`
	Headers       map[string]string `json:"headers,omitempty"`
	SendAt        int64             `json:"send_at,omitempty"`
	DynamicData   map[string]any    `json:"dynamic_template_data,omitempty"`
}

type request struct {
	Personalizations []personalization `json:"personalizations"`
	From             *email            `json:"from"`
	ReplyTo          *email            `json:"reply_to,omitempty"`
	Subject          string            `json:"subject,omitempty"`
	Content          []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content,omitempty"`
	Attachments []struct {
		Content     string `json:"content"`
		Type        string `json:"type,omitempty"`
		Filename    string `json:"filename"`
		Disposition string `json:"disposition,omitempty"`
		ContentID   string `json:"content_id,omitempty"`
	} `json:"attachments,omitempty"`
	TemplateID       string            `json:"template_id,omitempty"`
	Categories       []string          `json:"categories,omitempty"`
	Headers          map[string]string `json:"headers,omitempty"`
	CustomArgs       any               `json:"custom_args,omitempty"`
	SendAt           int64             `json:"send_at,omitempty"`
	BatchID          string            `json:"batch_id,omitempty"`
	ASM              any               `json:"asm,omitempty"`
	IPPool           string            `json:"ip_pool_name,omitempty"`
	MailSettings     any               `json:"mail_settings,omitempty"`
	TrackingSettings *trackingSettings `json:"tracking_settings,omitempty"`
}

type trackingSettings struct {
	ClickTracking *struct {
		Enable     *bool `json:"enable,omitempty"`
		EnableText *bool `json:"enable_text,omitempty"`
	} `json:"click_tracking,omitempty"`
	OpenTracking         json.RawMessage `json:"open_tracking,omitempty"`
	SubscriptionTracking json.RawMessage `json:"subscription_tracking,omitempty"`
	Ganalytics           json.RawMessage `json:"ganalytics,omitempty"`
}

// clickTracking is what SendGrid does with the links of a request: the
// request's tracking_settings.click_tracking, or else the account's
// setting (HTML links only: the account's text setting is off).
func (req *request) clickTracking(account bool) (html, text bool) {
	html = account
	if ts := req.TrackingSettings; ts != nil && ts.ClickTracking != nil {
		if ts.ClickTracking.Enable != nil {
			html = *ts.ClickTracking.Enable
		}
		if ts.ClickTracking.EnableText != nil {
			text = *ts.ClickTracking.EnableText
		}
	}
	return html, html && text
}

// SendGrid's click tracking finds links written as it documents them
// (href="http…" or "https…", no blanks around =, not marked
// clicktracking=off) and, in the text part when asked, bare URLs.
var (
	htmlLink = regexp.MustCompile(`<a\s[^>]*?href="(https?://[^"]+)"`)
	textLink = regexp.MustCompile(`https?://[^\s<>"]+`)
)

// trackLink is the redirect SendGrid puts in place of a link: the original
// is only in its records (activity, click events).
func trackLink(u string) string {
	return "https://click.sendgridfake.test/ls/click?upn=" + base64.RawURLEncoding.EncodeToString([]byte(u))
}

func rewriteLinks(html, text string, inHTML, inText bool) (string, string, bool) {
	rewrote := false
	if inHTML {
		html = htmlLink.ReplaceAllStringFunc(html, func(a string) string {
			if strings.Contains(strings.ToLower(a), "clicktracking=off") {
				return a
			}
			rewrote = true
			m := htmlLink.FindStringSubmatch(a)
			return strings.Replace(a, m[1], trackLink(m[1]), 1)
		})
	}
	if inText {
		text = textLink.ReplaceAllStringFunc(text, func(u string) string {
			rewrote = true
			return trackLink(u)
		})
	}
	return html, text, rewrote
}

// Validate checks a request body as SendGrid does and returns the
// violations (none for a request SendGrid accepts).
func Validate(body []byte) []FieldError {
	_, errs := parse(body)
	return errs
}

// oaiFile is the mail send path of SendGrid's own OpenAPI description
// (sendgrid/sendgrid-oai), kept beside the project rather than in it.
const oaiFile = "shared/testdata/sendgrid-oai/paths/mail_send/mail_send.json"

// openAPI is the request body schema of SendGrid's OpenAPI description,
// compiled once with format assertions on (an address is format "email":
// ASCII). It is found beside the module that runs (../shared); nil when it
// is not there, and then only the fake's own checks apply.
var openAPI = sync.OnceValues(func() (*jsonschema.Schema, error) {
	dir, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return nil, fmt.Errorf("sendgridfake: no module root above the working directory")
		}
		dir = parent
	}
	path := filepath.Join(filepath.Dir(dir), filepath.FromSlash(oaiFile))
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020) // OpenAPI 3.1 schemas are JSON Schema 2020-12
	c.AssertFormat()
	return c.Compile((&url.URL{Scheme: "file", Path: filepath.ToSlash(path)}).String() + "#/mail_send/post/requestBody/content/application~1json/schema")
})

// checkOpenAPI validates a body against SendGrid's OpenAPI description, if
// it is at hand, and returns the violations as SendGrid-shaped errors.
func checkOpenAPI(body []byte) []FieldError {
	schema, err := openAPI()
	if err != nil {
		return nil
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return nil // the fake's own decoding reports it
	}
	var ve *jsonschema.ValidationError
	if err := schema.Validate(inst); !errors.As(err, &ve) {
		return nil
	}
	var errs []FieldError
	p := message.NewPrinter(language.English)
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			msg := e.ErrorKind.LocalizedString(p)
			if f, ok := e.ErrorKind.(*kind.Format); ok {
				msg = "not a valid " + f.Want // the value (an address) stays out: errors reach logs
			}
			errs = append(errs, field(strings.Join(e.InstanceLocation, "."), "SendGrid's OpenAPI description refuses it: "+msg))
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	return errs
}

// validEmail is SendGrid's check of an address: its OpenAPI types every
// address as format "email" (RFC 5321, ASCII), not "idn-email", and it
// answers 400 to a UTF-8 local part or domain: an internationalised domain
// must come as punycode.
func validEmail(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

func parse(body []byte) (*request, []FieldError) {
	var req request
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, []FieldError{{Message: "Bad Request: " + err.Error()}}
	}
	errs := checkOpenAPI(body)
	add := func(f, msg string) { errs = append(errs, field(f, msg)) }
	if req.From == nil || req.From.Email == "" {
		add("from.email", "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.")
	} else if !validEmail(req.From.Email) {
		add("from.email", "The from email does not contain a valid address.")
	}
	if req.ReplyTo != nil && !validEmail(req.ReplyTo.Email) {
		add("reply_to.email", "The reply_to email does not contain a valid address.")
	}
	if req.From != nil && strings.ContainsAny(req.From.Name, "\r\n") {
		add("from.name", "The from name cannot contain line breaks.")
	}
	n := len(req.Personalizations)
	switch {
	case n == 0:
		add("personalizations", "The personalizations field is required and must have at least one personalization.")
	case n > 1000:
		add("personalizations", "The personalizations field is limited to 1000 personalizations per request.")
	}
	total := 0
	for i, p := range req.Personalizations {
		prefix := fmt.Sprintf("personalizations.%d", i)
		if len(p.To) == 0 {
			add(prefix+".to", "The to array is required for all personalization objects, and must have at least one email object with a valid email address.")
		}
		seen := map[string]bool{}
		for _, list := range [][]email{p.To, p.Cc, p.Bcc} {
			for _, e := range list {
				total++
				switch {
				case !validEmail(e.Email):
					add(prefix+".to", "Does not contain a valid address.")
				case seen[strings.ToLower(e.Email)]:
					add(prefix, "Each email address in the personalization block should be unique between to, cc, and bcc.")
				}
				seen[strings.ToLower(e.Email)] = true
				if strings.ContainsAny(e.Name, "\r\n") {
					add(prefix+".to.name", "The name cannot contain line breaks.")
				}
			}
		}
		if req.Subject == "" && p.Subject == "" && req.TemplateID == "" {
			add("subject", "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.")
		}
		if strings.ContainsAny(p.Subject, "\r\n") {
			add(prefix+".subject", "The subject cannot contain line breaks.")
		}
		size := 0
		for k, v := range p.Substitutions {
			size += len(k) + len(v)
		}
		if size > 10000 {
			add(prefix+".substitutions", "The total size of your substitutions for a personalization must be less than 10000 bytes.")
		}
		size = 0
		for k, v := range p.CustomArgs {
			s, ok := v.(string)
			if !ok {
				add(prefix+".custom_args", "Custom args values must be strings.")
			}
			size += len(k) + len(s)
		}
		if size > 10000 {
			add(prefix+".custom_args", "The total size of your custom args for a personalization must be less than 10000 bytes.")
		}
	}
	if total > 1000 {
		add("personalizations", "The total number of recipients must be no more than 1000.")
	}
	if strings.ContainsAny(req.Subject, "\r\n") {
		add("subject", "The subject cannot contain line breaks.")
	}
	if req.TemplateID == "" {
		if len(req.Content) == 0 {
			add("content", "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block.")
		}
		for i, c := range req.Content {
			if c.Type == "" || c.Value == "" {
				add(fmt.Sprintf("content.%d", i), "The content value must be a string at least one character in length.")
			}
			if strings.ContainsAny(c.Type, ";\r\n") {
				add(fmt.Sprintf("content.%d.type", i), "The content type cannot contain ';', or CRLF characters.")
			}
			if c.Type == "text/plain" && i != 0 {
				add("content", "If present, text/plain content must be first, followed by any other content.")
			}
		}
	}
	for i, a := range req.Attachments {
		if a.Filename == "" {
			add(fmt.Sprintf("attachments.%d.filename", i), "The attachment filename parameter is required.")
		}
		if _, err := base64.StdEncoding.DecodeString(a.Content); err != nil || a.Content == "" {
			add(fmt.Sprintf("attachments.%d.content", i), "The attachment content must be base64 encoded.")
		}
		if strings.ContainsAny(a.Type, ";\r\n") {
			add(fmt.Sprintf("attachments.%d.type", i), "The attachment type cannot contain ';', or CRLF characters.")
		}
	}
	for k := range req.Headers {
		switch strings.ToLower(k) {
		case "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc":
			add("headers", fmt.Sprintf("The header %q is reserved.", k))
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &req, nil
}

// droppedName tells whether SendGrid drops an email to a recipient of this
// name: its v3 limitations say to, cc and bcc names cannot include `;` or
// `,`, and what it does with one is accept the request and drop the email,
// having read the name up to the comma as the address.
func droppedName(name string) (string, bool) {
	i := strings.IndexAny(name, ",;")
	if i < 0 {
		return "", false
	}
	return fmt.Sprintf("Invalid: the name was read as the address %q", strings.TrimSpace(name[:i])), true
}

// expand applies each personalization's substitutions and returns one
// Received per recipient, and the emails SendGrid would drop apart.
func (req *request) expand(msgID string, reqNo int, accountClickTracking bool) ([]Received, []Dropped) {
	trackHTML, trackText := req.clickTracking(accountClickTracking)
	var text, html string
	for _, c := range req.Content {
		switch c.Type {
		case "text/plain":
			text = c.Value
		case "text/html":
			html = c.Value
		}
	}
	var atts []Attachment
	for _, a := range req.Attachments {
		b, _ := base64.StdEncoding.DecodeString(a.Content)
		atts = append(atts, Attachment{Filename: a.Filename, Type: a.Type, Content: b})
	}
	var replyTo string
	if req.ReplyTo != nil {
		replyTo = req.ReplyTo.Email
		if req.ReplyTo.Name != "" {
			replyTo = req.ReplyTo.Name + " <" + req.ReplyTo.Email + ">"
		}
	}
	var out []Received
	var dropped []Dropped
	for _, p := range req.Personalizations {
		subject := req.Subject
		if p.Subject != "" {
			subject = p.Subject
		}
		sub := func(s string) string {
			for k, v := range p.Substitutions {
				s = strings.ReplaceAll(s, k, v)
			}
			return s
		}
		args := map[string]string{}
		for k, v := range p.CustomArgs {
			args[k], _ = v.(string)
		}
		for _, to := range p.To {
			r := Received{
				To: to.Email, ToName: to.Name, From: req.From.Email, FromName: req.From.Name, ReplyTo: replyTo,
				Subject: sub(subject), Text: sub(text), HTML: sub(html),
				CustomArgs: args, Categories: req.Categories, Attachments: atts,
				MessageID: msgID, Request: reqNo,
			}
			r.HTML, r.Text, r.ClickTracked = rewriteLinks(r.HTML, r.Text, trackHTML, trackText)
			if reason, ok := droppedName(to.Name); ok {
				dropped = append(dropped, Dropped{Received: r, Reason: reason})
				continue
			}
			out = append(out, r)
		}
	}
	return out, dropped
}
