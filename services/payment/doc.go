// Package payment is the service buyers and merchants talk to: the HTTP API
// (merchants' API keys, sellers, checkouts, payment orders, idempotency
// keys), the PSP webhook receiver, and the state machine that turns the PSP's
// answers into payments.order.* events. It owns the PostgreSQL schema
// "payment" and talks to other services only through events.
//
// The API's guarantees (authentication, tenant isolation, strict input, the
// problem+json error table) are described at the top of api.go; the
// Idempotency-Key contract (DESIGN.md §6: replay, 429 in flight, 422 on a
// different body) at the top of idempotency.go.
//
// The PSP's answer reaches payment by three channels: the signed webhook,
// executor's registration report, and executor's resolver, which polls the
// PSP when a webhook is late or lost. All three go through one function
// (applyPSPReport) under the checkout's row lock, and statuses only move
// forward (status.go), so arrival order and duplicates do not matter: the
// first report of a final status moves the checkout and writes one
// payments.order.succeeded or .failed per order, and every later report is a
// no-op. A report whose amount, currency or PSP payment id disagrees with the
// checkout, or that contradicts a final status, is quarantined with the
// evidence for a person, never applied. A fourth channel, the reconciler's
// recon.charge.confirmed (a charge the settlement file shows and the PSP
// confirmed), goes through the same function. An order is completed once
// the ledger and the wallet both reported it (the wallet's credit of the
// capture, not its later balance changes); the checkout with its last order.
//
// The pay-out half (issue 5): a completed order is fulfilled once, by the
// merchant (fulfil.go: payments.order.fulfilled, after which the wallet makes
// the seller's funds available). Refunds (refunds.go) are accepted under the
// order's row lock, so refunds that have not failed never exceed the captured
// amount, even concurrently; their fee split is decided once, at creation,
// and a full refund in any number of parts gives back exactly the order's
// fee. The PSP's answer, reported by executor, moves a refund forward only.
// Payouts are owned by the payout service; payment keeps a projection of
// payouts.payout.* (highest version wins) to serve GET /v1/payouts.
package payment
