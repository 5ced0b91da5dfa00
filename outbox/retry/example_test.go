package retry_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paypipe/paypipe/outbox/retry"
)

// A consumer's redelivery delay: the policy turns the message's delivery
// count into the NakWithDelay argument, and Next says when to stop (and
// dead-letter) instead.
func ExamplePolicy_Next() {
	p := retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Max: 10 * time.Second, MaxAttempts: 6}
	transient := errors.New("ledger unavailable")
	for delivered := 1; ; delivered++ {
		d, ok := p.Next(delivered, transient, 0)
		if !ok {
			fmt.Printf("delivery %d failed: dead-letter\n", delivered)
			break
		}
		fmt.Printf("delivery %d failed: redeliver in %s\n", delivered, d)
	}
	_, ok := p.Next(1, retry.Permanent(errors.New("malformed payload")), 0)
	fmt.Println("retry a permanent error:", ok)
	// Output:
	// delivery 1 failed: redeliver in 1s
	// delivery 2 failed: redeliver in 2s
	// delivery 3 failed: redeliver in 4s
	// delivery 4 failed: redeliver in 8s
	// delivery 5 failed: redeliver in 10s
	// delivery 6 failed: dead-letter
	// retry a permanent error: false
}

func ExamplePolicy_Do() {
	p := retry.Policy{Strategy: retry.Fixed, Initial: time.Millisecond, MaxAttempts: 3}
	calls := 0
	err := p.Do(context.Background(), func(context.Context) error {
		calls++
		return errors.New("connection refused")
	})
	fmt.Println(calls, errors.Is(err, retry.ErrGaveUp))
	// Output: 3 true
}
