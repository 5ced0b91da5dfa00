package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Strategy is how the delay grows with the attempt number.
type Strategy int

const (
	// Immediate retries at once. Only for errors that a retry is known to
	// clear at once (a serialization failure); otherwise it hammers.
	Immediate Strategy = iota
	// Fixed waits Initial between attempts.
	Fixed
	// Incremental waits Initial, Initial+Step, Initial+2·Step, …
	Incremental
	// Exponential waits Initial·Multiplier^(n−1): the default for anything
	// that will not clear quickly (a network, a remote service).
	Exponential
)

func (s Strategy) String() string {
	switch s {
	case Immediate:
		return "immediate"
	case Fixed:
		return "fixed"
	case Incremental:
		return "incremental"
	case Exponential:
		return "exponential"
	}
	return fmt.Sprintf("strategy(%d)", int(s))
}

// Policy is a retry policy; see the package documentation for the formulas.
// The zero value retries immediately, forever: always set MaxAttempts or
// MaxElapsed where giving up is possible. Validate reports a policy that
// makes no sense; Delay and Next never fail, they clamp.
type Policy struct {
	Strategy Strategy
	// Initial is the first delay (Fixed, Incremental, Exponential).
	Initial time.Duration
	// Step is added per attempt (Incremental).
	Step time.Duration
	// Multiplier grows the delay per attempt (Exponential): default 2.
	Multiplier float64
	// Max caps every delay except a server's Retry-After (0: no cap).
	Max time.Duration
	// Jitter (0 to 1) takes a random fraction of up to Jitter off each
	// delay. Default 0.
	Jitter float64
	// MaxAttempts gives up after this many attempts (0: unlimited).
	MaxAttempts int
	// MaxElapsed gives up when the next attempt would start more than
	// MaxElapsed after the first one (0: unlimited).
	MaxElapsed time.Duration
	// MaxRetryAfter caps a server's Retry-After: default 1 h.
	MaxRetryAfter time.Duration
}

// DefaultMaxRetryAfter is the cap on a server's Retry-After when
// Policy.MaxRetryAfter is zero.
const DefaultMaxRetryAfter = time.Hour

// maxMultiplier bounds Multiplier: beyond it the second delay is already
// the cap, and a typo (20 for 2.0) should be caught, not obeyed.
const maxMultiplier = 10

// ErrGaveUp is returned (wrapped, with the last error) by Do when the
// policy cancels or ctx ends before a retry.
var ErrGaveUp = errors.New("retry: gave up")

// Validate reports the first of: an unknown strategy, a negative duration
// or count, Jitter outside [0, 1], Multiplier outside {0} ∪ [1, 10], delays
// set on an Immediate policy (a forgotten Strategy), an exponential policy
// without Initial (it would never wait), or Max below Initial.
func (p Policy) Validate() error {
	switch {
	case p.Strategy < Immediate || p.Strategy > Exponential:
		return fmt.Errorf("retry: unknown strategy %d", int(p.Strategy))
	case p.Initial < 0 || p.Step < 0 || p.Max < 0 || p.MaxElapsed < 0 || p.MaxRetryAfter < 0:
		return errors.New("retry: Initial, Step, Max, MaxElapsed and MaxRetryAfter must not be negative")
	case p.MaxAttempts < 0:
		return fmt.Errorf("retry: MaxAttempts %d is negative", p.MaxAttempts)
	case !(p.Jitter >= 0 && p.Jitter <= 1): // also catches NaN
		return fmt.Errorf("retry: Jitter %v: want 0 to 1", p.Jitter)
	case p.Multiplier != 0 && !(p.Multiplier >= 1 && p.Multiplier <= maxMultiplier):
		return fmt.Errorf("retry: Multiplier %v: want 1 to %d (0 for 2)", p.Multiplier, maxMultiplier)
	case p.Strategy == Immediate && (p.Initial != 0 || p.Step != 0 || p.Multiplier != 0 || p.Max != 0):
		// Immediate is the zero Strategy: delays set without a strategy
		// would silently be ignored, and the loop would hammer.
		return errors.New("retry: Initial, Step, Multiplier or Max set on an Immediate policy: set Strategy")
	case p.Strategy == Exponential && p.Initial == 0:
		return errors.New("retry: an exponential policy needs Initial > 0")
	case p.Max > 0 && p.Max < p.Initial:
		return fmt.Errorf("retry: Max %s < Initial %s", p.Max, p.Initial)
	}
	return nil
}

// Delay returns the wait before attempt n+1 after attempt n (n ≥ 1; smaller
// counts as 1) failed with err (nil is fine: no Retry-After). It ignores
// MaxAttempts and MaxElapsed; Next applies them. This is what a consumer
// passes to NakWithDelay, with n the message's delivery count.
func (p Policy) Delay(n int, err error) time.Duration {
	var u float64
	if p.Jitter > 0 {
		u = rand.Float64()
	}
	return p.delay(n, err, u)
}

// delay is Delay with the jitter's random draw u ∈ [0, 1) given, so tests
// can pin the extremes.
func (p Policy) delay(n int, err error, u float64) time.Duration {
	d := p.base(max(n, 1))
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	if j := min(p.Jitter, 1); j > 0 && d > 0 {
		d = saturate(float64(d) * (1 - j*u))
	}
	if ra, ok := RetryAfter(err); ok {
		limit := p.MaxRetryAfter
		if limit <= 0 {
			limit = DefaultMaxRetryAfter
		}
		d = max(d, min(ra, limit))
	}
	return max(d, 0)
}

