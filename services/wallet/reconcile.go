package wallet

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
)

// maxDrifts bounds what CheckAgainstLedger returns: after a systematic fault
// every seller could drift, and the first thousand say enough.
const maxDrifts = 1000

// CheckAgainstLedger verifies RELIABILITY.md I3: for every (seller,
// currency), the wallet's pending + available equals the ledger's
// seller_payable:<seller> credit balance (Σ credits − Σ debits of its
// postings). A side with no record counts as 0, so money in one service and
// not the other is a drift. No drift means an empty slice.
//
// This is the one place where code reads two services' schemas: an operator
// check (`paypipe verify`, tests, the reconciler's wallet ↔ ledger pass) needs
// both in one snapshot, which a single SQL statement gives. No service logic
// may depend on it; services still talk only through events. It needs the
// wallet and ledger schemas in one database.
//
// The wallet and the ledger apply each event in their own transactions, so
// while events are in flight a drift can be transient: run it on a drained
// pipeline, or re-run it and act only on drifts that persist. It sums every
// seller posting: run it off-peak on a large ledger.
func CheckAgainstLedger(ctx context.Context, pool *pgxpool.Pool) ([]Drift, error) {
	rows, err := pool.Query(ctx, `WITH w AS (
  SELECT seller_id, currency, pending_minor, available_minor FROM wallet.balances
), l AS (
  SELECT substr(account, length($1) + 1) AS seller_id, currency,
    coalesce(sum(amount_minor) FILTER (WHERE direction = 'credit'), 0)
      - coalesce(sum(amount_minor) FILTER (WHERE direction = 'debit'), 0) AS payable
  FROM ledger.postings WHERE starts_with(account, $1)
  GROUP BY account, currency
)
SELECT coalesce(w.seller_id, l.seller_id), coalesce(w.currency, l.currency),
  coalesce(w.pending_minor, 0), coalesce(w.available_minor, 0),
  coalesce(w.pending_minor::numeric + w.available_minor, 0)::bigint,
  coalesce(l.payable, 0)::bigint,
  CASE WHEN w.seller_id IS NULL THEN 'wallet' WHEN l.seller_id IS NULL THEN 'ledger' ELSE '' END
FROM w FULL JOIN l ON l.seller_id = w.seller_id AND l.currency = w.currency
WHERE coalesce(w.pending_minor::numeric + w.available_minor, 0) <> coalesce(l.payable, 0)
ORDER BY 1, 2 LIMIT $2`, contracts.AccountSellerPayablePrefix, maxDrifts)
	if err != nil {
		return nil, fmt.Errorf("wallet: check against ledger: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Drift, error) {
		var d Drift
		err := r.Scan(&d.SellerID, &d.Currency, &d.PendingMinor, &d.AvailableMinor, &d.WalletMinor, &d.LedgerMinor, &d.Missing)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("wallet: check against ledger: %w", err)
	}
	if out == nil {
		out = []Drift{}
	}
	return out, nil
}
