// Package semaphore is a counting semaphore in Redis: it bounds how many
// holders run at once across every process that shares the Redis (the ERP
// concurrency bound holds whatever the number of workers). Each slot is a
// lease, so a holder that dies frees its slot when the lease runs out. The
// semaphore is one key, so it works on a Redis Cluster as on one server.
package semaphore

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
)

// acquire drops expired leases and takes a slot if one is free. Time comes
// from Redis itself so that workers' clocks do not matter.
var acquire = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  return 1
end
return 0
`)

// Semaphore bounds concurrent holders of one key.
type Semaphore struct {
	Client redis.UniversalClient
	Key    string
	Limit  int
	// Lease is how long a slot is held at most; longer than any holder's
	// work (the ERP client's timeout).
	Lease time.Duration
}

// Acquire waits for a free slot (polling with jittered backoff) until ctx
// ends, and returns the function that frees it.
func (s *Semaphore) Acquire(ctx context.Context) (release func(), err error) {
	var b [12]byte
	_, _ = crand.Read(b[:])
	token := hex.EncodeToString(b[:])
	wait := 5 * time.Millisecond
	for {
		ok, err := acquire.Run(ctx, s.Client, []string{s.Key}, s.Limit, s.Lease.Milliseconds(), token).Int()
		if err != nil {
			return nil, fmt.Errorf("semaphore %s: %w", s.Key, err)
		}
		if ok == 1 {
			return func() { s.Client.ZRem(context.WithoutCancel(ctx), s.Key, token) }, nil
		}
		t := time.NewTimer(wait + time.Duration(rand.Int64N(int64(wait))))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("semaphore %s: %w", s.Key, ctx.Err())
		case <-t.C:
		}
		wait = min(wait*2, 200*time.Millisecond)
	}
}
