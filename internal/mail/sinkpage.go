package mail

import (
	"encoding/json"
	"errors"
	"html/template"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// sinkPageSize is how many emails one page of /dev/mail lists.
const sinkPageSize = 100

// SinkPage serves the sink's emails under prefix (such as /dev/mail):
//
//	GET prefix                         newest first, HTML; JSON with ?format=json or Accept: application/json
//	GET prefix/{id}                    one email: headers, text, HTML (sandboxed), attachments; JSON likewise
//	GET prefix/{id}/attachments/{n}    an attachment, as a download
//
// Older pages are reached with ?before=ID. It has no auth: `onboard dev`
// listens on loopback only.
func SinkPage(s *Sink, prefix string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+prefix, func(w http.ResponseWriter, r *http.Request) {
		before := r.URL.Query().Get("before")
		emails, err := s.List(before, sinkPageSize)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		next := ""
		if len(emails) == sinkPageSize {
			next = emails[len(emails)-1].ID
		}
		if wantsJSON(r) {
			writeSinkJSON(w, map[string]any{"emails": emails, "next_before": next})
			return
		}
		render(w, sinkListPage, map[string]any{"Prefix": prefix, "Emails": emails, "Next": next})
	})
	mux.HandleFunc("GET "+prefix+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		e, err := s.Get(r.PathValue("id"))
		if err != nil {
			sinkError(w, err)
			return
		}
		if wantsJSON(r) {
			writeSinkJSON(w, e)
			return
		}
		render(w, sinkEmailPage, map[string]any{"Prefix": prefix, "Email": e})
	})
	mux.HandleFunc("GET "+prefix+"/{id}/attachments/{n}", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(r.PathValue("n"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		a, content, err := s.Attachment(r.PathValue("id"), n)
		if err != nil {
			sinkError(w, err)
			return
		}
		ct := a.ContentType
		if ct == "" {
			ct = "application/octet-stream"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": a.Filename}))
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(content)
	})
	return mux
}

func wantsJSON(r *http.Request) bool {
	return r.URL.Query().Get("format") == "json" || strings.Contains(r.Header.Get("Accept"), "application/json")
}

func writeSinkJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func sinkError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNoSuchEmail):
		http.Error(w, "no such email", http.StatusNotFound)
		return
	case errors.Is(err, ErrNoSuchAttachment):
		http.Error(w, "no such attachment", http.StatusNotFound)
		return
	}
	http.Error(w, err.Error(), http.StatusInternalServerError)
}

func render(w http.ResponseWriter, t *template.Template, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The email's own HTML is shown in a sandboxed frame: no scripts, and
	// nothing it links to loads into this page.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-src 'self'; img-src * data:")
	if err := t.Execute(w, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

const sinkStyle = `<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2rem;color:#222}
table{border-collapse:collapse;width:100%}td,th{padding:.35rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f4f4f4}pre{white-space:pre-wrap;background:#f8f8f8;padding:1rem}
iframe{width:100%;height:32rem;border:1px solid #ccc}.muted{color:#777}
</style>`

var sinkListPage = template.Must(template.New("list").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>onboard dev: mail</title>` + sinkStyle + `</head>
<body><h1>Mail sink</h1>
<p class="muted">Every email onboard sent while running <code>onboard dev</code>, newest first. Nothing here left this machine.</p>
{{if .Emails}}<table id="emails"><thead><tr><th>Received</th><th>To</th><th>Subject</th><th>Attachments</th></tr></thead><tbody>
{{range .Emails}}<tr class="email"><td>{{.At.Format "2006-01-02 15:04:05"}}</td><td class="to">{{.To.Email}}</td>
<td class="subject"><a href="{{$.Prefix}}/{{.ID}}">{{.Subject}}</a></td><td>{{len .Attachments}}</td></tr>
{{end}}</tbody></table>
{{if .Next}}<p><a href="{{.Prefix}}?before={{.Next}}">Older</a></p>{{end}}
{{else}}<p id="empty">No email yet. Invite a customer and it shows up here.</p>{{end}}
</body></html>`))

var sinkEmailPage = template.Must(template.New("email").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Email.Subject}}</title>` + sinkStyle + `</head>
<body><p><a href="{{.Prefix}}">All mail</a></p>
{{with .Email}}<h1>{{.Subject}}</h1>
<table><tr><th>From</th><td>{{.From.Name}} &lt;{{.From.Email}}&gt;</td></tr>
<tr><th>To</th><td>{{.To.Name}} &lt;{{.To.Email}}&gt;</td></tr>
<tr><th>Received</th><td>{{.At.Format "2006-01-02 15:04:05 MST"}}</td></tr>
{{range $k, $v := .CustomArgs}}<tr><th>{{$k}}</th><td>{{$v}}</td></tr>{{end}}
{{range $i, $a := .Attachments}}<tr><th>Attachment</th><td><a href="{{$.Prefix}}/{{$.Email.ID}}/attachments/{{$i}}">{{$a.Filename}}</a> <span class="muted">({{$a.ContentType}}, {{$a.Size}} bytes)</span></td></tr>{{end}}
</table>
{{if .HTML}}<h2>HTML</h2><iframe sandbox="" srcdoc="{{.HTML}}" title="HTML body"></iframe>{{end}}
{{if .Text}}<h2>Text</h2><pre>{{.Text}}</pre>{{end}}
{{end}}</body></html>`))
