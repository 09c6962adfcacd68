package workers_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
	"github.com/onboard-dev/onboard/workers"
)

// sentInvitation stores a pending invitation whose first email went out at
// sentAt, with the link valid for the tenant's TTL.
func (f *fixture) sentInvitation(t *testing.T, account, email, status string, sentAt time.Time, sends int) *store.Invitation {
	t.Helper()
	d := f.pendingDelivery(t, account, email, status)
	ctx := context.Background()
	if _, err := f.db.NewUpdate().Model((*store.Delivery)(nil)).Set("state = ?", store.DeliverySent).Where("id = ?", d.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.NewUpdate().Model((*store.Invitation)(nil)).
		Set("send_count = ?", sends).Set("last_sent_at = ?", sentAt).Set("expires_at = ?", sentAt.Add(f.tenant.InviteTTL())).
		Where("id = ?", d.InvitationID.UUID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	inv, err := store.GetInvitation(ctx, f.db, f.tenant.ID, d.InvitationID.UUID)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func (f *fixture) run(t *testing.T, job jobs.Job) {
	t.Helper()
	task, _ := jobs.Build(job.Type, job.ID, job.Payload)
	mux := asynq.NewServeMux()
	workers.Register(mux, f.deps)
	if err := mux.ProcessTask(context.Background(), task); err != nil {
		t.Fatal(err)
	}
}

// queuedFor returns the invitations that have an email queued.
func (f *fixture) queuedFor(t *testing.T) map[uuid.UUID]int {
	t.Helper()
	var ds []store.Delivery
	if err := f.db.NewSelect().Model(&ds).Where("state = ?", store.DeliveryQueued).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]int{}
	for _, d := range ds {
		out[d.InvitationID.UUID]++
	}
	return out
}

func withDispatcher(t testing.TB, f *fixture) {
	r := testenv.StartRedis(t)
	c := asynq.NewClient(asynq.RedisClientOpt{Addr: r.Addr()})
	t.Cleanup(func() { c.Close() })
	f.deps.Dispatcher = &outbox.Dispatcher{DB: f.db, Client: c, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestNightlyResendPolicy(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	night := t0.Add(10 * 24 * time.Hour)
	f.deps.Now = func() time.Time { return night }
	due := f.sentInvitation(t, "1", "due@example.com", store.CustomerActive, night.Add(-4*24*time.Hour), 1)
	tooSoon := f.sentInvitation(t, "2", "soon@example.com", store.CustomerActive, night.Add(-2*24*time.Hour), 1)
	// Resent three times already (four sends): the policy's limit.
	exhausted := f.sentInvitation(t, "3", "done@example.com", store.CustomerActive, night.Add(-5*24*time.Hour), 4)
	black := f.sentInvitation(t, "4", "black@example.com", store.CustomerBlacklisted, night.Add(-5*24*time.Hour), 1)
	inactive := f.sentInvitation(t, "5", "inactive@example.com", store.CustomerInactive, night.Add(-5*24*time.Hour), 1)
	expired := f.sentInvitation(t, "6", "expired@example.com", store.CustomerActive, night.Add(-20*24*time.Hour), 1)
	// Due by the policy, but the address bounced or its owner complained.
	bounced := f.sentInvitation(t, "7", "bounced@example.com", store.CustomerActive, night.Add(-4*24*time.Hour), 1)
	complained := f.sentInvitation(t, "8", "complained@example.com", store.CustomerActive, night.Add(-4*24*time.Hour), 1)
	for inv, status := range map[*store.Invitation]string{bounced: store.EventBounced, complained: store.EventComplained} {
		if _, err := f.db.NewUpdate().Model((*store.Invitation)(nil)).Set("delivery_status = ?", status).Where("id = ?", inv.ID).Exec(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	f.run(t, jobs.NewScheduled(jobs.TypeInviteResend, night))
	got := f.queuedFor(t)
	if len(got) != 1 || got[due.ID] != 1 {
		t.Fatalf("queued for %v, want only the due invitation %s (too soon %s, exhausted %s, blacklisted %s, inactive %s, expired %s, bounced %s, complained %s)",
			got, due.ID, tooSoon.ID, exhausted.ID, black.ID, inactive.ID, expired.ID, bounced.ID, complained.ID)
	}
	// A re-run of the same night (a retry) queues nothing more.
	f.run(t, jobs.NewScheduled(jobs.TypeInviteResend, night))
	if got := f.queuedFor(t); len(got) != 1 || got[due.ID] != 1 {
		t.Fatalf("re-run queued again: %v", got)
	}
	// The expiry sweep expires the invitation past its expiry only.
	f.run(t, jobs.NewScheduled(jobs.TypeInviteExpire, night))
	for inv, want := range map[*store.Invitation]string{expired: store.InvitationExpired, due: store.InvitationPending, tooSoon: store.InvitationPending} {
		got, _ := store.GetInvitation(context.Background(), f.db, f.tenant.ID, inv.ID)
		if got.State != want {
			t.Errorf("%s: %s, want %s", inv.Email, got.State, want)
		}
	}
}

func TestTenantPolicyIsPerTenant(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	f.tenant.ResendIntervalHours = 24
	f.tenant.ResendMax = 1
	if err := store.UpdateTenantPolicy(context.Background(), f.db, f.tenant); err != nil {
		t.Fatal(err)
	}
	night := t0.Add(10 * 24 * time.Hour)
	f.deps.Now = func() time.Time { return night }
	oneDay := f.sentInvitation(t, "1", "a@example.com", store.CustomerActive, night.Add(-25*time.Hour), 1)
	resentOnce := f.sentInvitation(t, "2", "b@example.com", store.CustomerActive, night.Add(-25*time.Hour), 2)
	f.run(t, jobs.NewScheduled(jobs.TypeInviteResend, night))
	if got := f.queuedFor(t); len(got) != 1 || got[oneDay.ID] != 1 || got[resentOnce.ID] != 0 {
		t.Fatalf("queued %v", got)
	}
}

func TestResendAllPendingAndTheOldLinkStopsWorking(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	ctx := context.Background()
	d := f.pendingDelivery(t, "1", "jane@example.com", store.CustomerActive)
	if err := f.process(t, d); err != nil {
		t.Fatal(err)
	}
	firstLink := f.fake.Messages()[0].Text
	// "Resend all" ignores the interval: the invitation was sent just now.
	f.deps.Now = func() time.Time { return t0.Add(time.Minute) }
	f.run(t, jobs.NewResendAllPending(f.tenant.ID.String(), "req-1", t0.Add(time.Minute)))
	var ds []*store.Delivery
	if err := f.db.NewSelect().Model(&ds).Where("state = ?", store.DeliveryQueued).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(ds) != 1 {
		t.Fatalf("%d resends queued, want 1", len(ds))
	}
	f.deps.Now = func() time.Time { return t0.Add(time.Hour) }
	if err := f.process(t, ds...); err != nil {
		t.Fatal(err)
	}
	msgs := f.fake.Messages()
	if len(msgs) != 2 || msgs[1].Text == firstLink {
		t.Fatalf("%d emails; the resend must carry a new link", len(msgs))
	}
	oldTok, newTok := tokenIn(t, msgs[0].Text), tokenIn(t, msgs[1].Text)
	if _, err := store.AcceptInvitation(ctx, f.db, f.tenant.ID, oldTok, t0.Add(2*time.Hour)); err == nil {
		t.Fatal("the old link still works")
	}
	inv, _ := store.GetInvitation(ctx, f.db, f.tenant.ID, d.InvitationID.UUID)
	if !inv.ExpiresAt.Equal(t0.Add(time.Hour).Add(f.tenant.InviteTTL())) || inv.SendCount != 2 {
		t.Fatalf("after resend: expires %v, sends %d", inv.ExpiresAt, inv.SendCount)
	}
	if _, err := store.AcceptInvitation(ctx, f.db, f.tenant.ID, newTok, t0.Add(2*time.Hour)); err != nil {
		t.Fatalf("the new link: %v", err)
	}
}

func tokenIn(t *testing.T, text string) string {
	t.Helper()
	const marker = "token="
	for i := 0; i+len(marker) < len(text); i++ {
		if text[i:i+len(marker)] == marker {
			j := i + len(marker)
			k := j
			for k < len(text) && text[k] != '\n' && text[k] != ' ' {
				k++
			}
			return text[j:k]
		}
	}
	t.Fatal("no link in the email")
	return ""
}

// The daily cap holds for runs as for the API: an invitation emailed today
// as often as RESEND_DAILY_CAP allows waits for tomorrow.
func TestResendRunsRespectTheDailyCap(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	now := t0.Add(10 * 24 * time.Hour)
	f.deps.Now = func() time.Time { return now }
	f.deps.ResendDailyCap = 1
	// Its delivery was created at t0+… by the fixture; make it today's.
	today := f.sentInvitation(t, "1", "today@example.com", store.CustomerActive, now.Add(-time.Hour), 1)
	if _, err := f.db.NewUpdate().Model((*store.Delivery)(nil)).Set("created_at = ?", now.Add(-time.Hour)).Where("invitation_id = ?", today.ID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	earlier := f.sentInvitation(t, "2", "earlier@example.com", store.CustomerActive, now.Add(-30*time.Hour), 1)
	if _, err := f.db.NewUpdate().Model((*store.Delivery)(nil)).Set("created_at = ?", now.Add(-30*time.Hour)).Where("invitation_id = ?", earlier.ID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.run(t, jobs.NewResendAllPending(f.tenant.ID.String(), "run-1", now))
	if got := f.queuedFor(t); len(got) != 1 || got[earlier.ID] != 1 {
		t.Fatalf("queued for %v, want only %s (emailed yesterday), not %s (emailed today)", got, earlier.ID, today.ID)
	}
}

// Two "resend all" runs of one tenant at once (a double click, or one that
// meets the nightly run) queue one email per invitation: each page is taken
// under lock and checked again for emails already queued.
func TestConcurrentResendRunsQueueOneEmailEach(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	var ds []*store.Delivery
	for i := range 300 {
		ds = append(ds, f.pendingDelivery(t, fmt.Sprint(5000+i), fmt.Sprintf("r%d@example.com", i), store.CustomerActive))
	}
	if err := f.process(t, ds...); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(time.Hour)
	f.deps.Now = func() time.Time { return now }
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if err := f.runTask(t, jobs.NewResendAllPending(f.tenant.ID.String(), uuid.NewString(), now)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	var rows []struct {
		InvitationID uuid.UUID `bun:"invitation_id"`
		N            int       `bun:"n"`
	}
	if err := f.db.NewSelect().Model((*store.Delivery)(nil)).Column("invitation_id").ColumnExpr("count(*) AS n").
		Where("state = ?", store.DeliveryQueued).Group("invitation_id").Having("count(*) > 1").Scan(context.Background(), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) > 0 {
		t.Errorf("%d of 300 invitations got two queued resend emails", len(rows))
	}
	n, err := f.db.NewSelect().Model((*store.Delivery)(nil)).Where("state = ?", store.DeliveryQueued).Count(context.Background())
	if err != nil || n != 300 {
		t.Fatalf("%d queued resend emails, want 300: %v", n, err)
	}
}

// manySent stores n pending invitations of active customers, each emailed
// once at sentAt, in a few statements; it returns their ids in id order.
func (f *fixture) manySent(t *testing.T, n int, sentAt time.Time) []uuid.UUID {
	t.Helper()
	ctx := context.Background()
	cs := make([]*store.Customer, n)
	for i := range cs {
		cs[i] = &store.Customer{ID: uuid.Must(uuid.NewV7()), TenantID: f.tenant.ID, CompanyName: fmt.Sprint("Co ", i), Status: store.CustomerActive,
			AccountNumbers: []string{fmt.Sprint("M", i)}, CreatedAt: sentAt, UpdatedAt: sentAt}
	}
	if err := store.InsertCustomers(ctx, f.db, cs); err != nil {
		t.Fatal(err)
	}
	invs := make([]*store.Invitation, n)
	ds := make([]*store.Delivery, n)
	ids := make([]uuid.UUID, n)
	for i, c := range cs {
		email := fmt.Sprintf("m%d@example.com", i)
		invs[i] = &store.Invitation{ID: uuid.Must(uuid.NewV7()), TenantID: f.tenant.ID, CustomerID: c.ID, Email: email, EmailNormalized: email,
			State: store.InvitationPending, DeliveryStatus: store.DeliverySent, SendCount: 1, LastSentAt: sentAt,
			ExpiresAt: sentAt.Add(f.tenant.InviteTTL()), CreatedAt: sentAt, UpdatedAt: sentAt}
		ids[i] = invs[i].ID
		ds[i] = store.NewInvitationDelivery(invs[i], sentAt)
		ds[i].State, ds[i].SentAt = store.DeliverySent, sentAt
	}
	if err := store.InsertInvitations(ctx, f.db, invs); err != nil {
		t.Fatal(err)
	}
	if err := store.InsertDeliveries(ctx, f.db, ds); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	return ids
}

// A resend run that fails half-way (its database connection lost while it
// waits on a row lock of its second page, or its worker killed) is retried
// by asynq from the first page. The emails of the first attempt's pages
// have gone out (or failed) in between, so they are no longer "in flight":
// the retry must still not queue a second email to those invitations.
func TestRetriedResendRunQueuesNoSecondEmail(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		job  func(f *fixture, at time.Time) jobs.Job
		// what becomes of the first page's emails before the retry
		outcome func(t *testing.T, f *fixture, ds []*store.Delivery)
	}{
		{"resend all pending, first page sent",
			func(f *fixture, at time.Time) jobs.Job {
				return jobs.NewResendAllPending(f.tenant.ID.String(), "req-1", at)
			},
			func(t *testing.T, f *fixture, ds []*store.Delivery) {
				if err := f.process(t, ds...); err != nil {
					t.Fatal(err)
				}
			}},
		{"nightly run, first page refused by SendGrid",
			func(f *fixture, at time.Time) jobs.Job { return jobs.NewScheduled(jobs.TypeInviteResend, at) },
			func(t *testing.T, f *fixture, ds []*store.Delivery) {
				ids := make([]uuid.UUID, len(ds))
				for i, d := range ds {
					ids[i] = d.ID
				}
				if err := store.FailDeliveries(context.Background(), f.db, ids, "personalizations.0.to: Does not contain a valid address.", f.deps.Now()); err != nil {
					t.Fatal(err)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, storetest.NewPostgres(t))
			withDispatcher(t, f)
			ctx := context.Background()
			asked := t0.Add(10 * 24 * time.Hour)
			ids := f.manySent(t, 1500, asked.Add(-4*24*time.Hour))
			now := asked
			f.deps.Now = func() time.Time { return now }
			job := tc.job(f, asked)

			// Another transaction holds a row of the second page.
			tx, err := f.db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback()
			if err := tx.NewSelect().Model((*store.Invitation)(nil)).Column("id").Where("id = ?", ids[1200]).For("UPDATE").Scan(ctx, new(uuid.UUID)); err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				task, _ := jobs.Build(job.Type, job.ID, job.Payload)
				mux := asynq.NewServeMux()
				workers.Register(mux, f.deps)
				done <- mux.ProcessTask(runCtx, task)
			}()
			testenv.Eventually(t, time.Minute, "the first page queued", func() bool { return len(f.queuedFor(t)) == 1000 })
			cancel() // the attempt dies waiting on the lock of page 2
			if err := <-done; err == nil {
				t.Fatal("the interrupted attempt succeeded")
			}
			var page1 []*store.Delivery
			if err := f.db.NewSelect().Model(&page1).Where("state = ?", store.DeliveryQueued).Scan(ctx); err != nil || len(page1) != 1000 {
				t.Fatalf("%d queued after the first attempt, %v", len(page1), err)
			}
			now = asked.Add(10 * time.Minute)
			tc.outcome(t, f, page1)
			if err := tx.Rollback(); err != nil {
				t.Fatal(err)
			}

			now = asked.Add(20 * time.Minute)
			if err := f.runTask(t, job); err != nil { // asynq's retry: the same task
				t.Fatal(err)
			}
			var rows []struct {
				InvitationID uuid.UUID `bun:"invitation_id"`
				N            int       `bun:"n"`
			}
			if err := f.db.NewSelect().Model((*store.Delivery)(nil)).Column("invitation_id").ColumnExpr("count(*) AS n").
				Where("created_at >= ?", asked).Group("invitation_id").Scan(ctx, &rows); err != nil {
				t.Fatal(err)
			}
			twice := 0
			for _, r := range rows {
				if r.N > 1 {
					twice++
				}
			}
			if twice > 0 || len(rows) != 1500 {
				t.Fatalf("%d of 1500 invitations got a second email from the retried run; %d got one at all", twice, len(rows))
			}
		})
	}
}

// A "resend all" queued before its payload carried the request time is
// still run.
func TestResendAllPendingPayloadWithoutRequestTime(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	withDispatcher(t, f)
	now := t0.Add(10 * 24 * time.Hour)
	f.deps.Now = func() time.Time { return now }
	inv := f.sentInvitation(t, "1", "old@example.com", store.CustomerActive, now.Add(-time.Hour), 1)
	old := jobs.Job{Type: jobs.TypeInviteResend, ID: jobs.TypeInviteResend + ":" + f.tenant.ID.String() + ":req-old",
		Payload: []byte(`{"tenant_id":"` + f.tenant.ID.String() + `","all_pending":true}`)}
	f.run(t, old)
	if got := f.queuedFor(t); len(got) != 1 || got[inv.ID] != 1 {
		t.Fatalf("queued %v, want one email to %s", got, inv.ID)
	}
}
