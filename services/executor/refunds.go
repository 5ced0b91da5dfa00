package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/loop"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
)

// Refunds. payments.refund.created is recorded as a pending row of
// executor.refunds in the inbox transaction; the refunder loop sends it to
// the PSP with IdempotencyKey = MerchantReference = the refund id, outside
// any transaction, under a lease, exactly like the registrar sends
// payments, and reports the answer as payments.refund.reported:
//
//   - succeeded or failed (the PSP's final answer, or a definite refusal of
//     the create): reported once, final;
//   - pending: reported, then polled with GetRefund until final, and
//     reported again (version 2);
//   - unknown outcome: retried per Config.Retry with the same key, every
//     retry looking the refund up by reference first, until GiveUpAfter
//     (then stuck for an operator, never failed: the buyer may have been
//     refunded).
//
// The same key on every call, by every replica, is what makes one refund
// id at most one refund at the PSP.

// ErrInvalidRefund is wrapped by every validation error of a
// payments.refund.created event: permanent, dead-lettered at once.
var ErrInvalidRefund = retry.Permanent(errors.New("executor: invalid refund"))

// PSP is what the executor asks of a PSP: payments and refunds. psp.Full
// (psp.HTTPClient) satisfies it.
type PSP interface {
	psp.Client
	psp.RefundClient
}

// refundRequest is what the executor sends to the PSP for a refund, stored
// with the row so every retry sends exactly the same request.
type refundRequest struct {
	PSPPaymentID string `json:"psp_payment_id"`
	AmountMinor  int64  `json:"amount_minor"`
	Currency     string `json:"currency"`
	Reason       string `json:"reason,omitempty"`
}

