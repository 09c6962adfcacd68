package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/emailaddr"
	"github.com/onboard-dev/onboard/internal/importer"
	"github.com/onboard-dev/onboard/internal/invite"
	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
)

// The validation messages of the product, word for word: the importer's, so
// the API and the import's error log say the same.
const (
	msgEmailEmpty   = importer.MsgEmailEmpty
	msgEmailInvalid = importer.MsgEmailInvalid
	msgAccountEmpty = importer.MsgAccountEmpty
)

type createCustomerRequest struct {
	CompanyName    string       `json:"company_name"`
	AccountNumber  flexString   `json:"account_number"`
	AccountNumbers []flexString `json:"account_numbers"`
	Email          string       `json:"email"`
	FirstName      string       `json:"first_name"`
	LastName       string       `json:"last_name"`
	Phone          string       `json:"phone"`
	Ranking        flexString   `json:"ranking"`
	Status         string       `json:"status"`
	Invite         bool         `json:"invite"`
}

func checkText(field, v string, max int) error {
	switch {
	case !utf8.ValidString(v):
		return invalid(field, field+" must be UTF-8 text")
	case utf8.RuneCountInString(v) > max:
		// Characters, as an import counts them: Zoë and 山田 are as long
		// as Zoe and Yamada.
		return invalid(field, fmt.Sprintf("%s must be at most %d characters", field, max))
	case strings.ContainsAny(v, "\x00\r\n"):
		return invalid(field, field+" must be one line of text")
	}
	return nil
}

func (req *createCustomerRequest) validate() ([]string, error) {
	req.CompanyName = strings.TrimSpace(req.CompanyName)
	req.Email = strings.Trim(req.Email, " \t")
	req.FirstName, req.LastName = strings.TrimSpace(req.FirstName), strings.TrimSpace(req.LastName)
	req.Phone = strings.TrimSpace(req.Phone)
	var accounts []string
	seen := map[string]bool{}
	for _, a := range append([]flexString{req.AccountNumber}, req.AccountNumbers...) {
		a := strings.TrimSpace(string(a))
		if a != "" && !seen[a] {
			seen[a] = true
			accounts = append(accounts, a)
		}
	}
	switch {
	case req.CompanyName == "":
		return nil, invalid("company_name", "Company Name field must not be empty")
	case len(accounts) == 0:
		return nil, invalid("account_number", msgAccountEmpty)
	case req.Email == "":
		return nil, invalid("email", msgEmailEmpty)
	case emailaddr.Validate(req.Email) != nil:
		return nil, invalid("email", msgEmailInvalid)
	}
	for _, a := range accounts {
		if err := checkText("account_number", a, importer.MaxAccountLen); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"company_name", req.CompanyName, 200}, {"first_name", req.FirstName, importer.MaxNameLen}, {"last_name", req.LastName, importer.MaxNameLen}, {"phone", req.Phone, 50}, {"ranking", string(req.Ranking), 50}} {
		if err := checkText(f.name, f.v, f.max); err != nil {
			return nil, err
		}
	}
	switch req.Status {
	case "":
		req.Status = store.CustomerActive
	case store.CustomerActive, store.CustomerInactive, store.CustomerBlacklisted:
	default:
		return nil, invalid("status", "status must be active, inactive or blacklisted")
	}
	return accounts, nil
}

func notInvitable(c *store.Customer) error {
	return fmt.Errorf("%w: the customer is %s; blacklisted and inactive customers cannot be invited", store.ErrNotInvitable, c.Status)
}

