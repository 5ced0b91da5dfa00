package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/payout"
	"github.com/paypipe/paypipe/services/reconciler"
)

// Step 6: the pay-out (delivery, a refund, the payout run, the PSP's
// payouts) and step 7: the night's reconciliation of the PSP's settlement
// file against the ledger.

// demoPoll is how often the demo looks again while it waits for the
// pipeline; every wait is bounded by the demo's --timeout.
const demoPoll = 20 * time.Millisecond

// await polls cond until it holds or ctx ends; the last reason is the error.
func await(ctx context.Context, what string, cond func() (bool, string, error)) error {
	t := time.NewTicker(demoPoll)
	defer t.Stop()
	for {
		ok, why, err := cond()
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s (%s): %w", what, why, ctx.Err())
		case <-t.C:
		}
	}
}

// demoBalance is one seller's balance in one currency.
type demoBalance struct{ pending, available, paidOut int64 }

func (d *demoRun) balances(ctx context.Context) (map[string]demoBalance, error) {
	out := map[string]demoBalance{}
	for _, s := range d.sellers {
		var got payment.Seller
		if err := d.api.do(ctx, http.MethodGet, "/v1/sellers/"+s.ID.String(), "", nil, http.StatusOK, &got); err != nil {
			return nil, err
		}
		for _, b := range got.Balances {
			out[s.ID.String()+" "+b.Currency] = demoBalance{b.PendingMinor, b.AvailableMinor, b.PaidOutMinor}
		}
	}
	return out, nil
}

func (d *demoRun) payOut(ctx context.Context) error {
	d.say("\n6. Pay-out: the goods are delivered, one order is partly refunded, the sellers are paid")
	byID, ids := d.orders()
	want := map[string]demoBalance{} // seller currency → expected after the refund
	var fulfilled int
	var refunded demoOrderRef
	for _, id := range ids {
		ref := byID[id]
		if !ref.paid() {
			continue
		}
		var o payment.PaymentOrder
		if err := d.api.do(ctx, http.MethodPost, "/v1/payment_orders/"+id+"/fulfil", uuid.NewString(), map[string]any{}, http.StatusOK, &o); err != nil {
			return err
		}
		fulfilled++
		k := ref.o.SellerID.String() + " " + ref.o.Currency
		b := want[k]
		b.available += ref.o.NetMinor
		want[k] = b
		if refunded.c == nil && ref.o.AmountMinor >= 2 {
			refunded = ref
		}
	}
	d.say("   POST /v1/payment_orders/{id}/fulfil for the %d paid orders: their net moves from pending to available", fulfilled)
	if refunded.c == nil {
		return errors.New("demo: no paid order to refund")
	}

	o := refunded.o
	var r payment.Refund
	if err := d.api.do(ctx, http.MethodPost, "/v1/payment_orders/"+o.ID.String()+"/refunds", uuid.NewString(),
		map[string]any{"amount_minor": o.AmountMinor / 2, "reason": payment.RefundReasonRequestedByCustomer}, http.StatusCreated, &r); err != nil {
		return err
	}
	if err := await(ctx, "the refund", func() (bool, string, error) {
		err := d.api.do(ctx, http.MethodGet, "/v1/refunds/"+r.ID.String(), "", nil, http.StatusOK, &r)
		return r.Status == contracts.RefundStatusSucceeded, r.Status, err
	}); err != nil {
		return err
	}
	d.say("   POST /v1/payment_orders/{%s}/refunds %s → %s at the PSP: the buyer gets %s, the seller gives back %s, the platform its fee %s",
		refunded.label, fmtMoney(r.AmountMinor, r.Currency), r.Status, fmtMoney(r.AmountMinor, r.Currency),
		fmtMoney(r.NetMinor, r.Currency), fmtMoney(r.FeeMinor, r.Currency))
	k := o.SellerID.String() + " " + o.Currency
	b := want[k]
	b.available -= r.NetMinor
	want[k] = b

	var got map[string]demoBalance
	if err := await(ctx, "the balances after delivery and the refund", func() (bool, string, error) {
		var err error
		got, err = d.balances(ctx)
		for k, w := range want {
			if got[k] != w {
				return false, fmt.Sprintf("%s: %+v, want %+v", k, got[k], w), err
			}
		}
		return true, "", err
	}); err != nil {
		return err
	}
	d.check("   ", "every seller's delivered net is available, less the refund's share; nothing is left pending", true)

	// The payout run, as `paypipe payout run` does it; the schedule
	// (PAYPIPE_PAYOUT_SCHEDULE) runs the same thing.
	svc, err := payout.New(payout.Config{Schedule: "off"}, d.a.pool, nil, d.a.log)
	if err != nil {
		return err
	}
	period := payout.DayPeriod(time.Now())
	// The payout service learns balances from wallet.balance.changed too.
	if err := await(ctx, "the payout service's view of the balances", func() (bool, string, error) {
		var n int
		err := d.a.pool.QueryRow(ctx, `SELECT count(*) FROM payout.balances b
WHERE b.seller_id = ANY($1) AND b.available_minor > 0`, d.sellerIDs()).Scan(&n)
		return n == positive(want), fmt.Sprintf("%d of %d", n, positive(want)), err
	}); err != nil {
		return err
	}
	res, err := svc.RunPayouts(ctx, payout.RunRequest{Period: period})
	if err != nil {
		return err
	}
	again, err := svc.RunPayouts(ctx, payout.RunRequest{Period: period})
	if err != nil {
		return err
	}
	d.say("   payout run for %s: %d payouts requested; run again: %d new, %d already requested", period, res.Requested, again.Requested, again.AlreadyRequested)
	d.check("   ", "a second run for the same period requests nothing", again.Requested == 0)

	var list payment.PayoutList
	if err := await(ctx, "the payouts to be paid", func() (bool, string, error) {
		err := d.api.do(ctx, http.MethodGet, "/v1/payouts?limit=100", "", nil, http.StatusOK, &list)
		paid := 0
		for _, p := range list.Data {
			if p.Status == contracts.PayoutStatusPaid {
				paid++
			}
		}
		return paid == positive(want) && len(list.Data) == paid, fmt.Sprintf("%d of %d paid", paid, positive(want)), err
	}); err != nil {
		return err
	}
	slices.SortFunc(list.Data, func(a, b payment.Payout) int {
		return strings.Compare(d.sellerName(a.SellerID.String())+a.Currency, d.sellerName(b.SellerID.String())+b.Currency)
	})
	d.say("   The PSP's payout API (idempotency key = payout id), then its signed payout.paid webhooks (GET /v1/payouts):")
	t := d.table("   ", "SELLER", "AMOUNT", "STATUS", "PSP PAYOUT", "LEDGER")
	var why []string
	for _, p := range list.Data {
		k := p.SellerID.String() + " " + p.Currency
		if p.AmountMinor != want[k].available {
			why = append(why, fmt.Sprintf("%s %s paid %d, available was %d", d.sellerName(p.SellerID.String()), p.Currency, p.AmountMinor, want[k].available))
		}
		psp := "-"
		if p.PSPPayoutID != nil {
			psp = *p.PSPPayoutID
		}
		t.row(d.sellerName(p.SellerID.String()), fmtMoney(p.AmountMinor, p.Currency), p.Status, psp,
			"seller_payable → payout_in_transit → bank")
	}
	if err := t.flush(); err != nil {
		return err
	}
	d.check("   ", fmt.Sprintf("one payout per seller and currency (%d), each the whole available balance", len(list.Data)),
		len(why) == 0 && len(list.Data) == positive(want), why...)
	if err := await(ctx, "the balances after the payouts", func() (bool, string, error) {
		var err error
		got, err = d.balances(ctx)
		for k, w := range want {
			if w.available > 0 && got[k] != (demoBalance{paidOut: w.available}) {
				return false, fmt.Sprintf("%s: %+v", k, got[k]), err
			}
		}
		return true, "", err
	}); err != nil {
		return err
	}
	d.check("   ", "after the payouts every balance is paid out: pending 0, available 0", true)
	return nil
}

