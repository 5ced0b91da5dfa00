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
// evidence for a person, never applied. An order is completed once the
// ledger and the wallet both reported it; the checkout with its last order.
package payment
