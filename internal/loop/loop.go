// Package loop runs paypipe's background loops the same way everywhere:
// a pass over a bounded batch of due work, again at once while passes come
// back full, otherwise after an interval or a wake-up, with a capped
// backoff after a failed pass and a clean stop when the context ends.
//
// Two shapes cover the services' loops:
//
//   - Passes runs a function that claims and finishes one batch per call
//     (pollers, the executor's refunder);
//   - Dispatch claims only as many items as it has free worker slots and
//     runs each in its own goroutine, so a claimed item never waits for a
//     slot while its lease runs and one slow call does not hold back the
//     others (the PSP callers).
package loop

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Options configure a loop; Interval and Batch are required.
type Options struct {
	// Name appears in the loop's log lines ("registrar", "resolver"…).
	Name string
	// Interval is the wait after a pass that found less than a full batch.
	Interval time.Duration
	// Batch bounds one pass: a pass that returns Batch items is followed by
	// another at once.
	Batch int
	// Wake, if not nil, ends a wait early (a hint that work was committed).
	Wake <-chan struct{}
	// AfterPass, if not nil, runs after every pass (tests await it).
	AfterPass func()
	Log       *slog.Logger
}

// ErrDelay is the wait after a failed pass, given the previous one: it
// doubles from 100 ms to at most 5 s, and a good pass resets it to zero.
func ErrDelay(prev time.Duration) time.Duration {
	return min(max(2*prev, 100*time.Millisecond), 5*time.Second)
}

// Passes calls pass until ctx ends. pass returns how many items it handled;
// Batch of them means more may be due.
func Passes(ctx context.Context, o Options, pass func(context.Context) (int, error)) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var errDelay time.Duration
	for {
		n, err := pass(ctx)
		if ctx.Err() != nil {
			return
		}
		if o.AfterPass != nil {
			o.AfterPass()
		}
		wait := o.Interval
		switch {
		case err != nil:
			errDelay = ErrDelay(errDelay)
			wait = errDelay
			o.Log.Warn(o.Name+" pass failed", "err", err, "retry_in", wait)
		case n >= o.Batch:
			errDelay = 0
			continue // more may be due
		default:
			errDelay = 0
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-o.Wake:
		case <-timer.C:
		}
	}
}

// Dispatch claims up to min(free slots, Batch) items with claim and runs
// work on each in its own goroutine, at most slots at a time, until ctx
// ends; it returns once every started work has returned. A finished work
// frees its slot and ends the wait, like Wake.
func Dispatch[T any](ctx context.Context, o Options, slots int, claim func(context.Context, int) ([]T, error), work func(context.Context, T)) {
	busy := make(chan struct{}, slots)
	freed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var errDelay time.Duration
	for {
		wait := o.Interval
		if free := cap(busy) - len(busy); free > 0 {
			limit := min(free, o.Batch)
			items, err := claim(ctx, limit)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				errDelay = ErrDelay(errDelay)
				wait = errDelay
				o.Log.Warn(o.Name+" claim failed", "err", err, "retry_in", wait)
			} else {
				errDelay = 0
			}
			for _, it := range items {
				busy <- struct{}{} // never blocks: len(items) ≤ free
				wg.Go(func() {
					defer func() {
						<-busy
						select {
						case freed <- struct{}{}:
						default:
						}
					}()
					work(ctx, it)
				})
			}
			if o.AfterPass != nil {
				o.AfterPass()
			}
			if err == nil && len(items) == limit && len(busy) < cap(busy) {
				continue
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-o.Wake:
		case <-freed:
		case <-timer.C:
		}
	}
}
