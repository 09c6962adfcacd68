package api

import (
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/csvsafe"
	"github.com/onboard-dev/onboard/internal/emailaddr"
	"github.com/onboard-dev/onboard/internal/invite"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

var invitationStates = []string{store.InvitationSaved, store.InvitationPending, store.InvitationAccepted, store.InvitationExpired, store.InvitationRevoked}

// wantsCSV reads ?format= (json or csv), else the Accept header: CSV when
// text/csv is preferred to application/json (by q-value, then by order).
func wantsCSV(r *http.Request) (bool, error) {
	switch strings.ToLower(r.URL.Query().Get("format")) {
	case "csv":
		return true, nil
	case "json":
		return false, nil
	case "":
	default:
		return false, badRequest("format", "format must be json or csv")
	}
	return acceptPrefers(r, "text/csv", "application/json"), nil
}

// acceptPrefers tells whether the request's Accept header prefers media
// type a to b: a listed with a q-value above 0 and above b's, or equal to
// it and listed first. Wildcards choose neither; the caller's default
// stands.
func acceptPrefers(r *http.Request, a, b string) bool {
	aQ, bQ := -1.0, -1.0 // -1: not listed
	aFirst := false
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		media, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, err := strconv.ParseFloat(params["q"], 64); err == nil {
			q = v
		}
		switch media { // ParseMediaType lower-cases it
		case a:
			if aQ < 0 {
				aQ, aFirst = q, bQ < 0
			}
		case b:
			if bQ < 0 {
				bQ = q
			}
		}
	}
	switch {
	case aQ <= 0:
		return false
	case aQ != bQ:
		return aQ > bQ
	}
	return aFirst
}

func (s *Server) listInvitations(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	q := r.URL.Query()
	state := q.Get("status")
	if state != "" && !contains(invitationStates, state) {
		return badRequest("status", "status must be one of "+strings.Join(invitationStates, ", "))
	}
	asCSV, err := wantsCSV(r)
	if err != nil {
		return err
	}
	if asCSV {
		if state == "" {
			state = store.InvitationPending // the pending list
		}
		return s.invitationsCSV(w, r, tenant, state)
	}
	// The route streams for the CSV; a JSON page is bounded like any other.
	return s.withTimeout(func(w http.ResponseWriter, r *http.Request) error {
		return s.invitationsPage(w, r, tenant, state)
	})(w, r)
}

// invitationsPage answers GET /v1/invitations with one JSON page.
func (s *Server) invitationsPage(w http.ResponseWriter, r *http.Request, tenant *store.Tenant, state string) error {
	q := r.URL.Query()
	var err error
	f := store.InvitationFilter{State: state, Now: s.now()}
	if f.After, err = decodeCursor(q.Get("cursor")); err != nil {
		return err
	}
	if f.Limit, err = pageLimit(r, 100, 500); err != nil {
		return err
	}
	invs, err := store.ListInvitations(r.Context(), s.DB, tenant.ID, f)
	if err != nil {
		return err
	}
	out := struct {
		Data       []invitationView `json:"data"`
		NextCursor *string          `json:"next_cursor"`
	}{Data: make([]invitationView, len(invs))}
	for i, inv := range invs {
		out.Data[i] = viewInvitation(inv, s.now())
	}
	if len(invs) == f.Limit {
		out.NextCursor = encodeCursor(invs[len(invs)-1].ID)
	}
	return writeJSON(w, http.StatusOK, out)
}

