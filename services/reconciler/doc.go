// Package reconciler proves the books against the PSP: every night it reads
// the PSP's settlement file of a day (docs/settlement-file.md), matches each
// line with what the ledger says the PSP owes or moved, posts the settlement
// of matched lines, and turns everything else into a classified mismatch in
// one of three queues. It owns the PostgreSQL schema "recon".
//
// # What the ledger expects
//
// The reconciler never reads the ledger's tables. Its consumer
// (contracts.ReconLedgerConsumer, on ledger.entry.posted) projects every
// entry the PSP will settle into recon.expected, keyed by the PSP's
// reference: order_captured → a charge (+PSPAmountMinor, the whole
// checkout's gross, equal on each of its order entries, which upsert one
// row), order_refunded → a refund (−), payout_paid → a payout (−). Other
// kinds, and entries without a PSP reference, settle nothing.
//
// # A run
//
// Run(ctx, RunRequest{Date, File}) identifies the file by its SHA-256
// (file_id) and keeps one run per (date, file_id). It streams the CSV
// (encoding/csv, ReuseRecord, lines bounded to MaxLineBytes) in chunks of
// Config.ChunkLines lines. A reader goroutine reads, parses and looks up
// chunk k+1 (its expected rows and their settlements, outside any
// transaction) while chunk k commits; the hand-over is unbuffered, so memory
// holds at most two chunks whatever the file's size. Per chunk, one
// transaction: each line is classified in memory, one statement inserts the
// matched lines into recon.settlements (insert-only, one row per reference:
// the unique key is what makes a second line a duplicate_line), one inserts
// the mismatches, and the chunk's events are written with the run's cursor
// (the last line committed) and counters. The read-ahead is only a hint: if
// the settlements insert comes up short (the previous chunk or a parked line
// settled a reference meanwhile), the chunk is classified again against rows
// read inside its transaction. Matched charges and
// refunds emit one recon.batch.settled per currency (BatchID is a UUIDv5 of
// file, first line and currency: the ledger posts a batch once however
// often it is sent); payout lines are matched only (payout_paid already
// credited the bank).
//
// Classification, in order: unreadable → malformed_line (also net ≠ gross −
// fee); settled before by another line or file, or repeated in the chunk →
// duplicate_line; currency differs → currency_mismatch; gross differs →
// amount_mismatch; fee ≠ round_half_up(gross × PSPFeeBPS / 10000) on a
// charge (≠ 0 on refunds and payouts) → fee_mismatch; else matched, which
// also resolves the reference's open settles_later. A charge the ledger does
// not know is looked up at the PSP (outside any transaction; bounded
// concurrency, timeout and retry.Policy): succeeded with the same amount and
// currency → missing_capture: recon.charge.confirmed goes to payment and the
// line is parked on the expected row; when the capture's ledger entry
// arrives, the consumer settles the parked line in its own transaction (a
// one-line batch.settled) and resolves the mismatch. Not found, or a refund
// or payout nobody knows → unknown_reference. A PSP that does not answer
// fails the run: nothing is guessed, and the next run resumes.
//
// After the file, the ledger side, in pages with a committed cursor too:
// each movement posted before the end of the day and not settled (an
// anti-join of recon.expected with recon.settlements), with no
// open mismatch, becomes settles_later (carried over, rechecked by the next
// runs); a settles_later older than GraceDays is resolved as escalated and
// becomes missing_in_settlement. Then wallet.CheckAgainstLedger: each drift
// is a wallet_ledger_drift. Finally the file's balances: per currency,
// closing − opening must equal Σ net of the lines; a difference is reported
// in the summary.
//
// # Guarantees
//
//   - Reruns are idempotent: a completed run of (date, file_id) returns its
//     stored summary and writes nothing. A stopped run (crash, cancel, PSP
//     down) resumes after its last committed chunk, with its counters, so it
//     ends with the same summary as an uninterrupted run and settles each
//     line once. Mismatch rows are unique per (class, reference or seller
//     and currency or file line, settlement date).
//   - Two runs of one date never overlap: a session advisory lock per date,
//     and every chunk compare-and-sets the run's cursor, so even a lost lock
//     cannot apply a chunk twice.
//   - Every event commits with the state it describes (the outbox).
//
// It does not guarantee that the wallet check is free of transient drifts
// while events are in flight: run it on a drained pipeline (the nightly run
// at 02:30 normally is), and act on drifts that persist.
//
// Nightly runs the previous UTC day at Config.RunAt, catching up after a
// restart and retrying a failed run per Config.NightlyRetry.
package reconciler
