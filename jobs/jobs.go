// Package jobs is the queue contract between the processes that enqueue work
// (api, scheduler, workers themselves) and the workers that do it: task type
// names, payloads, and the queue, retries, timeout and task id of each.
//
// Task type names are part of the contract with tasks already in Redis: a
// name that shipped is never renamed. Payloads carry ids, never emails or
// tokens, so the dashboard shows no personal data and a handler always works
// from the database's current state.
package jobs

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

// Task types.
const (
	TypeInviteSend    = "invite:send"    // send (or resend) invitation emails of given deliveries
	TypeInviteResend  = "invite:resend"  // the nightly resend of due pending invitations
	TypeInviteExpire  = "invite:expire"  // mark pending invitations past their expiry expired
	TypeImportProcess = "import:process" // read an uploaded file and invite its good rows
	TypeImportReport  = "import:report"  // the confirmation email of a finished import
	TypeERPVerify     = "erp:verify"     // check a customer's account numbers against the ERP
	TypeERPReverify   = "erp:reverify"   // scheduled: verify unverified and stale customers
)

// Queues, by weight: a tenant's million-row import (bulk) cannot starve
// another tenant's single invite (critical).
const (
	QueueCritical = "critical"
	QueueDefault  = "default"
	QueueBulk     = "bulk"
)

// QueueWeights is the asynq.Config.Queues of every worker.
var QueueWeights = map[string]int{QueueCritical: 6, QueueDefault: 3, QueueBulk: 1}

// Retention keeps completed tasks visible on the dashboard for a day and,
// with it, their task ids: an outbox sweep that enqueues a finished task again
// within the day is refused by asynq instead of running it twice.
const Retention = 24 * time.Hour

// Spec is how one task type runs.
type Spec struct {
	Type     string
	Queue    string
	MaxRetry int
	Timeout  time.Duration
	Purpose  string
}

// Catalogue lists every task type; the README's task catalogue mirrors it.
var Catalogue = []Spec{
	{TypeInviteSend, QueueCritical, 12, 2 * time.Minute, "send invitation emails of one delivery, or a batch of up to 1,000 as SendGrid personalizations"},
	{TypeImportProcess, QueueBulk, 10, 2 * time.Hour, "stream an uploaded CSV/XLSX, validate rows, persist in batches, log row errors, enqueue sends"},
	{TypeImportReport, QueueCritical, 12, 2 * time.Minute, "email the import's sender the outcome with CSV attachments"},
	{TypeERPVerify, QueueDefault, 8, time.Minute, "verify a customer's account numbers against the ERP"},
	{TypeInviteResend, QueueDefault, 5, 30 * time.Minute, "nightly: resend due pending invitations under each tenant's policy"},
	{TypeInviteExpire, QueueDefault, 5, 10 * time.Minute, "mark pending invitations past their expiry expired"},
	{TypeERPReverify, QueueDefault, 5, 10 * time.Minute, "enqueue erp:verify for unverified and stale customers"},
}

// SpecOf returns the spec of a task type.
func SpecOf(taskType string) (Spec, error) {
	for _, s := range Catalogue {
		if s.Type == taskType {
			return s, nil
		}
	}
	return Spec{}, fmt.Errorf("jobs: unknown task type %q", taskType)
}

// Build makes the asynq task for a type, task id and encoded payload, with
// the type's queue, retries, timeout and retention. The outbox stores exactly
// these three values, so a task is rebuilt the same way it was first made.
func Build(taskType, taskID string, payload []byte) (*asynq.Task, error) {
	s, err := SpecOf(taskType)
	if err != nil {
		return nil, err
	}
	if taskID == "" {
		return nil, fmt.Errorf("jobs: %s: empty task id", taskType)
	}
	// The subsystem runs `asynq.Unique`-free: deduplication is by task id.
	return asynq.NewTask(taskType, payload,
		asynq.TaskID(taskID),
		asynq.Queue(s.Queue),
		asynq.MaxRetry(s.MaxRetry),
		asynq.Timeout(s.Timeout),
		asynq.Retention(Retention),
	), nil
}

// Job is a task ready to be recorded in the outbox and enqueued.
type Job struct {
	Type    string
	ID      string
	Payload []byte
}

// Queue is the queue the job runs on.
func (j Job) Queue() string {
	s, _ := SpecOf(j.Type)
	return s.Queue
}

func newJob(taskType string, id string, p any) Job {
	b, err := json.Marshal(p)
	if err != nil {
		// Payloads are structs of strings and ints: Marshal cannot fail.
		panic(fmt.Sprintf("jobs: marshal %s payload: %v", taskType, err))
	}
	return Job{Type: taskType, ID: id, Payload: b}
}

