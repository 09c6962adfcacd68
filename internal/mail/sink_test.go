package mail

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSinkKeepsOneEmailPerRecipientAndServesThem(t *testing.T) {
	dir := t.TempDir()
	sink, err := NewSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	msg := Message{
		From:    Address{Email: "noreply@vendor.test", Name: "Vendor"},
		Subject: "Join -company-",
		Text:    "Open -url-",
		HTML:    "<p><a href=\"-url-\">Accept</a><script>alert(1)</script></p>",
		Personalizations: []Personalization{
			{To: Address{Email: "a@x.test"}, Substitutions: map[string]string{"-company-": "Acme", "-url-": "http://h/accept?token=AAA"}, CustomArgs: map[string]string{"invitation_id": "i1"}},
			{To: Address{Email: "b@x.test"}, Substitutions: map[string]string{"-company-": "Acme", "-url-": "http://h/accept?token=BBB"}},
		},
		Attachments: []Attachment{{Filename: "failed.csv", ContentType: "text/csv", Content: []byte("a,b\r\n")}},
	}
	if _, err := sink.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	if _, err := sink.Send(context.Background(), Message{From: msg.From}); err == nil || IsTemporary(err) {
		t.Fatalf("a message SendGrid would refuse must be refused permanently, got %v", err)
	}

	// A new sink on the same directory (a restart) sees the same emails.
	sink, err = NewSink(dir)
	if err != nil {
		t.Fatal(err)
	}
	emails, err := sink.List("", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(emails) != 2 || emails[0].To.Email != "b@x.test" || emails[1].To.Email != "a@x.test" {
		t.Fatalf("want b then a (newest first), got %+v", emails)
	}
	if emails[1].Text != "Open http://h/accept?token=AAA" || emails[1].Subject != "Join Acme" || emails[1].CustomArgs["invitation_id"] != "i1" {
		t.Fatalf("substitutions or custom args not applied: %+v", emails[1])
	}
	if older, _ := sink.List(emails[0].ID, 10); len(older) != 1 || older[0].ID != emails[1].ID {
		t.Fatalf("before= paging: got %+v", older)
	}

	srv := httptest.NewServer(SinkPage(sink, "/dev/mail"))
	defer srv.Close()
	get := func(path, accept string) (int, http.Header, string) {
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, _, page := get("/dev/mail", "")
	if code != 200 || !strings.Contains(page, "Join Acme") || !strings.Contains(page, "a@x.test") {
		t.Fatalf("list page: %d %s", code, page)
	}
	code, _, body := get("/dev/mail", "application/json")
	var list struct{ Emails []SinkEmail }
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Emails) != 2 {
		t.Fatalf("list JSON: %d %s", code, body)
	}
	code, _, page = get("/dev/mail/"+emails[1].ID, "")
	if code != 200 || !strings.Contains(page, `sandbox=""`) || strings.Contains(page, "<script>") || !strings.Contains(page, "failed.csv") {
		t.Fatalf("email page must show the HTML escaped in a sandboxed frame and list the attachment: %d %s", code, page)
	}
	code, h, body := get("/dev/mail/"+emails[1].ID+"/attachments/0", "")
	if code != 200 || body != "a,b\r\n" || !strings.Contains(h.Get("Content-Disposition"), `filename=failed.csv`) {
		t.Fatalf("attachment: %d %v %q", code, h, body)
	}
	if code, _, body := get("/dev/mail/"+emails[1].ID+"/attachments/9", ""); code != 404 || !strings.Contains(body, "no such attachment") {
		t.Errorf("missing attachment: %d %q", code, body)
	}
	for _, p := range []string{"/dev/mail/../../etc/passwd", "/dev/mail/0000000000000000001", "/dev/mail/" + emails[1].ID + "/attachments/1"} {
		if code, _, _ := get(p, ""); code != 404 {
			t.Errorf("%s: want 404, got %d", p, code)
		}
	}
}
