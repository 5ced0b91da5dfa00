package wallet

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
)

// Store is the wallet schema's outbox and inbox.
var Store = outbox.MustStore("wallet")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the wallet's migrations: the outbox and inbox tables, then
// migrations/*.sql.
func Schema() migrate.Schema {
	return migrate.Embedded(Store, migrations)
}

// apply records c in the caller's transaction: the balance row (created on
// first use), a changes row and a wallet.balance.changed event, all or
// nothing. It returns applied=false and the current balance when c's effect
// (cause, ref) was applied before with the same figures, and ErrConflict when
// it was applied with others.
//
// Every change of one (seller, currency) takes that row's lock first and
// reads the changes table under it, so concurrent changes of a balance
// serialise and each sees the ones before it; UNIQUE (cause, ref) stays the
// last guard for anything that gets past that.
func apply(ctx context.Context, tx pgx.Tx, c change) (Balance, bool, error) {
	b, _, err := lockBalance(ctx, tx, c.SellerID, c.Currency, c.MerchantID, true)
	if err != nil {
		return Balance{}, false, err
	}
	prev, found, err := findChange(ctx, tx, c.Cause, c.Ref)
	if err != nil {
		return Balance{}, false, err
	}
	if found {
		prev.MerchantID = c.MerchantID
		if prev != c {
			return Balance{}, false, fmt.Errorf("%w: %s %s: recorded %+v, now %+v", ErrConflict, c.Cause, c.Ref, prev, c)
		}
		return b, false, nil
	}
	if err := sameMerchant(b, c); err != nil {
		return Balance{}, false, err
	}
	after, err := record(ctx, tx, b, c)
	if err != nil {
		return Balance{}, false, err
	}
	return after, true, nil
}

// lockBalance locks the (seller, currency) balance row for the rest of tx
// and returns it. With create, a missing row is created first (version 0,
// merchant as given); without, a missing row is reported as found=false
// and nothing is written.
func lockBalance(ctx context.Context, tx pgx.Tx, sellerID, currency, merchantID string, create bool) (Balance, bool, error) {
	if create {
		if _, err := tx.Exec(ctx, `INSERT INTO wallet.balances
  (seller_id, currency, merchant_id, pending_minor, available_minor, paid_out_minor, version)
VALUES ($1, $2, $3, 0, 0, 0, 0) ON CONFLICT (seller_id, currency) DO NOTHING`, sellerID, currency, merchantID); err != nil {
			return Balance{}, false, fmt.Errorf("wallet: create balance %s/%s: %w", sellerID, currency, err)
		}
	}
	b := Balance{SellerID: sellerID, Currency: currency}
	err := tx.QueryRow(ctx, `SELECT merchant_id, pending_minor, available_minor, paid_out_minor, version, updated_at
FROM wallet.balances WHERE seller_id = $1 AND currency = $2 FOR UPDATE`, sellerID, currency).
		Scan(&b.MerchantID, &b.PendingMinor, &b.AvailableMinor, &b.PaidOutMinor, &b.Version, &b.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) && !create {
		return Balance{SellerID: sellerID, Currency: currency, MerchantID: merchantID}, false, nil
	}
	if err != nil {
		return Balance{}, false, fmt.Errorf("wallet: lock balance %s/%s: %w", sellerID, currency, err)
	}
	return b, true, nil
}

// findChange looks up the change of a business effect (cause, ref). The
// returned change has no MerchantID (changes do not store it: the balance
// does).
func findChange(ctx context.Context, tx pgx.Tx, cause, ref string) (change, bool, error) {
	c := change{Cause: cause, Ref: ref}
	err := tx.QueryRow(ctx, `SELECT seller_id, currency, coalesce(payment_order_id, ''), delta_pending, delta_available, delta_paid_out
FROM wallet.changes WHERE cause = $1 AND ref = $2`, cause, ref).
		Scan(&c.SellerID, &c.Currency, &c.PaymentOrderID, &c.DeltaPending, &c.DeltaAvailable, &c.DeltaPaidOut)
	if errors.Is(err, pgx.ErrNoRows) {
		return change{}, false, nil
	}
	if err != nil {
		return change{}, false, fmt.Errorf("wallet: look up change %s %s: %w", cause, ref, err)
	}
	return c, true, nil
}

