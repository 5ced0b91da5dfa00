// Package demo is the backbone demo service: the smallest service that uses
// every part of paypipe's outbox → JetStream → inbox pipeline, standing in
// until the payment services exist. `paypipe demo` drives it end to end.
//
// It owns the PostgreSQL schema "demo": orders, a per-currency projection
// (order_totals), and the outbox and inbox tables every service has.
//
//   - PlaceOrder inserts an order and its demo.order.placed event in one
//     transaction, so the event exists if and only if the order does; it never
//     talks to NATS. A relay publishes the event later.
//   - The demo-projector consumer (Consumer) adds each order to its currency's
//     total inside the inbox transaction. The inbox row and the total commit
//     together, so a message redelivered by JetStream, re-sent by a relay after
//     a crash, or replayed from a dead-letter queue changes the total at most
//     once. Because totals are sums, any double application shows up as a
//     wrong number, which is what the demo and the tests check.
//
// Amounts are int64 minor units with an ISO 4217 code; nothing here uses
// floating point. Sums that would overflow fail in PostgreSQL (bigint range
// check) rather than wrap.
package demo
