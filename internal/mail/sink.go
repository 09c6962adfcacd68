package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Sink keeps emails instead of sending them: `onboard dev` uses it in place
// of SendGrid. A message with several recipients is kept as one email per
// recipient, with that recipient's substitutions applied, which is what each
// of them would have received. Emails are files under a directory, so they
// survive a restart of the dev process as the database does.
type Sink struct {
	dir string

	mu   sync.Mutex
	last int64 // newest id handed out, so ids stay unique and ordered
}

// SinkEmail is one kept email.
type SinkEmail struct {
	ID          string            `json:"id"`
	At          time.Time         `json:"at"`
	From        Address           `json:"from"`
	To          Address           `json:"to"`
	Subject     string            `json:"subject"`
	Text        string            `json:"text"`
	HTML        string            `json:"html"`
	Categories  []string          `json:"categories,omitempty"`
	CustomArgs  map[string]string `json:"custom_args,omitempty"`
	Attachments []SinkAttachment  `json:"attachments,omitempty"`
}

// SinkAttachment describes a kept attachment; its content is a file of its
// own, read with Sink.Attachment.
type SinkAttachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"content_type"`
	Size        int    `json:"size"`
}

// NewSink keeps emails under dir, creating it if needed.
func NewSink(dir string) (*Sink, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mail sink: %w", err)
	}
	return &Sink{dir: dir}, nil
}

// Send keeps m: it checks the message as SendGrid's adapter does, so a
// message the sink takes is one the real mailer would send.
func (s *Sink) Send(ctx context.Context, m Message) (Result, error) {
	if err := m.Validate(); err != nil {
		return Result{}, err
	}
	var first string
	for _, p := range m.Personalizations {
		pairs := make([]string, 0, 2*len(p.Substitutions))
		for k, v := range p.Substitutions {
			pairs = append(pairs, k, v)
		}
		sub := strings.NewReplacer(pairs...)
		id, at := s.nextID()
		e := SinkEmail{
			ID: id, At: at, From: m.From, To: p.To,
			Subject:    headerSafe(sub.Replace(m.Subject)),
			Text:       sub.Replace(m.Text),
			HTML:       sub.Replace(m.HTML),
			Categories: m.Categories,
			CustomArgs: p.CustomArgs,
		}
		for i, a := range m.Attachments {
			if err := os.WriteFile(s.attachmentPath(e.ID, i), a.Content, 0o600); err != nil {
				return Result{}, &SendError{Reason: "mail sink: " + err.Error(), Temporary: true}
			}
			e.Attachments = append(e.Attachments, SinkAttachment{Filename: a.Filename, ContentType: a.ContentType, Size: len(a.Content)})
		}
		b, err := json.Marshal(e)
		if err != nil {
			return Result{}, &SendError{Reason: "mail sink: " + err.Error()}
		}
		// Written under a temporary name and renamed: a reader never sees
		// half an email.
		tmp := filepath.Join(s.dir, "."+e.ID+".tmp")
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			return Result{}, &SendError{Reason: "mail sink: " + err.Error(), Temporary: true}
		}
		if err := os.Rename(tmp, filepath.Join(s.dir, e.ID+".json")); err != nil {
			return Result{}, &SendError{Reason: "mail sink: " + err.Error(), Temporary: true}
		}
		if first == "" {
			first = e.ID
		}
	}
	return Result{MessageID: "sink-" + first}, nil
}

// nextID is a name that sorts by time of arrival, and that time.
func (s *Sink) nextID() (string, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := time.Now().UnixNano()
	if n <= s.last {
		n = s.last + 1
	}
	s.last = n
	return fmt.Sprintf("%019d", n), time.Unix(0, n).UTC()
}

var sinkID = regexp.MustCompile(`^[0-9]{19}$`)

// ErrNoSuchEmail is the answer for an id the sink does not hold.
var ErrNoSuchEmail = errors.New("mail sink: no such email")

// ErrNoSuchAttachment is the answer for an attachment index the email does
// not have.
var ErrNoSuchAttachment = errors.New("mail sink: no such attachment")

// List returns up to limit emails, newest first, older than the id before
// (all when before is empty).
func (s *Sink) List(before string, limit int) ([]SinkEmail, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("mail sink: %w", err)
	}
	var ids []string
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if ok && sinkID.MatchString(id) && (before == "" || id < before) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	slices.Reverse(ids)
	if len(ids) > limit {
		ids = ids[:limit]
	}
	out := make([]SinkEmail, 0, len(ids))
	for _, id := range ids {
		e, err := s.Get(id)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Get returns one email.
func (s *Sink) Get(id string) (SinkEmail, error) {
	var e SinkEmail
	if !sinkID.MatchString(id) {
		return e, ErrNoSuchEmail
	}
	b, err := os.ReadFile(filepath.Join(s.dir, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return e, ErrNoSuchEmail
	}
	if err != nil {
		return e, fmt.Errorf("mail sink: %w", err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, fmt.Errorf("mail sink: %s: %w", id, err)
	}
	return e, nil
}

// Attachment returns the n-th attachment of an email and its content.
func (s *Sink) Attachment(id string, n int) (SinkAttachment, []byte, error) {
	e, err := s.Get(id)
	if err != nil {
		return SinkAttachment{}, nil, err
	}
	if n < 0 || n >= len(e.Attachments) {
		return SinkAttachment{}, nil, ErrNoSuchAttachment
	}
	b, err := os.ReadFile(s.attachmentPath(id, n))
	if err != nil {
		return SinkAttachment{}, nil, fmt.Errorf("mail sink: %w", err)
	}
	return e.Attachments[n], b, nil
}

func (s *Sink) attachmentPath(id string, n int) string {
	return filepath.Join(s.dir, fmt.Sprintf("%s.attachment-%d", id, n))
}
