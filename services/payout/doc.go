// Package payout pays sellers: it turns their available balances into
// payouts, sends them through the PSP's payout API, and follows them to
// paid or failed. It owns the PostgreSQL schema "payout" (payouts, a
// projection of balances, webhook receipts, a quarantine and an audit trail
// of transitions, plus its outbox and inbox) and talks to the wallet only
// through events and to the PSP only through psp.PayoutClient.
//
// # Flow
//
//	wallet.balance.changed ──▶ balances projection (highest version wins)
//	RunPayouts / schedule  ──▶ payout requested ──▶ payouts.payout.requested ──▶ wallet
//	wallet.payout.reserved ──▶ created (amount = the wallet's)  payouts.payout.created
//	wallet.payout.rejected ──▶ canceled                          payouts.payout.canceled
//	sender: PSP CreatePayout ──▶ sent | failed                   payouts.payout.sent | failed
//	webhook or resolver poll ──▶ paid | failed                   payouts.payout.paid | failed
//
// Every status change is one transaction: the payout row (version + 1), an
// audit row in transitions and the event, which carries the payout after
// the change (contracts.PayoutChanged) with the version as its aggregate
// version. Statuses only move forward; a report for a payout that has
// moved on is ignored, one that contradicts it is quarantined.
//
// # Runs and the schedule
//
// A payout's id is UUIDv5(seller|currency|period) (ID), and the table has
// UNIQUE (seller_id, currency, period). RunPayouts inserts the payouts of
// one batch of candidates (available > 0) with ON CONFLICT DO NOTHING and
// writes a requested event only for the rows it inserted, so a run is
// idempotent per seller, currency and period, whether repeated, resumed
// after a crash, or racing another run. Config.Schedule runs the latest
// tick's period at start and at every tick on every replica, without a
// lock or a leader: the unique key is the guard, and concurrent runs insert
// in the same (seller, currency) order, so they wait on each other rather
// than deadlock. The service never decides an amount: the wallet reserves
// everything available under its balance row lock (so a payout can never
// exceed the balance, whatever refunds race it) and reports the amount.
//
// # Sending (RELIABILITY F20, I9)
//
// The PSP is called outside any transaction. The sender claims created
// payouts under a lease (UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP
// LOCKED)), counting attempts up, and commits; then it calls CreatePayout
// with IdempotencyKey = MerchantReference = the payout id, on every attempt
// by every replica; every retry first asks FindPayoutByReference, so a
// payout the PSP made before its answer was lost is found, not repeated.
// The write-back is guarded by the lease (status created and the claim's
// attempt count): a sender whose lease expired, or whose payout a webhook
// moved on, writes nothing. Hence at most one PSP payout per payout id:
//
//   - a timeout after the PSP executed is an unknown outcome, retried with
//     the same key after Config.Retry's backoff (honouring Retry-After);
//   - a crash (or stop) between the call and the write leaves the payout
//     created under an expiring lease; the next sender looks it up;
//   - only a definite refusal of the create (psp.IsPermanent) fails the
//     payout; the wallet then returns the money to available;
//   - an unknown outcome is retried until GiveUpAfter after the
//     reservation, then the payout is marked stuck (stuck_at), logged and
//     counted for an operator, never failed: the PSP may have paid it.
//
// # Webhooks and the resolver
//
// Handler serves POST /v1/psp/payout_webhooks: the PSP-Signature is
// verified (any of Config.WebhookSecrets, ±WebhookTolerance; 400
// problem+json otherwise, nothing recorded), the event id is recorded in
// webhook_receipts in the same transaction as its effect (a repeat is a
// no-op), and payout.paid | payout.failed moves a sent payout (or a created
// one whose sent answer was lost: sent is then recorded first) to paid |
// failed. A report whose amount, currency, reference or PSP id disagrees
// with the payout, or whose final status contradicts the recorded one, is
// quarantined with the evidence. A database error answers 503 with
// Retry-After so the PSP retries. Webhooks can be lost, so the resolver
// polls GetPayout for payouts sent more than ResolveAfter ago, with
// exponential backoff up to ResolveMaxInterval, until ResolveHorizon.
//
// # Loops
//
// Run runs the sender, the resolver and the schedule, each shaped like the
// outbox relay: a Config with defaults and validation, bounded batches
// (BatchSize) and PSP concurrency (Concurrency), a per-call timeout
// (CallTimeout), a poll interval plus a wake-up hint (the reservation
// consumer's), a bounded backoff when the database fails, and a clean stop
// on ctx.
package payout
