// Package ledger is paypipe's double-entry book of record. It owns the
// PostgreSQL schema "ledger": accounts, journal entries, their postings,
// running balances per account and currency, and the outbox and inbox every
// service has.
//
// # What it guarantees
//
// Money only moves in journal entries: two or more postings in one currency
// whose debits equal their credits. The rules are enforced by the database,
// not only by this package, so no caller (a bug, a hand-written SQL fix, a
// future service) can break them without DDL rights:
//
//   - Balanced: a DEFERRABLE INITIALLY DEFERRED constraint trigger checks, at
//     COMMIT, that every entry written in the transaction has ≥ 2 postings and
//     Σ debits = Σ credits per currency. An unbalanced transaction does not
//     commit.
//   - Immutable: triggers raise on UPDATE, DELETE and TRUNCATE of entries,
//     postings and accounts (the schema owner cannot REVOKE from itself, so
//     the trigger is the guard), and postings may join an entry only in the
//     transaction that created it. A mistake is corrected by a new entry.
//   - One currency per entry: a posting's currency is its entry's (a
//     composite foreign key).
//   - Positive amounts, checked sums: amounts are bigint minor units > 0;
//     Go sums with overflow checks, PostgreSQL raises on bigint overflow of a
//     running balance, and the balance check sums in numeric.
//
// Only a role that can ALTER the tables (disable triggers) or a superuser
// can get past these; the application role should have neither
// (RELIABILITY.md §0.8). CheckBalanced re-verifies everything from the
// postings for operators: per entry, per currency over all postings, and the
// running balances against Σ postings.
//
// # Idempotent posting
//
// Post follows TigerBeetle's contract. Every entry carries an external id,
// the id of the business effect it records (order_captured:<payment order
// id>); the entry id is derived from it (UUIDv5). Posting the same effect
// again is a no-op that reports posted=false, which callers treat as
// success; posting it with any different field (kind, merchant, payment
// order, currency, any line) is ErrExternalIDConflict: the first entry
// stands and the disagreement needs an operator. So a message delivered
// twice is stopped by the inbox, and the same payment order re-sent under a
// new message id is stopped by the external id's UNIQUE key.
//
// # Consumers
//
// ledger-payments (payments.order.succeeded) posts
//
//	Dr psp_receivable           amount
//	    Cr seller_payable:<id>  net
//	    Cr platform_fee_revenue fee
//
// with the fee and net that payment computed once and carried in the event
// (the ledger never recomputes them), leaving out a zero line. An event whose
// fee + net ≠ amount, or whose amounts are not positive, is refused with
// ErrInvalidEvent and logged: it is a permanent error and must be
// dead-lettered, never half-posted. Entries, their postings, the balance
// updates and the ledger.entry.posted event commit in the inbox transaction.
//
// Every entry also carries how the PSP knows its money movement, for the
// reconciler: Reference (paypipe's id: checkout, refund or payout),
// PSPReference (the PSP's id, indexed) and PSPAmountMinor (the gross the
// PSP moved under it: a capture's whole checkout). They are stored and
// emitted in ledger.entry.posted, but describe the effect rather than
// change it, so they take no part in the replay comparison.
//
// ledger-refunds (payments.refund.succeeded) posts the reversal, external
// id order_refunded:<refund id>:
//
//	Dr seller_payable:<id>    net
//	Dr platform_fee_revenue   fee
//	    Cr psp_receivable     amount
//
// ledger-payouts (payouts.payout.created | paid | failed) posts a payout's
// life, external ids <kind>:<payout id>:
//
//	created  payout_initiated  Dr seller_payable:<id>  / Cr payout_in_transit
//	paid     payout_paid       Dr payout_in_transit    / Cr bank
//	failed   payout_returned   Dr payout_in_transit    / Cr seller_payable:<id>
//
// Events of one payout may arrive in any order. paid and failed first post
// the initiation from their own payload if it is missing (same transaction),
// so payout_in_transit never goes negative; a late created is then a no-op
// by external id. A failed payout of amount 0 was never created and posts
// nothing. paid and returned exclude each other: both lock the initiation
// row before checking for the other, and the second is refused.
//
// ledger-settlements (recon.batch.settled) posts, external id
// settlement:<batch id>, with directions by sign and zero lines left out:
//
//	Dr bank             charges − refunds − fees  (Cr if negative)
//	Dr psp_fee_expense  fees
//	    Cr psp_receivable  charges − refunds      (Dr if negative)
//
// A settlement is the platform's own movement: it has no merchant
// (merchant_id is NULL, and "" in the event). A batch whose figures are all
// zero posts nothing.
//
// Every consumed event is checked with its contracts Validate method, the
// rules the wallet applies too, so the two refuse the same events.
//
// # Contention
//
// Running balances are rows: every entry in a currency updates
// psp_receivable's row for that currency, so entries of one currency
// serialise on that row's lock for the rest of their transaction. Rows are
// locked in account order, so concurrent entries cannot deadlock on them.
package ledger
