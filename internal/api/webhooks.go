package api

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/sendgrid/sendgrid-go/helpers/eventwebhook"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/store"
)

// Webhook limits: SendGrid posts batches of events well under a megabyte;
// a signed request is good for ten minutes, so a captured one cannot be
// replayed later.
const (
	maxWebhookBody   = 5 << 20
	webhookMaxAge    = 10 * time.Minute
	webhookMaxFuture = 5 * time.Minute // clocks disagree a little
)

// sendgridEvent is the part of an event we read. SendGrid flattens the
// personalization's custom_args into the event's top level.
type sendgridEvent struct {
	Event        string    `json:"event"`
	Type         looseText `json:"type"` // for a bounce: "bounce" or "blocked"
	Reason       looseText `json:"reason"`
	Status       looseText `json:"status"`
	TenantID     string    `json:"tenant_id"`
	InvitationID string    `json:"invitation_id"`
	DeliveryID   string    `json:"delivery_id"`
}

// looseText is a descriptive field read as text whatever its JSON type
// (a bounce's "status" has come as the number 550 instead of "5.1.1"):
// a number or boolean is its JSON text, null is empty. Objects and arrays
// do not decode.
type looseText string

func (t *looseText) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*t = ""
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = looseText(s)
	case len(b) > 0 && (b[0] == '{' || b[0] == '['):
		return fmt.Errorf("a %s where text was expected", map[byte]string{'{': "JSON object", '[': "JSON array"}[b[0]])
	default:
		*t = looseText(b)
	}
	return nil
}

// sendgridWebhook takes SendGrid's signed event webhook: it verifies the
// signature over the raw body and the timestamp, then moves deliveries and
// invitations forward. Deferred, open, click and other events are
// acknowledged and ignored.
func (s *Server) sendgridWebhook(w http.ResponseWriter, r *http.Request) error {
	if s.WebhookKey == nil {
		return &Error{Status: http.StatusServiceUnavailable, Code: "webhook_not_configured", Message: "the SendGrid event webhook is not configured (SENDGRID_WEBHOOK_PUBLIC_KEY)"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxWebhookBody))
	if err != nil {
		return err
	}
	sig := r.Header.Get(eventwebhook.VerificationHTTPHeader)
	ts := r.Header.Get(eventwebhook.TimestampHTTPHeader)
	if sig == "" || ts == "" {
		return &Error{Status: http.StatusUnauthorized, Code: "bad_signature", Message: "the request is not signed (" + eventwebhook.VerificationHTTPHeader + ", " + eventwebhook.TimestampHTTPHeader + ")"}
	}
	if !verifySignature(s.WebhookKey, body, sig, ts) {
		return &Error{Status: http.StatusUnauthorized, Code: "bad_signature", Message: "the signature does not verify"}
	}
	// Checked after the signature: the timestamp is part of what is signed.
	unix, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return badRequest("", "the webhook timestamp is not a Unix time")
	}
	now := s.now()
	if at := time.Unix(unix, 0); now.Sub(at) > webhookMaxAge || at.Sub(now) > webhookMaxFuture {
		return badRequest("", fmt.Sprintf("the webhook timestamp %s is outside the accepted %s window", at.UTC().Format(time.RFC3339), webhookMaxAge))
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return badRequest("", "the body is not a JSON array of events")
	}
	// Each event is decoded on its own: one that does not decode (a field
	// of an unexpected type) is skipped, counted and logged, and the rest
	// of the post still applies. Answering 400 would lose them all, since
	// SendGrid retries the same post and it would fail the same way.
	events := make([]sendgridEvent, 0, len(raw))
	var skipped int
	var firstErr error
	for _, item := range raw {
		var ev sendgridEvent
		if err := json.Unmarshal(item, &ev); err != nil {
			skipped++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		events = append(events, ev)
	}
	if skipped > 0 {
		// The decoder's message names the field and the types, never a value.
		s.Log.WarnContext(r.Context(), "webhook: events skipped, they do not decode", "skipped", skipped, "received", len(raw), "first_error", firstErr.Error())
	}
	// One transaction for the whole post: SendGrid sends up to a thousand
	// events at once, and if any fails it retries the post, whose events
	// are no-ops the second time.
	var applied int
	var moved []store.DeliveryEvent
	err = s.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		applied, moved = 0, moved[:0]
		for _, ev := range events {
			e, ok := deliveryEvent(ev)
			if !ok {
				continue
			}
			res, err := store.ApplyDeliveryEvent(ctx, tx, e, now)
			if err != nil {
				return err
			}
			if res.Applied {
				applied++
			}
			if res.Invitation {
				moved = append(moved, e)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, e := range moved {
		s.Metrics.InvitationEvent(e.TenantID, e.Event)
	}
	return writeJSON(w, http.StatusOK, map[string]int{"received": len(raw), "applied": applied, "skipped": skipped})
}

// deliveryEvent maps a SendGrid event to ours; ok is false for events that
// change nothing (deferred, opens, clicks…) or that are not ours.
func deliveryEvent(ev sendgridEvent) (store.DeliveryEvent, bool) {
	var e store.DeliveryEvent
	switch ev.Event {
	case "delivered":
		e.Event = store.EventDelivered
	case "bounce":
		e.Event = store.EventBounced
		if ev.Type == "blocked" {
			e.Event = store.EventBlocked
		}
	case "dropped":
		e.Event = store.EventBounced
	case "blocked":
		e.Event = store.EventBlocked
	case "spamreport":
		e.Event = store.EventComplained
	default:
		return e, false
	}
	tenant, err := uuid.Parse(ev.TenantID)
	if err != nil {
		return e, false
	}
	e.TenantID = tenant
	if id, err := uuid.Parse(ev.DeliveryID); err == nil {
		e.DeliveryID = uuid.NullUUID{UUID: id, Valid: true}
	}
	if id, err := uuid.Parse(ev.InvitationID); err == nil {
		e.InvitationID = uuid.NullUUID{UUID: id, Valid: true}
	}
	if !e.DeliveryID.Valid && !e.InvitationID.Valid {
		return e, false
	}
	e.Reason = strings.TrimSpace(strings.Join(nonEmpty(string(ev.Status), string(ev.Reason)), " "))
	if len(e.Reason) > 500 {
		// Cut on a character boundary: the database stores UTF-8 only.
		cut := 500
		for cut > 0 && !utf8.RuneStart(e.Reason[cut]) {
			cut--
		}
		e.Reason = e.Reason[:cut]
	}
	return e, true
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// verifySignature checks SendGrid's ECDSA signature with its own helper; a
// malformed signature is a failed check, never a panic.
func verifySignature(key *ecdsa.PublicKey, body []byte, sig, ts string) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	ok, err := eventwebhook.VerifySignature(key, body, sig, ts)
	return err == nil && ok
}
