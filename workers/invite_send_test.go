package workers_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/mail/sendgridfake"
	"github.com/onboard-dev/onboard/internal/outbox"
	"github.com/onboard-dev/onboard/internal/ratelimit"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/jobs"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
	"github.com/onboard-dev/onboard/workers"
)

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

type fixture struct {
	db     *bun.DB
	deps   *workers.Deps
	fake   *sendgridfake.Server
	tenant *store.Tenant
}

func newFixture(t testing.TB, db *bun.DB) *fixture {
	t.Helper()
	fake := sendgridfake.New(t)
	ten, _, err := store.CreateTenant(context.Background(), db, "Parts <Co>", "", t0)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{
		db:   db,
		fake: fake,
		deps: &workers.Deps{
			DB:        db,
			Mailer:    mail.NewSendGrid(fake.APIKey, fake.URL, &http.Client{Timeout: 10 * time.Second}),
			Log:       slog.New(slog.NewTextHandler(io.Discard, nil)),
			Now:       func() time.Time { return t0 },
			PublicURL: "https://portal.example.com",
			From:      mail.Address{Email: "invites@vendor.example.com", Name: "Vendor"},
		},
		tenant: ten,
	}
}

// withQueue gives the fixture a redis-server of its own, a client and an
// inspector on it, and a dispatcher that enqueues there; the clock is real
// and a send holds its deliveries for a minute, as a worker's does.
func (f *fixture) withQueue(t *testing.T) (*testenv.Redis, *asynq.Client, *asynq.Inspector) {
	t.Helper()
	f.deps.Now = nil
	f.deps.SendLease = time.Minute
	r := testenv.StartRedis(t)
	opt := asynq.RedisClientOpt{Addr: r.Addr()}
	client := asynq.NewClient(opt)
	t.Cleanup(func() { client.Close() })
	insp := asynq.NewInspector(opt)
	t.Cleanup(func() { insp.Close() })
	f.deps.Dispatcher = &outbox.Dispatcher{DB: f.db, Client: client, Inspector: insp, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	return r, client, insp
}

// pendingDelivery stores an active customer with a pending invitation and a
// queued delivery, as the API does for Save and Invite.
func (f *fixture) pendingDelivery(t *testing.T, account, email, status string) *store.Delivery {
	t.Helper()
	ctx := context.Background()
	c := &store.Customer{TenantID: f.tenant.ID, CompanyName: "Acme " + account, Status: status, AccountNumbers: []string{account}, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertCustomer(ctx, f.db, c); err != nil {
		t.Fatal(err)
	}
	inv := &store.Invitation{TenantID: f.tenant.ID, CustomerID: c.ID, Email: email, EmailNormalized: strings.ToLower(email), FirstName: "Jane", State: store.InvitationPending, CreatedAt: t0, UpdatedAt: t0}
	if err := store.InsertInvitation(ctx, f.db, inv); err != nil {
		t.Fatal(err)
	}
	d := store.NewInvitationDelivery(inv, t0)
	if err := store.InsertDeliveries(ctx, f.db, []*store.Delivery{d}); err != nil {
		t.Fatal(err)
	}
	return d
}

func (f *fixture) process(t *testing.T, ds ...*store.Delivery) error {
	t.Helper()
	ids := make([]string, len(ds))
	for i, d := range ds {
		ids[i] = d.ID.String()
	}
	return f.runTask(t, jobs.NewInviteSend(f.tenant.ID.String(), ids))
}

func (f *fixture) state(t *testing.T, id uuid.UUID) *store.Delivery {
	t.Helper()
	d, err := store.GetDelivery(context.Background(), f.db, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestInviteSendSendsOnceAndRecords(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		f := newFixture(t, db)
		d := f.pendingDelivery(t, "100", "Jane.Doe@Example.com", store.CustomerActive)
		if err := f.process(t, d); err != nil {
			t.Fatal(err)
		}
		got := f.state(t, d.ID)
		if got.State != store.DeliverySent || got.ProviderMessageID == "" {
			t.Fatalf("delivery %+v", got)
		}
		msgs := f.fake.Messages()
		if len(msgs) != 1 {
			t.Fatalf("%d emails", len(msgs))
		}
		m := msgs[0]
		if m.To != "Jane.Doe@Example.com" || m.CustomArgs["invitation_id"] != d.InvitationID.UUID.String() || m.CustomArgs["tenant_id"] != f.tenant.ID.String() {
			t.Fatalf("email %+v", m)
		}
		// The link reaches the contact as it is: click tracking is off.
		if m.ClickTracked || !strings.Contains(m.HTML, `href="https://portal.example.com/invitations/accept?token=`) {
			t.Fatalf("link rewritten by SendGrid's click tracking:\n%s", m.HTML)
		}
		if !strings.Contains(m.Text, "https://portal.example.com/invitations/accept?token=") || !strings.Contains(m.HTML, "Parts &lt;Co&gt;") {
			t.Fatalf("email body:\n%s\n%s", m.Text, m.HTML)
		}
		// A retry or a duplicate enqueue sends nothing more.
		if err := f.process(t, d); err != nil {
			t.Fatal(err)
		}
		if n := len(f.fake.Messages()); n != 1 {
			t.Fatalf("%d emails after a second run, want 1", n)
		}
		inv, _ := store.GetInvitation(context.Background(), db, f.tenant.ID, d.InvitationID.UUID)
		if inv.SendCount != 1 || !inv.ExpiresAt.Equal(t0.Add(f.tenant.InviteTTL())) {
			t.Fatalf("invitation %+v", inv)
		}
	})
}

func TestInviteSendBatchesRecipients(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	var ds []*store.Delivery
	for i := range 25 {
		ds = append(ds, f.pendingDelivery(t, "A"+string(rune('a'+i)), "c"+string(rune('a'+i))+"@example.com", store.CustomerActive))
	}
	if err := f.process(t, ds...); err != nil {
		t.Fatal(err)
	}
	if f.fake.Requests() != 1 || len(f.fake.Messages()) != 25 {
		t.Fatalf("%d requests for %d emails, want 1 for 25", f.fake.Requests(), len(f.fake.Messages()))
	}
	links := map[string]bool{}
	for _, m := range f.fake.Messages() {
		i := strings.Index(m.Text, "token=")
		links[m.Text[i:i+40]] = true
	}
	if len(links) != 25 {
		t.Fatalf("%d distinct links for 25 recipients", len(links))
	}
}

func TestInviteSendProviderAnswers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		status    int
		wantState string
		wantRetry bool
	}{
		{"server error retries", 500, store.DeliveryQueued, true},
		{"rate limited retries", 429, store.DeliveryQueued, true},
		{"bad request fails for good", 400, store.DeliveryFailed, false},
		// No recipient caused these: the email waits for the fix.
		{"bad key waits", 401, store.DeliveryQueued, true},
		{"forbidden waits", 403, store.DeliveryQueued, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, storetest.NewPostgres(t))
			d := f.pendingDelivery(t, "100", "jane@example.com", store.CustomerActive)
			f.fake.FailNext(tc.status, 1)
			err := f.process(t, d)
			if tc.wantRetry != (err != nil && !errors.Is(err, asynq.SkipRetry)) {
				t.Fatalf("error %v: want retry %v", err, tc.wantRetry)
			}
			got := f.state(t, d.ID)
			if got.State != tc.wantState || got.LastError == "" {
				t.Fatalf("delivery %+v, want %s with a reason", got, tc.wantState)
			}
			if tc.wantRetry {
				if err := f.process(t, d); err != nil {
					t.Fatal(err)
				}
				if n := len(f.fake.Messages()); n != 1 || f.state(t, d.ID).State != store.DeliverySent {
					t.Fatalf("after retry: %d emails, state %s", n, f.state(t, d.ID).State)
				}
			}
		})
	}
}

