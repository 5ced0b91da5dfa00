// Package retry is paypipe's one retry policy, used everywhere a failure is
// retried: the relay's per-row backoff, consumers' redelivery delays
// (NakWithDelay(policy.Delay(NumDelivered, err))), the executor's PSP calls
// and the PSP simulator's webhook sender. A Policy decides, from the attempt
// number, the error and the time already spent, whether to try again and
// after how long. It holds no state: the caller keeps the attempt count
// (in a row, in a message's delivery count), so a policy survives restarts
// and is shared freely between goroutines.
//
// # Strategies
//
// The delay after the n-th failed attempt (n ≥ 1) is
//
//	Immediate    0
//	Fixed        Initial
//	Incremental  Initial + (n−1)·Step
//	Exponential  Initial · Multiplier^(n−1)   (Multiplier default 2)
//
// capped at Max. Arithmetic saturates: attempt numbers in the billions give
// Max (or the largest Duration without a Max), never an overflow.
//
// Jitter takes a uniformly random fraction of up to Jitter off each delay
// (Jitter 0.2: a 10 s delay becomes 8–10 s), so that clients failing
// together do not retry together. Jitter only ever shortens: Max is a true
// ceiling and a schedule's worst case is its unjittered one.
//
// # Cancel
//
// MaxAttempts and MaxElapsed, on any strategy, make Next give up: after the
// MaxAttempts-th attempt, or when the next attempt would start after
// MaxElapsed. A zero policy never gives up; where giving up is possible
// (not the relay, which must never drop a row) set one of them.
//
// # Retry-After
//
// An error implementing RetryAfterer (psp.Error for a 429) carries the wait
// a server asked for. The delay is never shorter than it, up to
// MaxRetryAfter (default 1 h, so a malformed header cannot park work for
// days); jitter and Max do not shorten it.
//
// # Classification
//
// Classify is the one place errors are sorted into transient and permanent.
// Permanent: anything in the error chain with a Permanent() bool method
// that returns true (Permanent(err), psp.Error for a refusing 4xx), and
// context.Canceled (whoever cancelled does not want the work). Everything
// else is transient, including context.DeadlineExceeded: a timeout is an
// unknown outcome, not a refusal. Next and Do never retry a permanent error.
package retry
