// Package verify checks paypipe's invariants (RELIABILITY.md §6.2) on a live
// database: what `paypipe verify` runs, what the tests and the chaos suite
// assert after every scenario, and what an operator runs after an incident.
//
// It reads every service's schema. That is allowed here and nowhere else:
// these are operator checks that need one consistent view across services;
// no service logic depends on them. The pipeline is asynchronous, so an
// effect that is merely in flight is not a violation: checks about missing
// effects only look at objects older than Options.Grace.
package verify

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/services/ledger"
	"github.com/paypipe/paypipe/services/wallet"
)

// Options tune the checks.
type Options struct {
	// Horizon: a checkout not final after this long is stuck (I4). Default
	// 2 h: hosted checkouts legitimately wait for the buyer until the PSP
	// expires them (1 h by default).
	Horizon time.Duration
	// Grace: effects of an order are expected once it is this old (I5).
	// Default 5 min.
	Grace time.Duration
	// Limit bounds the violations listed per check: default 100.
	Limit int
}

func (o Options) withDefaults() Options {
	if o.Horizon <= 0 {
		o.Horizon = 2 * time.Hour
	}
	if o.Grace <= 0 {
		o.Grace = 5 * time.Minute
	}
	if o.Limit <= 0 {
		o.Limit = 100
	}
	return o
}

// Violation is one broken invariant.
type Violation struct {
	Check     string `json:"check"`     // the check that found it (one of Report.Checks)
	Invariant string `json:"invariant"` // e.g. "I2 ledger balanced"
	Subject   string `json:"subject"`   // what it is about (entry, seller, checkout id)
	Detail    string `json:"detail"`
}

// Report is the outcome of Run.
type Report struct {
	Checks     []string    `json:"checks"`
	Violations []Violation `json:"violations"`
	// Warnings need a person but are not broken invariants (quarantined reports).
	Warnings []string `json:"warnings"`
	// Counts summarise what was checked.
	Counts map[string]int64 `json:"counts"`
}

