// Command chaos is paypipe's chaos suite (RELIABILITY.md §6): it runs the
// fault scenarios of §6.3 under a concurrent workload of checkouts,
// fulfilments, refunds and payout runs, heals, waits for the pipeline to go
// quiet, reconciles the run's days, and checks the invariants of §6.2 with
// `paypipe verify` plus the PSP simulator's charge, refund and payout logs
// and settlement files. Each run prints a JSON
// summary and the command exits 1 on any violation. `go tool task chaos`
// runs the small tier on fixed seeds, `go tool task chaos:soak` 10,000
// checkouts; chaos_test.go runs the CI tier under `go test`. docs/chaos.md
// is the user's guide; this comment is the design.
//
// # What runs
//
// Everything is a child process of the harness on loopback, so faults are
// real kills of real processes, not cancelled goroutines:
//
//   - a private PostgreSQL cluster (initdb in the run directory, its own
//     port), so that F13's `pg_ctl stop -m immediate` never touches the
//     developer's database;
//   - nats-server (the module's, via `go tool -n nats-server`) with a file
//     store and sync_interval always, killed with SIGKILL and restarted on
//     the same store and port;
//   - `paypipe pspsim`, whose faults are switched through POST /admin/faults;
//   - process A, `paypipe serve payment executor payout` (the API, the PSP callers and
//     their relays; PAYPIPE_PAYOUT_SCHEDULE=off: only the harness requests
//     payouts), and process B, `paypipe serve ledger wallet reconciler` (the money
//     consumers and their relays; PAYPIPE_RECON_AT=off: only the harness
//     reconciles), each with its own HTTP port and data dir.
//
// A supervisor restarts a child that exits on its own (a paypipe process
// refuses to start while PostgreSQL or NATS is down), as systemd would; such
// exits are counted. The children are killed when the harness exits, on a
// signal or a panic (deferred cleanup), and on Linux also if the harness
// itself is killed (parent-death signal). PostgreSQL, which daemonises, is
// stopped by the deferred cleanup only.
//
// # Workload
//
// Clients create checkouts at a fixed rate (so faults land on steady load),
// 80% direct and 20% hosted (paid by POSTing the simulator's card form, as a
// browser does), in six currencies, with declines, insufficient funds and
// delayed webhooks mixed in. Each request carries an Idempotency-Key and is
// retried with the same key and the same bytes on connection errors, 429 and
// 5xx until a definite answer or the operation's deadline. Every operation is
// recorded as invoke/ok/fail/info in history.jsonl. Every choice comes from
// the seed (the request of operation n depends only on the seed and n).
//
// Sales (sales.go): for a seeded share of the checkouts (SaleShare), once
// the checkout is completed, each order is fulfilled (70%) and refunded
// (full, partial, or partial then the rest; before or after the
// fulfilment), or raced: 4 refunds of 2/5 of the amount each, sent at once
// with distinct keys, of which exactly ⌊amount / each⌋ must be accepted
// and the others refused with 409 refund-exceeds-captured. Sales have their
// own slots so that waiting for completion never slows the checkouts.
// Payout runs (payouts.go): every PayoutEvery, `paypipe payout run --period
// P` as a child command, P a distinct RFC 3339 time per run (the run's
// idempotency key: retried with the same P), 30% of them as two processes
// racing on one period. F6–F8's webhook faults hit payout webhooks too:
// process A runs with PAYPIPE_PAYOUT_RESOLVE_AFTER=3s, so the payout
// resolver asks the PSP about a payout whose webhook was dropped; the recon
// commands run with PAYPIPE_RECON_CHUNK_LINES=50 so that F21's kill can
// land between chunks.
//
// # Nemesis
//
// Rounds × scenarios episodes are shuffled by the seed and spread over 5–70%
// of the workload; each runs in its own goroutine when its trigger is reached,
// holding locks on the components it breaks (PostgreSQL, NATS, A, B, the
// simulator's faults) so two episodes never fight over one process, and heals
// what it broke before it returns. Kills of A and B wait (up to 3 s) for a
// moment when their outboxes have unpublished rows, so they land inside a
// relay pass or a consumer transaction rather than on an idle process.
//
// F19 refunds (in full) up to three fulfilled orders of one seller at the
// same instant as a payout run for that seller. F20 turns on the
// simulator's refund and payout faults (500 or a 12 s hang after the
// commit, past the 10 s CallTimeout of the refunder and the payout sender;
// the next 1–2 payouts fail, returning the money) and fires a payout run
// inside the window. F21 is not an episode: see Checks.
//
// # Checks
//
// After the workload: undo anything left, answer every indeterminate
// operation (checkouts, sales, payout runs) by retrying it with its key,
// pay hosted checkouts left unpaid, then wait until nothing is in flight
// (no open checkout, no executor work for an unfinished checkout, no payout
// requested, created or sent, no refund pending at payment or unanswered at
// the executor, no webhook left to send, no outbox backlog, no message
// pending or unacknowledged on any consumer, checked in that order so that
// every event committed before the check began has been consumed) and
// `paypipe verify --grace 1ms --horizon 1ms` passes.
//
// Then the reconciliation (I8): for every UTC day of the run, `paypipe recon
// run --date D` downloads the simulator's file and reconciles it. On the
// last day, F21 first starts that command as a child, waits until
// recon.runs shows it has committed a chunk (of 50 lines) or reached the
// ledger-side pass, and SIGKILLs it; the
// next run resumes it to completion and a further run of the date must
// answer the same summary. Both are held to the file itself (every movement
// line counted and matched, each currency's net equal to the file's, each
// reference settled once and only the file's). The harness waits for quiet
// again, so that the settlement batches are posted, and then the ledger's
// psp_receivable must be 0 and its bank equal to the file's closing
// balance, per currency (recon_diff_minor_units).
//
// Every figure is then measured, never assumed: from the run's database
// (SQL), the broker (stream contents, DLQ), the simulator's charge, refund
// and payout logs (GET /admin/charges, /admin/refunds, /admin/payouts), the
// processes' Prometheus counters (scraped every second and just before each
// kill: lower bounds), and the clients' record. Safety figures must be 0;
// expected figures (duplicates absorbed, duplicate PubAcks, copies stored
// after the duplicate window) show that the dedupe paths ran, and are warnings
// only when 0.
//
// # Limits
//
// No failpoints: a kill lands where it lands, so "between PubAck and mark"
// (F9, F11) and "after commit, before ack" (F14) are made likely, not
// certain; the summary counts whether they happened; so does F21's kill,
// which lands before the run's only chunk commits or after (a file of a
// few hundred lines is one chunk of 5,000, and ChunkLines is not
// configurable from the CLI). Payout webhooks are never dropped or
// duplicated (see Sales). F16's slow handler is
// the whole consumer process frozen with SIGSTOP for AckWait + 5 s. F15 needs
// consumers that dead-letter; it is skipped, with the reason, otherwise.
package main
