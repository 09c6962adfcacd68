package api_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/config"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// signer signs webhook posts as SendGrid does: ECDSA P-256 over SHA-256 of
// the timestamp followed by the raw body, ASN.1, base64.
type signer struct{ key *ecdsa.PrivateKey }

func newSigner(t *testing.T) signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return signer{k}
}

// publicKey parses the key the way configuration does, from the base64
// form SendGrid shows.
func (s signer) publicKey(t *testing.T) *ecdsa.PublicKey {
	der, err := x509.MarshalPKIXPublicKey(&s.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := config.ParseWebhookKey(base64.StdEncoding.EncodeToString(der))
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

func (s signer) sign(t *testing.T, ts string, body []byte) string {
	h := sha256.Sum256(append([]byte(ts), body...))
	sig, err := ecdsa.SignASN1(rand.Reader, s.key, h[:])
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(sig)
}

func (e *env) postEvents(s signer, at time.Time, events []map[string]any) response {
	e.t.Helper()
	body, _ := json.Marshal(events)
	ts := strconv.FormatInt(at.Unix(), 10)
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/webhooks/sendgrid", strings.NewReader(string(body)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(eventwebhook.TimestampHTTPHeader, ts)
	req.Header.Set(eventwebhook.VerificationHTTPHeader, s.sign(e.t, ts, body))
	return e.do("", req)
}

// sentInvitation creates an invited customer of the tenant and records its
// email as sent, as the send worker does; it returns the tenant, invitation
// and delivery ids.
func (e *env) sentInvitation(key, account, email string) (tenant, inv, delivery string) {
	e.t.Helper()
	ctx := context.Background()
	r := e.create(key, customer(account, email, true))
	if r.code != 201 {
		e.t.Fatalf("create: %d %s", r.code, r.raw)
	}
	inv = id(r, "invitation")
	var d store.Delivery
	if err := e.db.NewSelect().Model(&d).Where("invitation_id = ?", uuid.MustParse(inv)).Scan(ctx); err != nil {
		e.t.Fatal(err)
	}
	if _, err := store.ClaimDeliveries(ctx, e.db, []uuid.UUID{d.ID}, time.Minute, e.now); err != nil {
		e.t.Fatal(err)
	}
	if err := store.MarkDeliveriesSent(ctx, e.db, []uuid.UUID{d.ID}, "msg-1", time.Time{}, e.now); err != nil {
		e.t.Fatal(err)
	}
	return d.TenantID.String(), inv, d.ID.String()
}

// state is the delivery's state and event and the invitation's
// delivery_status and error.
func (e *env) state(inv string) string {
	e.t.Helper()
	var d store.Delivery
	var i store.Invitation
	ctx := context.Background()
	if err := e.db.NewSelect().Model(&d).Where("invitation_id = ?", uuid.MustParse(inv)).OrderExpr("created_at DESC").Limit(1).Scan(ctx); err != nil {
		e.t.Fatal(err)
	}
	if err := e.db.NewSelect().Model(&i).Where("id = ?", uuid.MustParse(inv)).Scan(ctx); err != nil {
		e.t.Fatal(err)
	}
	return fmt.Sprintf("delivery=%s/%s invitation=%s %s", d.State, d.Event, i.DeliveryStatus, i.DeliveryError)
}

func TestSendGridWebhookMovesForwardOnly(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		sg := newSigner(t)
		e := newEnvWith(t, db, func(o *serverOptions) { o.webhookKey = sg.publicKey(t) })
		key := e.tenant("a")
		tenant, inv, delivery := e.sentInvitation(key, "1", "one@example.com")
		ev := func(kind string, extra ...string) map[string]any {
			m := map[string]any{"email": "one@example.com", "timestamp": e.now.Unix(), "event": kind, "sg_event_id": uuid.NewString(),
				"sg_message_id": "msg-1.filter", "tenant_id": tenant, "invitation_id": inv, "delivery_id": delivery}
			for i := 0; i+1 < len(extra); i += 2 {
				m[extra[i]] = extra[i+1]
			}
			return m
		}
		steps := []struct {
			name    string
			events  []map[string]any
			applied float64
			want    string
		}{
			{"deferred and opens change nothing", []map[string]any{ev("processed"), ev("deferred"), ev("open")}, 0, "delivery=sent/ invitation=sent "},
			{"delivered", []map[string]any{ev("delivered")}, 1, "delivery=sent/delivered invitation=delivered "},
			{"the same event twice", []map[string]any{ev("delivered"), ev("delivered")}, 0, "delivery=sent/delivered invitation=delivered "},
			{"bounce", []map[string]any{ev("bounce", "type", "bounce", "status", "5.1.1", "reason", "550 5.1.1 user unknown")}, 1, "delivery=bounced/bounced invitation=bounced 5.1.1 550 5.1.1 user unknown"},
			{"a late delivered does not undo the bounce", []map[string]any{ev("delivered")}, 0, "delivery=bounced/bounced invitation=bounced 5.1.1 550 5.1.1 user unknown"},
			{"a duplicate bounce", []map[string]any{ev("bounce", "type", "bounce")}, 0, "delivery=bounced/bounced invitation=bounced 5.1.1 550 5.1.1 user unknown"},
			{"spam report", []map[string]any{ev("spamreport")}, 1, "delivery=bounced/complained invitation=complained 5.1.1 550 5.1.1 user unknown"},
			{"nothing goes back from complained", []map[string]any{ev("dropped"), ev("delivered"), ev("bounce", "type", "blocked")}, 0, "delivery=bounced/complained invitation=complained 5.1.1 550 5.1.1 user unknown"},
		}
		for _, st := range steps {
			r := e.postEvents(sg, e.now, st.events)
			if r.code != 200 || r.body["applied"] != st.applied {
				t.Fatalf("%s: %d %s, want applied %v", st.name, r.code, r.raw, st.applied)
			}
			if got := e.state(inv); got != st.want {
				t.Fatalf("%s: %s, want %s", st.name, got, st.want)
			}
		}

		// Blocked is kept apart from bounced, and a hard bounce wins over
		// it, whichever comes first.
		tenant2, inv2, _ := e.sentInvitation(key, "2", "two@example.com")
		// Without delivery_id: the invitation's latest email is meant (the
		// contract's custom_args are invitation_id and tenant_id).
		blocked := map[string]any{"event": "bounce", "type": "blocked", "reason": "blocked by policy", "tenant_id": tenant2, "invitation_id": inv2}
		if r := e.postEvents(sg, e.now, []map[string]any{blocked}); r.code != 200 || r.body["applied"] != 1.0 {
			t.Fatalf("blocked: %d %s", r.code, r.raw)
		}
		if got := e.state(inv2); got != "delivery=sent/blocked invitation=blocked blocked by policy" {
			t.Fatalf("blocked: %s", got)
		}
		bounce := map[string]any{"event": "bounce", "type": "bounce", "reason": "550 5.1.1 no such user", "tenant_id": tenant2, "invitation_id": inv2}
		if r := e.postEvents(sg, e.now, []map[string]any{bounce}); r.code != 200 || r.body["applied"] != 1.0 {
			t.Fatalf("bounce after blocked: %d %s", r.code, r.raw)
		}
		if got := e.state(inv2); got != "delivery=bounced/bounced invitation=bounced 550 5.1.1 no such user" {
			t.Fatalf("blocked then bounce: %s", got)
		}
		// A block arriving after the bounce changes nothing.
		if r := e.postEvents(sg, e.now, []map[string]any{blocked}); r.code != 200 || r.body["applied"] != 0.0 {
			t.Fatalf("blocked after bounce: %d %s", r.code, r.raw)
		}
		if got := e.state(inv2); got != "delivery=bounced/bounced invitation=bounced 550 5.1.1 no such user" {
			t.Fatalf("bounce then blocked: %s", got)
		}

		// Another tenant's id on A's invitation changes nothing.
		keyB := e.tenant("b")
		tenantB, _, _ := e.sentInvitation(keyB, "9", "nine@example.com")
		_, inv3, del3 := e.sentInvitation(key, "3", "three@example.com")
		if r := e.postEvents(sg, e.now, []map[string]any{{"event": "bounce", "tenant_id": tenantB, "invitation_id": inv3, "delivery_id": del3}}); r.code != 200 || r.body["applied"] != 0.0 {
			t.Fatalf("cross-tenant event: %d %s", r.code, r.raw)
		}
		if got := e.state(inv3); got != "delivery=sent/ invitation=sent " {
			t.Fatalf("a cross-tenant event changed A's invitation: %s", got)
		}

		// Resend runs skip the address that bounced after a block (and the
		// one that complained), not one merely sent.
		due, err := store.DueForResend(context.Background(), e.db, uuid.MustParse(tenant2), store.ResendPolicy{Now: e.now.Add(time.Hour)}, uuid.Nil, 10)
		if err != nil {
			t.Fatal(err)
		}
		var dueIDs []string
		for _, d := range due {
			dueIDs = append(dueIDs, d.ID.String())
		}
		if len(dueIDs) != 1 || dueIDs[0] != inv3 {
			t.Fatalf("due for resend %v, want only %s (not the bounced %s)", dueIDs, inv3, inv2)
		}
	})
}

