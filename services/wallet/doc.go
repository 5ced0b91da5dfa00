// Package wallet keeps sellers' balances: per seller and currency, how much
// is pending (captured, not yet releasable), available (releasable for
// pay-out) and paid out. It owns the PostgreSQL schema "wallet": balances,
// their change history, and the outbox and inbox every service has.
//
// # What it guarantees
//
//   - One change per business effect: every change is a row in changes with
//     UNIQUE (cause, ref), e.g. (order_succeeded, <payment order id>). A
//     message delivered twice is stopped by the inbox; the same payment order
//     re-sent under a new message id finds its change and does nothing; the
//     same effect with different figures is ErrConflict.
//   - No lost updates: a change locks its balance row (SELECT … FOR UPDATE,
//     after creating the row on first use) before it reads the history and
//     writes the new figures, so concurrent changes of one balance serialise.
//     The version counts changes; the changes row, the new balance and the
//     wallet.balance.changed event (balance after the change, version) commit
//     in the inbox transaction, all or nothing.
//   - Bounds in the database: pending and paid-out cannot go negative
//     (CHECK); available may, on purpose (a refund after a pay-out leaves the
//     seller owing). Sums are checked for overflow. The history is
//     append-only (a trigger raises on UPDATE, DELETE and TRUNCATE).
//
// # Consumers
//
// wallet-payments (payments.order.succeeded) adds the order's net, computed
// once by payment and carried in the event, to the seller's pending balance.
// An event whose fee + net ≠ amount, or whose amounts are not positive, is
// refused with ErrInvalidEvent, exactly as the ledger refuses it (if one
// accepted what the other refused they would drift apart), and logged: it is
// a permanent error and must be dead-lettered.
//
// # Wallet and ledger
//
// pending + available must always equal the ledger's seller_payable:<seller>
// balance in the same currency (RELIABILITY.md I3). CheckAgainstLedger checks
// it; it is the only code that reads another service's schema, for operators
// and tests only.
package wallet