// invitationsCSV streams the tenant's invitations in one state (pending: the
// pending list) page by page; a tenant with a million pending invitations
// costs one page of memory.
func (s *Server) invitationsCSV(w http.ResponseWriter, r *http.Request, tenant *store.Tenant, state string) error {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+state+`-invitations.csv"`)
	cw := csvsafe.NewWriter(w)
	if err := cw.Write([]string{"email", "first_name", "last_name", "company_name", "account_numbers", "send_count", "last_sent_at", "expires_at"}); err != nil {
		return err
	}
	fmtTime := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	after := uuid.Nil
	for {
		invs, err := store.ListInvitations(r.Context(), s.DB, tenant.ID, store.InvitationFilter{State: state, Now: s.now(), After: after, Limit: 1000})
		if err != nil {
			// Headers are out: the truncated file is the only signal left.
			s.Log.ErrorContext(r.Context(), "invitations csv", "err", err)
			return nil
		}
		custs, err := customersOf(r.Context(), s.DB, tenant.ID, invs)
		if err != nil {
			s.Log.ErrorContext(r.Context(), "invitations csv", "err", err)
			return nil
		}
		for _, inv := range invs {
			c := custs[inv.CustomerID]
			var company, accounts string
			if c != nil {
				company, accounts = c.CompanyName, strings.Join(c.AccountNumbers, " ")
			}
			if err := cw.Write([]string{inv.Email, inv.FirstName, inv.LastName, company, accounts,
				strconv.Itoa(inv.SendCount), fmtTime(inv.LastSentAt), fmtTime(inv.ExpiresAt)}); err != nil {
				return nil // the client went away
			}
		}
		if err := cw.Flush(); err != nil {
			return nil
		}
		if len(invs) < 1000 {
			return nil
		}
		after = invs[len(invs)-1].ID
	}
}

func customersOf(ctx context.Context, db bun.IDB, tenantID uuid.UUID, invs []*store.Invitation) (map[uuid.UUID]*store.Customer, error) {
	out := map[uuid.UUID]*store.Customer{}
	if len(invs) == 0 {
		return out, nil
	}
	ids := make([]uuid.UUID, 0, len(invs))
	for _, inv := range invs {
		ids = append(ids, inv.CustomerID)
	}
	cs, err := store.CustomersByID(ctx, db, tenantID, ids)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		out[c.ID] = c
	}
	return out, nil
}

func (s *Server) revokeInvitation(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	id, err := pathID(r)
	if err != nil {
		return err
	}
	var inv *store.Invitation
	err = s.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		inv, err = store.RevokeInvitation(ctx, tx, tenant.ID, id, s.now())
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"invitation": viewInvitation(inv, s.now())})
}

func (s *Server) acceptInvitation(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	var req struct {
		Token string `json:"token"`
	}
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	req.Token = strings.TrimSpace(req.Token)
	if req.Token == "" {
		return invalid("token", "token must not be empty")
	}
	var acc *store.Acceptance
	err := s.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		acc, err = store.AcceptInvitation(ctx, tx, tenant.ID, req.Token, s.now())
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "invitation_not_found", Message: "no invitation has this token", Field: "token"}
	}
	if err != nil {
		return err
	}
	s.Metrics.InvitationEvent(tenant.ID, metrics.InvitationAccepted)
	u := acc.User
	return writeJSON(w, http.StatusOK, map[string]any{
		"user": map[string]any{
			"id": u.ID, "email": u.Email, "first_name": u.FirstName, "last_name": u.LastName,
			"role": u.Role, "customer_id": u.CustomerID, "created_at": u.CreatedAt,
		},
		"customer":   viewCustomer(acc.Customer, nil, s.now()),
		"invitation": viewInvitation(acc.Invitation, s.now()),
	})
}

// maxResendEmails bounds one resend request; "all_pending" covers the rest.
const maxResendEmails = 1000

type notResent struct {
	Email  string `json:"email"`
	Reason string `json:"reason"`
}

