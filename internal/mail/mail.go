// Package mail owns sending email: the Message onboard builds, the SendGrid
// adapter that delivers it, and the Sink that keeps it instead (the embedded
// mode and tests). sendgridfake is a local SendGrid for tests.
package mail

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/onboard-dev/onboard/internal/emailaddr"
)

// Address is a mailbox with an optional display name.
type Address struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

// Attachment is a file sent with the email.
type Attachment struct {
	Filename    string
	ContentType string
	Content     []byte
}

// Personalization is one recipient of a message. Substitutions replace keys
// (such as "-accept_url-") in the subject, text and HTML for this recipient
// only; values are inserted verbatim, so HTML-only keys carry escaped values.
// CustomArgs come back on SendGrid's events and map them to our records.
type Personalization struct {
	To            Address
	Substitutions map[string]string
	CustomArgs    map[string]string
}

// Message is one email to one or more recipients (one request to SendGrid).
type Message struct {
	From             Address
	ReplyTo          *Address
	Subject          string
	Text             string
	HTML             string
	Personalizations []Personalization
	Attachments      []Attachment
	Categories       []string
}

// MaxPersonalizations is SendGrid's limit of recipients per request.
const MaxPersonalizations = 1000

// Result is what the provider said when it accepted a message.
type Result struct {
	MessageID string
}

// SendError is a failed send, of one of three kinds:
//
//   - Temporary (429, 5xx, network): worth retrying, after RetryAfter when
//     the provider said so.
//   - Refused: the provider refused the request as a whole for a reason no
//     recipient caused: a revoked key or one without the permission (401,
//     403 "access forbidden"), a sender that is not a verified Sender
//     Identity (403), a wrong API URL (404), or a 400 about the message's
//     own fields (from, content, attachments…). Nothing is wrong with the
//     emails: they wait until the configuration (or the code) is mended,
//     and splitting the batch would only refuse every half again.
//   - otherwise permanent: the request was refused for something that may
//     be one recipient's (a 400 about a personalization, or saying nothing
//     of a field; a 413), and Reason says why.
type SendError struct {
	StatusCode int
	Reason     string
	Temporary  bool
	Refused    bool
	// Held: no request was made; a pause every worker shares (see
	// ratelimit.SharedBackoff) held it.
	Held       bool
	RetryAfter time.Duration
}

func (e *SendError) Error() string {
	kind := "permanent"
	switch {
	case e.Temporary:
		kind = "temporary"
	case e.Refused:
		kind = "refused as a whole, waiting"
	}
	if e.StatusCode == 0 {
		return fmt.Sprintf("send email (%s): %s", kind, e.Reason)
	}
	return fmt.Sprintf("send email (%s, HTTP %d): %s", kind, e.StatusCode, e.Reason)
}

// AccountLevel reports whether the refusal is about the account or the
// service's configuration (key, sender identity, URL) rather than one
// message: every request would be refused alike until it is mended.
func (e *SendError) AccountLevel() bool {
	return e.Refused && e.StatusCode != 0 && e.StatusCode != 400
}

// IsTemporary reports whether err is a send failure worth retrying.
func IsTemporary(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Temporary
}

// IsRefused reports whether err is a refusal of the request as a whole that
// no recipient caused (see SendError): the emails must wait, not fail.
func IsRefused(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Refused
}

// IsHeld reports whether err is a send a shared pause held back, without a
// request.
func IsHeld(err error) bool {
	var se *SendError
	return errors.As(err, &se) && se.Held
}

// MaySplit reports whether a refusal of a batch may be about some of its
// recipients only, so that sending the batch in halves gets the others out:
// a permanent 400 that is not about the message as a whole, a 413, or a
// message that did not pass Validate.
func MaySplit(err error) bool {
	var se *SendError
	if !errors.As(err, &se) || se.Temporary || se.Refused {
		return false
	}
	switch se.StatusCode {
	case 0, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return true
	}
	return false
}

// RetryAfter is how long the provider asked us to wait, if it did.
func RetryAfter(err error) (time.Duration, bool) {
	var se *SendError
	if errors.As(err, &se) && se.RetryAfter > 0 {
		return se.RetryAfter, true
	}
	return 0, false
}

// Validate checks a message before it goes out; a failure is permanent.
func (m *Message) Validate() error {
	fail := func(why string) error { return &SendError{Reason: "invalid message: " + why} }
	switch {
	case m.From.Email == "":
		return fail("no sender")
	case len(m.Personalizations) == 0:
		return fail("no recipients")
	case len(m.Personalizations) > MaxPersonalizations:
		return fail(fmt.Sprintf("%d recipients, at most %d", len(m.Personalizations), MaxPersonalizations))
	case m.Subject == "":
		return fail("no subject")
	case m.Text == "" && m.HTML == "":
		return fail("no content")
	}
	if _, err := emailaddr.ASCII(m.From.Email); err != nil {
		return fail("the sender's address is not one SendGrid sends from")
	}
	if m.ReplyTo != nil {
		if _, err := emailaddr.ASCII(m.ReplyTo.Email); err != nil {
			return fail("the reply-to address is not one SendGrid takes")
		}
	}
	for i, p := range m.Personalizations {
		if p.To.Email == "" {
			return fail(fmt.Sprintf("recipient %d has no address", i+1))
		}
		// The address itself stays out of the reason, which is logged.
		if _, err := emailaddr.ASCII(p.To.Email); err != nil {
			return fail(fmt.Sprintf("recipient %d: SendGrid sends to no such address (an internationalised local part, or no address at all)", i+1))
		}
	}
	return nil
}

// wireAddress is an address as SendGrid takes it: its domain in ASCII
// (punycode), since SendGrid's mail send refuses any other character in an
// address (format "email" in its OpenAPI). Validate has made sure it can be.
func wireAddress(s string) string {
	if a, err := emailaddr.ASCII(s); err == nil {
		return a
	}
	return s
}

// displayName is a name as SendGrid's v3 mail send takes it: on one line
// (headerSafe), and without `,` and `;`, which its documented limitations
// forbid in to, cc and bcc names ("cannot include either the ; or ,
// characters"): SendGrid answers 202 all the same, then reads the part of
// the name before the comma as an address and drops the email as Invalid.
// Each of them becomes a space and runs of blanks one, so the name still
// reads right: "John Smith, Jr." is sent as "John Smith Jr.", "Smith;John"
// as "Smith John". Quoting the name instead, as some SDKs do, is not what
// SendGrid documents, and mail clients show the quotes. The from and
// reply_to names get the same treatment: nothing documents them as safer.
func displayName(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == ',' || r == ';' {
			return ' '
		}
		return r
	}, headerSafe(s))
	return strings.Join(strings.Fields(s), " ")
}

// headerSafe folds line breaks and control characters into spaces: nothing
// we put in a header can start another one.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}
