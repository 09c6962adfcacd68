package workers_test

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// TestArchivedSendRunsAgain: an invitation email whose pending task an
// operator archives on the dashboard still goes out, once: the outbox sweep
// finds the task archived with its work unfinished and runs it again. A
// send that failed for good on its last attempt stays archived and is not
// sent again, also when the handler's completion mark was lost.
func TestArchivedSendRunsAgain(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	r, client, insp := f.withQueue(t)
	ctx := context.Background()
	sweep := func() outbox.SweepResult {
		t.Helper()
		res, err := f.deps.Dispatcher.Sweep(ctx, outbox.SweepOptions{})
		if err != nil {
			t.Fatalf("sweep: %+v %v", res, err)
		}
		return res
	}
	taskState := func(job jobs.Job) asynq.TaskState {
		t.Helper()
		info, err := insp.GetTaskInfo(job.Queue(), job.ID)
		if err != nil {
			t.Fatal(err)
		}
		return info.State
	}

	// Save and Invite, as the API does: recorded, then enqueued. No worker
	// runs yet, so the task is pending when the operator archives it.
	d := f.pendingDelivery(t, "100", "archived@example.com", store.CustomerActive)
	job := jobs.NewInviteSend(f.tenant.ID.String(), []string{d.ID.String()})
	if err := outbox.Record(ctx, f.db, f.tenant.ID, time.Now(), job); err != nil {
		t.Fatal(err)
	}
	if failed := f.deps.Dispatcher.Dispatch(ctx, job); failed != 0 {
		t.Fatal("dispatch failed")
	}
	if err := insp.ArchiveTask(job.Queue(), job.ID); err != nil {
		t.Fatal(err)
	}
	if res := sweep(); res.Rerun != 1 || res.Abandoned+res.Stuck != 0 {
		t.Fatalf("sweep: %+v, want the archived send run again", res)
	}
	if st := taskState(job); st != asynq.TaskStatePending {
		t.Fatalf("task %s, want pending", st)
	}

	startWorker(t, f, r.Addr(), 2)
	testenv.Eventually(t, 20*time.Second, "the email sent and the task completed", func() bool {
		return f.state(t, d.ID).State == store.DeliverySent && taskState(job) == asynq.TaskStateCompleted
	})
	if res := sweep(); res.Rerun+res.Recovered+res.Abandoned+res.Stuck != 0 {
		t.Fatalf("sweep after the send: %+v, want nothing to do", res)
	}
	if msgs := f.fake.Messages(); len(msgs) != 1 || msgs[0].To != "archived@example.com" {
		t.Fatalf("%d emails (%+v), want one to archived@example.com", len(msgs), msgs)
	}
	inv, err := store.GetInvitation(ctx, f.db, f.tenant.ID, d.InvitationID.UUID)
	if err != nil || inv.State != store.InvitationPending || inv.SendCount != 1 || inv.ExpiresAt.IsZero() {
		t.Fatalf("invitation %+v %v, want pending, sent once, with an expiry", inv, err)
	}

	// A send on its last attempt that SendGrid keeps failing: the handler
	// records the failure and gives up; the task is archived for good.
	failing := f.pendingDelivery(t, "200", "failing@example.com", store.CustomerActive)
	lastJob := jobs.NewInviteSend(f.tenant.ID.String(), []string{failing.ID.String()})
	if err := outbox.Record(ctx, f.db, f.tenant.ID, time.Now(), lastJob); err != nil {
		t.Fatal(err)
	}
	requests := f.fake.Requests()
	f.fake.FailNext(500, 1)
	if _, err := client.Enqueue(asynq.NewTask(lastJob.Type, lastJob.Payload, asynq.TaskID(lastJob.ID), asynq.Queue(lastJob.Queue()), asynq.MaxRetry(0))); err != nil {
		t.Fatal(err)
	}
	if err := store.MarkEnqueued(ctx, f.db, []string{lastJob.ID}, time.Now()); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 20*time.Second, "the failing send archived", func() bool { return taskState(lastJob) == asynq.TaskStateArchived })
	if got := f.state(t, failing.ID); got.State != store.DeliveryFailed {
		t.Fatalf("delivery %s, want failed", got.State)
	}
	if res := sweep(); res.Rerun+res.Stuck != 0 {
		t.Fatalf("sweep: %+v, want the failed send left archived", res)
	}
	// The handler's mark that the work is done lost: still left archived.
	if _, err := f.db.NewUpdate().Model((*store.OutboxTask)(nil)).Set("completed_at = NULL").Where("task_id = ?", lastJob.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if res := sweep(); res.Rerun+res.Stuck != 0 || res.Abandoned != 1 {
		t.Fatalf("sweep without the mark: %+v, want the failed send left archived", res)
	}
	if st := taskState(lastJob); st != asynq.TaskStateArchived {
		t.Fatalf("failed send is %s, want archived", st)
	}
	if n := f.fake.Requests() - requests; n != 1 {
		t.Fatalf("%d requests for the failing send, want its one", n)
	}
	if n := len(f.fake.Messages()); n != 1 {
		t.Fatalf("%d emails in all, want the first one only", n)
	}
}