// resendInvitations resends chosen pending invitations now (each gets a new
// email with a fresh link, which retires the old one, and a new expiry), or
// queues a run over every pending invitation of the tenant.
func (s *Server) resendInvitations(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	var req struct {
		Emails     []string `json:"emails"`
		AllPending bool     `json:"all_pending"`
	}
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	now := s.now()
	switch {
	case req.AllPending && len(req.Emails) > 0:
		return invalid("emails", "send either emails or all_pending, not both")
	case req.AllPending:
		job := jobs.NewResendAllPending(tenant.ID.String(), uuid.NewString(), now)
		if err := outbox.Record(r.Context(), s.DB, tenant.ID, now, job); err != nil {
			return err
		}
		s.Dispatcher.Dispatch(r.Context(), job)
		return writeJSON(w, http.StatusAccepted, map[string]any{"all_pending": true, "task_id": job.ID})
	case len(req.Emails) == 0:
		return invalid("emails", "emails must list at least one address, or set all_pending")
	case len(req.Emails) > maxResendEmails:
		return invalid("emails", fmt.Sprintf("at most %d emails per request; use all_pending for more", maxResendEmails))
	}

	byNorm := map[string]string{} // normalised → as sent
	var norms []string
	var skipped []notResent
	for _, e := range req.Emails {
		if strings.TrimSpace(e) == "" {
			skipped = append(skipped, notResent{e, msgEmailEmpty})
			continue
		}
		if emailaddr.Validate(e) != nil {
			skipped = append(skipped, notResent{e, msgEmailInvalid})
			continue
		}
		n := emailaddr.Normalize(e)
		if first, dup := byNorm[n]; dup {
			// Answered, like every address sent: one email goes to both.
			skipped = append(skipped, notResent{e, "the same address as " + first + " earlier in the list"})
			continue
		}
		byNorm[n] = e
		norms = append(norms, n)
	}
	var resent []string
	var queued []jobs.Job
	err := s.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if len(norms) == 0 {
			return nil // every address was refused above
		}
		// Locked: the checks below (an email already queued, the daily
		// cap) hold until this request has queued its emails.
		invs, err := store.ListInvitations(ctx, tx, tenant.ID, store.InvitationFilter{Emails: norms, Live: true, Limit: len(norms), Lock: true})
		if err != nil {
			return err
		}
		custs, err := customersOf(ctx, tx, tenant.ID, invs)
		if err != nil {
			return err
		}
		busy, err := store.InvitationsWithEmailInFlight(ctx, tx, invs)
		if err != nil {
			return err
		}
		ids := make([]uuid.UUID, len(invs))
		for i, inv := range invs {
			ids[i] = inv.ID
		}
		sentToday, err := store.SendsSince(ctx, tx, tenant.ID, ids, now.Add(-24*time.Hour))
		if err != nil {
			return err
		}
		found := map[string]bool{}
		var due []*store.Invitation
		for _, inv := range invs {
			found[inv.EmailNormalized] = true
			email := byNorm[inv.EmailNormalized]
			c := custs[inv.CustomerID]
			switch {
			case inv.StateAt(now) != store.InvitationPending:
				skipped = append(skipped, notResent{email, "the invitation is " + inv.StateAt(now) + ", not pending"})
			case c == nil || !c.Invitable():
				skipped = append(skipped, notResent{email, "the customer is not active"})
			case busy[inv.ID]:
				skipped = append(skipped, notResent{email, "an email to this address is already queued"})
			case inv.DeliveryStatus == store.EventComplained:
				skipped = append(skipped, notResent{email, "the recipient reported the last email as spam"})
			case s.ResendDailyCap > 0 && sentToday[inv.ID] >= s.ResendDailyCap:
				skipped = append(skipped, notResent{email, fmt.Sprintf("this invitation was emailed %d times in the last 24 hours, the most allowed; try again later", sentToday[inv.ID])})
			default:
				due = append(due, inv)
				resent = append(resent, email)
			}
		}
		for _, n := range norms {
			if !found[n] {
				skipped = append(skipped, notResent{byNorm[n], "no invitation has this email"})
			}
		}
		queued, err = invite.QueueEmails(ctx, tx, tenant.ID, due, now)
		return err
	})
	if err != nil {
		return err
	}
	s.Dispatcher.Dispatch(r.Context(), queued...)
	if resent == nil {
		resent = []string{}
	}
	if skipped == nil {
		skipped = []notResent{}
	}
	return writeJSON(w, http.StatusAccepted, map[string]any{"resent": resent, "not_resent": skipped})
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}
