package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/verify"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/pspsim"
)

// serviceSchemas are the schemas with an outbox and an inbox.
var serviceSchemas = []string{"payment", "executor", "ledger", "wallet", "payout", "recon"}

// eventStreams carry paypipe's events (the DLQ and advisories aside).
var eventStreams = []string{contracts.StreamPayments, contracts.StreamLedger, contracts.StreamWallet, contracts.StreamPayouts, contracts.StreamRecon}

// quietness is one look at whether the pipeline has settled.
type quietness struct {
	at              time.Time // database time when the look began
	openCheckouts   int64
	executorWork    int64
	webhooksPending int
	// payoutsOpen: payouts requested, created or sent; refundsOpen:
	// refunds pending at payment or not answered by the PSP yet.
	payoutsOpen     int64
	refundsOpen     int64
	consumerPending uint64
	outboxBacklog   int64
	report          *verify.Report
}

func (q quietness) String() string {
	s := fmt.Sprintf("open checkouts %d, executor work %d, open payouts %d, open refunds %d, webhooks pending %d, consumer pending %d, outbox backlog %d",
		q.openCheckouts, q.executorWork, q.payoutsOpen, q.refundsOpen, q.webhooksPending, q.consumerPending, q.outboxBacklog)
	if q.report != nil {
		s += fmt.Sprintf(", verify violations %d", len(q.report.Violations))
	}
	return s
}

// quiesce waits until nothing is in flight and `paypipe verify --grace 1ms`
// passes, or until timeout. Nothing in flight means: no open checkout; no
// executor attempt waiting for a PSP call or for a status poll (the
// resolver polls hosted payments it saw unfinished, even when a webhook
// already finished them at payment, and reports what it finds as an event);
// no webhook the simulator has yet to deliver; no message pending or
// unacknowledged on any consumer; empty outboxes. It returns the last verify
// report and whether the pipeline went quiet.
func (h *harness) quiesce(ctx context.Context, timeout time.Duration) (*verify.Report, bool, error) {
	deadline := time.Now().Add(timeout)
	var last quietness
	for {
		q, err := h.look(ctx)
		if err == nil {
			last = q
			if q.report != nil && q.report.OK() {
				h.quietAt = q.at
				return q.report, true, nil
			}
		} else {
			h.log.Info("settling", "err", err)
		}
		if time.Now().After(deadline) {
			h.log.Warn("pipeline did not settle", "last", last.String())
			// Report what verify says now, settled or not.
			rep, verr := h.verify(ctx)
			if verr != nil {
				return nil, false, errors.Join(err, verr)
			}
			return rep, false, nil
		}
		h.log.Info("settling", "state", q.String())
		sleepCtx(ctx, time.Second)
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
	}
}