func TestSendGridWebhookRefusesBadSignaturesAndOldTimestamps(t *testing.T) {
	t.Parallel()
	sg := newSigner(t)
	e := newEnvWith(t, storetest.NewPostgres(t), func(o *serverOptions) { o.webhookKey = sg.publicKey(t) })
	key := e.tenant("a")
	tenant, inv, delivery := e.sentInvitation(key, "1", "one@example.com")
	events := []map[string]any{{"event": "bounce", "tenant_id": tenant, "invitation_id": inv, "delivery_id": delivery}}
	unchanged := e.state(inv)

	impostor := newSigner(t)
	if r := e.postEvents(impostor, e.now, events); r.code != 401 || r.errField("code") != "bad_signature" {
		t.Errorf("signed with another key: %d %s", r.code, r.raw)
	}
	if r := e.postEvents(sg, e.now.Add(-11*time.Minute), events); r.code != 400 {
		t.Errorf("11-minute-old timestamp: %d %s", r.code, r.raw)
	}
	if r := e.postEvents(sg, e.now.Add(time.Hour), events); r.code != 400 {
		t.Errorf("timestamp an hour ahead: %d %s", r.code, r.raw)
	}
	// A body changed after signing.
	body, _ := json.Marshal(events)
	ts := strconv.FormatInt(e.now.Unix(), 10)
	sig := sg.sign(t, ts, body)
	for name, h := range map[string][2]string{
		"tampered body":     {ts, sig},
		"no signature":      {ts, ""},
		"no timestamp":      {"", sig},
		"garbage signature": {ts, "bm90IGEgc2lnbmF0dXJl"},
		"not base64":        {ts, "%%%"},
	} {
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/webhooks/sendgrid", strings.NewReader(strings.Replace(string(body), "bounce", "spamreport", 1)))
		if name != "tampered body" {
			req, _ = http.NewRequest("POST", e.srv.URL+"/v1/webhooks/sendgrid", strings.NewReader(string(body)))
		}
		if h[0] != "" {
			req.Header.Set(eventwebhook.TimestampHTTPHeader, h[0])
		}
		if h[1] != "" {
			req.Header.Set(eventwebhook.VerificationHTTPHeader, h[1])
		}
		if r := e.do("", req); r.code != 401 {
			t.Errorf("%s: %d %s, want 401", name, r.code, r.raw)
		}
	}
	if got := e.state(inv); got != unchanged {
		t.Fatalf("a refused post changed state: %s, was %s", got, unchanged)
	}
	// The same events, properly signed and fresh, apply.
	if r := e.postEvents(sg, e.now.Add(-9*time.Minute), events); r.code != 200 || r.body["applied"] != 1.0 {
		t.Fatalf("a valid post: %d %s", r.code, r.raw)
	}

	// Without a configured key the webhook refuses (SendGrid retries).
	bare := newEnv(t, storetest.NewPostgres(t), false)
	if r := bare.postEvents(sg, bare.now, events); r.code != 503 {
		t.Errorf("unconfigured webhook: %d %s", r.code, r.raw)
	}
}