// handleRefundCreated runs inside the inbox transaction: it records the
// refund, nothing more. A second refund.created for the same refund (a
// re-send, a replay) hits the primary key and changes nothing.
func (e *Executor) handleRefundCreated(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if want := contracts.TypeOf(contracts.SubjectRefundCreated); d.Type != want {
		return fmt.Errorf("%w: message %s: unsupported type %q (want %s)", ErrInvalidRefund, d.MsgID, d.Type, want)
	}
	var ev contracts.RefundCreated
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return fmt.Errorf("%w: message %s: decode: %w", ErrInvalidRefund, d.MsgID, err)
	}
	refundID, merchantID, req, err := refundRequestOf(ev)
	if err != nil {
		return fmt.Errorf("message %s: %w", d.MsgID, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("executor: encode refund request: %w", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO executor.refunds (refund_id, merchant_id, idempotency_key, request, status)
VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (refund_id) DO NOTHING`, refundID, merchantID, refundID.String(), body)
	if err != nil {
		return fmt.Errorf("executor: record refund %s: %w", refundID, err)
	}
	if tag.RowsAffected() == 0 {
		e.log.Info("refund already recorded; event ignored", "refund_id", refundID, "msg_id", d.MsgID)
	}
	return nil
}

func refundRequestOf(ev contracts.RefundCreated) (refundID, merchantID uuid.UUID, req refundRequest, err error) {
	var errs []error
	refundID, rerr := uuid.Parse(ev.RefundID)
	if rerr != nil || refundID == uuid.Nil {
		errs = append(errs, fmt.Errorf("refund_id %q is not a UUID", ev.RefundID))
	}
	merchantID, merr := uuid.Parse(ev.MerchantID)
	if merr != nil || merchantID == uuid.Nil {
		errs = append(errs, fmt.Errorf("merchant_id %q is not a UUID", ev.MerchantID))
	}
	if ev.PSPPaymentID == "" || len(ev.PSPPaymentID) > 255 {
		errs = append(errs, fmt.Errorf("psp_payment_id %q", ev.PSPPaymentID))
	}
	if _, err := money.ParseCurrency(ev.Currency); err != nil {
		errs = append(errs, err)
	}
	if err := money.ValidAmount(ev.AmountMinor); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return uuid.Nil, uuid.Nil, refundRequest{}, fmt.Errorf("%w: refund %q: %w", ErrInvalidRefund, ev.RefundID, errors.Join(errs...))
	}
	return refundID, merchantID, refundRequest{PSPPaymentID: ev.PSPPaymentID, AmountMinor: ev.AmountMinor, Currency: ev.Currency, Reason: ev.Reason}, nil
}

// refundMetrics count the refunder's work.
type refundMetrics struct {
	attempts *prometheus.CounterVec
}

func newRefundMetrics(reg prometheus.Registerer) (*refundMetrics, error) {
	m := &refundMetrics{attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "paypipe_executor_refund_attempts_total",
		Help: "PSP refund attempts and polls by outcome: reported, pending, unknown (retried with the same key), stuck, lease_lost, error.",
	}, []string{"outcome"})}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.attempts, err = register(reg, m.attempts); err != nil {
		return nil, err
	}
	return m, nil
}

// Outcomes of one refund attempt or poll.
const (
	refundReported  = "reported"   // a final answer reported
	refundPending   = "pending"    // the PSP has it, not final: reported (first time) and polled
	refundUnknown   = "unknown"    // no answer; retried with the same key
	refundStuck     = "stuck"      // no answer within GiveUpAfter
	refundLeaseLost = "lease_lost" // another refunder took the row over
	refundError     = "error"      // our database failed; the lease will expire
)

// claimedRefund is a refund a refunder holds under lease.
type claimedRefund struct {
	refundID    uuid.UUID
	merchantID  uuid.UUID
	key         string
	req         refundRequest
	pspRefundID string // set: the PSP has it, poll it
	attempts    int
	version     int64
}

// runRefunder claims due refunds (to create, or to poll) and calls the
// PSP for each, at most Concurrency at a time, like the registrar.
func (e *Executor) runRefunder(ctx context.Context) {
	loop.Passes(ctx, loop.Options{Name: "refunder", Interval: e.cfg.PollInterval, Batch: e.cfg.BatchSize,
		Wake: e.refundWake, AfterPass: e.cfg.hooks.afterRefunderPass, Log: e.log}, e.refundOnce)
}

func (e *Executor) wakeRefunder() {
	select {
	case e.refundWake <- struct{}{}:
	default:
	}
}

// refundOnce claims one batch and attempts each refund. The batch is
// bounded by BatchSize and the calls by Concurrency; the lease (more than
// two calls) covers a claimed row waiting for a slot only because a batch
// never holds more rows than Concurrency.
func (e *Executor) refundOnce(ctx context.Context) (int, error) {
	due, err := e.claimRefunds(ctx, min(e.cfg.BatchSize, e.cfg.Concurrency))
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, c := range due {
		e.metrics.inFlight.Inc()
		wg.Go(func() {
			defer e.metrics.inFlight.Dec()
			e.refundAttempt(ctx, c)
		})
	}
	wg.Wait()
	if len(due) == min(e.cfg.BatchSize, e.cfg.Concurrency) {
		return e.cfg.BatchSize, nil // a full batch: more may be due
	}
	return len(due), nil
}

func (e *Executor) refundAttempt(ctx context.Context, c claimedRefund) {
	log := e.log.With("refund_id", c.refundID, "attempt", c.attempts)
	r, lookedUp, callErr := e.callRefund(ctx, c)
	if ctx.Err() != nil {
		log.Info("executor stopping; refund left to its lease", "psp_err", callErr)
		return
	}
	var outcome string
	var err error
	switch {
	case callErr == nil:
		outcome, err = e.recordRefund(ctx, c, r)
	case psp.IsPermanent(callErr) && !lookedUp && c.pspRefundID == "":
		outcome, err = e.recordRefundRefused(ctx, c, callErr)
	default:
		outcome, err = e.recordRefundUnknown(ctx, c, callErr)
	}
	if err != nil {
		outcome = refundError
		log.Error("recording the PSP's refund answer failed; will retry after the lease", "err", err, "psp_err", callErr)
	}
	e.refundMetrics.attempts.WithLabelValues(outcome).Inc()
	switch outcome {
	case refundReported, refundPending:
		log.Info("refund reported", "psp_refund_id", r.ID, "psp_status", r.Status, "found_by_lookup", lookedUp, "err", callErr)
	case refundUnknown:
		log.Warn("PSP refund outcome unknown; will retry with the same key", "err", callErr)
	case refundStuck:
		log.Error("PSP refund outcome still unknown after the give-up window: refund is stuck, an operator must check it at the PSP",
			"give_up_after", e.cfg.GiveUpAfter, "err", callErr)
	case refundLeaseLost:
		log.Warn("refund lease lost: another refunder took it over; this answer is dropped", "psp_err", callErr)
	}
}

// callRefund asks the PSP about a claimed refund: GetRefund for one the PSP
// already has; otherwise, on every retry, a lookup by reference first (an
// earlier create may have gone through), then a create with the same key
// as always.
func (e *Executor) callRefund(ctx context.Context, c claimedRefund) (r psp.Refund, lookedUp bool, err error) {
	ref := c.refundID.String()
	if c.pspRefundID != "" {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		defer cancel()
		r, err = e.psp.GetRefund(cctx, c.pspRefundID)
		if err != nil {
			return r, true, fmt.Errorf("get refund: %w", err)
		}
		if r.ID != c.pspRefundID {
			return r, true, fmt.Errorf("%w: asked for refund %s, got %s", errBadAnswer, c.pspRefundID, r.ID)
		}
		return r, true, checkRefund(r, ref)
	}
	if c.attempts > 1 {
		cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
		r, err = e.psp.FindRefundByReference(cctx, ref)
		cancel()
		switch {
		case err == nil:
			return r, true, checkRefund(r, ref)
		case !psp.IsNotFound(err):
			return r, true, fmt.Errorf("lookup refund by reference: %w", err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.CallTimeout)
	defer cancel()
	r, err = e.psp.CreateRefund(cctx, psp.CreateRefundRequest{
		IdempotencyKey:    c.key,
		PaymentID:         c.req.PSPPaymentID,
		AmountMinor:       c.req.AmountMinor,
		Currency:          c.req.Currency,
		MerchantReference: ref,
		Reason:            c.req.Reason,
	})
	if err != nil {
		return r, false, fmt.Errorf("create refund: %w", err)
	}
	return r, false, checkRefund(r, ref)
}

func checkRefund(r psp.Refund, ref string) error {
	if r.ID == "" {
		return fmt.Errorf("%w: refund without an id", errBadAnswer)
	}
	if r.MerchantReference != ref {
		return fmt.Errorf("%w: refund %s has merchant reference %q, want %q", errBadAnswer, r.ID, r.MerchantReference, ref)
	}
	switch r.Status {
	case psp.RefundPending, psp.RefundSucceeded, psp.RefundFailed:
		return nil
	}
	return fmt.Errorf("%w: refund %s has status %q", errBadAnswer, r.ID, r.Status)
}