// sameMerchant refuses a change that names another merchant than the
// balance's: a seller belongs to one merchant.
func sameMerchant(b Balance, c change) error {
	if b.MerchantID != c.MerchantID {
		return fmt.Errorf("%w: %s %s: seller %s belongs to merchant %s, the change says %s",
			ErrConflict, c.Cause, c.Ref, c.SellerID, b.MerchantID, c.MerchantID)
	}
	return nil
}

// record writes c on the locked balance b: the new figures, the changes row
// and the wallet.balance.changed event. The caller holds b's lock and has
// checked that c's effect is new.
func record(ctx context.Context, tx pgx.Tx, b Balance, c change) (Balance, error) {
	after, err := c.next(b)
	if err != nil {
		return Balance{}, err
	}
	if err := tx.QueryRow(ctx, `UPDATE wallet.balances
SET pending_minor = $3, available_minor = $4, paid_out_minor = $5, version = $6, updated_at = clock_timestamp()
WHERE seller_id = $1 AND currency = $2 RETURNING updated_at`,
		c.SellerID, c.Currency, after.PendingMinor, after.AvailableMinor, after.PaidOutMinor, after.Version).Scan(&after.UpdatedAt); err != nil {
		return Balance{}, fmt.Errorf("wallet: update balance %s/%s: %w", c.SellerID, c.Currency, err)
	}
	var orderID *string
	if c.PaymentOrderID != "" {
		orderID = &c.PaymentOrderID
	}
	if _, err := tx.Exec(ctx, `INSERT INTO wallet.changes
  (seller_id, currency, cause, ref, payment_order_id, delta_pending, delta_available, delta_paid_out, version, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		c.SellerID, c.Currency, c.Cause, c.Ref, orderID, c.DeltaPending, c.DeltaAvailable, c.DeltaPaidOut, after.Version, after.UpdatedAt); err != nil {
		return Balance{}, fmt.Errorf("wallet: record change %s %s: %w", c.Cause, c.Ref, err)
	}

	payload, err := json.Marshal(contracts.WalletBalanceChanged{
		SellerID:            after.SellerID,
		MerchantID:          after.MerchantID,
		Currency:            after.Currency,
		Cause:               c.Cause,
		PaymentOrderID:      c.PaymentOrderID,
		Ref:                 c.Ref,
		DeltaPendingMinor:   c.DeltaPending,
		DeltaAvailableMinor: c.DeltaAvailable,
		DeltaPaidOutMinor:   c.DeltaPaidOut,
		PendingMinor:        after.PendingMinor,
		AvailableMinor:      after.AvailableMinor,
		PaidOutMinor:        after.PaidOutMinor,
		Version:             after.Version,
		ChangedAt:           after.UpdatedAt.UTC(),
	})
	if err != nil {
		return Balance{}, fmt.Errorf("wallet: encode %s: %w", contracts.SubjectWalletBalance, err)
	}
	if err := Store.Write(ctx, tx, &outbox.Message{
		Subject:          contracts.SubjectWalletBalance,
		Type:             contracts.TypeOf(contracts.SubjectWalletBalance),
		Source:           contracts.SourceWallet,
		AggregateID:      aggregateID(after.SellerID, after.Currency),
		AggregateVersion: after.Version,
		Payload:          payload,
	}); err != nil {
		return Balance{}, fmt.Errorf("wallet: write %s for %s %s: %w", contracts.SubjectWalletBalance, c.Cause, c.Ref, err)
	}
	return after, nil
}

// sumDeltaPending is Σ delta_pending of an order's changes of one cause
// (e.g. what its refunds took from pending).
func sumDeltaPending(ctx context.Context, tx pgx.Tx, cause, paymentOrderID string) (int64, error) {
	var sum int64
	if err := tx.QueryRow(ctx, `SELECT coalesce(sum(delta_pending), 0)::bigint FROM wallet.changes
WHERE payment_order_id = $1 AND cause = $2`, paymentOrderID, cause).Scan(&sum); err != nil {
		return 0, fmt.Errorf("wallet: sum %s changes of order %s: %w", cause, paymentOrderID, err)
	}
	return sum, nil
}

// recordRejection records that a payout request was refused, so that the
// decision is final: a re-sent request does not reserve later.
// first=false means the payout was rejected before.
func recordRejection(ctx context.Context, tx pgx.Tx, r contracts.PayoutRejected) (first bool, err error) {
	tag, err := tx.Exec(ctx, `INSERT INTO wallet.payout_rejections (payout_id, seller_id, currency, reason, available_minor, rejected_at)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payout_id) DO NOTHING`,
		r.PayoutID, r.SellerID, r.Currency, r.Reason, r.AvailableMinor, r.RejectedAt)
	if err != nil {
		return false, fmt.Errorf("wallet: record rejection of payout %s: %w", r.PayoutID, err)
	}
	return tag.RowsAffected() == 1, nil
}

// rejected reports whether the payout was rejected before.
func rejected(ctx context.Context, tx pgx.Tx, payoutID string) (bool, error) {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM wallet.payout_rejections WHERE payout_id = $1)`, payoutID).Scan(&ok); err != nil {
		return false, fmt.Errorf("wallet: look up rejection of payout %s: %w", payoutID, err)
	}
	return ok, nil
}