// createCustomer is "Save" (invite false) and "Save and Invite" (true).
func (s *Server) createCustomer(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	var req createCustomerRequest
	if err := s.decode(w, r, &req); err != nil {
		return err
	}
	accounts, err := req.validate()
	if err != nil {
		return err
	}
	now := s.now()
	c := &store.Customer{
		TenantID: tenant.ID, CompanyName: req.CompanyName, Phone: req.Phone, Ranking: strings.TrimSpace(string(req.Ranking)),
		Status: req.Status, AccountNumbers: accounts, CreatedAt: now, UpdatedAt: now,
	}
	if req.Invite && !c.Invitable() {
		return notInvitable(c) // nothing is stored
	}
	inv := &store.Invitation{
		TenantID: tenant.ID, Kind: store.KindVendor, Email: req.Email, EmailNormalized: emailaddr.Normalize(req.Email),
		FirstName: req.FirstName, LastName: req.LastName, Phone: req.Phone, Role: store.RoleAdmin,
		State: store.InvitationSaved, CreatedAt: now, UpdatedAt: now,
	}
	if req.Invite {
		inv.State = store.InvitationPending
	}
	var queued []jobs.Job
	err = s.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		inUse, err := store.EmailInUse(ctx, tx, tenant.ID, inv.EmailNormalized)
		if err != nil {
			return err
		}
		if inUse {
			return store.ErrEmailInUse
		}
		if err := store.InsertCustomer(ctx, tx, c); err != nil {
			return err
		}
		inv.CustomerID = c.ID
		if err := store.InsertInvitation(ctx, tx, inv); err != nil {
			return err
		}
		if req.Invite {
			queued, err = invite.QueueEmails(ctx, tx, tenant.ID, []*store.Invitation{inv}, now)
		}
		return err
	})
	if err != nil {
		return err
	}
	s.Dispatcher.Dispatch(r.Context(), queued...)
	s.Metrics.InvitationEvent(tenant.ID, metrics.InvitationCreated)
	return writeJSON(w, http.StatusCreated, map[string]any{"customer": viewCustomer(c, nil, now), "invitation": viewInvitation(inv, now)})
}

func (s *Server) getCustomer(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	id, err := pathID(r)
	if err != nil {
		return err
	}
	c, err := store.GetCustomer(r.Context(), s.DB, tenant.ID, id)
	if err != nil {
		return err
	}
	invs, err := store.VendorInvitations(r.Context(), s.DB, tenant.ID, []uuid.UUID{c.ID})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewCustomer(c, invs[c.ID], s.now()))
}

func parseDate(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, badRequest(field, field+" must be a date (2026-11-23) or an RFC 3339 time")
}

func (s *Server) listCustomers(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	q := r.URL.Query()
	f := store.CustomerFilter{Status: q.Get("status"), Ranking: q.Get("ranking"), Query: strings.TrimSpace(q.Get("q"))}
	switch f.Status {
	case "", store.CustomerActive, store.CustomerInactive, store.CustomerBlacklisted:
	default:
		return badRequest("status", "status must be active, inactive or blacklisted")
	}
	var err error
	if f.CreatedAfter, err = parseDate("created_after", q.Get("created_after")); err != nil {
		return err
	}
	if f.CreatedBefore, err = parseDate("created_before", q.Get("created_before")); err != nil {
		return err
	}
	if f.After, err = decodeCursor(q.Get("cursor")); err != nil {
		return err
	}
	if f.Limit, err = pageLimit(r, 50, 200); err != nil {
		return err
	}
	cs, err := store.ListCustomers(r.Context(), s.DB, tenant.ID, f)
	if err != nil {
		return err
	}
	ids := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	invs, err := store.VendorInvitations(r.Context(), s.DB, tenant.ID, ids)
	if err != nil {
		return err
	}
	out := struct {
		Data       []customerView `json:"data"`
		NextCursor *string        `json:"next_cursor"`
	}{Data: make([]customerView, len(cs))}
	for i, c := range cs {
		out.Data[i] = viewCustomer(c, invs[c.ID], s.now())
	}
	if len(cs) == f.Limit {
		out.NextCursor = encodeCursor(cs[len(cs)-1].ID)
	}
	return writeJSON(w, http.StatusOK, out)
}

