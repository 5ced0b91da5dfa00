package pspsim

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/services/psp"
)

// runExpiry fails hosted payments left unpaid past Config.HostedTTL, every
// ExpiryInterval, ExpiryBatchSize at a time (at once again while batches come
// back full). Errors are logged and retried at the next tick.
func (s *Server) runExpiry(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.ExpiryInterval)
	defer ticker.Stop()
	for {
		n, err := s.expireOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Warn("expiry pass failed", "err", err)
		} else if n >= s.cfg.ExpiryBatchSize {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// expireOnce fails one batch of expired payments and queues their webhooks.
// SKIP LOCKED leaves payments being paid right now to their payer, who finds
// them expired under the lock and expires them itself.
func (s *Server) expireOnce(ctx context.Context) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT id FROM pspsim.payments
WHERE status = 'requires_payment_method' AND expires_at <= clock_timestamp()
ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED`, s.cfg.ExpiryBatchSize)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(ids) == 0 {
			return err
		}
		ps, err := s.expireTx(ctx, tx, ids)
		n = len(ps)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("expire: %w", err)
	}
	if n > 0 {
		s.wakeSender()
	}
	return n, nil
}

// expireTx fails the given unpaid payments (locked by the caller) with
// failure_code "expired" and queues a payment.failed webhook for each.
func (s *Server) expireTx(ctx context.Context, tx pgx.Tx, ids []string) ([]payment, error) {
	rows, err := tx.Query(ctx, `UPDATE pspsim.payments
SET status = 'failed', failure_code = 'expired', updated_at = clock_timestamp()
WHERE id = ANY($1) AND status = 'requires_payment_method'
RETURNING `+paymentCols, ids)
	if err != nil {
		return nil, err
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payment, error) { return scanPayment(r) })
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := s.queueEvent(ctx, tx, p, psp.EventPaymentFailed, 0); err != nil {
			return nil, err
		}
		s.log.Info("payment expired", "payment_id", p.ID, "merchant_reference", p.Reference)
	}
	return ps, nil
}
