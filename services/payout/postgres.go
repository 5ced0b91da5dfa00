package payout

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
)

// Payout is one payout as the service holds it.
type Payout struct {
	ID          string    `json:"id"`
	MerchantID  string    `json:"merchant_id"`
	SellerID    string    `json:"seller_id"`
	Currency    string    `json:"currency"`
	Period      string    `json:"period"`
	Status      string    `json:"status"`
	AmountMinor int64     `json:"amount_minor"`
	PSPPayoutID string    `json:"psp_payout_id,omitempty"`
	PSPStatus   string    `json:"psp_status,omitempty"`
	FailureCode string    `json:"failure_code,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Version     int64     `json:"version"`
	Attempts    int       `json:"attempts"`
	LastError   string    `json:"last_error,omitempty"`
	Stuck       bool      `json:"stuck,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// ErrNotFound is returned for a payout the service does not hold.
var ErrNotFound = errors.New("payout: not found")

const payoutCols = `id::text, merchant_id, seller_id, currency, period, status, amount_minor,
coalesce(psp_payout_id, ''), coalesce(psp_status, ''), coalesce(failure_code, ''), coalesce(reason, ''),
version, attempts, coalesce(last_error, ''), stuck_at IS NOT NULL, created_at, updated_at`

func scanPayout(row pgx.Row) (Payout, error) {
	var p Payout
	err := row.Scan(&p.ID, &p.MerchantID, &p.SellerID, &p.Currency, &p.Period, &p.Status, &p.AmountMinor,
		&p.PSPPayoutID, &p.PSPStatus, &p.FailureCode, &p.Reason, &p.Version, &p.Attempts, &p.LastError, &p.Stuck,
		&p.CreatedAt, &p.UpdatedAt)
	return p, err
}

// lockPayout reads a payout and locks its row until tx ends.
func lockPayout(ctx context.Context, tx pgx.Tx, id uuid.UUID) (Payout, error) {
	p, err := scanPayout(tx.QueryRow(ctx, `SELECT `+payoutCols+` FROM payout.payouts WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Payout{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Payout{}, fmt.Errorf("payout: read %s: %w", id, err)
	}
	return p, nil
}

// Get returns one payout.
func (s *Service) Get(ctx context.Context, id string) (Payout, error) {
	pid, err := uuid.Parse(id)
	if err != nil {
		return Payout{}, fmt.Errorf("%w: %q is not a payout id", ErrNotFound, id)
	}
	p, err := scanPayout(s.pool.QueryRow(ctx, `SELECT `+payoutCols+` FROM payout.payouts WHERE id = $1`, pid))
	if errors.Is(err, pgx.ErrNoRows) {
		return Payout{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Payout{}, fmt.Errorf("payout: get %s: %w", id, err)
	}
	return p, nil
}

// ListFilter selects payouts; empty fields match everything.
type ListFilter struct {
	Status   string
	SellerID string
	Period   string
	// Limit bounds the answer: default 100, at most 1000.
	Limit int
}

// List returns the newest payouts matching f.
func (s *Service) List(ctx context.Context, f ListFilter) ([]Payout, error) {
	if f.Status != "" && rank(f.Status) < 0 {
		return nil, fmt.Errorf("payout: list: unknown status %q", f.Status)
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	rows, err := s.pool.Query(ctx, `SELECT `+payoutCols+` FROM payout.payouts
WHERE ($1 = '' OR status = $1) AND ($2 = '' OR seller_id = $2) AND ($3 = '' OR period = $3)
ORDER BY created_at DESC, id LIMIT $4`, f.Status, f.SellerID, f.Period, f.Limit)
	if err != nil {
		return nil, fmt.Errorf("payout: list: %w", err)
	}
	defer rows.Close()
	out := []Payout{}
	for rows.Next() {
		p, err := scanPayout(rows)
		if err != nil {
			return nil, fmt.Errorf("payout: list: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("payout: list: %w", err)
	}
	return out, nil
}

// rank orders statuses: a payout only ever moves to a higher rank. The
// three final statuses share the highest.
func rank(status string) int {
	switch status {
	case contracts.PayoutStatusRequested:
		return 0
	case contracts.PayoutStatusCreated:
		return 1
	case contracts.PayoutStatusSent:
		return 2
	case contracts.PayoutStatusPaid, contracts.PayoutStatusFailed, contracts.PayoutStatusCanceled:
		return 3
	}
	return -1
}

var subjectOf = map[string]string{
	contracts.PayoutStatusCreated:  contracts.SubjectPayoutCreated,
	contracts.PayoutStatusSent:     contracts.SubjectPayoutSent,
	contracts.PayoutStatusPaid:     contracts.SubjectPayoutPaid,
	contracts.PayoutStatusFailed:   contracts.SubjectPayoutFailed,
	contracts.PayoutStatusCanceled: contracts.SubjectPayoutCanceled,
}

// change is what a transition sets besides the status.
type change struct {
	to          string
	amount      int64 // created only
	pspPayoutID string
	pspStatus   string
	failureCode string
	reason      string
	cause       string // audit: what caused it (reservation, send, webhook:<id>, poll)
}

// advance moves p, locked in tx, to c.to: one status change, one version,
// one audit row and one payouts.payout.* event, all in tx. It refuses to
// go backwards or sideways (a programming error: callers check first).
// The scheduling columns follow the new status: created is due for the
// sender now, sent is due for the resolver after ResolveAfter, and every
// other status is due for nothing.
func (s *Service) advance(ctx context.Context, tx pgx.Tx, p *Payout, c change) error {
	if rank(c.to) <= rank(p.Status) {
		return fmt.Errorf("payout: %s: transition %s → %s is not forward", p.ID, p.Status, c.to)
	}
	from := p.Status
	next := *p
	next.Status = c.to
	next.Version++
	if c.to == contracts.PayoutStatusCreated {
		next.AmountMinor = c.amount
	}
	if c.pspPayoutID != "" {
		next.PSPPayoutID = c.pspPayoutID
	}
	if c.pspStatus != "" {
		next.PSPStatus = c.pspStatus
	}
	if c.failureCode != "" {
		next.FailureCode = c.failureCode
	}
	if c.reason != "" {
		next.Reason = c.reason
	}
	err := tx.QueryRow(ctx, `UPDATE payout.payouts SET
    status = $2, amount_minor = $3, psp_payout_id = nullif($4, ''), psp_status = nullif($5, ''),
    failure_code = nullif($6, ''), reason = nullif(left($7, 1000), ''), version = $8, updated_at = now(),
    reserved_at = CASE WHEN $2 = 'created' THEN now() ELSE reserved_at END,
    next_attempt_at = CASE WHEN $2 = 'created' THEN now() ELSE NULL END,
    lease_until = NULL,
    sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
    next_poll_at = CASE WHEN $2 = 'sent' THEN now() + $9::interval ELSE NULL END
WHERE id = $1 AND version = $10
RETURNING updated_at`,
		next.ID, next.Status, next.AmountMinor, next.PSPPayoutID, next.PSPStatus, next.FailureCode, next.Reason,
		next.Version, s.cfg.ResolveAfter, p.Version).Scan(&next.UpdatedAt)
	if err != nil {
		return fmt.Errorf("payout: %s → %s of %s: %w", from, c.to, p.ID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payout.transitions (payout_id, version, from_status, to_status, cause)
VALUES ($1, $2, $3, $4, left($5, 300))`, next.ID, next.Version, from, next.Status, c.cause); err != nil {
		return fmt.Errorf("payout: audit %s → %s of %s: %w", from, c.to, p.ID, err)
	}
	subject := subjectOf[c.to]
	ev := contracts.PayoutChanged{
		PayoutID:    next.ID,
		MerchantID:  next.MerchantID,
		SellerID:    next.SellerID,
		Currency:    next.Currency,
		Period:      next.Period,
		Status:      next.Status,
		AmountMinor: next.AmountMinor,
		PSPPayoutID: next.PSPPayoutID,
		FailureCode: next.FailureCode,
		Reason:      next.Reason,
		Version:     next.Version,
		CreatedAt:   next.CreatedAt.UTC(),
		ChangedAt:   next.UpdatedAt.UTC(),
	}
	if err := writeEvent(ctx, tx, subject, next.ID, next.Version, ev); err != nil {
		return err
	}
	s.metrics.transitions.WithLabelValues(from, next.Status).Inc()
	*p = next
	return nil
}

// writeEvent writes one payout event to the outbox in tx. The aggregate is
// the payout; its version is the payout's.
func writeEvent(ctx context.Context, tx pgx.Tx, subject, payoutID string, version int64, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("payout: encode %s: %w", subject, err)
	}
	if err := Store.Write(ctx, tx, &outbox.Message{
		Subject:          subject,
		Type:             contracts.TypeOf(subject),
		Source:           contracts.SourcePayout,
		AggregateID:      payoutID,
		AggregateVersion: version,
		Payload:          body,
	}); err != nil {
		return fmt.Errorf("payout: write %s for %s: %w", subject, payoutID, err)
	}
	return nil
}

// quarantine keeps a PSP report that disagrees with the payout, with the
// evidence, in tx.
func quarantine(ctx context.Context, tx pgx.Tx, source, ref, payoutID, reason string, body []byte) error {
	var pid *uuid.UUID
	if id, err := uuid.Parse(payoutID); err == nil {
		pid = &id
	}
	var doc any
	if json.Valid(body) {
		doc = json.RawMessage(body)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO payout.quarantine (source, ref, payout_id, reason, body) VALUES ($1, $2, $3, $4, $5)`,
		source, ref, pid, reason, doc); err != nil {
		return fmt.Errorf("payout: quarantine %s %s: %w", source, ref, err)
	}
	return nil
}

// ErrNotStuck is returned by RetryStuck for a payout that is not stuck.
var ErrNotStuck = errors.New("payout: payout is not stuck")

// RetryStuck puts a stuck payout back in the sender's queue with a new
// give-up window, for an operator who has checked the PSP (or fixed what
// kept it from answering). The sender uses the same idempotency key as
// every earlier attempt and looks the payout up first, so a payout the PSP
// did make is found, not repeated. A running service picks it up within
// its poll interval.
func (s *Service) RetryStuck(ctx context.Context, payoutID string) error {
	id, err := uuid.Parse(payoutID)
	if err != nil {
		return fmt.Errorf("%w: %q is not a payout id", ErrInvalidRun, payoutID)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE payout.payouts
SET stuck_at = NULL, retried_at = now(), next_attempt_at = now(), lease_until = NULL, updated_at = now()
WHERE id = $1 AND status = 'created' AND stuck_at IS NOT NULL`, id)
	if err != nil {
		return fmt.Errorf("payout: retry %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNotStuck, id)
	}
	s.log.Warn("stuck payout put back in the sender's queue by an operator", "payout_id", id)
	s.wakeSender()
	return nil
}
