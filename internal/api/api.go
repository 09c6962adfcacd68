// Package api owns onboard's HTTP API: routing, tenant authentication, JSON
// in and out, and the one mapping from errors to HTTP statuses. Handlers
// return errors; they never write error responses themselves.
package api

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/metrics"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/store"
)

// Server is the HTTP API.
type Server struct {
	DB         *bun.DB
	Dispatcher *outbox.Dispatcher
	Log        *slog.Logger
	Now        func() time.Time
	// Ready checks the services besides the database (Redis).
	Ready func(ctx context.Context) error
	// Monitor is the dashboard, mounted at /monitor when set.
	Monitor http.Handler
	// Metrics counts what the API does and is served at /metrics when set;
	// MetricsToken, when set, is the bearer token a scraper must present.
	Metrics      *metrics.Metrics
	MetricsToken string
	// WebhookKey verifies SendGrid's signed event webhook; without it the
	// webhook answers 503 (SendGrid retries).
	WebhookKey *ecdsa.PublicKey
	// RateLimit bounds each tenant's requests (nil: no limit).
	RateLimit RateLimiter
	// RequestTimeout bounds a request's work (default 30s); uploads and
	// downloads are bounded by the server's read and write timeouts instead.
	RequestTimeout time.Duration
	// ResendDailyCap is the most emails one invitation gets in 24 hours
	// (0: no cap).
	ResendDailyCap int
	// MaxBodyBytes limits JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxUploadBytes limits an import file (default DefaultMaxUploadBytes).
	MaxUploadBytes int64

	// migrated is set once /readyz found every migration applied: a
	// schema does not go back, so later probes skip the check.
	migrated atomic.Bool
}

// RateLimiter decides whether a tenant may make one more request now, and
// if not, when it may.
type RateLimiter interface {
	Allow(ctx context.Context, tenant uuid.UUID) (ok bool, retryAfter time.Duration, err error)
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

// route is one endpoint. The table is the API: Handler serves it and the
// OpenAPI test checks the description against it.
type route struct {
	method, path string
	auth         bool // a tenant's API key is required, and the tenant's rate limit applies
	streams      bool // a file goes up or down: no request timeout
	handle       func(http.ResponseWriter, *http.Request) error
}

func (s *Server) routes() []route {
	return []route{
		{"POST", "/v1/customers", true, false, s.createCustomer},
		{"GET", "/v1/customers", true, false, s.listCustomers},
		{"GET", "/v1/customers/{id}", true, false, s.getCustomer},
		{"POST", "/v1/customers/{id}/invitations", true, false, s.inviteCustomer},
		{"POST", "/v1/customers/{id}/erp-verification", true, false, s.verifyCustomer},
		{"GET", "/v1/invitations", true, true, s.listInvitations},
		{"POST", "/v1/invitations/resend", true, false, s.resendInvitations},
		{"POST", "/v1/invitations/{id}/revoke", true, false, s.revokeInvitation},
		{"POST", "/v1/invitations/accept", true, false, s.acceptInvitation},
		{"POST", "/v1/imports", true, true, s.createImport},
		{"GET", "/v1/imports", true, false, s.listImports},
		{"GET", "/v1/imports/template.csv", true, false, s.importTemplate},
		{"GET", "/v1/imports/{id}", true, false, s.getImport},
		{"GET", "/v1/imports/{id}/errors", true, true, s.importErrors},
		{"GET", "/v1/imports/{id}/file", true, true, s.importFile},
		{"POST", "/v1/webhooks/sendgrid", false, false, s.sendgridWebhook},
		{"GET", "/healthz", false, false, func(w http.ResponseWriter, r *http.Request) error {
			return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
		}},
		{"GET", "/readyz", false, false, s.readyz},
		{"GET", "/openapi.json", false, false, serveOpenAPI},
		{"GET", "/metrics", false, false, s.serveMetrics},
	}
}

// Route names one endpoint of the API.
type Route struct {
	Method, Path string
	Tenant       bool // needs a tenant's API key
}

// Routes lists every endpoint Handler serves (besides /monitor), so that
// tests can walk them all.
func (s *Server) Routes() []Route {
	var out []Route
	for _, rt := range s.routes() {
		out = append(out, Route{Method: rt.method, Path: rt.path, Tenant: rt.auth})
	}
	return out
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		h := rt.handle
		if !rt.streams {
			h = s.withTimeout(h)
		}
		if rt.auth {
			mux.Handle(rt.method+" "+rt.path, s.authenticated(h))
		} else {
			mux.Handle(rt.method+" "+rt.path, s.public(h))
		}
	}
	if s.Monitor != nil {
		mux.Handle("/monitor", s.Monitor)
		mux.Handle("/monitor/", s.Monitor)
	}
	// The catch-all answers in JSON what the mux would answer in text: 404
	// for a path the API does not have, 405 with Allow for one it has under
	// other methods.
	probe := http.NewServeMux()
	for _, rt := range s.routes() {
		probe.Handle(rt.method+" "+rt.path, http.NotFoundHandler())
	}
	mux.Handle("/", s.public(func(w http.ResponseWriter, r *http.Request) error {
		if allow := allowedMethods(probe, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			return &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed", Message: r.Method + " is not allowed on " + r.URL.Path + "; allowed: " + strings.Join(allow, ", ")}
		}
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such route: " + r.Method + " " + r.URL.Path}
	}))
	return s.logRequests(mux)
}

