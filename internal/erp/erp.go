// Package erp owns the conversation with a vendor's ERP: the REST connector
// that looks an account number up, and a simulator that serves the same API
// from a CSV of accounts (for tests and the embedded dev mode).
//
// # The connector contract
//
// Any ERP can be plugged in behind a small adapter that serves:
//
//	GET {ERP_URL}/accounts/{account_number}
//	Authorization: Bearer {ERP_TOKEN}
//	X-Onboard-Tenant: {tenant id}
//	Accept: application/json
//
//	200 {"account_number":"145722","name":"Blue Yonder Airlines","status":"active","price_tier":"gold"}
//	404 the account does not exist (permanent: not retried)
//	401/403 the token is wrong (permanent: a configuration error)
//	429, 5xx, timeouts: temporary (retried with backoff)
//
// The account number is one path segment, escaped. Response bodies over
// 1 MiB are refused.
//
// One deployment talks to one ERP endpoint, with one token, for every
// tenant. X-Onboard-Tenant names the tenant (vendor) the lookup is for, on
// every request: an endpoint that several vendors share must answer from
// that vendor's accounts only (and 404 for another's), or one vendor could
// verify another's account numbers.
package erp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/onboard-dev/onboard/internal/netproblem"
)

// TenantHeader carries the id of the tenant a lookup is for.
const TenantHeader = "X-Onboard-Tenant"

// Account is what the ERP knows of an account number.
type Account struct {
	Number    string `json:"account_number"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	PriceTier string `json:"price_tier"`
}

// ErrNotFound: the ERP does not know the account number. Permanent.
var ErrNotFound = errors.New("erp: account not found")

// Error is a failed lookup other than not found. Its message is recorded on
// the customer or the import, where the tenant reads it, so it says what
// went wrong in fixed words ("ERP unreachable (timeout)", "HTTP 503: the ERP
// failed to answer") and never quotes the ERP's address or its answer; Err
// holds those, for the log (see Detail).
type Error struct {
	StatusCode int
	Reason     string
	Temporary  bool
	// Err is the cause: the transport's error (which names the ERP's URL)
	// or the start of the ERP's answer.
	Err error
}

func (e *Error) Error() string {
	if e.StatusCode == 0 {
		return "erp: " + e.Reason
	}
	return fmt.Sprintf("erp: HTTP %d: %s", e.StatusCode, e.Reason)
}

func (e *Error) Unwrap() error { return e.Err }

// Detail is err with the cause of an ERP failure, for the log only.
func Detail(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Err != nil {
		return err.Error() + " (" + e.Err.Error() + ")"
	}
	return err.Error()
}

// IsTemporary reports whether a lookup error is worth retrying.
func IsTemporary(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Temporary
}

// REST is the generic REST connector.
type REST struct {
	baseURL string
	token   string
	http    *http.Client
}

// NewREST returns a connector for baseURL; httpClient's timeout bounds a
// lookup (default 10s).
func NewREST(baseURL, token string, httpClient *http.Client) *REST {
	if httpClient == nil {
		httpClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &REST{baseURL: strings.TrimRight(baseURL, "/"), token: token, http: httpClient}
}

const maxBody = 1 << 20

// LookupAccount asks the ERP for one account of a tenant.
func (c *REST) LookupAccount(ctx context.Context, tenantID uuid.UUID, number string) (Account, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/accounts/"+url.PathEscape(number), nil)
	if err != nil {
		return Account{}, &Error{Reason: "the ERP request cannot be made (check ERP_URL)", Err: err}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(TenantHeader, tenantID.String())
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return Account{}, &Error{Reason: "ERP unreachable" + netproblem.Describe(err), Temporary: true, Err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return Account{}, &Error{StatusCode: resp.StatusCode, Reason: "the answer was cut off" + netproblem.Describe(err), Temporary: true, Err: err}
	}
	answer := func() error { return errors.New("the ERP answered: " + snippet(body)) }
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return Account{}, fmt.Errorf("%w: %s", ErrNotFound, number)
	case resp.StatusCode == http.StatusTooManyRequests:
		return Account{}, &Error{StatusCode: resp.StatusCode, Reason: "the ERP is limiting requests", Temporary: true, Err: answer()}
	case resp.StatusCode >= 500:
		return Account{}, &Error{StatusCode: resp.StatusCode, Reason: "the ERP failed to answer", Temporary: true, Err: answer()}
	case resp.StatusCode == http.StatusUnauthorized, resp.StatusCode == http.StatusForbidden:
		return Account{}, &Error{StatusCode: resp.StatusCode, Reason: "the ERP refused the token (ERP_TOKEN)", Err: answer()}
	case resp.StatusCode != http.StatusOK:
		return Account{}, &Error{StatusCode: resp.StatusCode, Reason: "an unexpected answer from the ERP", Err: answer()}
	case len(body) > maxBody:
		return Account{}, &Error{StatusCode: resp.StatusCode, Reason: "answer larger than 1 MiB"}
	}
	var a Account
	if err := json.Unmarshal(body, &a); err != nil {
		return Account{}, &Error{StatusCode: resp.StatusCode, Reason: "the answer is not the account JSON", Err: err}
	}
	if a.Number == "" {
		a.Number = number
	}
	return a, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
