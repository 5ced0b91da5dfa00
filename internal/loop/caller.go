package loop

import (
	"errors"
	"fmt"
	"time"

	"github.com/paypipe/paypipe/outbox/retry"
)

// Caller is the settings of a Dispatch loop that calls the PSP outside
// any transaction under a lease (the executor's registrar, the payout
// sender), as CheckCaller checks them.
type Caller struct {
	BatchSize, MaxBatchSize      int
	Concurrency, MaxConcurrency  int
	CallTimeout, Lease           time.Duration
	Retry                        retry.Policy
	ResolveAfter, ResolveHorizon time.Duration
	// Item names what is retried ("checkout", "payout") in messages.
	Item string
}

// CheckCaller returns what is wrong with c: bounds exceeded; a lease too
// short to hold a look-up and a create (another replica would call the PSP
// for the same item meanwhile); a retry policy that gives up by itself
// (the give-up window must decide, and it marks the item stuck, never
// failed); a resolver that starts after it has stopped.
func CheckCaller(c Caller) []error {
	var errs []error
	if c.BatchSize > c.MaxBatchSize {
		errs = append(errs, fmt.Errorf("BatchSize %d > %d", c.BatchSize, c.MaxBatchSize))
	}
	if c.Concurrency > c.MaxConcurrency {
		errs = append(errs, fmt.Errorf("Concurrency %d > %d", c.Concurrency, c.MaxConcurrency))
	}
	if c.Lease <= 2*c.CallTimeout {
		errs = append(errs, fmt.Errorf("Lease %s must exceed 2×CallTimeout (%s): a lookup and a create must fit in one lease", c.Lease, 2*c.CallTimeout))
	}
	if err := c.Retry.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("Retry: %w", err))
	}
	if c.Retry.MaxAttempts != 0 || c.Retry.MaxElapsed != 0 {
		errs = append(errs, errors.New("Retry must not give up (MaxAttempts, MaxElapsed): GiveUpAfter bounds the retries, and then marks the "+c.Item+" stuck"))
	}
	if c.ResolveAfter > c.ResolveHorizon {
		errs = append(errs, fmt.Errorf("ResolveAfter %s > ResolveHorizon %s", c.ResolveAfter, c.ResolveHorizon))
	}
	return errs
}
