package semaphore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/onboard-dev/onboard/internal/semaphore"
	"github.com/onboard-dev/onboard/internal/testenv"
)

// On one server and on a cluster, as every test here.
func TestBoundHoldsAcrossClients(t *testing.T) {
	t.Parallel()
	testenv.EachRedis(t, testBoundHoldsAcrossClients)
}

func testBoundHoldsAcrossClients(t *testing.T, connect func() redis.UniversalClient) {
	const limit = 3
	var inFlight, peak atomic.Int32
	var wg sync.WaitGroup
	// Two "processes", each with its own Redis client and many goroutines.
	for range 2 {
		sem := &semaphore.Semaphore{Client: connect(), Key: "test:sem", Limit: limit, Lease: 10 * time.Second}
		for range 10 {
			wg.Go(func() {
				release, err := sem.Acquire(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				n := inFlight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				time.Sleep(5 * time.Millisecond) // hold the slot while others contend
				inFlight.Add(-1)
				release()
			})
		}
	}
	wg.Wait()
	if p := peak.Load(); p > limit || p < 2 {
		t.Fatalf("peak holders %d, want at most %d (and contention to have happened)", p, limit)
	}
}

func TestDeadHolderFreesSlotAfterLease(t *testing.T) {
	t.Parallel()
	testenv.EachRedis(t, testDeadHolderFreesSlotAfterLease)
}

func testDeadHolderFreesSlotAfterLease(t *testing.T, connect func() redis.UniversalClient) {
	c := connect()
	sem := &semaphore.Semaphore{Client: c, Key: "test:lease", Limit: 1, Lease: 200 * time.Millisecond}
	if _, err := sem.Acquire(context.Background()); err != nil { // never released: the holder "died"
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	release, err := sem.Acquire(ctx)
	if err != nil {
		t.Fatalf("slot of a dead holder not freed by its lease: %v", err)
	}
	release()
	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	sem.Lease = time.Minute
	if _, err := sem.Acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := sem.Acquire(short); err == nil {
		t.Fatal("acquired a slot beyond the limit")
	}
}
