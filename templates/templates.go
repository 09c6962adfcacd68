// Package templates owns the emails onboard sends and renders them.
//
// Emails go out in batches of up to 1,000 recipients in one SendGrid request,
// so a template is rendered once per batch with what the batch shares (the
// tenant) and the per-recipient values are SendGrid substitutions: keys such
// as -contact_name- in the text part and subject, -contact_name_html- in the
// HTML part. The HTML keys carry HTML-escaped values, because substitution
// values are inserted verbatim.
package templates

import (
	"bytes"
	"embed"
	"fmt"
	"html"
	htmltemplate "html/template"
	"strings"
	texttemplate "text/template"
	"time"
)

//go:embed *.tmpl
var files embed.FS

var (
	textTemplates = texttemplate.Must(texttemplate.ParseFS(files, "*.txt.tmpl", "*.subject.tmpl"))
	htmlTemplates = htmltemplate.Must(htmltemplate.ParseFS(files, "*.html.tmpl"))
)

// Email is a rendered email whose per-recipient parts are substitution keys.
type Email struct {
	Subject string
	Text    string
	HTML    string
}

// Invitation is the shared part of an invitation email.
type Invitation struct {
	TenantName string
}

// RenderInvitation renders the invitation email of a batch.
func RenderInvitation(d Invitation) (Email, error) {
	return render("invitation", d)
}

// ImportReport is the confirmation email of an import to its sender.
type ImportReport struct {
	TenantName   string
	Kind         string // the import's type, as the history shows it
	ImportID     string
	Filename     string
	DryRun       bool
	ImportFailed bool   // the import failed as a whole
	Error        string // why, when it failed
	TotalRows    int
	Processed    int
	Succeeded    int
	Failed       int

	// The attachments, by file name ("" when not attached), and whether the
	// size limit cut them short after so many rows.
	SucceededFile      string
	SucceededListed    int
	SucceededTruncated bool
	FailedFile         string
	FailedListed       int
	FailedTruncated    bool
}

// RenderImportReport renders the confirmation email of an import.
func RenderImportReport(d ImportReport) (Email, error) {
	return render("import_report", d)
}

// Recipient is what differs between the recipients of a batch.
type Recipient struct {
	ContactName string
	CompanyName string
	AcceptURL   string
	ExpiresAt   time.Time
}

// InvitationSubstitutions gives one recipient's substitution values.
func InvitationSubstitutions(r Recipient) map[string]string {
	name := strings.TrimSpace(r.ContactName)
	if name == "" {
		name = "there"
	}
	if strings.TrimSpace(r.CompanyName) == "" {
		// Imported customers have no company name until the ERP gives one.
		r.CompanyName = "your company"
	}
	expires := r.ExpiresAt.UTC().Format("2 January 2006 at 15:04 UTC")
	return map[string]string{
		"-contact_name-":      HeaderSafe(name),
		"-company_name-":      HeaderSafe(r.CompanyName),
		"-accept_url-":        r.AcceptURL,
		"-expires_at-":        expires,
		"-contact_name_html-": html.EscapeString(name),
		"-company_name_html-": html.EscapeString(r.CompanyName),
		"-accept_url_html-":   html.EscapeString(r.AcceptURL),
		"-expires_at_html-":   html.EscapeString(expires),
	}
}

// HeaderSafe folds line breaks and other control characters into spaces, so
// a value placed in the subject cannot start a new header.
func HeaderSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, s)
}

func render(name string, data any) (Email, error) {
	var subj, text, body bytes.Buffer
	if err := textTemplates.ExecuteTemplate(&subj, name+".subject.tmpl", data); err != nil {
		return Email{}, fmt.Errorf("render %s subject: %w", name, err)
	}
	if err := textTemplates.ExecuteTemplate(&text, name+".txt.tmpl", data); err != nil {
		return Email{}, fmt.Errorf("render %s text: %w", name, err)
	}
	if err := htmlTemplates.ExecuteTemplate(&body, name+".html.tmpl", data); err != nil {
		return Email{}, fmt.Errorf("render %s html: %w", name, err)
	}
	return Email{
		Subject: HeaderSafe(strings.TrimSpace(subj.String())),
		Text:    text.String(),
		HTML:    body.String(),
	}, nil
}