func TestInviteSendSkipsWhatMustNotGoOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	black := f.pendingDelivery(t, "1", "black@example.com", store.CustomerBlacklisted)
	revoked := f.pendingDelivery(t, "2", "revoked@example.com", store.CustomerActive)
	ok := f.pendingDelivery(t, "3", "ok@example.com", store.CustomerActive)
	if _, err := f.db.NewUpdate().Model((*store.Invitation)(nil)).Set("state = ?", store.InvitationRevoked).
		Where("id = ?", revoked.InvitationID.UUID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.process(t, black, revoked, ok); err != nil {
		t.Fatal(err)
	}
	if s := f.state(t, black.ID); s.State != store.DeliveryFailed || !strings.Contains(s.LastError, "blacklisted") {
		t.Errorf("blacklisted: %+v", s)
	}
	if s := f.state(t, revoked.ID); s.State != store.DeliveryFailed || !strings.Contains(s.LastError, "revoked") {
		t.Errorf("revoked: %+v", s)
	}
	if msgs := f.fake.Messages(); len(msgs) != 1 || msgs[0].To != "ok@example.com" {
		t.Fatalf("emails %+v", msgs)
	}
}

func TestInviteSendLeaseHeldByAnotherWorker(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	d := f.pendingDelivery(t, "1", "jane@example.com", store.CustomerActive)
	if _, err := store.ClaimDeliveries(context.Background(), f.db, []uuid.UUID{d.ID}, time.Minute, t0); err != nil {
		t.Fatal(err)
	}
	if err := f.process(t, d); !errors.Is(err, store.ErrDeliveryLeased) {
		t.Fatalf("got %v, want ErrDeliveryLeased (retry later)", err)
	}
	if len(f.fake.Messages()) != 0 {
		t.Fatal("a leased delivery was sent")
	}
	// The holder died: after the lease, the task takes over.
	f.deps.Now = func() time.Time { return t0.Add(4 * time.Minute) }
	if err := f.process(t, d); err != nil {
		t.Fatal(err)
	}
	if len(f.fake.Messages()) != 1 {
		t.Fatal("not sent after the lease ran out")
	}
}