// Again is the job that takes over j's work when j's task has used its
// last retry with the work still waiting (SendGrid refused the account):
// the same type and payload under a new id, named by the attempt (which
// only grows), so that handing over twice records one task.
func Again(j Job, attempt int) Job {
	base, _, _ := strings.Cut(j.ID, ":again-")
	j.ID = fmt.Sprintf("%s:again-%d", base, attempt)
	return j
}

// Decode reads a task's payload, failing permanently on a malformed one
// (retrying cannot mend it).
func Decode(t *asynq.Task, into any) error {
	if err := json.Unmarshal(t.Payload(), into); err != nil {
		return fmt.Errorf("decode %s payload: %v: %w", t.Type(), err, asynq.SkipRetry)
	}
	return nil
}

// MaxDeliveriesPerSend is the most deliveries one invite:send carries: the
// SendGrid limit of personalizations per request.
const MaxDeliveriesPerSend = 1000

// InviteSend sends the emails of the given deliveries of one tenant.
type InviteSend struct {
	TenantID    string   `json:"tenant_id"`
	DeliveryIDs []string `json:"delivery_ids"`
}

// NewInviteSend names the task by its deliveries: the first id and the count
// identify a batch, since a delivery belongs to one batch only.
func NewInviteSend(tenantID string, deliveryIDs []string) Job {
	id := TypeInviteSend + ":" + deliveryIDs[0]
	if len(deliveryIDs) > 1 {
		id += fmt.Sprintf("+%d", len(deliveryIDs)-1)
	}
	return newJob(TypeInviteSend, id, InviteSend{TenantID: tenantID, DeliveryIDs: deliveryIDs})
}

// ImportProcess processes one uploaded file.
type ImportProcess struct {
	TenantID string `json:"tenant_id"`
	ImportID string `json:"import_id"`
}

// NewImportProcess is the one processing task of an import.
func NewImportProcess(tenantID, importID string) Job {
	return newJob(TypeImportProcess, TypeImportProcess+":"+importID, ImportProcess{tenantID, importID})
}

// ImportReport emails the outcome of an import.
type ImportReport struct {
	TenantID string `json:"tenant_id"`
	ImportID string `json:"import_id"`
}

// NewImportReport is the one confirmation email of an import.
func NewImportReport(tenantID, importID string) Job {
	return newJob(TypeImportReport, TypeImportReport+":"+importID, ImportReport{tenantID, importID})
}

// ERPVerify verifies one customer. Reason tells why (on demand, import,
// schedule) and, with the request time, keeps two requests apart.
type ERPVerify struct {
	TenantID   string `json:"tenant_id"`
	CustomerID string `json:"customer_id"`
	Reason     string `json:"reason"`
}

// NewERPVerify names the task by customer and a caller-chosen key (a request
// id, an import id, a schedule slot) so that the same request is not run twice
// but a later request is.
func NewERPVerify(tenantID, customerID, reason, key string) Job {
	return newJob(TypeERPVerify, TypeERPVerify+":"+customerID+":"+key, ERPVerify{tenantID, customerID, reason})
}

// Scheduled is the payload of a cron-driven run: the slot it stands for.
type Scheduled struct {
	Slot string `json:"slot"` // RFC 3339 time of the cron tick
}

// NewScheduled names a scheduled run by its type and slot, so that any number
// of scheduler processes enqueue each run exactly once.
func NewScheduled(taskType string, slot time.Time) Job {
	s := slot.UTC().Format(time.RFC3339)
	return newJob(taskType, taskType+":"+strings.ReplaceAll(s, ":", ""), Scheduled{Slot: s})
}

// InviteResend resends pending invitations. With a TenantID and AllPending it
// is a vendor's "resend to every pending invitation" (no interval or count
// policy); without, it is the nightly run over every tenant under each
// tenant's policy.
//
// RequestedAt (a vendor's request) and Slot (the nightly run) say when the
// run was asked for: a retry of the run skips the invitations emailed since
// then, which the earlier attempt did. They are a fact of the request, not
// state. Payloads queued before RequestedAt existed have none; the handler
// then takes the time the request was recorded in the outbox.
type InviteResend struct {
	TenantID    string `json:"tenant_id,omitempty"`
	AllPending  bool   `json:"all_pending,omitempty"`
	Slot        string `json:"slot,omitempty"`
	RequestedAt string `json:"requested_at,omitempty"` // RFC 3339, nanoseconds
}

// NewResendAllPending is one vendor request, made at requestedAt, to resend
// every pending invitation; requestID keeps two requests apart.
func NewResendAllPending(tenantID, requestID string, requestedAt time.Time) Job {
	return newJob(TypeInviteResend, TypeInviteResend+":"+tenantID+":"+requestID, InviteResend{
		TenantID: tenantID, AllPending: true, RequestedAt: requestedAt.UTC().Format(time.RFC3339Nano),
	})
}