// allowedMethods lists the methods the probe (the API's routes) serves on
// the request's path.
func allowedMethods(probe *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if m == r.Method {
			continue
		}
		probeReq := r.Clone(r.Context())
		probeReq.Method = m
		if _, pattern := probe.Handler(probeReq); pattern != "" {
			allow = append(allow, m)
		}
	}
	return allow
}

// withTimeout gives the handler's work a deadline: a request stuck on a
// slow database answers 503 instead of holding its connection.
func (s *Server) withTimeout(h func(http.ResponseWriter, *http.Request) error) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), s.requestTimeout())
		defer cancel()
		return h(w, r.WithContext(ctx))
	}
}

func (s *Server) requestTimeout() time.Duration {
	if s.RequestTimeout <= 0 {
		return 30 * time.Second
	}
	return s.RequestTimeout
}

func (s *Server) serveMetrics(w http.ResponseWriter, r *http.Request) error {
	if s.Metrics == nil {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "metrics are not enabled"}
	}
	s.Metrics.Handler(s.MetricsToken).ServeHTTP(w, r)
	return nil
}

// readyz answers anyone, so it names what is down with a fixed reason and
// logs the driver's error, which carries addresses, users and database
// names.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	// Each dependency is checked at once, under a deadline of its own: a
	// database that does not answer must not use up Redis's time, and
	// /readyz then name Redis as down too.
	var mu sync.Mutex
	down := map[string]string{}
	notReady := func(ctx context.Context, what, reason string, err error) {
		mu.Lock()
		down[what] = reason
		mu.Unlock()
		s.Log.WarnContext(ctx, "not ready", "dependency", what, "err", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		if err := s.DB.PingContext(ctx); err != nil {
			notReady(ctx, "database", "unreachable", err)
			return
		}
		if s.migrated.Load() {
			return
		}
		// A database that answers but lacks the schema fails every /v1
		// call: not ready, and the operator is told what to run.
		switch err := store.CheckMigrated(ctx, s.DB); {
		case errors.Is(err, store.ErrNotMigrated):
			notReady(ctx, "database", msgNotMigrated, err)
		case err != nil:
			notReady(ctx, "database", "unreachable", err)
		default:
			s.migrated.Store(true)
		}
	})
	if s.Ready != nil {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if err := s.Ready(ctx); err != nil {
				reason := "unreachable"
				var nr *NotReady
				if errors.As(err, &nr) {
					reason = nr.Reason
				}
				notReady(ctx, "redis", reason, err)
			}
		})
	}
	wg.Wait()
	if len(down) > 0 {
		return writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "unavailable", "down": down})
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// msgNotMigrated is /readyz's reason for a database that lacks migrations
// (which ones are pending is logged).
const msgNotMigrated = "database not migrated: run onboard migrate"

// codeUnavailable is the error code of a request that could not reach the
// database (or another service it needs).
const codeUnavailable = "unavailable"

// Error is an error with its HTTP answer.
type Error struct {
	Status  int
	Code    string
	Message string
	Field   string
}

func (e *Error) Error() string { return e.Message }

func invalid(field, msg string) error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed", Message: msg, Field: field}
}

func badRequest(field, msg string) error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: msg, Field: field}
}

