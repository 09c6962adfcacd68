// Package ratelimit owns the limits that must hold across every process, so
// they live in Redis: each tenant's request rate on the API, the pause
// SendGrid asks for with a 429, and the pause after SendGrid refused the
// account (a revoked key, an unverified sender), which every worker honours
// instead of each finding out for itself.
//
// Each script here touches the one key it is given, so it runs on a Redis
// Cluster as on one server; the tests run every script on both.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/onboard-dev/onboard/internal/mail"
)

// Tenants limits each tenant's API requests with a generic cell rate
// algorithm (redis_rate): PerMinute on average, Burst at once.
type Tenants struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
}

// NewTenants limits every tenant to perMinute requests a minute with bursts
// of burst.
func NewTenants(rc redis.UniversalClient, perMinute, burst int) *Tenants {
	return &Tenants{limiter: redis_rate.NewLimiter(rc), limit: redis_rate.Limit{Rate: perMinute, Period: time.Minute, Burst: burst}}
}

// Allow takes one request from the tenant's allowance.
func (t *Tenants) Allow(ctx context.Context, tenant uuid.UUID) (bool, time.Duration, error) {
	res, err := t.limiter.Allow(ctx, "onboard:api:tenant:"+tenant.String(), t.limit)
	if err != nil {
		return true, 0, fmt.Errorf("rate limit: %w", err)
	}
	return res.Allowed > 0, res.RetryAfter, nil
}

// Sender sends email (the SendGrid adapter).
type Sender interface {
	Send(ctx context.Context, m mail.Message) (mail.Result, error)
}

// SharedBackoff wraps a sender so that what one worker learns from
// SendGrid holds every worker back:
//
//   - A 429 pauses every worker until the time SendGrid named: while the
//     pause holds, Send answers a temporary error at once without calling
//     SendGrid, and the task backs off until the pause ends.
//   - A refusal of the account (mail.SendError.AccountLevel: a revoked key,
//     an unverified sender identity) pauses every worker too, for
//     RefusedPause at first, doubling with each refusal in a row up to
//     RefusedPauseMax: while it holds, Send answers the refusal at once
//     (Refused and Held) without calling SendGrid. When it ends, one worker
//     (the one that takes the probe) sends; the others wait ProbeWait. If
//     SendGrid takes that request the pause is over for everyone; if it
//     refuses again the next pause is longer. So while the configuration is
//     wrong SendGrid sees about one request per pause, however many emails
//     wait.
//
// If Redis cannot be read, sends go ahead (SendGrid's own answers are still
// the backstop).
type SharedBackoff struct {
	Next   Sender
	Client redis.UniversalClient
	Key    string // default "onboard:sendgrid:pause_until"
	Now    func() time.Time

	// RefusedKey holds the account refusal (default
	// "onboard:sendgrid:refused"); the probe lock is RefusedKey+":probe".
	RefusedKey      string
	RefusedPause    time.Duration // first pause after a refusal (default 30s)
	RefusedPauseMax time.Duration // longest pause (default 10m)
	ProbeWait       time.Duration // wait of a worker that finds the probe taken (default 5s)
}

