package loop

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paypipe/paypipe/outbox/retry"
)

var quiet = slog.New(slog.DiscardHandler)

func TestErrDelayDoublesWithinBounds(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 8 {
		d = ErrDelay(d)
		got = append(got, d)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
		1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
}

// A full pass is followed by another at once; a short one waits for the
// interval (an hour here) or a wake-up.
func TestPassesRunAgainWhileFullThenWaitForWake(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wake := make(chan struct{})
	after := make(chan int, 10)
	var calls atomic.Int32
	results := []int{5, 5, 2, 0}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Passes(ctx, Options{Name: "t", Interval: time.Hour, Batch: 5, Wake: wake, Log: quiet,
			AfterPass: func() { after <- int(calls.Load()) }},
			func(context.Context) (int, error) {
				n := calls.Add(1)
				return results[min(int(n)-1, len(results)-1)], nil
			})
	}()
	for want := 1; want <= 3; want++ {
		if got := <-after; got != want {
			t.Fatalf("pass %d reported after %d calls", want, got)
		}
	}
	select {
	case n := <-after:
		t.Fatalf("a fourth pass (%d) ran without a wake-up or the interval", n)
	default:
	}
	wake <- struct{}{}
	if got := <-after; got != 4 {
		t.Fatalf("after the wake-up: %d calls, want 4", got)
	}
	cancel()
	<-done
}

// A failing pass is retried after ErrDelay, not at once and not after
// the interval.
func TestPassesBackOffAfterAnError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var times []time.Time
	var mu sync.Mutex
	second := make(chan struct{})
	go Passes(ctx, Options{Name: "t", Interval: time.Hour, Batch: 1, Log: quiet}, func(context.Context) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		times = append(times, time.Now())
		if len(times) == 2 {
			close(second)
		}
		return 0, errors.New("database down")
	})
	<-second
	mu.Lock()
	gap := times[1].Sub(times[0])
	mu.Unlock()
	if gap < 100*time.Millisecond || gap > 30*time.Second {
		t.Fatalf("retry after %s, want the first ErrDelay (100ms)", gap)
	}
}

// Dispatch never runs more than slots works at once and claims only as
// many items as it has free slots.
func TestDispatchBoundsConcurrencyAndClaims(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	const slots = 3
	var running, peak atomic.Int32
	release := make(chan struct{})
	var claimed atomic.Int32
	var mu sync.Mutex
	var asks []int
	started := make(chan struct{}, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		Dispatch(ctx, Options{Name: "t", Interval: time.Hour, Batch: 10, Log: quiet}, slots,
			func(_ context.Context, n int) ([]int, error) {
				mu.Lock()
				asks = append(asks, n)
				mu.Unlock()
				if claimed.Load() >= 7 {
					return nil, nil
				}
				items := make([]int, min(n, 7-int(claimed.Load())))
				claimed.Add(int32(len(items)))
				return items, nil
			},
			func(ctx context.Context, _ int) {
				if r := running.Add(1); r > peak.Load() {
					peak.Store(r)
				}
				started <- struct{}{}
				<-release
				running.Add(-1)
			})
	}()
	for range 7 {
		<-started
		release <- struct{}{}
	}
	cancel()
	close(release)
	<-done
	if p := peak.Load(); p > slots {
		t.Fatalf("%d works at once, at most %d allowed", p, slots)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range asks {
		if n < 1 || n > slots {
			t.Fatalf("claimed %v items at a time; never more than the free slots (%d)", asks, slots)
		}
	}
	if claimed.Load() != 7 {
		t.Fatalf("%d items worked, want 7", claimed.Load())
	}
}

func TestCheckCallerNamesEachBrokenRule(t *testing.T) {
	ok := Caller{BatchSize: 10, MaxBatchSize: 100, Concurrency: 4, MaxConcurrency: 8, CallTimeout: 10 * time.Second,
		Lease: time.Minute, Retry: retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Max: time.Minute},
		ResolveAfter: time.Minute, ResolveHorizon: time.Hour, Item: "payout"}
	if errs := CheckCaller(ok); len(errs) != 0 {
		t.Fatalf("valid settings refused: %v", errs)
	}
	for _, tc := range []struct {
		break_ func(*Caller)
		want   string
	}{
		{func(c *Caller) { c.BatchSize = 101 }, "BatchSize 101 > 100"},
		{func(c *Caller) { c.Concurrency = 9 }, "Concurrency 9 > 8"},
		{func(c *Caller) { c.Lease = 20 * time.Second }, "must exceed 2×CallTimeout"},
		{func(c *Caller) { c.Retry.MaxAttempts = 5 }, "marks the payout stuck"},
		{func(c *Caller) { c.ResolveAfter = 2 * time.Hour }, "ResolveAfter 2h0m0s > ResolveHorizon"},
	} {
		c := ok
		tc.break_(&c)
		errs := CheckCaller(c)
		if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
			t.Errorf("want one error containing %q, got %v", tc.want, errs)
		}
	}
}
