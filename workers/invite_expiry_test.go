package workers_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/testenv"
	"github.com/onboard-dev/onboard/store"
	"github.com/onboard-dev/onboard/store/storetest"
)

// An expired link stays expired while a new email of the invitation fails
// or waits: the expiry moves to the new email's only once that email is
// recorded sent, and then the email states the expiry the invitation has.
func TestExpiryMovesOnlyWhenTheNewEmailIsSent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		break_     func(f *fixture) (mend func())
		wantFailed bool
	}{
		{"SendGrid unreachable", func(f *fixture) func() {
			working := f.deps.Mailer
			f.deps.Mailer = mail.NewSendGrid(f.fake.APIKey, "http://"+testenv.FreeAddr(t), &http.Client{Timeout: 10 * time.Second})
			return func() { f.deps.Mailer = working }
		}, false},
		{"address refused", func(f *fixture) func() {
			f.fake.FailNextWith(400, `{"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to"}]}`, 1)
			return func() {}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			storetest.Each(t, func(t *testing.T, db *bun.DB) {
				f := newFixture(t, db)
				ctx := context.Background()
				now := t0
				f.deps.Now = func() time.Time { return now }
				d1 := f.pendingDelivery(t, "1", "jane@example.com", store.CustomerActive)
				if err := f.process(t, d1); err != nil {
					t.Fatal(err)
				}
				tok := tokenIn(t, f.fake.Messages()[0].Text)
				invID := d1.InvitationID.UUID

				// The link expires.
				now = t0.Add(f.tenant.InviteTTL() + time.Hour)
				expired := func(when string) {
					t.Helper()
					err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
						_, err := store.AcceptInvitation(ctx, tx, f.tenant.ID, tok, now)
						return err
					})
					if !errors.Is(err, store.ErrTokenGone) || !strings.Contains(err.Error(), "expired") {
						t.Fatalf("%s: accepting the expired link: %v, want it gone as expired", when, err)
					}
				}
				expired("before the new email")
				before, _ := store.GetInvitation(ctx, db, f.tenant.ID, invID)

				// A new email is asked for (POST /v1/customers/{id}/invitations)
				// and its send fails or waits.
				d2 := store.NewInvitationDelivery(before, now)
				if err := store.InsertDeliveries(ctx, db, []*store.Delivery{d2}); err != nil {
					t.Fatal(err)
				}
				mend := tc.break_(f)
				err := f.process(t, d2)
				if tc.wantFailed != (err == nil || errors.Is(err, asynq.SkipRetry)) {
					t.Fatalf("send: %v", err)
				}
				if st := f.state(t, d2.ID).State; (st == store.DeliveryFailed) != tc.wantFailed {
					t.Fatalf("new email %s", st)
				}
				after, _ := store.GetInvitation(ctx, db, f.tenant.ID, invID)
				if !after.ExpiresAt.Equal(before.ExpiresAt) {
					t.Fatalf("expiry moved from %v to %v though no email went out", before.ExpiresAt, after.ExpiresAt)
				}
				now = now.Add(time.Minute)
				expired("while the new email fails or waits")
				if tc.wantFailed {
					return
				}

				// Once SendGrid answers, the email goes out and announces the
				// expiry the invitation now has.
				mend()
				now = now.Add(time.Minute)
				if err := f.process(t, d2); err != nil {
					t.Fatal(err)
				}
				msgs := f.fake.Messages()
				if len(msgs) != 2 {
					t.Fatalf("%d emails, want 2", len(msgs))
				}
				sent, _ := store.GetInvitation(ctx, db, f.tenant.ID, invID)
				if want := now.Add(f.tenant.InviteTTL()); !sent.ExpiresAt.Equal(want) {
					t.Fatalf("expiry %v after the send, want %v", sent.ExpiresAt, want)
				}
				if shown := sent.ExpiresAt.UTC().Format("2 January 2006 at 15:04 UTC"); !strings.Contains(msgs[1].Text, "expires on "+shown) {
					t.Fatalf("the email does not state the expiry %s:\n%s", shown, msgs[1].Text)
				}
				if err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
					_, err := store.AcceptInvitation(ctx, tx, f.tenant.ID, tokenIn(t, msgs[1].Text), now)
					return err
				}); err != nil {
					t.Fatalf("the new link: %v", err)
				}
			})
		})
	}
}
