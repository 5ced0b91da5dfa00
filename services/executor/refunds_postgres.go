package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/psp"
)

// claimRefunds leases up to n due refunds: pending ones (to create),
// awaiting ones (to poll) whose time has come, and in_flight ones whose
// refunder's lease expired. The claim commits at once; attempts counts up
// and guards the write-back.
func (e *Executor) claimRefunds(ctx context.Context, n int) ([]claimedRefund, error) {
	rows, err := e.pool.Query(ctx, `
UPDATE executor.refunds r
SET status = 'in_flight', lease_until = now() + $2::interval, attempts = r.attempts + 1, updated_at = now()
WHERE r.refund_id IN (
    SELECT refund_id FROM executor.refunds
    WHERE (status IN ('pending', 'awaiting') AND next_attempt_at <= now())
       OR (status = 'in_flight' AND lease_until < now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING r.refund_id, r.merchant_id, r.idempotency_key, r.request, coalesce(r.psp_refund_id, ''), r.attempts, r.version`, n, e.cfg.Lease)
	if err != nil {
		return nil, fmt.Errorf("executor: claim refunds: %w", err)
	}
	defer rows.Close()
	out := make([]claimedRefund, 0, n)
	for rows.Next() {
		var c claimedRefund
		var body []byte
		if err := rows.Scan(&c.refundID, &c.merchantID, &c.key, &body, &c.pspRefundID, &c.attempts, &c.version); err != nil {
			return nil, fmt.Errorf("executor: claim refunds: %w", err)
		}
		if err := json.Unmarshal(body, &c.req); err != nil {
			return nil, fmt.Errorf("executor: request of refund %s: %w", c.refundID, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("executor: claim refunds: %w", err)
	}
	return out, nil
}

const refundLeaseGuard = `refund_id = $1 AND status = 'in_flight' AND attempts = $2`

// recordRefund records the PSP's refund. A status it has not reported yet
// is reported (payments.refund.reported, in the same transaction); a final
// status ends the row, a pending one schedules a poll, until ResolveHorizon
// after the refund arrived (then it is stuck: reconciliation and an
// operator take over).
func (e *Executor) recordRefund(ctx context.Context, c claimedRefund, r psp.Refund) (string, error) {
	final := r.Status == psp.RefundSucceeded || r.Status == psp.RefundFailed
	outcome := refundPending
	if final {
		outcome = refundReported
	}
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var prev string
		err := tx.QueryRow(ctx, `SELECT coalesce(psp_status, '') FROM executor.refunds WHERE `+refundLeaseGuard+` FOR UPDATE`,
			c.refundID, c.attempts).Scan(&prev)
		if errors.Is(err, pgx.ErrNoRows) {
			outcome = refundLeaseLost
			return nil
		}
		if err != nil {
			return fmt.Errorf("executor: read refund %s: %w", c.refundID, err)
		}
		report := r.Status != prev
		bump := 0
		if report {
			bump = 1
		}
		status := "awaiting"
		if final {
			status = "reported"
		}
		var version int64
		var at time.Time
		err = tx.QueryRow(ctx, `UPDATE executor.refunds
SET status = CASE WHEN $3 = 'awaiting' AND now() >= created_at + $9::interval THEN 'stuck' ELSE $3 END, lease_until = NULL, psp_refund_id = $4, psp_status = $5, failure_code = nullif($6, ''), last_error = NULL,
    next_attempt_at = now() + $7::interval, version = version + $8, updated_at = now()
WHERE `+refundLeaseGuard+` RETURNING version, updated_at`,
			c.refundID, c.attempts, status, r.ID, r.Status, r.FailureCode, e.cfg.pollDelay(c.attempts-1), bump, e.cfg.ResolveHorizon).Scan(&version, &at)
		if err != nil {
			return fmt.Errorf("executor: record refund %s: %w", c.refundID, err)
		}
		if !report {
			return nil
		}
		ev := contracts.RefundReported{
			RefundID:    c.refundID.String(),
			MerchantID:  c.merchantID.String(),
			PSPRefundID: r.ID,
			Status:      r.Status,
			AmountMinor: r.AmountMinor,
			Currency:    r.Currency,
			FailureCode: r.FailureCode,
			ReportedAt:  at.UTC(),
		}
		if r.Status == psp.RefundFailed && ev.FailureCode == "" {
			ev.FailureCode = "refund_failed"
		}
		return writeEvent(ctx, tx, contracts.SubjectRefundReported, c.refundID, version, ev)
	})
	if err != nil {
		return "", err
	}
	if outcome != refundLeaseLost {
		e.wakeRelay()
	}
	return outcome, nil
}

// recordRefundRefused reports a definite refusal of the create: failed,
// with the PSP's code. Nothing was refunded.
func (e *Executor) recordRefundRefused(ctx context.Context, c claimedRefund, cause error) (string, error) {
	code, _ := rejection(cause)
	outcome := refundReported
	err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
		var version int64
		var at time.Time
		err := tx.QueryRow(ctx, `UPDATE executor.refunds
SET status = 'reported', lease_until = NULL, psp_status = 'failed', failure_code = $3, last_error = left($4, 1000),
    version = version + 1, updated_at = now()
WHERE `+refundLeaseGuard+` RETURNING version, updated_at`, c.refundID, c.attempts, code, cause.Error()).Scan(&version, &at)
		if errors.Is(err, pgx.ErrNoRows) {
			outcome = refundLeaseLost
			return nil
		}
		if err != nil {
			return fmt.Errorf("executor: record refund refusal of %s: %w", c.refundID, err)
		}
		return writeEvent(ctx, tx, contracts.SubjectRefundReported, c.refundID, version, contracts.RefundReported{
			RefundID:    c.refundID.String(),
			MerchantID:  c.merchantID.String(),
			Status:      contracts.RefundStatusFailed,
			AmountMinor: c.req.AmountMinor,
			Currency:    c.req.Currency,
			FailureCode: code,
			ReportedAt:  at.UTC(),
		})
	})
	if err != nil {
		return "", err
	}
	if outcome == refundReported {
		e.wakeRelay()
	}
	return outcome, nil
}

// recordRefundUnknown puts the refund back (pending, or awaiting if the PSP
// has it) with a backoff, or marks it stuck once GiveUpAfter has passed.
func (e *Executor) recordRefundUnknown(ctx context.Context, c claimedRefund, cause error) (string, error) {
	var status string
	err := e.pool.QueryRow(ctx, `UPDATE executor.refunds
SET status = CASE WHEN now() >= window_start + $3::interval THEN 'stuck'
                  WHEN psp_refund_id IS NOT NULL THEN 'awaiting' ELSE 'pending' END,
    next_attempt_at = now() + $4::interval, lease_until = NULL, last_error = left($5, 1000), updated_at = now()
WHERE `+refundLeaseGuard+` RETURNING status`,
		c.refundID, c.attempts, e.cfg.GiveUpAfter, e.cfg.retryDelay(c.attempts, cause), cause.Error()).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return refundLeaseLost, nil
	}
	if err != nil {
		return "", fmt.Errorf("executor: record unknown refund outcome of %s: %w", c.refundID, err)
	}
	if status == "stuck" {
		return refundStuck, nil
	}
	return refundUnknown, nil
}