// inviteCustomer sends the invitation of a saved customer, or invites again
// one whose invitation expired.
func (s *Server) inviteCustomer(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	id, err := pathID(r)
	if err != nil {
		return err
	}
	now := s.now()
	var inv *store.Invitation
	var queued []jobs.Job
	err = s.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		c, err := store.GetCustomer(ctx, tx, tenant.ID, id)
		if err != nil {
			return err
		}
		if !c.Invitable() {
			return notInvitable(c)
		}
		inv, err = store.VendorInvitation(ctx, tx, tenant.ID, c.ID)
		if errors.Is(err, store.ErrNotFound) {
			// Every invitation of the customer was revoked: the same
			// contact (its email is its login, never edited) is invited
			// with a new invitation and link.
			inv, queued, err = s.reinvite(ctx, tx, tenant.ID, c.ID, now)
			return err
		}
		if err != nil {
			return err
		}
		// The conditional update makes two concurrent calls queue one email.
		res, err := tx.NewUpdate().Model(inv).
			Set("state = ?", store.InvitationPending).Set("updated_at = ?", now).
			Where("id = ? AND (state IN (?) OR (state = ? AND expires_at <= ? AND delivery_status <> ?))", inv.ID,
				bun.In([]string{store.InvitationSaved, store.InvitationExpired}), store.InvitationPending, now.UTC(), store.DeliveryQueued).
			Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w (the invitation is %s)", store.ErrAlreadyInvited, inv.StateAt(now))
		}
		inv.State = store.InvitationPending
		queued, err = invite.QueueEmails(ctx, tx, tenant.ID, []*store.Invitation{inv}, now)
		return err
	})
	if err != nil {
		return err
	}
	s.Dispatcher.Dispatch(r.Context(), queued...)
	return writeJSON(w, http.StatusAccepted, map[string]any{"invitation": viewInvitation(inv, now)})
}

// reinvite invites a customer's contact again after its invitations were
// revoked, unless the email has since been taken by another invitation of the
// tenant.
func (s *Server) reinvite(ctx context.Context, tx bun.Tx, tenantID, customerID uuid.UUID, now time.Time) (*store.Invitation, []jobs.Job, error) {
	last, err := store.LastVendorInvitation(ctx, tx, tenantID, customerID)
	if err != nil {
		return nil, nil, err
	}
	inv := &store.Invitation{
		TenantID: tenantID, CustomerID: customerID, Kind: store.KindVendor, Email: last.Email, EmailNormalized: last.EmailNormalized,
		FirstName: last.FirstName, LastName: last.LastName, Phone: last.Phone, Role: store.RoleAdmin,
		State: store.InvitationPending, CreatedAt: now, UpdatedAt: now,
	}
	inUse, err := store.EmailInUse(ctx, tx, tenantID, inv.EmailNormalized)
	if err != nil {
		return nil, nil, err
	}
	if inUse {
		return nil, nil, store.ErrEmailInUse
	}
	// A concurrent call inserting the same invitation fails on the unique
	// keys (ErrEmailInUse or ErrAlreadyInvited): one email goes out.
	if err := store.InsertInvitation(ctx, tx, inv); err != nil {
		return nil, nil, err
	}
	queued, err := invite.QueueEmails(ctx, tx, tenantID, []*store.Invitation{inv}, now)
	return inv, queued, err
}

// verifyCustomer queues a check of the customer's account numbers against
// the ERP; the outcome lands on the customer.
func (s *Server) verifyCustomer(w http.ResponseWriter, r *http.Request) error {
	tenant := tenantOf(r.Context())
	id, err := pathID(r)
	if err != nil {
		return err
	}
	if _, err := store.GetCustomer(r.Context(), s.DB, tenant.ID, id); err != nil {
		return err
	}
	job := jobs.NewERPVerify(tenant.ID.String(), id.String(), "on_demand", uuid.NewString())
	if err := outbox.Record(r.Context(), s.DB, tenant.ID, s.now(), job); err != nil {
		return err
	}
	s.Dispatcher.Dispatch(r.Context(), job)
	return writeJSON(w, http.StatusAccepted, map[string]any{"customer_id": id, "task_id": job.ID, "status": "queued"})
}
