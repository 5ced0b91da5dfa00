package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/psp"
)

// claimAttempts leases up to n due attempts: pending ones whose time has
// come, and in_flight ones whose registrar's lease expired (it crashed or
// hung). The claim commits at once: during the PSP call the row is
// protected by its lease, not by an open transaction, so no transaction is
// ever open across an external call. attempts counts up with every claim,
// which is what makes a lost lease detectable at write-back.
func (e *Executor) claimAttempts(ctx context.Context, n int) ([]claimed, error) {
	rows, err := e.pool.Query(ctx, `
UPDATE executor.attempts a
SET status = 'in_flight', lease_until = now() + $2::interval, attempts = a.attempts + 1, updated_at = now()
WHERE a.checkout_id IN (
    SELECT checkout_id FROM executor.attempts
    WHERE (status = 'pending' AND next_attempt_at <= now())
       OR (status = 'in_flight' AND lease_until < now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING a.checkout_id, a.merchant_id, a.idempotency_key, a.request, a.attempts, a.created_at`, n, e.cfg.Lease)
	if err != nil {
		return nil, fmt.Errorf("executor: claim attempts: %w", err)
	}
	defer rows.Close()
	out := make([]claimed, 0, n)
	for rows.Next() {
		var a claimed
		var body []byte
		if err := rows.Scan(&a.checkoutID, &a.merchantID, &a.key, &body, &a.attempts, &a.createdAt); err != nil {
			return nil, fmt.Errorf("executor: claim attempts: %w", err)
		}
		if err := json.Unmarshal(body, &a.req); err != nil {
			return nil, fmt.Errorf("executor: request of checkout %s: %w", a.checkoutID, err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("executor: claim attempts: %w", err)
	}
	return out, nil
}

// The write-backs below all carry the lease guard "status = 'in_flight' AND
// attempts = $2": a registrar whose lease expired and whose row was claimed
// again (attempts went up) matches nothing, so a late answer can never
// overwrite a newer one or emit a second event.
const leaseGuard = `checkout_id = $1 AND status = 'in_flight' AND attempts = $2`

// recordRegistered records the PSP's payment and writes
// payments.checkout.registered in the same transaction. Payments whose
// status is not final are scheduled for the resolver.
func (e *Executor) recordRegistered(ctx context.Context, a claimed, p psp.Payment) (string, error) {
	status := e.normalStatus(a.checkoutID, p.Status)
	if p.AmountMinor != a.req.AmountMinor || p.Currency != a.req.Currency {
		// Reported as the PSP states it: payment compares and quarantines.
		e.log.Error("PSP reports a different amount than requested", "checkout_id", a.checkoutID,
			"psp_payment_id", p.ID, "requested", a.req.AmountMinor, "requested_currency", a.req.Currency,
			"psp_amount", p.AmountMinor, "psp_currency", p.Currency)
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("executor: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var version int64
	var at time.Time
	err = tx.QueryRow(ctx, `UPDATE executor.attempts
SET status = 'registered', lease_until = NULL, psp_payment_id = $3, psp_status = $4, last_error = NULL,
    registered_at = now(), next_poll_at = CASE WHEN $5::boolean THEN NULL ELSE now() + $6::interval END,
    version = version + 1, updated_at = now()
WHERE `+leaseGuard+` RETURNING version, registered_at`,
		a.checkoutID, a.attempts, p.ID, status, psp.Final(status), e.cfg.ResolveAfter).Scan(&version, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return outcomeLeaseLost, nil
	}
	if err != nil {
		return "", fmt.Errorf("executor: record registration of %s: %w", a.checkoutID, err)
	}
	ev := pspReport(a.checkoutID, a.merchantID, p, status, at)
	if err := writeEvent(ctx, tx, contracts.SubjectCheckoutRegistered, a.checkoutID, version, ev); err != nil {
		return "", err
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("executor: commit registration of %s: %w", a.checkoutID, err)
	}
	e.wakeRelay()
	return outcomeRegistered, nil
}

// recordRejected records a permanent refusal and writes
// payments.checkout.rejected in the same transaction.
func (e *Executor) recordRejected(ctx context.Context, a claimed, cause error) (string, error) {
	code, msg := rejection(cause)
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("executor: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var version int64
	var at time.Time
	err = tx.QueryRow(ctx, `UPDATE executor.attempts
SET status = 'rejected', lease_until = NULL, last_error = left($3, 1000), version = version + 1, updated_at = now()
WHERE `+leaseGuard+` RETURNING version, updated_at`,
		a.checkoutID, a.attempts, cause.Error()).Scan(&version, &at)
	if errors.Is(err, pgx.ErrNoRows) {
		return outcomeLeaseLost, nil
	}
	if err != nil {
		return "", fmt.Errorf("executor: record rejection of %s: %w", a.checkoutID, err)
	}
	ev := contracts.CheckoutRejected{
		CheckoutID: a.checkoutID.String(),
		MerchantID: a.merchantID.String(),
		Code:       code,
		Message:    msg,
		RejectedAt: at.UTC(),
	}
	if err := writeEvent(ctx, tx, contracts.SubjectCheckoutRejected, a.checkoutID, version, ev); err != nil {
		return "", err
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("executor: commit rejection of %s: %w", a.checkoutID, err)
	}
	e.wakeRelay()
	return outcomeRejected, nil
}

// rejection is the code and message a rejected event reports: the PSP's,
// or http_<status> and a generic text where it gave none (the schema
// requires both).
func rejection(cause error) (code, msg string) {
	var pe *psp.Error
	if !errors.As(cause, &pe) {
		return "psp_rejected", cause.Error()
	}
	code, msg = pe.Code, pe.Message
	if code == "" {
		code = fmt.Sprintf("http_%d", pe.HTTPStatus)
	}
	if msg == "" {
		msg = fmt.Sprintf("the PSP refused the request (HTTP %d)", pe.HTTPStatus)
	}
	return code, msg
}

// recordUnknown puts the attempt back to pending with a backoff, or marks it
// stuck once GiveUpAfter has passed since the checkout arrived (or since an
// operator's RetryStuck). The clock is the database's, like every other time
// in this table.
func (e *Executor) recordUnknown(ctx context.Context, a claimed, cause error) (string, error) {
	var status string
	err := e.pool.QueryRow(ctx, `UPDATE executor.attempts
SET status = CASE WHEN now() >= window_start + $3::interval THEN 'stuck' ELSE 'pending' END,
    next_attempt_at = now() + $4::interval, lease_until = NULL, last_error = left($5, 1000), updated_at = now()
WHERE `+leaseGuard+` RETURNING status`,
		a.checkoutID, a.attempts, e.cfg.GiveUpAfter, e.cfg.retryDelay(a.attempts, cause), cause.Error()).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		return outcomeLeaseLost, nil
	}
	if err != nil {
		return "", fmt.Errorf("executor: record unknown outcome of %s: %w", a.checkoutID, err)
	}
	if status == "stuck" {
		return outcomeStuck, nil
	}
	return outcomeUnknown, nil
}

// polled is a registered payment a resolver holds for one poll.
type polled struct {
	checkoutID   uuid.UUID
	merchantID   uuid.UUID
	pspPaymentID string
	polls        int
}

// claimPolls takes up to n registered payments due for a poll. Pushing
// next_poll_at one Lease ahead is the claim: another resolver skips the row
// meanwhile, and if this one dies the row comes due again by itself. polls
// counts up with every claim and guards the write-back.
func (e *Executor) claimPolls(ctx context.Context, n int) ([]polled, error) {
	rows, err := e.pool.Query(ctx, `
UPDATE executor.attempts a
SET next_poll_at = now() + $2::interval, polls = a.polls + 1, updated_at = now()
WHERE a.checkout_id IN (
    SELECT checkout_id FROM executor.attempts
    WHERE next_poll_at IS NOT NULL AND next_poll_at <= now() AND status = 'registered'
    ORDER BY next_poll_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING a.checkout_id, a.merchant_id, a.psp_payment_id, a.polls`, n, e.cfg.Lease)
	if err != nil {
		return nil, fmt.Errorf("executor: claim polls: %w", err)
	}
	defer rows.Close()
	out := make([]polled, 0, n)
	for rows.Next() {
		var p polled
		if err := rows.Scan(&p.checkoutID, &p.merchantID, &p.pspPaymentID, &p.polls); err != nil {
			return nil, fmt.Errorf("executor: claim polls: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("executor: claim polls: %w", err)
	}
	return out, nil
}

// recordPoll records what a poll found (p, or the error pollErr) and, when
// the status has just become final, writes payments.checkout.resolved in
// the same transaction. A status is final once, so each checkout gets at
// most one resolved event. It returns the poll's result label.
func (e *Executor) recordPoll(ctx context.Context, pl polled, p psp.Payment, pollErr error) (string, error) {
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		return "", fmt.Errorf("executor: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	var oldStatus string
	var polls int
	var registeredAt time.Time
	err = tx.QueryRow(ctx, `SELECT psp_status, polls, registered_at FROM executor.attempts
WHERE checkout_id = $1 AND status = 'registered' FOR UPDATE`, pl.checkoutID).Scan(&oldStatus, &polls, &registeredAt)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && polls != pl.polls) {
		return pollLeaseLost, nil
	}
	if err != nil {
		return "", fmt.Errorf("executor: read poll of %s: %w", pl.checkoutID, err)
	}
	status, lastErr := oldStatus, ""
	if pollErr == nil {
		status = e.normalStatus(pl.checkoutID, p.Status)
	} else {
		lastErr = pollErr.Error()
	}
	final := psp.Final(status)
	emit := pollErr == nil && final && status != oldStatus
	bump := 0
	if emit {
		bump = 1
	}
	var version int64
	var stopped bool
	err = tx.QueryRow(ctx, `UPDATE executor.attempts
SET psp_status = $2, version = version + $3, last_error = NULLIF(left($4, 1000), ''), updated_at = now(),
    next_poll_at = CASE WHEN $5::boolean THEN NULL
                        WHEN now() >= registered_at + $6::interval THEN NULL
                        ELSE LEAST(now() + $7::interval, registered_at + $6::interval) END
WHERE checkout_id = $1 RETURNING version, next_poll_at IS NULL`,
		pl.checkoutID, status, bump, lastErr, final, e.cfg.ResolveHorizon, e.cfg.pollDelay(pl.polls)).Scan(&version, &stopped)
	if err != nil {
		return "", fmt.Errorf("executor: record poll of %s: %w", pl.checkoutID, err)
	}
	if emit {
		ev := contracts.CheckoutResolved(pspReport(pl.checkoutID, pl.merchantID, p, status, registeredAt))
		if err := writeEvent(ctx, tx, contracts.SubjectCheckoutResolved, pl.checkoutID, version, ev); err != nil {
			return "", err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return "", fmt.Errorf("executor: commit poll of %s: %w", pl.checkoutID, err)
	}
	switch {
	case emit:
		e.wakeRelay()
		return pollFinal, nil
	case pollErr != nil:
		if stopped {
			return pollHorizon, nil
		}
		return pollError, nil
	case stopped && !final:
		return pollHorizon, nil
	default:
		return pollUnchanged, nil
	}
}

// writeEvent writes one executor event about a checkout to the outbox in tx.
// The aggregate is the checkout; its version counts the executor's events
// about it, so a consumer can tell a resolved event from an older report.
func writeEvent(ctx context.Context, tx pgx.Tx, subject string, checkoutID uuid.UUID, version int64, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("executor: encode %s: %w", subject, err)
	}
	if err := Store.Write(ctx, tx, &outbox.Message{
		Subject:          subject,
		Type:             contracts.TypeOf(subject),
		Source:           contracts.SourceExecutor,
		AggregateID:      checkoutID.String(),
		AggregateVersion: version,
		Payload:          body,
	}); err != nil {
		return fmt.Errorf("executor: write %s for %s: %w", subject, checkoutID, err)
	}
	return nil
}

// normalStatus maps the PSP client's status onto contracts' four. The client
// already normalises; anything else is a bug or a new PSP state, reported as
// processing (not final, so the resolver keeps asking) rather than guessed.
func (e *Executor) normalStatus(checkoutID uuid.UUID, s string) string {
	switch s {
	case psp.StatusRequiresAction, psp.StatusProcessing, psp.StatusSucceeded, psp.StatusFailed:
		return s
	}
	e.log.Warn("unknown PSP status; treated as processing", "checkout_id", checkoutID, "psp_status", s)
	return psp.StatusProcessing
}

// pspReport is the payload executor reports the PSP's answer with, whether
// from registration or from a resolver poll.
func pspReport(checkoutID, merchantID uuid.UUID, p psp.Payment, status string, registeredAt time.Time) contracts.CheckoutRegistered {
	return contracts.CheckoutRegistered{
		CheckoutID:   checkoutID.String(),
		MerchantID:   merchantID.String(),
		PSPPaymentID: p.ID,
		PSPStatus:    status,
		AmountMinor:  p.AmountMinor,
		Currency:     p.Currency,
		RedirectURL:  p.RedirectURL,
		FailureCode:  p.FailureCode,
		RegisteredAt: registeredAt.UTC(),
	}
}
