// Package ratelimit owns the limits that must hold across every process, so
// they live in Redis: each tenant's request rate on the API, and the pause
// SendGrid asks for with a 429, which every worker honours instead of each
// finding out for itself.
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

// SharedBackoff wraps a sender so that a 429 seen by one worker pauses
// every worker until the time SendGrid named: while the pause holds, Send
// answers a temporary error at once without calling SendGrid, and the task
// backs off until the pause ends. If Redis cannot be read, sends go ahead
// (SendGrid's own 429 is still the backstop).
type SharedBackoff struct {
	Next   Sender
	Client redis.UniversalClient
	Key    string // default "onboard:sendgrid:pause_until"
	Now    func() time.Time
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

// Send sends through Next unless a pause holds.
func (b *SharedBackoff) Send(ctx context.Context, m mail.Message) (mail.Result, error) {
	now := b.now()
	if until, err := b.PausedUntil(ctx); err == nil && until.After(now) {
		return mail.Result{}, &mail.SendError{
			StatusCode: 429, Temporary: true, RetryAfter: until.Sub(now),
			Reason: "SendGrid rate limit: every worker waits until " + until.UTC().Format(time.RFC3339),
		}
	}
	res, err := b.Next.Send(ctx, m)
	var se *mail.SendError
	if errors.As(err, &se) && se.StatusCode == 429 {
		wait := se.RetryAfter
		if wait <= 0 {
			wait = time.Second // SendGrid gave no reset: a short pause still spares it the herd
		}
		_ = b.Pause(context.WithoutCancel(ctx), now.Add(wait))
	}
	return res, err
}