// A contact named "John Smith, Jr." gets the email: SendGrid drops one whose
// to.name has a comma, so the name goes out without it; the greeting in the
// body keeps the name as typed.
func TestInviteSendNameWithComma(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	d := f.pendingDelivery(t, "100", "john@example.com", store.CustomerActive)
	if _, err := f.db.NewUpdate().Model((*store.Invitation)(nil)).Set("first_name = 'John'").Set("last_name = 'Smith, Jr.'").
		Where("id = ?", d.InvitationID.UUID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.process(t, d); err != nil {
		t.Fatal(err)
	}
	if dropped := f.fake.Dropped(); len(dropped) != 0 {
		t.Fatalf("SendGrid would drop it: %+v", dropped)
	}
	m := f.fake.Messages()
	if len(m) != 1 || m[0].ToName != "John Smith Jr." || !strings.Contains(m[0].Text, "John Smith, Jr.") {
		t.Fatalf("emails %+v", m)
	}
}

// An address stored before internationalised local parts were refused at
// input fails on its own with the reason; the batch goes out.
func TestInviteSendInternationalAddresses(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	legacy := f.pendingDelivery(t, "1", "日本@imp.example", store.CustomerActive)
	idn := f.pendingDelivery(t, "2", "jurgen@bücher.example", store.CustomerActive)
	if err := f.process(t, legacy, idn); err != nil {
		t.Fatal(err)
	}
	if s := f.state(t, legacy.ID); s.State != store.DeliveryFailed || !strings.Contains(s.LastError, "internationalised local part") {
		t.Errorf("legacy address: %+v", s)
	}
	if s := f.state(t, idn.ID); s.State != store.DeliverySent {
		t.Errorf("IDN domain: %+v", s)
	}
	if m := f.fake.Messages(); len(m) != 1 || m[0].To != "jurgen@xn--bcher-kva.example" || f.fake.Requests() != 1 {
		t.Fatalf("%d requests, emails %+v", f.fake.Requests(), m)
	}
}

// A refused email keeps SendGrid's messages as its reason, stored whole
// and as valid text, whatever the body looked like.
func TestInviteSendFailureReasonIsStored(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, db *bun.DB) {
		f := newFixture(t, db)
		for _, tc := range []struct{ body, want string }{
			{`{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to","help":"http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"}]}`,
				"personalizations.0.to: Does not contain a valid address."},
			{"<html><body><h1>400 Bad Request</h1>" + strings.Repeat("ü", 300) + "</body></html>", "Bad Request: <html><body><h1>400 Bad Request</h1>ü"},
		} {
			d := f.pendingDelivery(t, uuid.NewString()[:8], uuid.NewString()[:8]+"@example.com", store.CustomerActive)
			f.fake.FailNextWith(400, tc.body, 1)
			if err := f.process(t, d); err != nil {
				t.Fatalf("process: %v", err)
			}
			got := f.state(t, d.ID)
			if got.State != store.DeliveryFailed || !strings.Contains(got.LastError, tc.want) || strings.Contains(got.LastError, "{") {
				t.Fatalf("delivery %s: %q, want it to hold %q", got.State, got.LastError, tc.want)
			}
			inv, err := store.GetInvitation(context.Background(), db, f.tenant.ID, d.InvitationID.UUID)
			if err != nil || inv.DeliveryError != got.LastError {
				t.Fatalf("invitation's delivery_error %q, %v", inv.DeliveryError, err)
			}
		}
	})
}

