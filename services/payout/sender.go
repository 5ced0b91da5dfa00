package payout

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/loop"
	"github.com/paypipe/paypipe/services/psp"
)

// Outcomes of one send attempt (label of paypipe_payout_sends_total).
const (
	sendSent      = "sent"       // the PSP has the payout; sent event written
	sendFailed    = "failed"     // definite refusal; failed event written
	sendUnknown   = "unknown"    // no answer; retried later with the same key
	sendStuck     = "stuck"      // no answer within GiveUpAfter; operator needed
	sendLeaseLost = "lease_lost" // the payout moved on meanwhile; answer dropped
	sendError     = "error"      // our database failed; the lease will expire
)

// claim is a created payout a sender holds under lease. attempts is the
// row's count after the claim: every write-back is guarded by it.
type claim struct {
	id          uuid.UUID
	sellerID    string
	currency    string
	amountMinor int64
	attempts    int
}

// runSender claims created payouts and sends each to the PSP, at most
// Concurrency at a time, claiming only as many as it has free call slots
// so a claimed payout never waits for a slot while its lease runs.
func (s *Service) runSender(ctx context.Context) {
	loop.Dispatch(ctx, loop.Options{Name: "sender", Interval: s.cfg.PollInterval, Batch: s.cfg.BatchSize,
		Wake: s.wake, AfterPass: s.cfg.hooks.afterSenderPass, Log: s.log}, s.cfg.Concurrency, s.claimSends, s.send)
}