// look checks the cheap conditions first and runs verify only when they
// hold. The order matters for q.at: an outbox row committed before q.at was
// either still unpublished at the backlog check (not quiet) or published
// before the consumer check, where it is pending (not quiet) or consumed.
// So when look reports quiet, every row committed before q.at has reached
// every consumer's inbox or the DLQ, which is what events_lost counts.
func (h *harness) look(ctx context.Context) (quietness, error) {
	var q quietness
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Executor work that matters: a PSP call still to make, or a status
	// poll for a checkout payment has not finished. The resolver also polls
	// hosted payments a webhook already finished (it cannot know), with a
	// backoff of up to 10 minutes; its reports of those change nothing, and
	// their events are younger than q.at.
	if err := h.pool.QueryRow(qctx, `SELECT clock_timestamp(),
  (SELECT count(*) FROM payment.checkouts WHERE status NOT IN ('failed', 'completed')),
  (SELECT count(*) FROM executor.attempts a WHERE a.status IN ('pending', 'in_flight')
     OR (a.next_poll_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM payment.checkouts c
       WHERE c.id = a.checkout_id AND c.status IN ('failed', 'completed')))),
  (SELECT count(*) FROM payout.payouts WHERE status IN ('requested', 'created', 'sent')),
  (SELECT count(*) FROM payment.refunds WHERE status = 'pending')
  + (SELECT count(*) FROM executor.refunds WHERE status IN ('pending', 'in_flight', 'awaiting'))`).Scan(
		&q.at, &q.openCheckouts, &q.executorWork, &q.payoutsOpen, &q.refundsOpen); err != nil {
		return q, err
	}
	b, err := h.c.admin(qctx, "GET", "/admin/webhooks?state=pending&limit=1000", nil)
	if err != nil {
		return q, err
	}
	var page pspsim.WebhookEventsPage
	if err := json.Unmarshal(b, &page); err != nil {
		return q, fmt.Errorf("pending webhooks: %w", err)
	}
	q.webhooksPending = len(page.Events)
	if q.openCheckouts > 0 || q.executorWork > 0 || q.payoutsOpen > 0 || q.refundsOpen > 0 || q.webhooksPending > 0 {
		return q, nil
	}
	out, err := h.c.paypipeCmd(qctx, 30*time.Second, false, "outbox", "status", "-o", "json")
	if err != nil {
		return q, err
	}
	var sts []outbox.Status
	if err := json.Unmarshal(out, &sts); err != nil {
		return q, fmt.Errorf("outbox status: %w", err)
	}
	for _, st := range sts {
		q.outboxBacklog += st.Backlog
	}
	if q.outboxBacklog > 0 {
		return q, nil
	}
	if q.consumerPending, err = h.consumerPending(qctx); err != nil || q.consumerPending > 0 {
		return q, err
	}
	q.report, err = h.verify(qctx)
	return q, err
}

// verify runs `paypipe verify -o json` with no grace: every effect that is
// not there yet counts as missing.
func (h *harness) verify(ctx context.Context) (*verify.Report, error) {
	out, err := h.c.paypipeCmd(ctx, 60*time.Second, true, "verify", "-o", "json", "--grace", "1ms", "--horizon", "1ms", "--limit", "100000")
	if err != nil {
		return nil, err
	}
	var rep verify.Report
	if err := json.Unmarshal(out, &rep); err != nil {
		return nil, fmt.Errorf("verify output: %w: %s", err, truncate(out, 300))
	}
	return &rep, nil
}

// consumerPending sums, over every durable consumer of the event streams,
// the messages not yet delivered and those delivered but not acknowledged.
func (h *harness) consumerPending(ctx context.Context) (uint64, error) {
	var total uint64
	for _, s := range eventStreams {
		st, err := h.js.Stream(ctx, s)
		if err != nil {
			return 0, fmt.Errorf("stream %s: %w", s, err)
		}
		lister := st.ListConsumers(ctx)
		for ci := range lister.Info() {
			total += ci.NumPending + uint64(ci.NumAckPending)
		}
		if err := lister.Err(); err != nil {
			return 0, fmt.Errorf("consumers of %s: %w", s, err)
		}
	}
	return total, nil
}

