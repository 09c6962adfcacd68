package ratelimit_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/onboard-dev/onboard/internal/mail"
	"github.com/onboard-dev/onboard/internal/ratelimit"
	"github.com/onboard-dev/onboard/internal/testenv"
)

// Two API processes (two clients) share one tenant's allowance; another
// tenant's is its own. On one server and on a cluster, as every test here.
func TestTenantLimitHoldsAcrossProcesses(t *testing.T) {
	t.Parallel()
	testenv.EachRedis(t, testTenantLimitHoldsAcrossProcesses)
}

func testTenantLimitHoldsAcrossProcesses(t *testing.T, connect func() redis.UniversalClient) {
	api1 := ratelimit.NewTenants(connect(), 60, 3)
	api2 := ratelimit.NewTenants(connect(), 60, 3)
	ctx := context.Background()
	a, b := uuid.New(), uuid.New()
	var allowed int
	var retry time.Duration
	for i := range 6 {
		l := api1
		if i%2 == 1 {
			l = api2
		}
		ok, after, err := l.Allow(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			allowed++
		} else {
			retry = after
		}
	}
	if allowed != 3 {
		t.Fatalf("tenant A: %d of 6 allowed at once, want the burst of 3", allowed)
	}
	if retry <= 0 || retry > time.Second+100*time.Millisecond {
		t.Fatalf("retry after %s, want about a second (60 a minute)", retry)
	}
	if ok, _, err := api2.Allow(ctx, b); !ok || err != nil {
		t.Fatalf("tenant B is limited by A's use: %v %v", ok, err)
	}
}

func TestTenantLimitFailsOpenWithoutRedis(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: testenv.FreeAddr(t), DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	ok, _, err := ratelimit.NewTenants(c, 60, 1).Allow(context.Background(), uuid.New())
	if !ok || err == nil {
		t.Fatalf("with Redis down: ok=%v err=%v, want allowed with the error", ok, err)
	}
}

type countingSender struct {
	calls atomic.Int32
	err   error
}

func (s *countingSender) Send(context.Context, mail.Message) (mail.Result, error) {
	s.calls.Add(1)
	return mail.Result{MessageID: "m"}, s.err
}

// A 429 seen by one worker holds every worker off SendGrid until the reset
// SendGrid named.
func TestSendGrid429PausesEveryWorker(t *testing.T) {
	t.Parallel()
	testenv.EachRedis(t, testSendGrid429PausesEveryWorker)
}

