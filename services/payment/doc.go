// Package payment is the service buyers and merchants talk to: the HTTP API
// (merchants' API keys, sellers, checkouts, payment orders, idempotency
// keys), the PSP webhook receiver, and the state machine that turns the PSP's
// answers into payments.order.* events. It owns the PostgreSQL schema
// "payment" and talks to other services only through events.
package payment
