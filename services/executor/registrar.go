package executor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/loop"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
)

// claimed is an attempt a registrar holds under lease. attempts is the
// row's attempt count after the claim: every write-back is guarded by it.
type claimed struct {
	checkoutID uuid.UUID
	merchantID uuid.UUID
	key        string
	req        request
	attempts   int
	createdAt  time.Time
}

// runRegistrar claims due attempts and calls the PSP for each, at most
// Concurrency at a time. It claims only as many rows as it has free call
// slots, so a claimed row never waits for a slot while its lease runs, and
// one slow PSP call does not hold back the others.
func (e *Executor) runRegistrar(ctx context.Context) {
	loop.Dispatch(ctx, loop.Options{Name: "registrar", Interval: e.cfg.PollInterval, Batch: e.cfg.BatchSize,
		Wake: e.wake, AfterPass: e.cfg.hooks.afterRegistrarPass, Log: e.log}, e.cfg.Concurrency,
		e.claimAttempts, func(ctx context.Context, a claimed) {
			e.metrics.inFlight.Inc()
			defer e.metrics.inFlight.Dec()
			e.attempt(ctx, a)
		})
}

// attempt makes one attempt at a claimed checkout: at most a lookup and a
// create, then one transaction recording the answer. If ctx ends meanwhile
// (the executor is stopping) nothing is recorded: as after a crash, the
// lease expires and another registrar repeats the call with the same key.
func (e *Executor) attempt(ctx context.Context, a claimed) {
	log := e.log.With("checkout_id", a.checkoutID, "attempt", a.attempts)
	res := e.callPSP(ctx, a)
	if ctx.Err() != nil {
		log.Info("executor stopping; attempt left to its lease", "psp_err", res.err)
		return
	}
	var outcome string
	var err error
	switch {
	case res.err == nil:
		outcome, err = e.recordRegistered(ctx, a, res.payment)
	case res.permanent:
		outcome, err = e.recordRejected(ctx, a, res.err)
	default:
		outcome, err = e.recordUnknown(ctx, a, res.err)
	}
	if err != nil {
		// Our database failed: the row stays in_flight until its lease
		// expires, then the call is repeated with the same key.
		outcome = outcomeError
		log.Error("recording the PSP's answer failed; will retry after the lease", "err", err, "psp_err", res.err)
	}
	e.metrics.attempts.WithLabelValues(outcome).Inc()
	switch outcome {
	case outcomeRegistered:
		log.Info("payment registered at the PSP", "psp_payment_id", res.payment.ID, "psp_status", res.payment.Status, "found_by_lookup", res.lookedUp)
	case outcomeRejected:
		log.Warn("PSP rejected the payment", "err", res.err)
	case outcomeUnknown:
		log.Warn("PSP outcome unknown; will retry with the same key", "err", res.err)
	case outcomeStuck:
		e.metrics.stuck.Inc()
		log.Error("PSP outcome still unknown after the give-up window: checkout is stuck, an operator must check it at the PSP (the buyer may have been charged)",
			"give_up_after", e.cfg.GiveUpAfter, "err", res.err)
	case outcomeLeaseLost:
		log.Warn("lease lost: another registrar took this checkout over; this answer is dropped", "psp_err", res.err)
	}
}

type pspResult struct {
	payment psp.Payment
	err     error
	// permanent is set only for a create the PSP refused: a failed lookup
	// proves nothing about the payment.
	permanent bool
	lookedUp  bool
}

// callPSP asks the PSP for the checkout's payment. After LookupAfter
// attempts it first looks the payment up by reference: if an earlier create
// went through, that is the answer; if the PSP has never heard of it, it
// creates it, with the same key as always.
func (e *Executor) callPSP(ctx context.Context, a claimed) pspResult {
	ref := a.checkoutID.String()
	if a.attempts > e.cfg.LookupAfter {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		p, err := e.psp.FindByReference(cctx, ref)
		cancel()
		switch {
		case err == nil:
			if err := checkPayment(p, ref); err != nil {
				return pspResult{err: err}
			}
			return pspResult{payment: p, lookedUp: true}
		case !psp.IsNotFound(err):
			return pspResult{err: fmt.Errorf("lookup by reference: %w", err)}
		}
		// Not found: the create never reached the PSP (or is still running
		// there, which the same key makes harmless). Create it.
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	p, err := e.psp.CreatePayment(cctx, psp.CreatePaymentRequest{
		IdempotencyKey:    a.key,
		AmountMinor:       a.req.AmountMinor,
		Currency:          a.req.Currency,
		MerchantReference: ref,
		Description:       "checkout " + ref,
		ReturnURL:         a.req.ReturnURL,
		Confirm:           a.req.Mode == contracts.ModeDirect,
		PaymentMethod:     a.req.PaymentMethod,
	})
	if err != nil {
		return pspResult{err: fmt.Errorf("create payment: %w", err), permanent: psp.IsPermanent(err)}
	}
	if err := checkPayment(p, ref); err != nil {
		return pspResult{err: err}
	}
	return pspResult{payment: p}
}

// errBadAnswer marks a PSP answer we refuse to record. It is treated as an
// unknown outcome: retried, and in the end left stuck for an operator,
// rather than attaching a payment to the wrong checkout.
var errBadAnswer = errors.New("executor: implausible PSP answer")

func checkPayment(p psp.Payment, ref string) error {
	if p.ID == "" {
		return fmt.Errorf("%w: payment without an id", errBadAnswer)
	}
	if p.MerchantReference != ref {
		return fmt.Errorf("%w: payment %s has merchant reference %q, want %q", errBadAnswer, p.ID, p.MerchantReference, ref)
	}
	return nil
}

// retryDelay is the wait after an unknown outcome of the attempt-th
// attempt, or the PSP's Retry-After if that is longer.
func (c Config) retryDelay(attempt int, err error) time.Duration {
	return c.Retry.Delay(attempt, err)
}

// pollPolicy spaces the resolver's polls of one payment: ResolveAfter
// doubling, capped at ResolveMaxInterval, with jitter over the upper half.
// The cancel is ResolveHorizon, on the database's clock.
func (c Config) pollPolicy() retry.Policy {
	return retry.Policy{Strategy: retry.Exponential, Initial: c.ResolveAfter, Max: c.ResolveMaxInterval, Jitter: 0.5}
}

// pollDelay is the wait before the next poll of a payment polled polls
// times (the first poll, after ResolveAfter, is polls 0).
func (c Config) pollDelay(polls int) time.Duration {
	return c.pollPolicy().Delay(polls+1, nil)
}