// measure computes every figure of the summary from the database, the
// broker, the simulator's charge log and the clients' history.
func (h *harness) measure(ctx context.Context, s *Summary, rep *verify.Report) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	// Client side: what was promised (a 2xx) and what stayed open.
	var promised []string
	ops := append(append([]*op{}, h.w.ops...), h.sameKeyOps()...)
	for _, o := range ops {
		if o == nil {
			continue
		}
		s.Client.Ops++
		if o.Outcome == outcomeInfo || o.Resolved {
			s.Client.IndeterminateOps++
		}
		switch o.Outcome {
		case outcomeOK:
			promised = append(promised, o.CheckoutID)
			if o.Resolved {
				s.Client.ResolvedAfterHeal++
			}
			if o.Mode == "hosted" && !o.Paid {
				s.Client.HostedUnpaid++
			}
		case outcomeInfo:
			s.Safety.UnresolvedClientOps++
		case outcomeFail:
			s.Safety.UnexpectedResponses++
			if s.Safety.UnexpectedResponses <= 10 {
				s.Failures = append(s.Failures, fmt.Sprintf("op %d (%s): %s", o.N, o.Kind, o.Err))
			}
		}
	}
	slices.Sort(promised)
	if distinct := slices.Compact(slices.Clone(promised)); len(distinct) != len(promised) {
		// Two operations, two keys, one checkout: a key's answer leaked.
		s.Safety.IdempotencyViolations += int64(len(promised) - len(distinct))
		s.Failures = append(s.Failures, fmt.Sprintf("%d answers named a checkout another key had created", len(promised)-len(distinct)))
		promised = distinct
	}
	s.Checkouts = len(promised)
	st := &h.w.stats
	s.Client.Requests, s.Client.ConnErrors = st.requests.Load(), st.connErrors.Load()
	s.Client.HTTP5xx, s.Client.HTTP429, s.Client.Replayed = st.http5xx.Load(), st.http429.Load(), st.replayed.Load()

	// lost_payments: every 2xx checkout exists and is final.
	status := map[string]string{}
	rows, err := h.pool.Query(ctx, `SELECT id::text, status FROM payment.checkouts WHERE id = ANY($1::uuid[])`, promised)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id, st string
		if err := rows.Scan(&id, &st); err != nil {
			return err
		}
		status[id] = st
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range promised {
		st, ok := status[id]
		if !ok || (st != "completed" && st != "failed") {
			s.Safety.LostPayments++
			if s.Safety.LostPayments <= 10 {
				s.Failures = append(s.Failures, fmt.Sprintf("lost payment: checkout %s is %q", id, st))
			}
		}
	}
	s.CheckoutsByStatus = map[string]int64{}
	if err := h.groupCount(ctx, `SELECT status, count(*) FROM payment.checkouts GROUP BY status`, s.CheckoutsByStatus); err != nil {
		return err
	}

	if err := h.measureCharges(ctx, s); err != nil {
		return err
	}
	h.w.measureSales(s)
	for _, run := range h.pay.all() {
		s.Sales.PayoutRuns++
		if run.Outcome == outcomeInfo {
			s.Safety.UnresolvedClientOps++
			s.Failures = append(s.Failures, fmt.Sprintf("payout run %s unanswered: %s", run.Period, run.Err))
		}
	}
	if err := h.measurePayouts(ctx, s); err != nil {
		return err
	}
	if err := h.measureRefunds(ctx, s); err != nil {
		return err
	}

	if err := h.measureLedger(ctx, s); err != nil {
		return err
	}
	if err := h.measureStreams(ctx, s); err != nil {
		return err
	}
	// An event committed in a transaction that straddled the quiet point
	// may still be on its way: lost means still missing after 20 s of an
	// idle pipeline.
	for try := 0; ; try++ {
		s.Safety.EventsLost = 0
		if err := h.measureEventsLost(ctx, s); err != nil {
			return err
		}
		if s.Safety.EventsLost == 0 || try == 10 {
			break
		}
		sleepCtx(ctx, 2*time.Second)
	}

	// From verify's report: regressions and every violation by invariant.
	s.Verify.ViolationsByInvariant = map[string]int{}
	if rep != nil {
		s.Verify.Ran, s.Verify.OK, s.Verify.Counts, s.Verify.Warnings = true, rep.OK(), rep.Counts, rep.Warnings
		for _, v := range rep.Violations {
			s.Verify.ViolationsByInvariant[v.Invariant]++
			if strings.HasPrefix(v.Invariant, "I10") {
				s.Safety.StateRegressions++
			}
		}
		for i, v := range rep.Violations {
			if i == 10 {
				break
			}
			s.Failures = append(s.Failures, fmt.Sprintf("verify: %s: %s: %s", v.Invariant, v.Subject, v.Detail))
		}
	}

	// Dedupe paths, from the processes' counters (lower bounds, see scraper).
	h.c.scrapes.all(ctx)
	s.Expected.DuplicatesAbsorbed = h.c.scrapes.sum("paypipe_consumer_messages_total", `result="duplicate"`)
	s.Expected.DuplicatesByConsumer = h.c.scrapes.by("paypipe_consumer_messages_total", "consumer", `result="duplicate"`)
	s.Expected.PubacksDuplicate = h.c.scrapes.sum("paypipe_outbox_relay_rows_total", `result="duplicate"`)
	inj := h.c.scrapes.injected()
	for k, v := range map[string]int64{
		"psp_after_charge_timeouts": inj.HangAfterCharge, "psp_after_charge_500s": inj.FailAfterCharge,
		"psp_before_charge_500s": inj.FailBeforeCharge, "dup_webhooks": inj.DuplicateWebhooks,
		"ooo_webhook_batches": inj.ReorderedBatches, "dropped_webhooks": inj.DroppedWebhooks,
		"psp_after_refund_500s": inj.FailAfterRefund, "psp_after_refund_timeouts": inj.HangAfterRefund,
		"psp_after_payout_500s": inj.FailAfterPayout, "psp_after_payout_timeouts": inj.HangAfterPayout,
		"psp_failed_payouts": inj.FailedPayouts,
	} {
		s.FaultsInjected[k] = v
	}
	exits, recs := h.unexpectedExits()
	for p, n := range exits {
		s.Liveness.UnexpectedExits[p] = n
	}
	s.Liveness.Exits = recs
	return nil
}

