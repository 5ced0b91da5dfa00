// Command chaos is paypipe's chaos suite (RELIABILITY.md §6): it runs the
// fault scenarios of §6.3 under a concurrent workload of checkouts, heals,
// waits for the pipeline to go quiet, and checks the invariants of §6.2 with
// `paypipe verify` plus the PSP simulator's charge log. Each run prints a JSON
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
//     their relays), and process B, `paypipe serve ledger wallet reconciler` (the money
//     consumers and their relays), each with its own HTTP port and data dir.
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
// # Checks
//
// After the workload: undo anything left, answer every indeterminate
// operation by retrying it with its key, pay hosted checkouts left unpaid,
// then wait until nothing is in flight (no open checkout, no executor work
// for an unfinished checkout, no webhook left to send, no outbox backlog, no
// message pending or unacknowledged on any consumer, checked in that order
// so that every event committed before the check began has been consumed)
// and `paypipe verify --grace 1ms --horizon 1ms` passes. Then every figure is
// measured, never assumed: from the run's database (SQL), the broker (stream
// contents, DLQ), the simulator's charge log (GET /admin/charges), the
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
// certain; the summary counts whether they happened. F16's slow handler is
// the whole consumer process frozen with SIGSTOP for AckWait + 5 s. F15 needs
// consumers that dead-letter; it is skipped, with the reason, otherwise.
package main
