package workers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// sendOnLastAttempt queues an invite:send of three new deliveries whose
// first attempt is its last (its retries used up on a SendGrid outage),
// SendGrid failing that attempt with 503, and runs a worker as `onboard
// worker` does.
func sendOnLastAttempt(t *testing.T, f *fixture, now time.Time) ([]*store.Delivery, jobs.Job) {
	t.Helper()
	r, client, _ := f.withQueue(t)
	f.deps.Now = func() time.Time { return now }
	var ds []*store.Delivery
	var ids []string
	for _, a := range []string{"a", "b", "c"} {
		d := f.pendingDelivery(t, "O"+a, "outage-"+a+"@example.com", store.CustomerActive)
		ds, ids = append(ds, d), append(ids, d.ID.String())
	}
	job := jobs.NewInviteSend(f.tenant.ID.String(), ids)
	if err := outbox.Record(context.Background(), f.db, f.tenant.ID, now, job); err != nil {
		t.Fatal(err)
	}
	f.fake.FailNext(503, 1)
	if _, err := client.Enqueue(asynq.NewTask(job.Type, job.Payload, asynq.TaskID(job.ID), asynq.Queue(jobs.QueueCritical), asynq.MaxRetry(0))); err != nil {
		t.Fatal(err)
	}
	startWorker(t, f, r.Addr(), 2)
	return ds, job
}

// A SendGrid outage longer than a task's retries delays the emails, not
// fails them: on its last attempt the task hands them to a new one, which
// sends each once when SendGrid is back.
func TestSendGridOutageOutlastingTheRetriesDelaysTheEmails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	ds, job := sendOnLastAttempt(t, f, t0.Add(time.Hour))
	testenv.Eventually(t, 30*time.Second, "every email sent by the new task", func() bool {
		for _, d := range ds {
			if f.state(t, d.ID).State != store.DeliverySent {
				return false
			}
		}
		return true
	})
	var again []*store.OutboxTask
	if err := f.db.NewSelect().Model(&again).Where("task_id LIKE ?", job.ID+":again-%").Scan(context.Background()); err != nil || len(again) != 1 {
		t.Fatalf("the emails were not handed to a new task: %v %v", again, err)
	}
	if n := len(f.fake.Messages()); n != 3 {
		t.Fatalf("%d emails, want 3, once each", n)
	}
}

// Deliveries SendGrid has failed for three days are failed, with the
// reason: the nightly resend, or the vendor, tries them again.
func TestSendGridOutageOfDaysFailsTheEmails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	ds, _ := sendOnLastAttempt(t, f, t0.Add(73*time.Hour))
	testenv.Eventually(t, 30*time.Second, "every delivery failed", func() bool {
		for _, d := range ds {
			if s := f.state(t, d.ID); s.State != store.DeliveryFailed || !strings.Contains(s.LastError, "gave up after retries") {
				return false
			}
		}
		return true
	})
	if n := len(f.fake.Messages()); n != 0 {
		t.Fatalf("%d emails sent", n)
	}
}

// The import's confirmation email outlasts a SendGrid outage the same way:
// on its task's last attempt it goes on in a new task, not lost.
func TestImportReportOutlastsASendGridOutage(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f) // the import's own dispatch goes to a Redis no worker reads
	im := f.upload(t, []byte("Account Number,Customer Email\n,nobody@example.com\n"), nil)
	if err := f.importNow(t, im); err != nil {
		t.Fatal(err)
	}
	r, client, _ := f.withQueue(t)
	f.deps.Now = func() time.Time { return t0.Add(time.Hour) }
	report := jobs.NewImportReport(f.tenant.ID.String(), im.ID.String())
	f.fake.FailNext(503, 1)
	if _, err := client.Enqueue(asynq.NewTask(report.Type, report.Payload, asynq.TaskID(report.ID), asynq.Queue(report.Queue()), asynq.MaxRetry(0))); err != nil {
		t.Fatal(err)
	}
	startWorker(t, f, r.Addr(), 2)
	testenv.Eventually(t, 30*time.Second, "the confirmation email sent by the new task", func() bool {
		return len(f.fake.Messages()) == 1
	})
	var again []*store.OutboxTask
	if err := f.db.NewSelect().Model(&again).Where("task_id LIKE ?", report.ID+":again-%").Scan(context.Background()); err != nil || len(again) != 1 {
		t.Fatalf("the report was not handed to a new task: %v %v", again, err)
	}
	if m := f.fake.Messages(); m[0].To != "sender@vendor.example.com" {
		t.Fatalf("emails %+v", m)
	}
}