// SendGrid refusing the account (a revoked key, an unverified sender
// identity) is no recipient's doing: a batch is not split into a flood of
// requests, no email fails, the task waits without using up its retries
// while every worker holds off SendGrid, and once the configuration is
// mended every email goes out exactly once.
func TestInviteSendAccountRefusalWaitsForTheFix(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		break_, fix func(f *fixture) // on the fake: what goes wrong, and the mend
	}{
		{"unverified sender identity (403)",
			func(f *fixture) { f.fake.SetVerifiedSenders("someone-else@vendor.example.com") },
			func(f *fixture) { f.fake.SetVerifiedSenders("invites@vendor.example.com") }},
		{"revoked key (401)",
			func(f *fixture) { f.fake.SetAPIKey("SG.the-new-key") },
			func(f *fixture) {
				sb := f.deps.Mailer.(*ratelimit.SharedBackoff)
				sb.Next = mail.NewSendGrid("SG.the-new-key", f.fake.URL, nil)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, storetest.NewPostgres(t))
			r := testenv.StartRedis(t)
			rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
			t.Cleanup(func() { rc.Close() })
			now := time.Now().Truncate(time.Millisecond)
			clock := func() time.Time { return now }
			f.deps.Now = clock
			f.deps.Mailer = &ratelimit.SharedBackoff{Next: f.deps.Mailer.(*mail.SendGrid), Client: rc, Now: clock}
			var ds []*store.Delivery
			for i := range 40 {
				ds = append(ds, f.pendingDelivery(t, fmt.Sprint(1000+i), fmt.Sprintf("c%d@example.com", i), store.CustomerActive))
			}
			tc.break_(f)
			queued := func(when string) {
				t.Helper()
				for _, d := range ds {
					if s := f.state(t, d.ID); s.State != store.DeliveryQueued {
						t.Fatalf("%s: delivery %s, want queued (waiting)", when, s.State)
					}
					inv, _ := store.GetInvitation(context.Background(), f.db, f.tenant.ID, d.InvitationID.UUID)
					if inv.DeliveryStatus == store.DeliveryFailed {
						t.Fatalf("%s: invitation marked failed: %s", when, inv.DeliveryError)
					}
				}
			}

			err := f.process(t, ds...)
			if !mail.IsRefused(err) || errors.Is(err, asynq.SkipRetry) || workers.IsFailure(err) {
				t.Fatalf("refused: %v; want a retry that asynq does not count", err)
			}
			if d := workers.RetryDelay(0, err, nil); d < 30*time.Second || d > 40*time.Second {
				t.Fatalf("retry in %s, want the shared pause of 30s", d)
			}
			if n := f.fake.Requests(); n != 1 {
				t.Fatalf("%d requests for the refused batch, want 1 (no splitting)", n)
			}
			queued("after the refusal")
			// Retries during the pause touch neither SendGrid nor the
			// deliveries.
			for range 3 {
				if err := f.process(t, ds...); !mail.IsRefused(err) || workers.IsFailure(err) {
					t.Fatalf("retry during the pause: %v", err)
				}
			}
			if n := f.fake.Requests(); n != 1 || f.state(t, ds[0].ID).Attempts != 1 {
				t.Fatalf("during the pause: %d requests, %d attempts", n, f.state(t, ds[0].ID).Attempts)
			}
			// The pause is over and nothing is mended: one request, refused,
			// and a longer pause.
			now = now.Add(31 * time.Second)
			err = f.process(t, ds...)
			if after, _ := mail.RetryAfter(err); !mail.IsRefused(err) || after != time.Minute || f.fake.Requests() != 2 {
				t.Fatalf("second try: %v (retry after %s), %d requests", err, after, f.fake.Requests())
			}
			queued("after the second refusal")

			tc.fix(f)
			now = now.Add(61 * time.Second)
			if err := f.process(t, ds...); err != nil {
				t.Fatalf("after the fix: %v", err)
			}
			if err := f.process(t, ds...); err != nil { // a duplicate run sends nothing
				t.Fatal(err)
			}
			to := map[string]int{}
			for _, m := range f.fake.Messages() {
				to[m.To]++
			}
			if len(to) != 40 || len(f.fake.Messages()) != 40 {
				t.Fatalf("%d emails to %d addresses, want each of the 40 once", len(f.fake.Messages()), len(to))
			}
			for _, d := range ds {
				if s := f.state(t, d.ID); s.State != store.DeliverySent {
					t.Fatalf("delivery %s after the fix", s.State)
				}
			}
			if n := f.fake.Requests(); n != 3 {
				t.Fatalf("%d requests in all, want 3", n)
			}
		})
	}
}