// claimSends leases up to n created payouts that are due (never tried, or
// their backoff passed, or their sender's lease expired: it crashed or
// hung). The claim commits at once: during the PSP call the lease, not an
// open transaction, protects the row.
func (s *Service) claimSends(ctx context.Context, n int) ([]claim, error) {
	rows, err := s.pool.Query(ctx, `
UPDATE payout.payouts p
SET lease_until = now() + $2::interval, attempts = p.attempts + 1, updated_at = now()
WHERE p.id IN (
    SELECT id FROM payout.payouts
    WHERE status = 'created' AND stuck_at IS NULL AND next_attempt_at <= now()
      AND (lease_until IS NULL OR lease_until < now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING p.id, p.seller_id, p.currency, p.amount_minor, p.attempts`, n, s.cfg.Lease)
	if err != nil {
		return nil, fmt.Errorf("payout: claim sends: %w", err)
	}
	defer rows.Close()
	out := make([]claim, 0, n)
	for rows.Next() {
		var c claim
		if err := rows.Scan(&c.id, &c.sellerID, &c.currency, &c.amountMinor, &c.attempts); err != nil {
			return nil, fmt.Errorf("payout: claim sends: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("payout: claim sends: %w", err)
	}
	return out, nil
}

// send makes one attempt at a claimed payout: at most a lookup and a
// create, then one transaction recording the answer. If ctx ends meanwhile
// nothing is recorded: as after a crash, the lease expires and a sender
// repeats the call with the same key.
func (s *Service) send(ctx context.Context, c claim) {
	log := s.log.With("payout_id", c.id, "attempt", c.attempts)
	p, lookedUp, callErr := s.callPSP(ctx, c)
	if ctx.Err() != nil {
		log.Info("payout service stopping; send left to its lease", "psp_err", callErr)
		return
	}
	var outcome string
	var err error
	switch {
	case callErr == nil:
		outcome, err = s.recordSent(ctx, c, p)
	case psp.IsPermanent(callErr) && !lookedUp:
		outcome, err = s.recordRefused(ctx, c, callErr)
	default:
		outcome, err = s.recordUnknown(ctx, c, callErr)
	}
	if err != nil {
		outcome = sendError
		log.Error("recording the PSP's answer failed; will retry after the lease", "err", err, "psp_err", callErr)
	}
	s.metrics.sends.WithLabelValues(outcome).Inc()
	switch outcome {
	case sendSent:
		log.Info("payout sent to the PSP", "psp_payout_id", p.ID, "psp_status", p.Status, "found_by_lookup", lookedUp)
	case sendFailed:
		log.Warn("PSP refused the payout", "err", callErr)
	case sendUnknown:
		log.Warn("PSP outcome unknown; will retry with the same key", "err", callErr)
	case sendStuck:
		s.metrics.stuck.Inc()
		log.Error("PSP outcome still unknown after the give-up window: payout is stuck, an operator must check it at the PSP (it may have been paid)",
			"give_up_after", s.cfg.GiveUpAfter, "err", callErr)
	case sendLeaseLost:
		log.Warn("payout moved on while it was being sent (another sender, or a webhook); this answer is dropped", "psp_err", callErr)
	}
}

// errBadAnswer marks a PSP answer we refuse to record (another payout, an
// amount we did not ask for). It is an unknown outcome: retried, and in the
// end left stuck for an operator, rather than recorded against the payout.
var errBadAnswer = errors.New("payout: implausible PSP answer")

// callPSP asks the PSP for the payout. Every attempt after the first looks
// the payout up by reference first: an earlier create whose answer was
// lost (a timeout after the PSP executed it, a crash) is found rather than
// repeated. Not found, it creates it with the same key as always, so even
// a create still running at the PSP cannot make a second payout.
// lookedUp reports that the error, if any, came from the lookup: a lookup's
// refusal proves nothing about the payout.
func (s *Service) callPSP(ctx context.Context, c claim) (p psp.Payout, lookedUp bool, err error) {
	ref := c.id.String()
	if c.attempts > 1 {
		cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
		p, err = s.psp.FindPayoutByReference(cctx, ref)
		cancel()
		switch {
		case err == nil:
			s.metrics.calls.WithLabelValues("find", callOutcome(err)).Inc()
			return p, true, checkAnswer(c, p)
		case !psp.IsNotFound(err):
			s.metrics.calls.WithLabelValues("find", callOutcome(err)).Inc()
			return p, true, fmt.Errorf("lookup by reference: %w", err)
		}
		s.metrics.calls.WithLabelValues("find", "not_found").Inc()
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	p, err = s.psp.CreatePayout(cctx, psp.CreatePayoutRequest{
		IdempotencyKey:    ref,
		AmountMinor:       c.amountMinor,
		Currency:          c.currency,
		MerchantReference: ref,
		Destination:       c.sellerID,
		Description:       "payout " + ref,
	})
	s.metrics.calls.WithLabelValues("create", callOutcome(err)).Inc()
	if err != nil {
		return p, false, fmt.Errorf("create payout: %w", err)
	}
	return p, false, checkAnswer(c, p)
}

func checkAnswer(c claim, p psp.Payout) error {
	want := Payout{ID: c.id.String(), Currency: c.currency, AmountMinor: c.amountMinor}
	if reason := disagreement(want, p); reason != "" {
		return fmt.Errorf("%w: %s", errBadAnswer, reason)
	}
	return nil
}

// callOutcome labels a PSP call's result for the metrics.
func callOutcome(err error) string {
	switch {
	case err == nil:
		return "ok"
	case psp.IsNotFound(err):
		return "not_found"
	case psp.IsPermanent(err):
		return "refused"
	}
	return "unknown"
}

// leaseGuard matches the row only while this sender's claim holds: a
// sender whose lease expired and whose row was claimed again (attempts
// went up), or whose payout a webhook moved on, matches nothing.
const leaseGuard = `id = $1 AND status = 'created' AND attempts = $2`

// lockClaimed locks the claimed payout in tx if the claim still holds.
func lockClaimed(ctx context.Context, tx pgx.Tx, c claim) (Payout, bool, error) {
	p, err := scanPayout(tx.QueryRow(ctx, `SELECT `+payoutCols+` FROM payout.payouts WHERE `+leaseGuard+` FOR UPDATE`, c.id, c.attempts))
	if errors.Is(err, pgx.ErrNoRows) {
		return Payout{}, false, nil
	}
	if err != nil {
		return Payout{}, false, fmt.Errorf("payout: read %s: %w", c.id, err)
	}
	return p, true, nil
}

// recordSent records the PSP's payout (sent, and paid or failed at once if
// the PSP already says so) with its events, in one transaction.
func (s *Service) recordSent(ctx context.Context, c claim, pp psp.Payout) (string, error) {
	outcome := sendSent
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		p, ok, err := lockClaimed(ctx, tx, c)
		if err != nil {
			return err
		}
		if !ok {
			outcome = sendLeaseLost
			return nil
		}
		res, reason, err := s.applyReport(ctx, tx, &p, pp, "send")
		if err != nil {
			return err
		}
		if res == outcomeQuarantined {
			// checkAnswer passed, so only a contradiction with the status
			// is left; keep the evidence.
			s.log.Error("PSP answer quarantined", "payout_id", p.ID, "reason", reason)
			return quarantine(ctx, tx, "send", pp.ID, p.ID, reason, nil)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if outcome == sendSent {
		s.wakeRelay()
	}
	return outcome, nil
}

// recordRefused records a definite refusal of the create: failed, with the
// PSP's code. Nothing was paid; the wallet gives the reservation back when
// it sees payouts.payout.failed.
func (s *Service) recordRefused(ctx context.Context, c claim, cause error) (string, error) {
	code := "psp_refused"
	var pe *psp.Error
	if errors.As(cause, &pe) && pe.Code != "" {
		code = pe.Code
	}
	outcome := sendFailed
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		p, ok, err := lockClaimed(ctx, tx, c)
		if err != nil {
			return err
		}
		if !ok {
			outcome = sendLeaseLost
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE payout.payouts SET last_error = left($2, 1000) WHERE id = $1`, p.ID, cause.Error()); err != nil {
			return fmt.Errorf("payout: record refusal of %s: %w", p.ID, err)
		}
		return s.advance(ctx, tx, &p, change{to: contracts.PayoutStatusFailed, failureCode: code, reason: cause.Error(), cause: "send"})
	})
	if err != nil {
		return "", err
	}
	if outcome == sendFailed {
		s.wakeRelay()
	}
	return outcome, nil
}

// recordUnknown schedules the next attempt per Retry (or the PSP's
// Retry-After), or marks the payout stuck once GiveUpAfter has passed
// since the reservation (or an operator's RetryStuck), on the database's
// clock.
func (s *Service) recordUnknown(ctx context.Context, c claim, cause error) (string, error) {
	var stuck bool
	err := s.pool.QueryRow(ctx, `UPDATE payout.payouts
SET stuck_at = CASE WHEN now() >= coalesce(retried_at, reserved_at) + $3::interval THEN now() END,
    next_attempt_at = now() + $4::interval, lease_until = NULL, last_error = left($5, 1000), updated_at = now()
WHERE `+leaseGuard+` RETURNING stuck_at IS NOT NULL`,
		c.id, c.attempts, s.cfg.GiveUpAfter, s.cfg.Retry.Delay(c.attempts, cause), cause.Error()).Scan(&stuck)
	if errors.Is(err, pgx.ErrNoRows) {
		return sendLeaseLost, nil
	}
	if err != nil {
		return "", fmt.Errorf("payout: record unknown outcome of %s: %w", c.id, err)
	}
	if stuck {
		return sendStuck, nil
	}
	return sendUnknown, nil
}
