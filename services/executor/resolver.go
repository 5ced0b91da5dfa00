package executor

import (
	"context"
	"fmt"
	"sync"

	"github.com/paypipe/paypipe/internal/loop"
)

// runResolver polls the PSP for registered payments whose status is not
// final, because webhooks can be lost (RELIABILITY F8). Each pass claims up
// to BatchSize due payments and polls them, at most Concurrency at a time.
func (e *Executor) runResolver(ctx context.Context) {
	loop.Passes(ctx, loop.Options{Name: "resolver", Interval: e.cfg.ResolvePollInterval, Batch: e.cfg.BatchSize,
		AfterPass: e.cfg.hooks.afterResolverPass, Log: e.log}, e.resolveOnce)
}

// resolveOnce claims one batch of due polls and polls each.
func (e *Executor) resolveOnce(ctx context.Context) (int, error) {
	due, err := e.claimPolls(ctx, e.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	sem := make(chan struct{}, e.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, pl := range due {
		sem <- struct{}{}
		e.metrics.inFlight.Inc()
		wg.Go(func() {
			defer func() { e.metrics.inFlight.Dec(); <-sem }()
			e.poll(ctx, pl)
		})
	}
	wg.Wait()
	return len(due), nil
}

// poll asks the PSP for one payment and records the answer. If ctx ends
// meanwhile nothing is recorded; the claim's lease makes the payment due
// again.
func (e *Executor) poll(ctx context.Context, pl polled) {
	log := e.log.With("checkout_id", pl.checkoutID, "psp_payment_id", pl.pspPaymentID, "poll", pl.polls)
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	p, err := e.psp.GetPayment(cctx, pl.pspPaymentID)
	cancel()
	if ctx.Err() != nil {
		return
	}
	if err == nil && p.ID != pl.pspPaymentID {
		err = fmt.Errorf("%w: asked for payment %s, got %s", errBadAnswer, pl.pspPaymentID, p.ID)
	}
	if err != nil {
		err = fmt.Errorf("get payment: %w", err)
	}
	result, rerr := e.recordPoll(ctx, pl, p, err)
	if rerr != nil {
		result = pollError
		log.Error("recording a poll failed; the payment will be polled again", "err", rerr)
	}
	e.metrics.polls.WithLabelValues(result).Inc()
	switch result {
	case pollFinal:
		log.Info("payment resolved by polling the PSP", "psp_status", p.Status)
	case pollHorizon:
		log.Warn("payment still not final at the resolve horizon; polling stops (reconciliation covers it)",
			"horizon", e.cfg.ResolveHorizon, "psp_status", p.Status, "err", err)
	case pollError:
		if err != nil {
			log.Warn("polling the PSP failed; will poll again", "err", err)
		}
	}
}