// measureLedger computes the money figures from the services' tables:
// unbalanced journal entries, wallet drift against the ledger and against
// the orders, and effects recorded twice.
func (h *harness) measureLedger(ctx context.Context, s *Summary) error {
	scalar := []struct {
		dst  *int64
		sql  string
		args []any
	}{
		// An entry unbalanced in a currency, or with fewer than two postings.
		{&s.Safety.UnbalancedJournals, `SELECT
  (SELECT count(DISTINCT entry_id) FROM (SELECT entry_id FROM ledger.postings GROUP BY entry_id, currency
     HAVING sum(CASE WHEN direction = 'debit' THEN amount_minor::numeric ELSE -amount_minor::numeric END) <> 0) x)
+ (SELECT count(*) FROM ledger.journal_entries e WHERE (SELECT count(*) FROM ledger.postings p WHERE p.entry_id = e.id) < 2)`, nil},
		// Σ |wallet − ledger seller_payable| per seller and currency (I3).
		{&s.Safety.WalletDriftMinorUnits, `WITH w AS (
  SELECT seller_id, currency, pending_minor::numeric + available_minor AS bal FROM wallet.balances
), l AS (
  SELECT substr(account, length($1) + 1) AS seller_id, currency,
    sum(CASE WHEN direction = 'credit' THEN amount_minor::numeric ELSE -amount_minor::numeric END) AS bal
  FROM ledger.postings WHERE starts_with(account, $1) GROUP BY 1, 2
)
SELECT coalesce(sum(abs(coalesce(w.bal, 0) - coalesce(l.bal, 0))), 0)::bigint FROM w FULL JOIN l USING (seller_id, currency)`,
			[]any{contracts.AccountSellerPayablePrefix}},
		// Σ |wallet − Σ net of the seller's captured orders, less the net of
		// their succeeded refunds|: what sellers are owed (paid out or not)
		// is exactly what the payment service says they earned.
		{&s.Safety.WalletOrderDriftMinorUnits, `WITH o AS (
  SELECT seller_id, currency, sum(net) AS net FROM (
    SELECT seller_id::text, currency, net_minor::numeric AS net FROM payment.payment_orders
    WHERE status IN ('succeeded', 'completed')
    UNION ALL SELECT seller_id::text, currency, -net_minor::numeric FROM payment.refunds WHERE status = 'succeeded') x
  GROUP BY 1, 2
), w AS (
  SELECT seller_id, currency, pending_minor::numeric + available_minor + paid_out_minor AS bal FROM wallet.balances
)
SELECT coalesce(sum(abs(coalesce(o.net, 0) - coalesce(w.bal, 0))), 0)::bigint FROM o FULL JOIN w USING (seller_id, currency)`, nil},
		// The same effect recorded twice: two capture entries for one order,
		// more refund entries for an order than it has succeeded refunds,
		// two wallet changes for one cause, two transitions into one status.
		{&s.Safety.EffectsAppliedTwice, `SELECT
  (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM ledger.journal_entries
     WHERE payment_order_id IS NOT NULL AND kind <> '` + contracts.EntryOrderRefunded + `' GROUP BY payment_order_id, kind HAVING count(*) > 1) a)
+ (SELECT coalesce(sum(greatest(n - coalesce(r.k, 0), 0)), 0) FROM (SELECT payment_order_id, count(*) AS n FROM ledger.journal_entries
     WHERE kind = '` + contracts.EntryOrderRefunded + `' GROUP BY payment_order_id) e
   LEFT JOIN (SELECT payment_order_id::text AS payment_order_id, count(*) AS k FROM payment.refunds WHERE status = 'succeeded'
     GROUP BY 1) r USING (payment_order_id))
+ (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM wallet.changes GROUP BY cause, ref HAVING count(*) > 1) b)
+ (SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM payment.status_transitions
     GROUP BY object_id, to_status HAVING count(*) > 1) c)`, nil},
		{&s.Expected.WebhooksReceived, `SELECT count(*) FROM payment.webhook_receipts`, nil},
	}
	for _, q := range scalar {
		if err := h.pool.QueryRow(ctx, q.sql, q.args...).Scan(q.dst); err != nil {
			return fmt.Errorf("measure: %w", err)
		}
	}

	return nil
}

