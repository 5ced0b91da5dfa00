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
// wallet-fulfilments (payments.order.fulfilled), change (order_fulfilled,
// order id): moves the order's net, minus what its refunds already took
// from pending, from pending to available, never more than pending (0 is
// still recorded, so a re-send stays a no-op).
//
// wallet-refunds (payments.refund.succeeded), change (refund_succeeded,
// refund id): takes the refund's net from available if the order was
// fulfilled, else from pending (and from available for whatever pending
// lacks). available may go negative: a refund after a pay-out leaves the
// seller owing the platform, recovered from later sales, which a payout
// only reserves once available is positive again.
//
// A fulfilment or refund that arrives before its order's credit returns
// ErrNotYet, a transient error: the runner redelivers it after its retry
// delay (and dead-letters it when the attempts run out, for a replay).
// Changes record their payment order (payment_order_id) so a fulfilment
// and the order's refunds find each other.
//
// wallet-payouts (payouts.payout.requested | failed): a request reserves
// everything available (change payout_reserved, payout id: available →
// paid_out) under the balance row's lock, so concurrent refunds,
// fulfilments and other payouts serialise with it and a reservation never
// exceeds what was available when it was made (RELIABILITY.md F19, I9);
// it emits wallet.payout.reserved. Less than Config.MinPayoutMinor (≤ 0
// included) emits wallet.payout.rejected and is kept in payout_rejections.
// Either decision is final for the payout id: the amount depends on the
// balance, so the effect's key is looked up before anything is computed,
// and a re-sent request emits and changes nothing even if money became
// available since. A failed payout returns what was reserved (change
// payout_returned: paid_out → available), only if it was reserved.
//
// Every change's wallet.balance.changed carries its ref and all three
// deltas.
//
// # Wallet and ledger
//
// pending + available must always equal the ledger's seller_payable:<seller>
// balance in the same currency (RELIABILITY.md I3) once the pipeline is
// drained: a refund takes net from both; a reservation leaves the wallet
// when requested and the ledger (payout_initiated) when the payout is
// created; a failed payout returns to both. CheckAgainstLedger checks
// it; it is the only code that reads another service's schema, for operators
// and tests only.
package wallet