// base is the strategy's delay before Max and jitter, saturating at the
// largest Duration.
func (p Policy) base(n int) time.Duration {
	initial := max(p.Initial, 0) // Validate rejects negatives; clamp anyway
	switch p.Strategy {
	case Fixed:
		return initial
	case Incremental:
		if p.Step <= 0 {
			return initial
		}
		if k := int64(n - 1); k > (math.MaxInt64-int64(initial))/int64(p.Step) {
			return math.MaxInt64
		}
		return initial + time.Duration(n-1)*p.Step
	case Exponential:
		m := p.Multiplier
		if m <= 0 {
			m = 2
		}
		return saturate(float64(initial) * math.Pow(m, float64(n-1)))
	}
	return 0 // Immediate, and unknown strategies (Validate rejects them)
}

// saturate converts f to a Duration, clamping instead of overflowing (a
// float64 ≥ 2^63 converts to an arbitrary, usually negative, integer).
func saturate(f float64) time.Duration {
	switch {
	case math.IsNaN(f) || f <= 0:
		return 0
	case f >= math.MaxInt64: // float64(MaxInt64) is 2^63, itself too big
		return math.MaxInt64
	}
	return time.Duration(f)
}

// Next decides after attempt n (≥ 1) failed with err, elapsed after the
// first attempt started: retry after delay, or give up (ok false) because
// the error is permanent or a cancel limit is reached.
func (p Policy) Next(n int, err error, elapsed time.Duration) (delay time.Duration, ok bool) {
	if Classify(err) == ClassPermanent {
		return 0, false
	}
	if p.MaxAttempts > 0 && n >= p.MaxAttempts {
		return 0, false
	}
	d := p.Delay(n, err)
	if p.MaxElapsed > 0 && d > p.MaxElapsed-max(elapsed, 0) {
		return 0, false
	}
	return d, true
}

// Do runs fn until it succeeds, the policy gives up, or ctx ends. It returns
// nil; fn's error itself when it is permanent; or ErrGaveUp wrapping the
// last error (and ctx's error, if ctx ended). Without MaxAttempts or
// MaxElapsed, ctx is the only bound: give it a deadline.
func (p Policy) Do(ctx context.Context, fn func(ctx context.Context) error) error {
	start := time.Now()
	for n := 1; ; n++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if Classify(err) == ClassPermanent {
			return err
		}
		d, ok := p.Next(n, err, time.Since(start))
		if !ok {
			return fmt.Errorf("%w after %d attempts: %w", ErrGaveUp, n, err)
		}
		if cerr := wait(ctx, d); cerr != nil {
			return fmt.Errorf("%w after %d attempts: %w (last error: %w)", ErrGaveUp, n, cerr, err)
		}
	}
}

// wait sleeps d or until ctx ends. It checks ctx first, so a zero delay
// (Immediate) still stops promptly when ctx is done.
func wait(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Class is an error's retry class.
type Class int

const (
	// ClassTransient errors may clear: retry them.
	ClassTransient Class = iota
	// ClassPermanent errors cannot be cured by retrying: give up (a
	// consumer dead-letters the message).
	ClassPermanent
)

func (c Class) String() string {
	if c == ClassPermanent {
		return "permanent"
	}
	return "transient"
}

type permanent struct{ err error }

func (p permanent) Error() string   { return p.err.Error() }
func (p permanent) Unwrap() error   { return p.err }
func (p permanent) Permanent() bool { return true }

// Permanent marks err as not worth retrying (a malformed message, a refusal
// that a retry cannot change). errors.Is/As still see the wrapped error.
// Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanent{err}
}

// Classify is the one place errors are classified; see the package
// documentation. A nil error is transient (there is nothing to give up on).
// Every error in the chain is asked, joined ones included, so a permanent
// cause is not hidden by a wrapper whose Permanent() says false.
func Classify(err error) Class {
	if err == nil {
		return ClassTransient
	}
	if errors.Is(err, context.Canceled) {
		return ClassPermanent
	}
	perm := walk(err, func(e error) bool {
		p, ok := e.(interface{ Permanent() bool })
		return ok && p.Permanent()
	})
	if perm {
		return ClassPermanent
	}
	return ClassTransient
}

// RetryAfterer is an error that carries a server's Retry-After.
type RetryAfterer interface{ RetryAfter() time.Duration }

// RetryAfter returns the first positive Retry-After in err's chain.
func RetryAfter(err error) (time.Duration, bool) {
	var d time.Duration
	found := walk(err, func(e error) bool {
		if ra, ok := e.(RetryAfterer); ok {
			d = ra.RetryAfter()
		}
		return d > 0
	})
	return d, found
}

// walk visits err's tree depth first, as errors.As does, and reports
// whether match held for any node.
func walk(err error, match func(error) bool) bool {
	for err != nil {
		if match(err) {
			return true
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			err = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e, match) {
					return true
				}
			}
			return false
		default:
			return false
		}
	}
	return false
}
