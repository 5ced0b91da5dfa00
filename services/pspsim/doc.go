// Package pspsim is paypipe's payment service provider simulator: a separate
// HTTP server, with its own PostgreSQL schema (pspsim), that plays an external
// PSP in the shape of Stripe's PaymentIntents. paypipe reaches it only over
// HTTP, through psp.HTTPClient and the signed webhooks it receives, exactly as
// it would reach a real PSP; the two share no tables and no code paths other
// than the wire types of package psp. `paypipe pspsim` runs it as a process.
//
// # API
//
// /v1/* needs Authorization: Bearer <Config.APIKey>; errors are
// application/problem+json with a stable "code" (psp.HTTPClient copies it
// into psp.Error.Code):
//
//	POST /v1/payments                 create; confirm + payment_method charges at once (direct mode)
//	POST /v1/payments/{id}/confirm    charge a payment waiting for a payment method (server to server)
//	GET  /v1/payments/{id}
//	GET  /v1/payments?merchant_reference=…                          0 or 1 payment
//	GET  /v1/payments?created_after=RFC3339&starting_after=id&limit=1..100   oldest first, has_more
//	POST /v1/refunds                  {payment_id, amount_minor, currency, merchant_reference, reason}
//	GET  /v1/refunds/{id}
//	GET  /v1/refunds?merchant_reference=…&payment_id=…&limit=…    {refunds, has_more}
//	POST /v1/payouts                  {amount_minor, currency, merchant_reference, destination, description}
//	GET  /v1/payouts/{id}
//	GET  /v1/payouts?merchant_reference=…&destination=…&limit=…  {payouts, has_more}
//	GET  /v1/settlements/{YYYY-MM-DD} the day's settlement file, text/csv (docs/settlement-file.md)
//	GET  /pay/{token}, POST /pay/{token}   the hosted payment page (no authentication: the token is the secret)
//	GET  /admin/faults, POST /admin/faults, GET /admin/charges, GET /admin/webhooks,
//	GET  /admin/refunds, GET /admin/payouts,
//	GET  /admin/settlement_discrepancies?date=…, POST /admin/settlement_discrepancies   (Config.AdminKey)
//	GET  /healthz, GET /readyz
//
// Payments are JSON in psp.Payment's field names, with the status in the
// PSP's own words: requires_payment_method, processing, succeeded, failed.
// A hosted payment (no confirm) carries redirect_url = <PublicURL>/pay/<token>
// (a 128-bit random token) while it can be paid. A direct-mode decline is not
// an HTTP error: the payment comes back failed with a failure_code
// (card_declined, insufficient_funds; expired for an unpaid hosted payment
// after Config.HostedTTL).
//
// Error codes: 400 invalid_request (with "param"), idempotency_key_missing,
// idempotency_key_invalid, payment_unexpected_state (also: refund of a
// payment that did not succeed), currency_mismatch (a refund in another
// currency than its payment), amount_too_large (a refund above what is left
// to refund); 401 unauthorized; 404
// not_found; 409 duplicate_reference, idempotency_key_in_use (Retry-After);
// 413 request_too_large; 415 unsupported_media_type; 422
// idempotency_key_reused; 500 simulated_failure, internal_error.
//
// # Guarantees
//
//   - At most one charge per payment. A charge, its row in the charge log
//     (pspsim.charges, UNIQUE (payment_id)), the payment's new status and its
//     webhook events commit in one transaction, under a row lock and a
//     status guard; the unique constraint holds even if the code is wrong.
//   - Idempotency-Key (required on POST, at most 255 characters): the key row
//     is the first write of the request's transaction, so concurrent requests
//     with one key wait for the first and then replay it. The same key and
//     the same request (endpoint and normalised body) answer 200 with the
//     payment's current state and Idempotent-Replayed: true; the same key
//     with another request answers 422 idempotency_key_reused. A request
//     refused by validation stores no key. Keys are kept (Stripe prunes them
//     after 24 h).
//   - A request the simulator has started is finished even if the caller
//     hangs up (its transaction does not follow the request's context), as a
//     real PSP does: that is why a caller's timeout is an unknown outcome.
//   - One payment per merchant_reference: a create with a known reference
//     under another key answers 409 duplicate_reference. A real PSP allows
//     it; paypipe uses one key per reference, so a second payment could only
//     come from a bug, which this catches. It also means that even a retry
//     after a lost idempotency key can never charge a reference twice.
//   - Card data: the hosted page reduces the number to brand and last four
//     digits before anything is stored; the number, the CVC and the name are
//     never stored, logged or echoed back into the form.
//   - Webhooks are at least once, in no guaranteed order. Each state change
//     (processing, then succeeded or failed, in the transaction that makes
//     it) queues an event {id: evt_…, type, created, data: payment} in
//     pspsim.webhook_events, whose body is fixed at that moment. A background
//     sender posts it to Config.WebhookURL with psp.SignatureHeader signed
//     with every Config.WebhookSecrets entry at send time, and retries it
//     with exponential backoff (Config.WebhookBackoff, a retry.Policy) until
//     a 2xx or until it is Config.WebhookMaxAge old, when it is marked dead.
//     Delivery state is in the database, so a restart loses nothing; a
//     claimed event is leased rather than locked across the HTTP call, so a
//     sender that dies leaves it to be sent again after the lease.
//   - Fees: every charge records its processing fee, money.Fee of the amount
//     at Config.FeeBPS (half up), and the rate, at charge time.
//   - Refunds are synchronous: a refund the simulator accepts has succeeded
//     when the answer is sent (status succeeded; there is no refund webhook).
//     The refund log (pspsim.refunds, UNIQUE (merchant_reference)) and the
//     charge's running refunded total commit together; the total is updated
//     under the charge's row lock and bounded by a CHECK, so the sum of a
//     payment's refunds can never exceed its charge, even under concurrency.
//     Idempotency keys work as for payments (their own table, request_keys).
//   - Payouts: one per merchant_reference (UNIQUE: paypipe's payout id can be
//     paid out at most once, whatever the keys). A payout is pending for
//     Config.PayoutDelay, then a background pass moves it to paid (paid_at,
//     the day it settles) or failed (failure_code) and queues its webhook in
//     the same transaction; whether it fails is decided by the faults when it
//     is created. Payout webhooks (psp.PayoutEvent, payout.paid or
//     payout.failed) go through the same delivery queue as payment webhooks
//     (signing, retries, lease, duplicate and drop faults) to
//     Config.PayoutWebhookURL. The simulator does not check a payout against
//     the platform's PSP balance.
//   - Settlement files are generated on request from one read-only snapshot
//     of the database, streamed row by row (never a whole day in memory).
//     Seeded discrepancies are stored rows, resolved to a line when they are
//     recorded, so every download of a day is the same bytes. A day after
//     today (UTC) is not_found. WriteSettlementFile (and `paypipe pspsim
//     settlement`) writes the same file from the database, atomically.
//
// # Faults
//
// Faults (Config.Faults, POST /admin/faults) inject the failures paypipe must
// survive, drawn from a seeded math/rand/v2 source so that a sequential
// workload sees the same faults on every run: declines, a 500 before
// anything is done, a 500 or a held response after the commit (the caller
// cannot tell whether it was charged; a retry with the same key replays the
// outcome, and a replay is never hidden by these), latency, duplicated,
// reordered and dropped webhooks; for refunds and payouts, a 500 before, a
// 500 after the commit and a held answer, each with its own rate; and failed
// payouts (the next N, every payout to listed destinations, or a rate, with
// payout_failure_code, default account_closed). GET /admin/faults also
// counts the faults injected.
//
// # Loops
//
// Run runs three loops shaped like paypipe's others (a Config with defaults, a
// bounded batch claimed with FOR UPDATE SKIP LOCKED, a ticker (plus a wake-up
// for the sender), a clean stop on ctx): the webhook sender, the expiry of
// unpaid hosted payments and the payout pass. The expiry and payout passes
// make no external call, so they lock their rows in one transaction; only
// the sender, which calls out, leases them. Several simulators may share one
// database.
//
// The schema's outbox and inbox tables, created for every paypipe schema by
// internal/migrate, are unused: a webhook queue needs per-event delivery
// state (attempts, dead, dropped) that the outbox relay does not have.
package pspsim