func TestWebhookKeyParsedSafely(t *testing.T) {
	t.Parallel()
	// A valid public key of another type: sendgrid-go's own parser would
	// panic on it.
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edDER, _ := x509.MarshalPKIXPublicKey(edPub)
	for _, bad := range []string{"not base64!", "aGVsbG8=", base64.StdEncoding.EncodeToString(edDER)} {
		if _, err := config.ParseWebhookKey(bad); err == nil {
			t.Errorf("%q accepted as a webhook key", bad)
		}
	}
}

// One event with a field of an unexpected type does not lose the others of
// its post: it is skipped and counted, the rest apply. A bounce whose status
// came as a number still applies, the number read as text.
func TestSendGridWebhookSkipsEventsThatDoNotDecode(t *testing.T) {
	t.Parallel()
	sg := newSigner(t)
	e := newEnvWith(t, storetest.NewPostgres(t), func(o *serverOptions) { o.webhookKey = sg.publicKey(t) })
	key := e.tenant("a")
	t1, inv1, d1 := e.sentInvitation(key, "1", "one@example.com")
	t2, inv2, d2 := e.sentInvitation(key, "2", "two@example.com")
	t3, inv3, d3 := e.sentInvitation(key, "3", "three@example.com")
	events := []map[string]any{
		{"event": "bounce", "type": "bounce", "status": 550, "reason": "no such user", "tenant_id": t1, "invitation_id": inv1, "delivery_id": d1},
		{"event": "delivered", "tenant_id": t2, "invitation_id": inv2, "delivery_id": []string{d2}},
		{"event": "bounce", "type": "bounce", "status": map[string]any{"code": 550}, "tenant_id": t3, "invitation_id": inv3, "delivery_id": d3},
		{"event": "delivered", "tenant_id": t3, "invitation_id": inv3, "delivery_id": d3},
	}
	r := e.postEvents(sg, e.now, events)
	if r.code != 200 || r.body["received"] != 4.0 || r.body["applied"] != 2.0 || r.body["skipped"] != 2.0 {
		t.Fatalf("%d %s, want 200 with 4 received, 2 applied, 2 skipped", r.code, r.raw)
	}
	for inv, want := range map[string]string{
		inv1: "delivery=bounced/bounced invitation=bounced 550 no such user",
		inv2: "delivery=sent/ invitation=sent ",
		inv3: "delivery=sent/delivered invitation=delivered ",
	} {
		if got := e.state(inv); got != want {
			t.Errorf("%s: %s, want %s", inv, got, want)
		}
	}
}