// writeEvent writes a wallet.payout.* event.
func writeEvent(ctx context.Context, tx pgx.Tx, subject, aggregateID string, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wallet: encode %s: %w", subject, err)
	}
	if err := Store.Write(ctx, tx, &outbox.Message{
		Subject:     subject,
		Type:        contracts.TypeOf(subject),
		Source:      contracts.SourceWallet,
		AggregateID: aggregateID,
		// The wallet decides a payout once (reserved or rejected): there
		// is never a version 2.
		AggregateVersion: 1,
		Payload:          payload,
	}); err != nil {
		return fmt.Errorf("wallet: write %s for %s: %w", subject, aggregateID, err)
	}
	return nil
}

// aggregateID names a balance in event envelopes: one seller's balance in one
// currency is the unit whose versions count up.
func aggregateID(sellerID, currency string) string { return sellerID + "/" + currency }

const balanceColumns = `seller_id, merchant_id, currency, pending_minor, available_minor, paid_out_minor, version, updated_at`

func scanBalance(r pgx.CollectableRow) (Balance, error) {
	var b Balance
	err := r.Scan(&b.SellerID, &b.MerchantID, &b.Currency, &b.PendingMinor, &b.AvailableMinor, &b.PaidOutMinor, &b.Version, &b.UpdatedAt)
	return b, err
}

// Balances returns a seller's balances, one per currency, by currency.
func Balances(ctx context.Context, pool *pgxpool.Pool, sellerID string) ([]Balance, error) {
	rows, err := pool.Query(ctx, `SELECT `+balanceColumns+` FROM wallet.balances WHERE seller_id = $1 ORDER BY currency`, sellerID)
	if err != nil {
		return nil, fmt.Errorf("wallet: read balances of %s: %w", sellerID, err)
	}
	out, err := pgx.CollectRows(rows, scanBalance)
	if err != nil {
		return nil, fmt.Errorf("wallet: read balances of %s: %w", sellerID, err)
	}
	return out, nil
}

// All returns every balance, by seller and currency. It reads the whole
// table: for operators and checks, not for request paths.
func All(ctx context.Context, pool *pgxpool.Pool) ([]Balance, error) {
	rows, err := pool.Query(ctx, `SELECT `+balanceColumns+` FROM wallet.balances ORDER BY seller_id, currency`)
	if err != nil {
		return nil, fmt.Errorf("wallet: read balances: %w", err)
	}
	out, err := pgx.CollectRows(rows, scanBalance)
	if err != nil {
		return nil, fmt.Errorf("wallet: read balances: %w", err)
	}
	return out, nil
}
