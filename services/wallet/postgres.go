package wallet

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"

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
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return migrate.Schema{Store: Store, SQL: sub}
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
	if _, err := tx.Exec(ctx, `INSERT INTO wallet.balances
  (seller_id, currency, merchant_id, pending_minor, available_minor, paid_out_minor, version)
VALUES ($1, $2, $3, 0, 0, 0, 0) ON CONFLICT (seller_id, currency) DO NOTHING`, c.SellerID, c.Currency, c.MerchantID); err != nil {
		return Balance{}, false, fmt.Errorf("wallet: create balance %s/%s: %w", c.SellerID, c.Currency, err)
	}
	b := Balance{SellerID: c.SellerID, Currency: c.Currency}
	if err := tx.QueryRow(ctx, `SELECT merchant_id, pending_minor, available_minor, paid_out_minor, version, updated_at
FROM wallet.balances WHERE seller_id = $1 AND currency = $2 FOR UPDATE`, c.SellerID, c.Currency).
		Scan(&b.MerchantID, &b.PendingMinor, &b.AvailableMinor, &b.PaidOutMinor, &b.Version, &b.UpdatedAt); err != nil {
		return Balance{}, false, fmt.Errorf("wallet: lock balance %s/%s: %w", c.SellerID, c.Currency, err)
	}

	var prev change
	err := tx.QueryRow(ctx, `SELECT seller_id, currency, delta_pending, delta_available, delta_paid_out
FROM wallet.changes WHERE cause = $1 AND ref = $2`, c.Cause, c.Ref).
		Scan(&prev.SellerID, &prev.Currency, &prev.DeltaPending, &prev.DeltaAvailable, &prev.DeltaPaidOut)
	switch {
	case err == nil:
		prev.MerchantID, prev.Cause, prev.Ref = c.MerchantID, c.Cause, c.Ref
		if prev != c {
			return Balance{}, false, fmt.Errorf("%w: %s %s: recorded %+v, now %+v", ErrConflict, c.Cause, c.Ref, prev, c)
		}
		return b, false, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return Balance{}, false, fmt.Errorf("wallet: look up change %s %s: %w", c.Cause, c.Ref, err)
	}
	if b.MerchantID != c.MerchantID {
		return Balance{}, false, fmt.Errorf("%w: %s %s: seller %s belongs to merchant %s, the change says %s",
			ErrConflict, c.Cause, c.Ref, c.SellerID, b.MerchantID, c.MerchantID)
	}

	after, err := c.next(b)
	if err != nil {
		return Balance{}, false, err
	}
	if err := tx.QueryRow(ctx, `UPDATE wallet.balances
SET pending_minor = $3, available_minor = $4, paid_out_minor = $5, version = $6, updated_at = clock_timestamp()
WHERE seller_id = $1 AND currency = $2 RETURNING updated_at`,
		c.SellerID, c.Currency, after.PendingMinor, after.AvailableMinor, after.PaidOutMinor, after.Version).Scan(&after.UpdatedAt); err != nil {
		return Balance{}, false, fmt.Errorf("wallet: update balance %s/%s: %w", c.SellerID, c.Currency, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO wallet.changes
  (seller_id, currency, cause, ref, delta_pending, delta_available, delta_paid_out, version, at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		c.SellerID, c.Currency, c.Cause, c.Ref, c.DeltaPending, c.DeltaAvailable, c.DeltaPaidOut, after.Version, after.UpdatedAt); err != nil {
		return Balance{}, false, fmt.Errorf("wallet: record change %s %s: %w", c.Cause, c.Ref, err)
	}

	ev := contracts.WalletBalanceChanged{
		SellerID:          after.SellerID,
		MerchantID:        after.MerchantID,
		Currency:          after.Currency,
		Cause:             c.Cause,
		DeltaPendingMinor: c.DeltaPending,
		PendingMinor:      after.PendingMinor,
		AvailableMinor:    after.AvailableMinor,
		PaidOutMinor:      after.PaidOutMinor,
		Version:           after.Version,
		ChangedAt:         after.UpdatedAt.UTC(),
	}
	if c.Cause == contracts.CauseOrderSucceeded {
		ev.PaymentOrderID = c.Ref
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		return Balance{}, false, fmt.Errorf("wallet: encode %s: %w", contracts.SubjectWalletBalance, err)
	}
	if err := Store.Write(ctx, tx, &outbox.Message{
		Subject:          contracts.SubjectWalletBalance,
		Type:             contracts.TypeOf(contracts.SubjectWalletBalance),
		Source:           contracts.SourceWallet,
		AggregateID:      aggregateID(after.SellerID, after.Currency),
		AggregateVersion: after.Version,
		Payload:          payload,
	}); err != nil {
		return Balance{}, false, fmt.Errorf("wallet: write %s for %s %s: %w", contracts.SubjectWalletBalance, c.Cause, c.Ref, err)
	}
	return after, true, nil
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
