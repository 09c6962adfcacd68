package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onboard-dev/onboard/store"
)

const defaultMaxBody = 1 << 20

// decode reads a JSON body strictly: bounded in size, unknown fields and
// trailing data refused.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, into any) error {
	limit := s.MaxBodyBytes
	if limit <= 0 {
		limit = defaultMaxBody
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		var tooBig *http.MaxBytesError
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.As(err, &tooBig):
			return err
		case errors.Is(err, io.EOF):
			return badRequest("", "request body is empty; send a JSON object")
		case errors.As(err, &typeErr) && typeErr.Field == "":
			return badRequest("", "request body must be a JSON object")
		case errors.As(err, &typeErr):
			return badRequest(typeErr.Field, fmt.Sprintf("field %q must be %s", typeErr.Field, jsonKind(typeErr.Type)))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest(name, fmt.Sprintf("unknown field %q", name))
		}
		return badRequest("", "request body is not valid JSON: "+err.Error())
	}
	if dec.More() {
		return badRequest("", "request body has data after the JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("", "request body has data after the JSON object")
	}
	return nil
}

// jsonKind names a Go type as the JSON a client should send for it.
func jsonKind(t reflect.Type) string {
	if t == nil {
		return "another type"
	}
	if t == reflect.TypeFor[flexString]() {
		return "a string or a number"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	}
	return "another type"
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// flexString accepts a JSON string or number (an account number or ranking
// typed as a number by a spreadsheet-minded client) and keeps it as text.
type flexString string

func (f *flexString) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*f = flexString(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		// A type error, so that decode names the field it is in.
		return &json.UnmarshalTypeError{Value: string(b), Type: reflect.TypeFor[flexString]()}
	}
	*f = flexString(n.String())
	return nil
}

// cursor encodes a keyset position opaquely.
func encodeCursor(id uuid.UUID) *string {
	s := base64.RawURLEncoding.EncodeToString(id[:])
	return &s
}

func decodeCursor(s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 16 {
		return uuid.Nil, badRequest("cursor", "cursor is not one this API returned")
	}
	return uuid.UUID(b), nil
}

func pageLimit(r *http.Request, def, max int) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		return 0, badRequest("limit", fmt.Sprintf("limit must be a whole number from 1 to %d", max))
	}
	return n, nil
}

func pathID(r *http.Request) (uuid.UUID, error) {
	id, err := uuid.Parse(r.PathValue("id"))
	if err != nil {
		// Not an id we could have issued: the same answer as an unknown one.
		return uuid.Nil, store.ErrNotFound
	}
	return id, nil
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

type customerView struct {
	ID             uuid.UUID       `json:"id"`
	CompanyName    string          `json:"company_name"`
	AccountNumbers []string        `json:"account_numbers"`
	Phone          string          `json:"phone"`
	Ranking        string          `json:"ranking"`
	Status         string          `json:"status"`
	ERP            erpView         `json:"erp"`
	Features       []string        `json:"features"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
	Invitation     *invitationView `json:"invitation,omitempty"`
}

type erpView struct {
	Status    string     `json:"status"`
	Name      string     `json:"name,omitempty"`
	PriceTier string     `json:"price_tier,omitempty"`
	Error     string     `json:"error,omitempty"`
	CheckedAt *time.Time `json:"checked_at"`
}

// verifiedFeatures are what a verified ERP account unlocks in the portal.
var verifiedFeatures = []string{"invoices", "statements", "tiered_pricing", "quotes"}

func viewCustomer(c *store.Customer, inv *store.Invitation, now time.Time) customerView {
	v := customerView{
		ID: c.ID, CompanyName: c.CompanyName, AccountNumbers: c.AccountNumbers, Phone: c.Phone,
		Ranking: c.Ranking, Status: c.Status, CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
		ERP:      erpView{Status: c.ERPStatus, Name: c.ERPName, PriceTier: c.ERPPriceTier, Error: c.ERPError, CheckedAt: timeOrNil(c.ERPCheckedAt)},
		Features: []string{},
	}
	if v.AccountNumbers == nil {
		v.AccountNumbers = []string{}
	}
	if c.ERPStatus == store.ERPVerified {
		v.Features = verifiedFeatures
	}
	if inv != nil {
		iv := viewInvitation(inv, now)
		v.Invitation = &iv
	}
	return v
}

type invitationView struct {
	ID             uuid.UUID  `json:"id"`
	CustomerID     uuid.UUID  `json:"customer_id"`
	Email          string     `json:"email"`
	FirstName      string     `json:"first_name"`
	LastName       string     `json:"last_name"`
	Phone          string     `json:"phone"`
	Role           string     `json:"role"`
	Status         string     `json:"status"`
	DeliveryStatus string     `json:"delivery_status"`
	DeliveryError  string     `json:"delivery_error,omitempty"`
	ExpiresAt      *time.Time `json:"expires_at"`
	SendCount      int        `json:"send_count"`
	LastSentAt     *time.Time `json:"last_sent_at"`
	AcceptedAt     *time.Time `json:"accepted_at"`
	CreatedAt      time.Time  `json:"created_at"`
}

// viewInvitation shows an invitation as it stands at now: a pending one past
// its expiry is expired already, whether or not the expiry sweep has run.
func viewInvitation(i *store.Invitation, now time.Time) invitationView {
	return invitationView{
		ID: i.ID, CustomerID: i.CustomerID, Email: i.Email, FirstName: i.FirstName, LastName: i.LastName,
		Phone: i.Phone, Role: i.Role, Status: i.StateAt(now), DeliveryStatus: i.DeliveryStatus, DeliveryError: i.DeliveryError,
		ExpiresAt: timeOrNil(i.ExpiresAt), SendCount: i.SendCount, LastSentAt: timeOrNil(i.LastSentAt),
		AcceptedAt: timeOrNil(i.AcceptedAt), CreatedAt: i.CreatedAt,
	}
}
