package erp

import (
	_ "embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// SampleAccountsCSV is the accounts file the embedded dev mode loads.
//
//go:embed testdata/sample_accounts.csv
var SampleAccountsCSV []byte

// Simulator serves the connector contract from a set of accounts, with
// injectable latency and failures, and counts what it served so that a test
// can prove a concurrency bound. It answers every tenant from the same
// accounts, and refuses (400) a request that does not name its tenant.
type Simulator struct {
	Token string // the bearer token it expects, if set

	mu       sync.Mutex
	accounts map[string]Account
	latency  time.Duration
	failNext []int
	failRate float64
	rng      *rand.Rand

	inFlight, maxInFlight atomic.Int32
	requests              atomic.Int64
	byTenant              map[string]int
}

// NewSimulator serves the given accounts.
func NewSimulator(accounts []Account) *Simulator {
	s := &Simulator{accounts: map[string]Account{}, byTenant: map[string]int{}, rng: rand.New(rand.NewPCG(1, 2))}
	for _, a := range accounts {
		s.accounts[a.Number] = a
	}
	return s
}

// LoadAccountsCSV reads accounts from CSV with the header
// account_number,name,status,price_tier.
func LoadAccountsCSV(r io.Reader) ([]Account, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 4
	head, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("erp accounts csv: %w", err)
	}
	if strings.Join(head, ",") != "account_number,name,status,price_tier" {
		return nil, fmt.Errorf("erp accounts csv: header must be account_number,name,status,price_tier (got %q)", strings.Join(head, ","))
	}
	var out []Account
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("erp accounts csv: %w", err)
		}
		if rec[0] == "" {
			line, _ := cr.FieldPos(0)
			return nil, fmt.Errorf("erp accounts csv: line %d: empty account_number", line)
		}
		out = append(out, Account{Number: rec[0], Name: rec[1], Status: rec[2], PriceTier: rec[3]})
	}
}

// SetLatency delays every answer.
func (s *Simulator) SetLatency(d time.Duration) {
	s.mu.Lock()
	s.latency = d
	s.mu.Unlock()
}

// FailNext answers the next n requests with status.
func (s *Simulator) FailNext(status, n int) {
	s.mu.Lock()
	for range n {
		s.failNext = append(s.failNext, status)
	}
	s.mu.Unlock()
}

// SetFailureRate answers a share p of requests with 503 (deterministic
// sequence).
func (s *Simulator) SetFailureRate(p float64) {
	s.mu.Lock()
	s.failRate = p
	s.mu.Unlock()
}

// MaxInFlight is the most requests it served at once.
func (s *Simulator) MaxInFlight() int { return int(s.maxInFlight.Load()) }

// Requests counts the requests served.
func (s *Simulator) Requests() int { return int(s.requests.Load()) }

// TenantRequests counts the requests that named each tenant (X-Onboard-Tenant).
func (s *Simulator) TenantRequests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.byTenant))
	for k, v := range s.byTenant {
		out[k] = v
	}
	return out
}

// ServeHTTP serves GET /accounts/{number}.
func (s *Simulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.inFlight.Add(1)
	defer s.inFlight.Add(-1)
	for {
		m := s.maxInFlight.Load()
		if n <= m || s.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	s.requests.Add(1)
	s.mu.Lock()
	latency := s.latency
	status := 0
	if len(s.failNext) > 0 {
		status, s.failNext = s.failNext[0], s.failNext[1:]
	} else if s.failRate > 0 && s.rng.Float64() < s.failRate {
		status = http.StatusServiceUnavailable
	}
	s.mu.Unlock()
	if latency > 0 {
		select {
		case <-time.After(latency):
		case <-r.Context().Done():
			return
		}
	}
	number, ok := strings.CutPrefix(r.URL.EscapedPath(), "/accounts/")
	tenant, tenantErr := uuid.Parse(r.Header.Get(TenantHeader))
	switch {
	case r.Method != http.MethodGet || !ok || number == "" || strings.Contains(number, "/"):
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	case s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token:
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	case tenantErr != nil:
		http.Error(w, `{"error":"X-Onboard-Tenant must name the tenant"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.byTenant[tenant.String()]++
	s.mu.Unlock()
	switch {
	case status != 0:
		http.Error(w, `{"error":"simulated failure"}`, status)
		return
	}
	number, err := url.PathUnescape(number)
	if err != nil {
		http.Error(w, `{"error":"bad account number"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	a, found := s.accounts[number]
	s.mu.Unlock()
	if !found {
		http.Error(w, `{"error":"account not found"}`, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}