// extend keeps the later of the stored and the new pause end (ms since the
// epoch) and expires the key with it.
var extend = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = tonumber(ARGV[1])
if new > cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', new)
end
return 1
`)

func (b *SharedBackoff) key() string {
	if b.Key != "" {
		return b.Key
	}
	return "onboard:sendgrid:pause_until"
}

func (b *SharedBackoff) now() time.Time {
	if b.Now != nil {
		return b.Now()
	}
	return time.Now()
}

// PausedUntil is when the shared pause ends (zero when there is none).
func (b *SharedBackoff) PausedUntil(ctx context.Context) (time.Time, error) {
	v, err := b.Client.Get(ctx, b.key()).Result()
	if err == redis.Nil {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms), nil
}

// Pause makes every worker wait until until (a later pause already set
// stays).
func (b *SharedBackoff) Pause(ctx context.Context, until time.Time) error {
	return extend.Run(ctx, b.Client, []string{b.key()}, until.UnixMilli()).Err()
}

// Hold is the error Send would answer now without calling SendGrid, or nil
// when a send may go ahead (no pause, or the account refusal's pause is
// over and this worker may try). The send worker asks before it does any
// work for a batch.
func (b *SharedBackoff) Hold(ctx context.Context) error {
	now := b.now()
	if until, err := b.PausedUntil(ctx); err == nil && until.After(now) {
		return &mail.SendError{
			StatusCode: 429, Temporary: true, Held: true, RetryAfter: until.Sub(now),
			Reason: "SendGrid rate limit: every worker waits until " + until.UTC().Format(time.RFC3339),
		}
	}
	r, err := b.Refusal(ctx)
	if err != nil || r == nil {
		return nil
	}
	if r.Until.After(now) {
		return r.held(r.Until.Sub(now), "every worker waits until "+r.Until.UTC().Format(time.RFC3339)+" before trying again")
	}
	// The pause is over and another worker's probe is in flight: wait for
	// its answer before claiming anything (Send takes the probe).
	if n, err := b.Client.Exists(ctx, b.refusedKey()+":probe").Result(); err == nil && n > 0 {
		return r.held(b.probeWait(), "another worker is trying SendGrid again")
	}
	return nil
}

// Send sends through Next unless a pause holds.
func (b *SharedBackoff) Send(ctx context.Context, m mail.Message) (mail.Result, error) {
	if err := b.Hold(ctx); err != nil {
		return mail.Result{}, err
	}
	now := b.now()
	r, rerr := b.Refusal(ctx)
	probing := false
	if rerr == nil && r != nil {
		// The refusal's pause is over: one worker tries, the others wait
		// for its answer.
		ok, err := b.Client.SetNX(ctx, b.refusedKey()+":probe", "1", 2*time.Minute).Result()
		if err == nil && !ok {
			return mail.Result{}, r.held(b.probeWait(), "another worker is trying SendGrid again")
		}
		probing = err == nil
	}
	res, err := b.Next.Send(ctx, m)
	bg := context.WithoutCancel(ctx)
	var se *mail.SendError
	switch {
	case errors.As(err, &se) && se.StatusCode == 429:
		wait := se.RetryAfter
		if wait <= 0 {
			wait = time.Second // SendGrid gave no reset: a short pause still spares it the herd
		}
		_ = b.Pause(bg, now.Add(wait))
	case errors.As(err, &se) && se.AccountLevel():
		if until, perr := b.refused(bg, now, se); perr == nil && until.After(now) {
			se.RetryAfter = max(se.RetryAfter, until.Sub(now))
		}
	case r != nil && (err == nil || !mail.IsTemporary(err)):
		// SendGrid answered something else than the refusal: the account
		// is mended, the pause is over for every worker.
		_ = b.Client.Del(bg, b.refusedKey()).Err()
	}
	if probing {
		_ = b.Client.Del(bg, b.refusedKey()+":probe").Err()
	}
	return res, err
}

// Refusal is SendGrid's refusal of the account as every worker knows it.
type Refusal struct {
	Until  time.Time // no worker calls SendGrid before
	Streak int       // refusals in a row
	Status int
	Reason string
}

func (r *Refusal) held(wait time.Duration, why string) error {
	return &mail.SendError{
		StatusCode: r.Status, Refused: true, Held: true, RetryAfter: wait,
		Reason: r.Reason + " (refused " + strconv.Itoa(r.Streak) + " times in a row; " + why + ")",
	}
}

func (b *SharedBackoff) refusedKey() string {
	if b.RefusedKey != "" {
		return b.RefusedKey
	}
	return "onboard:sendgrid:refused"
}

func (b *SharedBackoff) probeWait() time.Duration {
	if b.ProbeWait > 0 {
		return b.ProbeWait
	}
	return 5 * time.Second
}

// Refusal reads the account refusal (nil when there is none).
func (b *SharedBackoff) Refusal(ctx context.Context) (*Refusal, error) {
	v, err := b.Client.HGetAll(ctx, b.refusedKey()).Result()
	if err != nil || len(v) == 0 {
		return nil, err
	}
	until, _ := strconv.ParseInt(v["until"], 10, 64)
	streak, _ := strconv.Atoi(v["streak"])
	status, _ := strconv.Atoi(v["status"])
	return &Refusal{Until: time.UnixMilli(until), Streak: streak, Status: status, Reason: v["reason"]}, nil
}

// refuse records a refusal: a refusal while a pause holds (a worker that
// sent before it was set) keeps that pause; otherwise the streak grows and
// the pause doubles, up to the most. The record expires by itself some
// time after its pause, so a quiet service starts afresh.
var refuse = redis.NewScript(`
local now = tonumber(ARGV[1])
local cur = tonumber(redis.call('HGET', KEYS[1], 'until') or '0')
if cur > now then
  return cur
end
local streak = tonumber(redis.call('HGET', KEYS[1], 'streak') or '0') + 1
local pause = tonumber(ARGV[2]) * math.pow(2, streak - 1)
if pause > tonumber(ARGV[3]) then pause = tonumber(ARGV[3]) end
local untilms = now + pause
redis.call('HSET', KEYS[1], 'until', untilms, 'streak', streak, 'status', ARGV[4], 'reason', ARGV[5])
redis.call('PEXPIRE', KEYS[1], pause + 2 * tonumber(ARGV[3]))
return untilms
`)

func (b *SharedBackoff) refused(ctx context.Context, now time.Time, se *mail.SendError) (time.Time, error) {
	first, most := b.RefusedPause, b.RefusedPauseMax
	if first <= 0 {
		first = 30 * time.Second
	}
	if most <= 0 {
		most = 10 * time.Minute
	}
	ms, err := refuse.Run(ctx, b.Client, []string{b.refusedKey()}, now.UnixMilli(), first.Milliseconds(), most.Milliseconds(), se.StatusCode, se.Reason).Int64()
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(ms), nil
}