func (h *harness) groupCount(ctx context.Context, sql string, dst map[string]int64) error {
	rows, err := h.pool.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		dst[k] = n
	}
	return rows.Err()
}

// measureCharges reads the simulator's charge log (its admin API, as a
// merchant would read a PSP's report), paypipe's checkouts and the ledger's
// psp_receivable, and compares them (compareCharges).
func (h *harness) measureCharges(ctx context.Context, s *Summary) error {
	charges, err := h.c.charges(ctx)
	if err != nil {
		return fmt.Errorf("charge log: %w", err)
	}
	cos := map[string]checkoutRow{}
	rows, err := h.pool.Query(ctx, `SELECT id::text, status, amount_minor, currency FROM payment.checkouts`)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		var c checkoutRow
		if err := rows.Scan(&id, &c.status, &c.amount, &c.currency); err != nil {
			return err
		}
		cos[id] = c
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// The receivable before settlement (which moves it to the bank, I8
	// after reconciliation) is Σ charges − Σ refunds: the PSP's refunds
	// are added back, so that it compares with the charges alone.
	receivable := map[string]int64{}
	if err := h.groupCount(ctx, `SELECT p.currency, sum(CASE WHEN p.direction = 'debit' THEN p.amount_minor ELSE -p.amount_minor END)::bigint
FROM ledger.postings p JOIN ledger.journal_entries e ON e.id = p.entry_id
WHERE p.account = '`+contracts.AccountPSPReceivable+`' AND e.kind <> '`+contracts.EntrySettlement+`' GROUP BY p.currency`, receivable); err != nil {
		return err
	}
	refunds, err := h.c.pspRefunds(ctx)
	if err != nil {
		return fmt.Errorf("refund log: %w", err)
	}
	for _, r := range refunds {
		if r.Status == "succeeded" {
			receivable[r.Currency] += r.AmountMinor
		}
	}
	compareCharges(s, charges, cos, receivable)
	return nil
}

type checkoutRow struct {
	status   string
	amount   int64
	currency string
}