func (d *demoRun) sellerIDs() []string {
	out := make([]string, len(d.sellers))
	for i, s := range d.sellers {
		out[i] = s.ID.String()
	}
	return out
}

// positive counts the balances with money available.
func positive(m map[string]demoBalance) int {
	n := 0
	for _, b := range m {
		if b.available > 0 {
			n++
		}
	}
	return n
}

func (d *demoRun) reconcile(ctx context.Context) error {
	today := time.Now().UTC()
	d.say("\n7. Reconciliation: the PSP's settlement file of %s against the ledger", today.Format(time.DateOnly))
	client, err := d.a.pspClient()
	if err != nil {
		return err
	}
	cfg := d.a.opts.cfg
	r, err := reconciler.New(reconciler.Config{PSPFeeBPS: int(cfg.PSPFeeBPS), ReportDir: cfg.ReconReportDir, RunAt: "off"},
		d.a.pool, client, client, d.a.log)
	if err != nil {
		return err
	}
	// Reconciliation runs at night, on a quiet pipeline: wait until every
	// movement of this run reached the reconciler's view of the ledger.
	refs, err := d.movementRefs(ctx)
	if err != nil {
		return err
	}
	if err := await(ctx, "the ledger's movements to reach the reconciler", func() (bool, string, error) {
		var n int
		err := d.a.pool.QueryRow(ctx, `SELECT count(*) FROM recon.expected WHERE reference = ANY($1)`, refs).Scan(&n)
		return n == len(refs), fmt.Sprintf("%d of %d", n, len(refs)), err
	}); err != nil {
		return err
	}
	sum, err := r.Run(ctx, reconciler.RunRequest{Date: today})
	if err != nil {
		return err
	}
	d.say("   `paypipe recon run --date %s`: the file streamed in chunks, each line matched to the ledger by PSP reference", sum.SettlementDate)
	t := d.table("   ", "CURRENCY", "LINES", "MATCHED", "FILE NET", "OPENING", "CLOSING")
	balances := map[string]reconciler.BalanceCheck{}
	for _, b := range sum.Balances {
		balances[b.Currency] = b
	}
	for _, c := range sum.Totals {
		b := balances[c.Currency]
		t.row(c.Currency, fmt.Sprint(c.Lines), fmt.Sprint(c.MatchedLines), fmtMoney(c.FileNetMinor, c.Currency),
			fmtMoney(b.OpeningMinor, c.Currency), fmtMoney(b.ClosingMinor, c.Currency))
	}
	if err := t.flush(); err != nil {
		return err
	}
	var classes []string
	for class, n := range sum.Mismatches {
		classes = append(classes, fmt.Sprintf("%s %d", class, n))
	}
	slices.Sort(classes)
	d.check("   ", fmt.Sprintf("every line of the file matched the ledger (%d of %d), no mismatch", sum.Matched, sum.Lines),
		sum.Matched == sum.Lines && sum.MismatchTotal == 0, classes...)
	d.check("   ", "the file's opening balance plus its lines is its closing balance, per currency", sum.BalancesOK)

	// The settled batches become ledger entries: psp_receivable → bank,
	// and the PSP's fee expensed.
	var batches []string
	rows, err := d.a.pool.Query(ctx, `SELECT 'settlement:' || (p->>'batch_id') FROM recon.outbox,
  LATERAL (SELECT convert_from(payload, 'UTF8')::jsonb AS p) j
WHERE subject = $1 AND p->>'file_id' = $2`, contracts.SubjectReconBatchSettled, sum.FileID)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return err
		}
		batches = append(batches, id)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var lines []string
	if err := await(ctx, "the settlement entries", func() (bool, string, error) {
		lines = lines[:0]
		rows, err := d.a.pool.Query(ctx, `SELECT p.currency, p.direction, p.account, sum(p.amount_minor)
FROM ledger.journal_entries e JOIN ledger.postings p ON p.entry_id = e.id
WHERE e.external_id = ANY($1) GROUP BY 1, 2, 3 ORDER BY 1, 2 DESC, 3`, batches)
		if err != nil {
			return false, "", err
		}
		var entries int
		for rows.Next() {
			var cur, dir, acc string
			var amt int64
			if err := rows.Scan(&cur, &dir, &acc, &amt); err != nil {
				return false, "", err
			}
			side := "Dr"
			if dir == contracts.Credit {
				side = "Cr"
			}
			lines = append(lines, fmt.Sprintf("%s %s %s", side, acc, fmtMoney(amt, cur)))
		}
		if err := rows.Err(); err != nil {
			return false, "", err
		}
		err = d.a.pool.QueryRow(ctx, `SELECT count(*) FROM ledger.journal_entries WHERE external_id = ANY($1)`, batches).Scan(&entries)
		return entries == len(batches), fmt.Sprintf("%d of %d", entries, len(batches)), err
	}); err != nil {
		return err
	}
	d.say("   Settlement entries posted by the ledger (%d batches): %s", len(batches), strings.Join(lines, ", "))

	again, err := r.Run(ctx, reconciler.RunRequest{Date: today})
	if err != nil {
		return err
	}
	d.check("   ", "running the day again returns the same run, posting nothing twice", again.RunID == sum.RunID && again.Batches == sum.Batches)
	where := "kept"
	if !d.o.keepData {
		where = "removed with the demo's data directory; --keep-data keeps it"
	}
	d.say("   report: %s (%s): the summary as JSON, the mismatches as CSV and JSON; `paypipe recon report --date %s` shows it from the database",
		cfg.ReconReportDir, where, sum.SettlementDate)
	return nil
}

// movementRefs are the references the PSP knows this run's money
// movements by: the paid checkouts, the refunds and the payouts.
func (d *demoRun) movementRefs(ctx context.Context) ([]string, error) {
	var refs []string
	for _, c := range d.checkouts {
		if id := c.co.ID.String(); c.final.Status == payment.StatusCompleted && !slices.Contains(refs, id) {
			refs = append(refs, id)
		}
	}
	rows, err := d.a.pool.Query(ctx, `SELECT id::text FROM payment.refunds WHERE seller_id = ANY($1::uuid[]) AND status = 'succeeded'
UNION SELECT id::text FROM payout.payouts WHERE seller_id = ANY($2::text[]) AND status = 'paid'`, d.sellerIDs(), d.sellerIDs())
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		refs = append(refs, id)
	}
	return refs, rows.Err()
}
