// Package metrics owns onboard's Prometheus metrics: the service's own
// counters and latencies, asynq's queue metrics and the outbox backlog, on
// one registry served at /metrics. Every process counts what it does (the
// API invitations created and accepted and webhook events, workers sends,
// imports and ERP calls); scrape each process, as Prometheus does.
//
// Labels carry tenant ids, task types and statuses: never emails, tokens or
// names.
package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onboard-dev/onboard/internal/erp"
	"github.com/onboard-dev/onboard/internal/mail"
)

// Metrics is one process's metrics. A nil *Metrics records nothing, so
// code under test needs none.
type Metrics struct {
	reg         *prometheus.Registry
	invitations *prometheus.CounterVec
	importRows  *prometheus.CounterVec
	sendgrid    *prometheus.HistogramVec
	erp         *prometheus.HistogramVec
	tasks       *prometheus.HistogramVec
}

// Invitation events counted by onboard_invitations_total.
const (
	InvitationCreated  = "created"
	InvitationSent     = "sent"
	InvitationFailed   = "failed"
	InvitationAccepted = "accepted"
	// and the provider's events: delivered, bounced, blocked, complained
)

// New makes the registry with the Go runtime and process collectors.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		invitations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onboard_invitations_total",
			Help: "Invitation events by tenant: created, sent, failed (permanently), accepted, and the provider's delivered, bounced, blocked and complained.",
		}, []string{"tenant_id", "event"}),
		importRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onboard_import_rows_total",
			Help: "Import rows processed, by tenant and outcome (succeeded or failed).",
		}, []string{"tenant_id", "outcome"}),
		sendgrid: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onboard_sendgrid_request_duration_seconds",
			Help:    "SendGrid mail send requests by HTTP status (or error for no answer).",
			Buckets: prometheus.DefBuckets,
		}, []string{"status"}),
		erp: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onboard_erp_request_duration_seconds",
			Help:    "ERP account lookups by outcome: found, not_found or error.",
			Buckets: prometheus.DefBuckets,
		}, []string{"outcome"}),
		tasks: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onboard_task_duration_seconds",
			Help:    "Tasks run by this worker, by type and outcome (ok, retry, failed).",
			Buckets: []float64{.01, .05, .1, .5, 1, 5, 15, 60, 300, 1800},
		}, []string{"task_type", "outcome"}),
	}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.invitations, m.importRows, m.sendgrid, m.erp, m.tasks)
	return m
}

// Handler serves the registry in Prometheus' text format; with a token, only
// to a scraper that presents it as a bearer token (constant-time compare).
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onboard metrics"`)
			http.Error(w, "the metrics token is required: Authorization: Bearer <METRICS_TOKEN>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// WithQueues adds asynq's queue metrics (sizes, latency, processed and
// failed counts per queue), read from Redis at each scrape.
func (m *Metrics) WithQueues(inspector *asynq.Inspector) {
	m.reg.MustRegister(asynqmetrics.NewQueueMetricsCollector(inspector))
}

// Backlog is the outbox's unfinished work.
type Backlog struct {
	NotEnqueued int       // committed, not yet in Redis
	Unfinished  int       // in Redis, not finished
	Oldest      time.Time // the oldest unfinished record, zero when none
}

// WithOutbox adds the outbox backlog, read from the database at each scrape.
func (m *Metrics) WithOutbox(read func(context.Context) (Backlog, error)) {
	m.reg.MustRegister(&outboxCollector{read: read})
}

var (
	outboxBacklogDesc = prometheus.NewDesc("onboard_outbox_backlog", "Outbox records of unfinished work, by state: not_enqueued (committed, not in Redis yet) or enqueued.", []string{"state"}, nil)
	outboxOldestDesc  = prometheus.NewDesc("onboard_outbox_oldest_age_seconds", "Age of the oldest unfinished outbox record (0 when none).", nil, nil)
	outboxUpDesc      = prometheus.NewDesc("onboard_outbox_up", "1 when the outbox backlog could be read from the database.", nil, nil)
)

type outboxCollector struct {
	read func(context.Context) (Backlog, error)
}

func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- outboxBacklogDesc
	ch <- outboxOldestDesc
	ch <- outboxUpDesc
}

func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := c.read(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(outboxUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(outboxUpDesc, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(outboxBacklogDesc, prometheus.GaugeValue, float64(b.NotEnqueued), "not_enqueued")
	ch <- prometheus.MustNewConstMetric(outboxBacklogDesc, prometheus.GaugeValue, float64(b.Unfinished), "enqueued")
	age := 0.0
	if !b.Oldest.IsZero() {
		age = time.Since(b.Oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(outboxOldestDesc, prometheus.GaugeValue, age)
}

// Invitations counts n invitation events of a tenant.
func (m *Metrics) Invitations(tenant uuid.UUID, event string, n int) {
	if m == nil || n <= 0 {
		return
	}
	m.invitations.WithLabelValues(tenant.String(), event).Add(float64(n))
}

// InvitationEvent counts one invitation event.
func (m *Metrics) InvitationEvent(tenant uuid.UUID, event string) { m.Invitations(tenant, event, 1) }

// ImportRows counts an import batch's rows.
func (m *Metrics) ImportRows(tenant uuid.UUID, succeeded, failed int) {
	if m == nil {
		return
	}
	if succeeded > 0 {
		m.importRows.WithLabelValues(tenant.String(), "succeeded").Add(float64(succeeded))
	}
	if failed > 0 {
		m.importRows.WithLabelValues(tenant.String(), "failed").Add(float64(failed))
	}
}

// Task records one task run.
func (m *Metrics) Task(taskType, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	m.tasks.WithLabelValues(taskType, outcome).Observe(d.Seconds())
}

// Sender is what sends email (the SendGrid adapter).
type Sender interface {
	Send(ctx context.Context, msg mail.Message) (mail.Result, error)
}

// Mailer times every send of next by the provider's status.
func (m *Metrics) Mailer(next Sender) Sender {
	if m == nil {
		return next
	}
	return timedMailer{next: next, h: m.sendgrid}
}

type timedMailer struct {
	next Sender
	h    *prometheus.HistogramVec
}

func (t timedMailer) Send(ctx context.Context, msg mail.Message) (mail.Result, error) {
	start := time.Now()
	res, err := t.next.Send(ctx, msg)
	status := "202"
	var se *mail.SendError
	switch {
	case errors.As(err, &se) && se.StatusCode != 0:
		status = strconv.Itoa(se.StatusCode)
	case err != nil:
		status = "error"
	}
	t.h.WithLabelValues(status).Observe(time.Since(start).Seconds())
	return res, err
}

// Lookup is what looks up ERP accounts (the REST connector).
type Lookup interface {
	LookupAccount(ctx context.Context, tenantID uuid.UUID, number string) (erp.Account, error)
}

// ERP times every lookup of next by outcome.
func (m *Metrics) ERP(next Lookup) Lookup {
	if m == nil {
		return next
	}
	return timedERP{next: next, h: m.erp}
}

type timedERP struct {
	next Lookup
	h    *prometheus.HistogramVec
}

func (t timedERP) LookupAccount(ctx context.Context, tenantID uuid.UUID, number string) (erp.Account, error) {
	start := time.Now()
	a, err := t.next.LookupAccount(ctx, tenantID, number)
	outcome := "found"
	switch {
	case errors.Is(err, erp.ErrNotFound):
		outcome = "not_found"
	case err != nil:
		outcome = "error"
	}
	t.h.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return a, err
}