// compareCharges holds paypipe to the PSP's truth: at most one charge per
// checkout (I1), a charge for every completed checkout and for no other,
// with the checkout's amount and currency, and the ledger's psp_receivable
// equal to what was charged, per currency (I8).
func compareCharges(s *Summary, charges []pspsim.Charge, cos map[string]checkoutRow, receivable map[string]int64) {
	s.Expected.Charges = int64(len(charges))
	perRef := map[string]int{}
	charged := map[string]int64{}
	for _, ch := range charges {
		perRef[ch.MerchantReference]++
		charged[ch.Currency] += ch.AmountMinor
		c, ok := cos[ch.MerchantReference]
		switch {
		case !ok:
			s.Safety.PSPMismatches++
			s.Failures = append(s.Failures, fmt.Sprintf("charge %d for unknown checkout %s", ch.ID, ch.MerchantReference))
		case c.status != "completed":
			s.Safety.PSPMismatches++
			s.Failures = append(s.Failures, fmt.Sprintf("checkout %s charged but %s", ch.MerchantReference, c.status))
		case c.amount != ch.AmountMinor || c.currency != ch.Currency:
			s.Safety.PSPMismatches++
			s.Failures = append(s.Failures, fmt.Sprintf("checkout %s is %d %s, charged %d %s", ch.MerchantReference, c.amount, c.currency, ch.AmountMinor, ch.Currency))
		}
	}
	for ref, n := range perRef {
		if n > 1 {
			s.Safety.DoubleCharges += int64(n - 1)
			s.Failures = append(s.Failures, fmt.Sprintf("checkout %s charged %d times", ref, n))
		}
	}
	for id, c := range cos {
		if c.status == "completed" && perRef[id] == 0 {
			s.Safety.PSPMismatches++
			s.Failures = append(s.Failures, fmt.Sprintf("checkout %s completed without a charge", id))
		}
	}
	for cur := range union(charged, receivable) {
		if d := charged[cur] - receivable[cur]; d != 0 {
			s.Safety.PSPLedgerDriftMinorUnits += abs(d)
			s.Failures = append(s.Failures, fmt.Sprintf("%s: charged %d, ledger psp_receivable %d", cur, charged[cur], receivable[cur]))
		}
	}
}

func union(a, b map[string]int64) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// measureStreams reads the headers of every message in the event streams:
// a ce-id stored more than once is a re-send JetStream did not catch (after
// the duplicate window, F11) that only the inboxes stopped. It also counts
// the DLQ: its entries, and the distinct messages (ce-ids) among them.
func (h *harness) measureStreams(ctx context.Context, s *Summary) error {
	skip := map[string]bool{}
	if h.n != nil {
		h.n.mu.Lock()
		for _, id := range h.n.poisonIDs {
			skip[id] = true // F15 replays it under its ce-id on purpose
		}
		h.n.mu.Unlock()
	}
	for _, name := range eventStreams {
		copies, distinct, err := h.streamIDs(ctx, name, skip)
		if err != nil {
			return err
		}
		s.Expected.StreamMessages += copies
		s.Expected.StreamDuplicateCopies += copies - distinct
	}
	dead, err := h.deadLettered(ctx)
	if err != nil {
		return err
	}
	ids := map[string]bool{}
	for _, l := range dead {
		for _, id := range l {
			ids[id] = true
		}
		s.Expected.DLQEntries += int64(len(l))
	}
	s.Expected.DLQCount = int64(len(ids))
	return nil
}

func (h *harness) streamIDs(ctx context.Context, stream string, skip map[string]bool) (copies, distinct int64, err error) {
	st, err := h.js.Stream(ctx, stream)
	if err != nil {
		return 0, 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, 0, err
	}
	want := info.State.Msgs
	if want == 0 {
		return 0, 0, nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		return 0, 0, err
	}
	seen := make(map[string]bool, want)
	for read := uint64(0); read < want; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return 0, 0, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			id := m.Headers().Get(outbox.HeaderID)
			if id == "" {
				id = m.Headers().Get(nats.MsgIdHdr)
			}
			if skip[id] {
				continue
			}
			copies++
			if !seen[id] {
				seen[id] = true
				distinct++
			}
		}
		if err := batch.Error(); err != nil {
			return 0, 0, err
		}
		if n == 0 {
			return 0, 0, fmt.Errorf("stream %s: read %d of %d messages, then nothing", stream, read, want)
		}
		read += uint64(n)
	}
	return copies, distinct, nil
}