// OK reports whether no invariant is broken.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Run checks every invariant.
func Run(ctx context.Context, pool *pgxpool.Pool, o Options) (Report, error) {
	o = o.withDefaults()
	r := Report{Counts: map[string]int64{}}
	add := func(inv, subject, detail string) {
		r.Violations = append(r.Violations, Violation{Check: r.Checks[len(r.Checks)-1], Invariant: inv, Subject: subject, Detail: detail})
	}

	r.Checks = append(r.Checks, "I2 ledger balanced per entry and currency; balances equal postings")
	vs, err := ledger.CheckBalanced(ctx, pool)
	if err != nil {
		return r, err
	}
	for _, v := range vs {
		add("I2 ledger balanced", firstNonEmpty(v.EntryID, v.Account, v.Currency), fmt.Sprintf("%s: %s (debits %d, credits %d %s)", v.Kind, v.Detail, v.DebitsMinor, v.CreditsMinor, v.Currency))
	}

	r.Checks = append(r.Checks, "I3 wallet equals ledger seller_payable")
	ds, err := wallet.CheckAgainstLedger(ctx, pool)
	if err != nil {
		return r, err
	}
	for _, d := range ds {
		add("I3 wallet = ledger", fmt.Sprintf("seller %s %s", d.SellerID, d.Currency), fmt.Sprintf("%+v", d))
	}

	queries := []struct {
		inv, desc, sql string
		args           []any
	}{
		{"I4 no stuck payment", "checkouts not final after the horizon",
			`SELECT id::text, status || ' since ' || created_at::text FROM payment.checkouts
WHERE status NOT IN ('failed', 'completed') AND created_at < now() - $1::interval ORDER BY created_at LIMIT $2`,
			[]any{o.Horizon, o.Limit}},
		{"I5 no event lost", "succeeded orders without their ledger entry after the grace period",
			`SELECT o.id::text, 'order ' || o.status || ', no ledger entry' FROM payment.payment_orders o
WHERE o.status IN ('succeeded', 'completed') AND o.updated_at < now() - $1::interval
  AND NOT EXISTS (SELECT 1 FROM ledger.journal_entries e WHERE e.external_id = 'order_captured:' || o.id::text)
ORDER BY o.id LIMIT $2`, []any{o.Grace, o.Limit}},
		{"I5 no event lost", "succeeded orders without their wallet change after the grace period",
			`SELECT o.id::text, 'order ' || o.status || ', no wallet change' FROM payment.payment_orders o
WHERE o.status IN ('succeeded', 'completed') AND o.updated_at < now() - $1::interval
  AND NOT EXISTS (SELECT 1 FROM wallet.changes c WHERE c.cause = 'order_succeeded' AND c.ref = o.id::text)
ORDER BY o.id LIMIT $2`, []any{o.Grace, o.Limit}},
		{"I5 no event lost", "succeeded orders not completed after the grace period",
			`SELECT id::text, 'succeeded at ' || updated_at::text || ' and never completed' FROM payment.payment_orders
WHERE status = 'succeeded' AND updated_at < now() - $1::interval ORDER BY id LIMIT $2`, []any{o.Grace, o.Limit}},
		{"I5 no event lost", "outbox rows unpublished after the grace period",
			`SELECT schema, count(*)::text || ' rows pending, oldest ' || min(created_at)::text FROM (
  SELECT 'payment' AS schema, created_at FROM payment.outbox WHERE published_at IS NULL
  UNION ALL SELECT 'ledger', created_at FROM ledger.outbox WHERE published_at IS NULL
  UNION ALL SELECT 'wallet', created_at FROM wallet.outbox WHERE published_at IS NULL
  UNION ALL SELECT 'executor', created_at FROM executor.outbox WHERE published_at IS NULL
  UNION ALL SELECT 'payout', created_at FROM payout.outbox WHERE published_at IS NULL
  UNION ALL SELECT 'recon', created_at FROM recon.outbox WHERE published_at IS NULL) p
WHERE created_at < now() - $1::interval GROUP BY schema LIMIT $2`, []any{o.Grace, o.Limit}},
		{"I6 no effect applied twice", "ledger entries of failed or unknown orders",
			`SELECT e.external_id, 'entry for an order that is ' || coalesce(o.status, 'unknown') FROM ledger.journal_entries e
LEFT JOIN payment.payment_orders o ON e.external_id = 'order_captured:' || o.id::text
WHERE e.kind = 'order_captured' AND (o.id IS NULL OR o.status NOT IN ('succeeded', 'completed')) LIMIT $1`, []any{o.Limit}},
		{"I6 no effect applied twice", "ledger amounts that differ from the order",
			`SELECT o.id::text, format('order %s %s, ledger psp_receivable %s', o.amount_minor, o.currency, sum(p.amount_minor))
FROM payment.payment_orders o JOIN ledger.journal_entries e ON e.external_id = 'order_captured:' || o.id::text
JOIN ledger.postings p ON p.entry_id = e.id AND p.account = 'psp_receivable' AND p.direction = 'debit'
GROUP BY o.id, o.amount_minor, o.currency HAVING sum(p.amount_minor) <> o.amount_minor LIMIT $1`, []any{o.Limit}},
		{"I10 monotonic state", "status transitions that went backwards",
			`SELECT object_id::text, from_status || ' -> ' || to_status || ' (' || cause || ')' FROM payment.status_transitions
WHERE (object_type <> 'refund' AND NOT (from_status = '' AND to_status = 'created') AND NOT (
  (from_status = 'created' AND to_status IN ('requires_action', 'processing', 'succeeded', 'failed')) OR
  (from_status = 'requires_action' AND to_status IN ('processing', 'succeeded', 'failed')) OR
  (from_status = 'processing' AND to_status IN ('succeeded', 'failed')) OR
  (from_status = 'succeeded' AND to_status = 'completed')))
OR (object_type = 'refund' AND NOT (
  (from_status = '' AND to_status = 'pending') OR (from_status = 'pending' AND to_status IN ('succeeded', 'failed'))))
LIMIT $1`, []any{o.Limit}},
		{"I10 monotonic state", "payout transitions that went backwards",
			`SELECT payout_id::text, coalesce(from_status, '') || ' -> ' || to_status FROM payout.transitions
WHERE NOT ((coalesce(from_status, '') = '' AND to_status = 'requested') OR
  (from_status = 'requested' AND to_status IN ('created', 'canceled')) OR
  (from_status = 'created' AND to_status IN ('sent', 'paid', 'failed')) OR
  (from_status = 'sent' AND to_status IN ('paid', 'failed'))) LIMIT $1`, []any{o.Limit}},
		{"I6 no effect applied twice", "orders refunded beyond their captured amount",
			`SELECT o.id::text, format('captured %s %s, refunds pending or succeeded %s', o.amount_minor, o.currency, sum(r.amount_minor))
FROM payment.payment_orders o JOIN payment.refunds r ON r.payment_order_id = o.id AND r.status <> 'failed'
GROUP BY o.id, o.amount_minor, o.currency HAVING sum(r.amount_minor) > o.amount_minor LIMIT $1`, []any{o.Limit}},
		{"I9 payout safety", "payouts whose amount differs from what the wallet reserved for them",
			`SELECT p.id::text, format('payout %s %s, wallet reserved %s', p.amount_minor, p.currency, -c.delta_available)
FROM payout.payouts p JOIN wallet.changes c ON c.cause = 'payout_reserved' AND c.ref = p.id::text
WHERE p.status IN ('created', 'sent', 'paid', 'failed') AND p.amount_minor <> -c.delta_available LIMIT $1`, []any{o.Limit}},
		{"I9 payout safety", "wallet reservations without a payout after the grace period",
			`SELECT c.ref, format('reserved %s %s for seller %s', -c.delta_available, c.currency, c.seller_id)
FROM wallet.changes c LEFT JOIN payout.payouts p ON p.id::text = c.ref AND p.status IN ('created', 'sent', 'paid', 'failed')
WHERE c.cause = 'payout_reserved' AND p.id IS NULL AND c.at < now() - $1::interval LIMIT $2`, []any{o.Grace, o.Limit}},
		{"I9 payout safety", "finished payouts still in transit in the ledger after the grace period",
			`SELECT p.id::text, format('%s payout, payout_in_transit %s', p.status, sum(CASE WHEN po.direction = 'credit' THEN po.amount_minor ELSE -po.amount_minor END))
FROM payout.payouts p JOIN ledger.journal_entries e ON e.external_id IN ('payout_initiated:' || p.id, 'payout_paid:' || p.id, 'payout_returned:' || p.id)
JOIN ledger.postings po ON po.entry_id = e.id AND po.account = 'payout_in_transit'
WHERE p.status IN ('paid', 'failed') AND p.updated_at < now() - $1::interval
GROUP BY p.id, p.status HAVING sum(CASE WHEN po.direction = 'credit' THEN po.amount_minor ELSE -po.amount_minor END) <> 0 LIMIT $2`, []any{o.Grace, o.Limit}},
	}
	for _, q := range queries {
		r.Checks = append(r.Checks, q.inv+": "+q.desc)
		rows, err := pool.Query(ctx, q.sql, q.args...)
		if err != nil {
			return r, fmt.Errorf("verify: %s: %w", q.desc, err)
		}
		found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([2]string, error) {
			var s [2]string
			err := row.Scan(&s[0], &s[1])
			return s, err
		})
		if err != nil {
			return r, fmt.Errorf("verify: %s: %w", q.desc, err)
		}
		for _, f := range found {
			add(q.inv, f[0], f[1])
		}
	}

	var quarantined int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.quarantine`).Scan(&quarantined); err != nil {
		return r, fmt.Errorf("verify: quarantine: %w", err)
	}
	if quarantined > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d PSP reports quarantined (payment.quarantine): a person must review them", quarantined))
	}
	for name, sql := range map[string]string{
		"checkouts":       `SELECT count(*) FROM payment.checkouts`,
		"orders":          `SELECT count(*) FROM payment.payment_orders`,
		"orders_complete": `SELECT count(*) FROM payment.payment_orders WHERE status = 'completed'`,
		"journal_entries": `SELECT count(*) FROM ledger.journal_entries`,
		"wallet_changes":  `SELECT count(*) FROM wallet.changes`,
		"quarantined":     `SELECT count(*) FROM payment.quarantine`,
	} {
		var n int64
		if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
			return r, fmt.Errorf("verify: count %s: %w", name, err)
		}
		r.Counts[name] = n
	}
	return r, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