// While SendGrid refuses the account, a resend that waits (the pause is
// over and another worker's probe is in flight) neither claims its delivery
// nor retires the link the contact already holds.
func TestWaitingForTheProbeKeepsTheLiveLink(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	r := testenv.StartRedis(t)
	rc := redis.NewClient(&redis.Options{Addr: r.Addr()})
	t.Cleanup(func() { rc.Close() })
	now := t0
	f.deps.Now = func() time.Time { return now }
	f.deps.Mailer = &ratelimit.SharedBackoff{Next: f.deps.Mailer.(*mail.SendGrid), Client: rc, Now: func() time.Time { return now }}
	ctx := context.Background()

	d1 := f.pendingDelivery(t, "A1", "a1@example.com", store.CustomerActive)
	if err := f.process(t, d1); err != nil {
		t.Fatal(err)
	}
	live := func() int {
		n, err := f.db.NewSelect().Model((*store.InvitationToken)(nil)).Where("invitation_id = ? AND superseded_at IS NULL", d1.InvitationID.UUID).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	if live() != 1 {
		t.Fatalf("after the first email: %d live links", live())
	}
	requests := f.fake.Requests()

	// A resend is queued; SendGrid refused the account earlier, the pause is
	// over, and another worker holds the probe.
	inv, _ := store.GetInvitation(ctx, f.db, f.tenant.ID, d1.InvitationID.UUID)
	d2 := store.NewInvitationDelivery(inv, now)
	if err := store.InsertDeliveries(ctx, f.db, []*store.Delivery{d2}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Hour)
	rc.HSet(ctx, "onboard:sendgrid:refused", "until", strconv.FormatInt(now.Add(-time.Second).UnixMilli(), 10), "streak", "1", "status", "403", "reason", "from: unverified")
	rc.Set(ctx, "onboard:sendgrid:refused:probe", "1", time.Minute)

	for range 3 {
		if err := f.process(t, d2); err == nil {
			t.Fatal("a held send must retry")
		}
		now = now.Add(5 * time.Second)
	}
	if st := f.state(t, d2.ID); st.State != store.DeliveryQueued || st.Attempts != 0 {
		t.Errorf("held resend: %s after %d attempts; want queued, never claimed", st.State, st.Attempts)
	}
	if live() != 1 || f.fake.Requests() != requests {
		t.Errorf("held resend: %d live links (want the first email's), %d SendGrid requests (want none)", live(), f.fake.Requests()-requests)
	}
	var tokens []*store.InvitationToken
	if err := f.db.NewSelect().Model(&tokens).Where("invitation_id = ? AND superseded_at IS NULL", d1.InvitationID.UUID).Scan(ctx); err != nil || len(tokens) != 1 || tokens[0].DeliveryID != d1.ID {
		t.Errorf("the live link is not the first email's: %+v %v", tokens, err)
	}
}

// A database error while loading the tenant is the database's, not the
// emails': the send is retried and its deliveries stay queued, where a
// tenant that is gone fails them for good.
func TestTenantLookupErrorRetriesTheSend(t *testing.T) {
	t.Parallel()
	f := newFixture(t, storetest.NewPostgres(t))
	d := f.pendingDelivery(t, "100", "jane@example.com", store.CustomerActive)
	ctx := context.Background()
	// The tenants table unreadable for a moment, as in a failover.
	if _, err := f.db.ExecContext(ctx, "ALTER TABLE tenants RENAME TO tenants_away"); err != nil {
		t.Fatal(err)
	}
	err := f.process(t, d)
	if err == nil || errors.Is(err, asynq.SkipRetry) {
		t.Fatalf("tenant lookup failing: %v, want an error asynq retries", err)
	}
	if got := f.state(t, d.ID); got.State != store.DeliveryQueued {
		t.Fatalf("delivery %s after a database error, want queued", got.State)
	}
	if _, err := f.db.ExecContext(ctx, "ALTER TABLE tenants_away RENAME TO tenants"); err != nil {
		t.Fatal(err)
	}
	if err := f.process(t, d); err != nil {
		t.Fatal(err)
	}
	if got := f.state(t, d.ID); got.State != store.DeliverySent || len(f.fake.Messages()) != 1 {
		t.Fatalf("delivery %s, %d emails after the database came back", got.State, len(f.fake.Messages()))
	}
}

// SendGrid accepted the email and the database failed while it was being
// recorded (a dropped connection, a failover): the worker records it again
// instead of leaving the delivery leased, whose lease running out would
// send the email a second time. The record is one transaction, so the
// failure of its second statement leaves nothing half-recorded either.
func TestEmailAcceptedThenTheDatabaseFailsIsRecordedOnce(t *testing.T) {
	t.Parallel()
	for _, table := range []string{"deliveries", "invitations"} {
		t.Run(table, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, storetest.NewPostgres(t))
			ctx := context.Background()
			// The first update of the table that records a send fails, as a
			// connection lost mid-statement would; a sequence, unlike a
			// table, keeps counting across the failed statement's rollback.
			for _, stmt := range []string{
				`CREATE SEQUENCE record_failures`,
				`CREATE FUNCTION fail_first_record() RETURNS trigger LANGUAGE plpgsql AS $$
				 BEGIN
				   IF TG_TABLE_NAME = 'deliveries' THEN
				     IF NEW.state = 'sent' AND nextval('record_failures') = 1 THEN
				       RAISE EXCEPTION 'terminating connection (test)';
				     END IF;
				   ELSIF NEW.send_count > OLD.send_count AND nextval('record_failures') = 1 THEN
				     RAISE EXCEPTION 'terminating connection (test)';
				   END IF;
				   RETURN NEW;
				 END $$`,
				`CREATE TRIGGER fail_first_record BEFORE UPDATE ON ` + table + ` FOR EACH ROW EXECUTE FUNCTION fail_first_record()`,
			} {
				if _, err := f.db.ExecContext(ctx, stmt); err != nil {
					t.Fatal(err)
				}
			}
			d := f.pendingDelivery(t, "100", "jane@example.com", store.CustomerActive)
			if err := f.process(t, d); err != nil {
				t.Fatal(err)
			}
			got := f.state(t, d.ID)
			var inv store.Invitation
			if err := f.db.NewSelect().Model(&inv).Where("id = ?", d.InvitationID).Scan(ctx); err != nil {
				t.Fatal(err)
			}
			if got.State != store.DeliverySent || inv.SendCount != 1 || inv.DeliveryStatus != store.DeliverySent || len(f.fake.Messages()) != 1 {
				t.Fatalf("delivery %s, invitation sent %d times (%s), %d emails; want sent, 1, sent, 1", got.State, inv.SendCount, inv.DeliveryStatus, len(f.fake.Messages()))
			}
		})
	}
}