// measureEventsLost counts, per durable consumer, the events its services
// wrote to their outboxes on its subjects that are in neither its inbox nor
// the DLQ (I5: outbox − inbox − DLQ). Only events committed before the
// pipeline was found quiet (h.quietAt, zero: all) count: later ones may be
// in flight (the executor's late polls).
func (h *harness) measureEventsLost(ctx context.Context, s *Summary) error {
	var outboxes, inboxes []string
	for _, sc := range serviceSchemas {
		outboxes = append(outboxes, "SELECT msg_id, subject, created_at FROM "+sc+".outbox")
		inboxes = append(inboxes, "SELECT consumer, msg_id FROM "+sc+".inbox")
	}
	dead, err := h.deadLettered(ctx)
	if err != nil {
		return err
	}
	var cutoff *time.Time
	if !h.quietAt.IsZero() {
		cutoff = &h.quietAt
	}
	s.EventsLostByConsumer = map[string]int64{}
	for _, c := range contracts.Consumers(contracts.ConsumerOptions{}) {
		filters := c.Config.FilterSubjects
		if c.Config.FilterSubject != "" {
			filters = append(filters, c.Config.FilterSubject)
		}
		if len(filters) == 0 || !isEventStream(c.Stream) {
			continue // not an event consumer (the DLQ mover reads advisories)
		}
		var re []string
		for _, f := range filters {
			re = append(re, subjectRegexp(f))
		}
		var lost int64
		err := h.pool.QueryRow(ctx, `WITH o AS (`+strings.Join(outboxes, " UNION ALL ")+`),
i AS (`+strings.Join(inboxes, " UNION ALL ")+`)
SELECT count(*) FROM o WHERE o.subject ~ $1 AND ($4::timestamptz IS NULL OR o.created_at < $4)
  AND NOT EXISTS (SELECT 1 FROM i WHERE i.consumer = $2 AND i.msg_id = o.msg_id)
  AND NOT (o.msg_id::text = ANY(coalesce($3::text[], '{}')))`, strings.Join(re, "|"), c.Config.Durable, dead[c.Config.Durable], cutoff).Scan(&lost)
		if err != nil {
			return fmt.Errorf("events lost (%s): %w", c.Config.Durable, err)
		}
		s.EventsLostByConsumer[c.Config.Durable] = lost
		s.Safety.EventsLost += lost
	}
	return nil
}

func isEventStream(s string) bool {
	for _, e := range eventStreams {
		if e == s {
			return true
		}
	}
	return false
}

// subjectRegexp turns a NATS subject filter into an anchored POSIX regexp.
func subjectRegexp(f string) string {
	parts := strings.Split(f, ".")
	for i, p := range parts {
		switch p {
		case "*":
			parts[i] = `[^.]+`
		case ">":
			parts[i] = `.+`
		default:
			parts[i] = regexp.QuoteMeta(p)
		}
	}
	return "^" + strings.Join(parts, `\.`) + "$"
}

// deadLettered maps each consumer to the ce-ids of its messages in the DLQ
// (headers as outbox/dlq writes them); empty when there is no DLQ stream.
func (h *harness) deadLettered(ctx context.Context) (map[string][]string, error) {
	out := map[string][]string{}
	st, err := h.js.Stream(ctx, contracts.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil || info.State.Msgs == 0 {
		return out, err
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{HeadersOnly: true})
	if err != nil {
		return nil, err
	}
	for read := uint64(0); read < info.State.Msgs; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			hd := m.Headers()
			consumer := hd.Get("Paypipe-Dlq-Consumer")
			out[consumer] = append(out[consumer], hd.Get(outbox.HeaderID))
		}
		if n == 0 {
			break
		}
		read += uint64(n)
	}
	return out, nil
}

// openPool opens the harness's own connection to the run's database.
func openPool(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.RuntimeParams["application_name"] = "paypipe-chaos"
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = "60000"
	return pgxpool.NewWithConfig(ctx, cfg)
}