// toError maps any error a handler returns to its HTTP answer: the one place
// where statuses are decided.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "too_large", Message: fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)}
	case errors.Is(err, context.DeadlineExceeded):
		return &Error{Status: http.StatusServiceUnavailable, Code: "timeout", Message: "the request took too long; try again"}
	case store.Unavailable(err):
		// An outage, not a fault: clients and their alerting retry a 503.
		return &Error{Status: http.StatusServiceUnavailable, Code: codeUnavailable, Message: "a service onboard depends on is unavailable; try again shortly"}
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Message: "not found"}
	case errors.Is(err, store.ErrEmailInUse):
		return &Error{Status: http.StatusConflict, Code: "email_in_use", Message: store.ErrEmailInUse.Error(), Field: "email"}
	case errors.Is(err, store.ErrAccountInUse):
		return &Error{Status: http.StatusConflict, Code: "account_in_use", Message: "Account Number already belongs to another customer", Field: "account_number"}
	case errors.Is(err, store.ErrAlreadyInvited):
		return &Error{Status: http.StatusConflict, Code: "already_invited", Message: err.Error()}
	case errors.Is(err, store.ErrNotInvitable):
		return &Error{Status: http.StatusUnprocessableEntity, Code: "not_invitable", Message: err.Error()}
	case errors.Is(err, store.ErrInvalidState):
		return &Error{Status: http.StatusConflict, Code: "invalid_state", Message: err.Error()}
	case errors.Is(err, store.ErrTokenGone):
		return &Error{Status: http.StatusGone, Code: "invitation_gone", Message: err.Error()}
	}
	return nil
}

type tenantKey struct{}

func tenantOf(ctx context.Context) *store.Tenant { return ctx.Value(tenantKey{}).(*store.Tenant) }

// authenticated resolves the bearer key to its tenant; every query of the
// handler is then scoped to that tenant.
func (s *Server) authenticated(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return s.public(func(w http.ResponseWriter, r *http.Request) error {
		// The scheme is case-insensitive (RFC 9110 §11.1): "bearer" is
		// "Bearer".
		scheme, key, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		key = strings.TrimSpace(key)
		if !ok || !strings.EqualFold(scheme, "Bearer") || key == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onboard"`)
			return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "an API key is required: Authorization: Bearer <key>"}
		}
		// The look-up has the request's deadline too: a database that does
		// not answer fails the request with 503, not hold it open.
		ctx, cancel := context.WithTimeout(r.Context(), s.requestTimeout())
		tenant, err := store.TenantByAPIKey(ctx, s.DB, key)
		cancel()
		if errors.Is(err, store.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onboard", error="invalid_token"`)
			return &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "the API key is not valid"}
		}
		if err != nil {
			return err
		}
		if info, ok := r.Context().Value(requestInfoKey{}).(*requestInfo); ok {
			info.tenant = tenant.ID
		}
		if s.RateLimit != nil {
			ok, retry, err := s.RateLimit.Allow(r.Context(), tenant.ID)
			switch {
			case err != nil:
				// Redis is down: the API keeps serving (the outbox holds the
				// work), unlimited until it is back.
				s.Log.WarnContext(r.Context(), "rate limit unavailable; request allowed", "err", err)
			case !ok:
				secs := max(1, int(math.Ceil(retry.Seconds())))
				w.Header().Set("Retry-After", strconv.Itoa(secs))
				return &Error{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: fmt.Sprintf("too many requests for this tenant; retry in %d s", secs)}
			}
		}
		return h(w, r.WithContext(context.WithValue(r.Context(), tenantKey{}, tenant)))
	})
}

// public adapts an error-returning handler: errors become JSON answers and
// panics become 500s.
func (s *Server) public(h func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				s.Log.ErrorContext(r.Context(), "panic", "panic", p, "stack", string(debug.Stack()))
				writeError(w, &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"})
			}
		}()
		err := h(w, r)
		if err == nil {
			return
		}
		e := toError(err)
		switch {
		case e == nil:
			s.Log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error"}
		case e.Code == codeUnavailable:
			s.Log.WarnContext(r.Context(), "dependency unavailable", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		if e.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "5")
		}
		writeError(w, e)
	})
}

func writeError(w http.ResponseWriter, e *Error) {
	// "field" is always there (null when the error is about no one field),
	// so clients read one shape.
	body := map[string]any{"code": e.Code, "message": e.Message, "field": nil}
	if e.Field != "" {
		body["field"] = e.Field
	}
	_ = writeJSON(w, e.Status, map[string]any{"error": body})
}

type requestInfoKey struct{}

type requestInfo struct {
	status int
	tenant uuid.UUID
}

type statusWriter struct {
	http.ResponseWriter
	info *requestInfo
}

func (w *statusWriter) WriteHeader(code int) {
	if w.info.status == 0 {
		w.info.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.info.status == 0 {
		w.info.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// logRequests logs one line per request: never headers or bodies, which
// carry API keys and tokens.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &requestInfo{}
		next.ServeHTTP(&statusWriter{ResponseWriter: w, info: info}, r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info)))
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", info.status, "duration_ms", time.Since(start).Milliseconds()}
		if info.tenant != uuid.Nil {
			attrs = append(attrs, "tenant_id", info.tenant)
		}
		s.Log.InfoContext(r.Context(), "request", attrs...)
	})
}
