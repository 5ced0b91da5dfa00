// Package executor turns accepted checkouts into payments at the PSP: for
// each payments.checkout.created it creates (hosted) or charges (direct) one
// PSP payment, exactly once per checkout, whatever fails, and reports the
// PSP's answer as payments.checkout.registered, .rejected or, later,
// .resolved; and it sends refunds (payments.refund.created) to the PSP and
// reports the answer (payments.refund.reported). It owns the PostgreSQL
// schema "executor" (executor.attempts, executor.refunds, plus its outbox
// and inbox) and talks to the PSP only through PSP (psp.Client and
// psp.RefundClient).
//
// # Atomic phases
//
// The PSP is an external system, so no call to it ever happens inside a
// database transaction (that would be the dual write the outbox removes).
// Each checkout goes through phases, each one transaction, with the PSP call
// in a phase of its own between them (TECH-FACTS §6):
//
//  1. Record. The executor-checkouts consumer inserts the attempt in the
//     inbox transaction: the request (amount, currency, mode, payment method,
//     return URL), the idempotency key, status pending. ON CONFLICT DO
//     NOTHING: a second checkout.created for the same checkout, under any
//     message id and with any payload, changes nothing.
//  2. Claim. The registrar leases due attempts (pending and due, or
//     in_flight with an expired lease) with UPDATE … WHERE checkout_id IN
//     (SELECT … FOR UPDATE SKIP LOCKED LIMIT n), counting attempts up, and
//     commits. From here the lease, not an open transaction, protects the row.
//  3. Call. CreatePayment with IdempotencyKey = MerchantReference = the
//     checkout id, on every attempt, by every replica, forever: the key is
//     stored in the row (a CHECK ties it to the checkout id) and read back,
//     never made up. After LookupAfter attempts, FindByReference first.
//  4. Write back, in one transaction guarded by the lease (status in_flight
//     and the attempt count of the claim): registered plus its event,
//     rejected plus its event, or back to pending with a backoff. A
//     registrar whose lease expired and whose row was claimed again matches
//     nothing: its late answer is dropped, never written over a newer one.
//
// # Guarantees
//
//   - At most one payment per checkout at the PSP, because every call for a
//     checkout carries the same idempotency key; the PSP's idempotency is what
//     makes a repeated call safe, and the executor's job is to never vary the
//     key or the request.
//   - A checkout is eventually answered: a crash anywhere leaves the row
//     pending or in_flight, and it is retried (after the lease expires).
//     Stopping the executor mid-call is the same as a crash: nothing is
//     recorded, and the next registrar repeats the call after Lease.
//   - An unknown outcome (timeout, dropped connection, 5xx, 409, 429) is
//     never a failure. It is retried with exponential backoff and jitter
//     (Config.Retry, a retry.Policy), honouring the PSP's Retry-After (a
//     429's, a 503's). Retries are unbounded in count but bounded in time:
//     after GiveUpAfter without an answer the attempt is marked stuck,
//     logged at error level with the checkout id and counted
//     (paypipe_executor_stuck_total, StatusCounts). It is never marked
//     failed: the buyer may have been charged. RetryStuck re-queues it.
//   - Only a definite refusal (psp.IsPermanent on the create) rejects a
//     checkout; nothing was charged then. A failed lookup proves nothing.
//   - Each event is written in the same transaction as the state it reports,
//     and at most once per checkout: one registered or rejected (the row
//     leaves in_flight once), one resolved (a final status is final).
//
// # Resolver
//
// Webhooks can be lost (RELIABILITY F8), so registered payments whose status
// is not final (requires_action, processing) are polled with GetPayment:
// first ResolveAfter after registration, then with exponential backoff up to
// ResolveMaxInterval, until the PSP reports succeeded or failed, or until
// ResolveHorizon has passed (then polling stops with a warning; the nightly
// reconciliation covers what is left). When the status turns final, the row
// and payments.checkout.resolved commit together. A claim pushes next_poll_at
// one Lease ahead, so a resolver that dies mid-poll leaves the payment due
// again. Payments already final at registration are never polled.
//
// # Events
//
// Events carry the checkout id as aggregate id and a per-checkout version
// counting the executor's events (registered or rejected is 1, resolved 2).
// They report the PSP's answer as it gave it: amount and currency as the PSP
// reported them, so payment can compare them with what it asked for.
//
// # Refunds
//
// The executor-refunds consumer records each payments.refund.created as a
// pending row of executor.refunds in the inbox transaction (the refund id
// is the primary key: a re-send changes nothing). The refunder claims due
// rows under a lease, exactly as the registrar does, and calls
// CreateRefund with IdempotencyKey = MerchantReference = the refund id,
// every retry first looking the refund up (FindRefundByReference), so one
// refund id is at most one refund at the PSP. The PSP's answer is reported
// as payments.refund.reported (contracts.RefundReported) in the
// transaction that records it: succeeded or failed is final; pending is
// reported and then polled with GetRefund until final (reported again,
// version 2) or until ResolveHorizon (then stuck); a definite refusal of
// the create is reported failed with the PSP's code; an unknown outcome is
// retried per Retry until GiveUpAfter, then stuck, never failed.
//
// # Loops
//
// Run runs three loops (registrar, resolver, refunder) shaped like the outbox relay: a Config with defaults
// and validation, bounded claims (BatchSize), bounded PSP concurrency
// (Concurrency), a per-call timeout (CallTimeout), a poll interval, a wake
// channel (the consumer's hint; it may arrive before the inbox transaction
// commits, so polling is what correctness relies on), a bounded backoff when
// the database fails, and a clean stop on ctx. The registrar claims only as
// many rows as it has free call slots, so a claimed row never waits for a
// slot while its lease runs.
package executor