func testSendGrid429PausesEveryWorker(t *testing.T, connect func() redis.UniversalClient) {
	// Redis expires the pause by its own clock, so the test's starts now.
	now := time.Now().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	limited := &countingSender{err: &mail.SendError{StatusCode: 429, Temporary: true, RetryAfter: 30 * time.Second, Reason: "too many requests"}}
	fine := &countingSender{}
	worker1 := &ratelimit.SharedBackoff{Next: limited, Client: connect(), Now: clock}
	worker2 := &ratelimit.SharedBackoff{Next: fine, Client: connect(), Now: clock}
	ctx := context.Background()

	if _, err := worker1.Send(ctx, mail.Message{}); !mail.IsTemporary(err) {
		t.Fatalf("worker 1: %v", err)
	}
	_, err := worker2.Send(ctx, mail.Message{})
	after, ok := mail.RetryAfter(err)
	if !mail.IsTemporary(err) || !ok || after != 30*time.Second {
		t.Fatalf("worker 2 during the pause: %v (retry after %s), want a temporary error for the 30s left", err, after)
	}
	if fine.calls.Load() != 0 {
		t.Fatal("worker 2 called SendGrid during the pause")
	}
	// A shorter pause does not cut the longer one short.
	if err := worker2.Pause(ctx, now.Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	if until, _ := worker2.PausedUntil(ctx); !until.Equal(now.Add(30 * time.Second)) {
		t.Fatalf("pause until %s, want %s", until, now.Add(30*time.Second))
	}
	now = now.Add(31 * time.Second)
	if _, err := worker2.Send(ctx, mail.Message{}); err != nil || fine.calls.Load() != 1 {
		t.Fatalf("after the pause: %v, %d calls", err, fine.calls.Load())
	}
}

// switchSender answers with whatever err holds now.
type switchSender struct {
	calls atomic.Int32
	err   atomic.Pointer[mail.SendError]
}

func (s *switchSender) Send(context.Context, mail.Message) (mail.Result, error) {
	s.calls.Add(1)
	if e := s.err.Load(); e != nil {
		cp := *e
		return mail.Result{}, &cp
	}
	return mail.Result{MessageID: "m"}, nil
}

// A refusal of the account (an unverified sender) seen by one worker holds
// every worker off SendGrid; when the pause ends one worker tries again,
// the pause doubles while SendGrid still refuses, and the first accepted
// request ends it for everyone.
func TestSendGridRefusalPausesEveryWorker(t *testing.T) {
	t.Parallel()
	testenv.EachRedis(t, testSendGridRefusalPausesEveryWorker)
}

func testSendGridRefusalPausesEveryWorker(t *testing.T, connect func() redis.UniversalClient) {
	now := time.Now().Truncate(time.Millisecond)
	clock := func() time.Time { return now }
	sg := &switchSender{}
	sg.err.Store(&mail.SendError{StatusCode: 403, Refused: true, Reason: "from: The from address does not match a verified Sender Identity."})
	rc := connect()
	w1 := &ratelimit.SharedBackoff{Next: sg, Client: rc, Now: clock}
	w2 := &ratelimit.SharedBackoff{Next: sg, Client: connect(), Now: clock}
	ctx := context.Background()

	_, err := w1.Send(ctx, mail.Message{})
	if after, _ := mail.RetryAfter(err); !mail.IsRefused(err) || mail.IsHeld(err) || after != 30*time.Second {
		t.Fatalf("first refusal: %v, retry after %s", err, after)
	}
	for _, w := range []*ratelimit.SharedBackoff{w1, w2} {
		if err := w.Hold(ctx); !mail.IsRefused(err) || !mail.IsHeld(err) || !strings.Contains(err.Error(), "verified Sender Identity") {
			t.Fatalf("hold during the pause: %v", err)
		}
		if _, err := w.Send(ctx, mail.Message{}); !mail.IsHeld(err) {
			t.Fatalf("send during the pause: %v", err)
		}
	}
	if n := sg.calls.Load(); n != 1 {
		t.Fatalf("%d calls to SendGrid during the pause, want the first only", n)
	}

	// The pause is over: one worker tries; another that finds the probe
	// taken waits for its answer.
	now = now.Add(31 * time.Second)
	if err := w2.Hold(ctx); err != nil {
		t.Fatalf("hold after the pause: %v", err)
	}
	if err := rc.Set(ctx, "onboard:sendgrid:refused:probe", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Send(ctx, mail.Message{}); !mail.IsHeld(err) || sg.calls.Load() != 1 {
		t.Fatalf("probe taken: %v, %d calls", err, sg.calls.Load())
	}
	rc.Del(ctx, "onboard:sendgrid:refused:probe")
	_, err = w1.Send(ctx, mail.Message{})
	if after, _ := mail.RetryAfter(err); !mail.IsRefused(err) || after != time.Minute || sg.calls.Load() != 2 {
		t.Fatalf("second refusal: %v, retry after %s, %d calls; want a pause of a minute", err, after, sg.calls.Load())
	}
	if rf, _ := w2.Refusal(ctx); rf == nil || rf.Streak != 2 || rf.Status != 403 {
		t.Fatalf("refusal %+v", rf)
	}

	// Mended: the next try goes through and every worker sends again.
	sg.err.Store(nil)
	now = now.Add(61 * time.Second)
	if _, err := w2.Send(ctx, mail.Message{}); err != nil {
		t.Fatalf("after the fix: %v", err)
	}
	if rf, _ := w1.Refusal(ctx); rf != nil {
		t.Fatalf("refusal still recorded: %+v", rf)
	}
	if err := w1.Hold(ctx); err != nil {
		t.Fatalf("hold after the fix: %v", err)
	}
	if _, err := w1.Send(ctx, mail.Message{}); err != nil || sg.calls.Load() != 4 {
		t.Fatalf("after the fix: %v, %d calls", err, sg.calls.Load())
	}
}
