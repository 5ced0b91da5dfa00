package main

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/executor"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/payout"
	"github.com/paypipe/paypipe/services/pspsim"
	"github.com/paypipe/paypipe/services/reconciler"
)

// directCheckout creates a direct card checkout and returns it.
func (c apiClient) directCheckout(currency string, orders ...map[string]any) payment.Checkout {
	c.t.Helper()
	var out payment.Checkout
	if code := c.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b", "currency": currency, "mode": "direct",
		"payment_method": "pm_card_visa", "orders": orders}, &out); code != 201 {
		c.t.Fatalf("checkout: %d", code)
	}
	return out
}

// because is an Eventually result: ok, or why not yet.
func because(ok bool, format string, args ...any) (bool, error) {
	if ok {
		return true, nil
	}
	return false, fmt.Errorf(format, args...)
}

func order(seller payment.Seller, amount int64) map[string]any {
	return map[string]any{"seller_id": seller.ID, "amount_minor": amount}
}

// refund refunds amount of an order (0: the rest) and waits until the PSP
// refunded it.
func (c apiClient) refund(orderID uuid.UUID, amount int64) payment.Refund {
	c.t.Helper()
	body := map[string]any{"reason": "requested_by_customer"}
	if amount > 0 {
		body["amount_minor"] = amount
	}
	var r payment.Refund
	if code := c.do("POST", "/v1/payment_orders/"+orderID.String()+"/refunds", body, &r); code != 201 {
		c.t.Fatalf("refund %s: %d", orderID, code)
	}
	testenv.Eventually(c.t, 30*time.Second, "refund "+r.ID.String()+" succeeded", func() (bool, error) {
		c.do("GET", "/v1/refunds/"+r.ID.String(), nil, &r)
		return because(r.Status == contracts.RefundStatusSucceeded, "status %s", r.Status)
	})
	return r
}

// balances returns a seller's wallet balances by currency (the API's
// projection of wallet.balance.changed).
func (c apiClient) balances(seller uuid.UUID) map[string][3]int64 {
	c.t.Helper()
	var s payment.Seller
	if code := c.do("GET", "/v1/sellers/"+seller.String(), nil, &s); code != 200 {
		c.t.Fatalf("get seller: %d", code)
	}
	out := map[string][3]int64{}
	for _, b := range s.Balances {
		out[b.Currency] = [3]int64{b.PendingMinor, b.AvailableMinor, b.PaidOutMinor}
	}
	return out
}

// awaitExpected waits until the reconciler's projection of the ledger holds
// n movements the PSP will settle: a run before that would see charges the
// ledger has posted as unknown.
func awaitExpected(t *testing.T, a *app, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, fmt.Sprintf("%d movements projected for reconciliation", n), func() (bool, error) {
		var got int
		err := a.pool.QueryRow(context.Background(), `SELECT count(*) FROM recon.expected`).Scan(&got)
		return because(err == nil && got == n, "%d projected (%v)", got, err)
	})
}

func newReconciler(t *testing.T, a *app) *reconciler.Reconciler {
	t.Helper()
	client, err := a.pspClient()
	if err != nil {
		t.Fatal(err)
	}
	r, err := reconciler.New(reconciler.Config{PSPFeeBPS: int(a.opts.cfg.PSPFeeBPS), ReportDir: t.TempDir(), TempDir: t.TempDir(), RunAt: "off"},
		a.pool, client, client, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// ledgerNet is an account's balance on its normal side in a currency.
func ledgerNet(t *testing.T, a *app, account, currency string) int64 {
	t.Helper()
	var net int64
	if err := a.pool.QueryRow(context.Background(), `SELECT coalesce(sum(CASE WHEN (direction = 'debit') = (acc.normal_balance = 'debit') THEN amount_minor ELSE -amount_minor END), 0)
FROM ledger.postings p JOIN ledger.accounts acc ON acc.name = p.account WHERE p.account = $1 AND p.currency = $2`, account, currency).Scan(&net); err != nil {
		t.Fatal(err)
	}
	return net
}

// TestPayOutAndReconcileEndToEnd runs the second half of the money flow on
// the whole binary: fulfilment, refunds before and after fulfilment, a
// payout run (twice), the PSP's payouts and webhooks, then the day's
// settlement file reconciled against the ledger: every line matched, the
// PSP receivable netted to zero, the bank equal to the PSP's closing
// balance, and every invariant holding.
func TestPayOutAndReconcileEndToEnd(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	ctx := context.Background()
	api, sellers := newMerchant(t, a, 2)
	s0, s1 := sellers[0], sellers[1]

	c1 := api.directCheckout("USD", order(s0, 10000))
	c2 := api.directCheckout("USD", order(s0, 5000), order(s1, 3000))
	c3 := api.directCheckout("EUR", order(s1, 4000))
	for _, c := range []payment.Checkout{c1, c2, c3} {
		api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
	}
	orderOf := func(c payment.Checkout, seller payment.Seller) payment.PaymentOrder {
		for _, o := range api.checkout(c.ID).Orders {
			if o.SellerID == seller.ID {
				return o
			}
		}
		t.Fatalf("checkout %s has no order of seller %s", c.ID, seller.ID)
		return payment.PaymentOrder{}
	}
	o1, o2a, o2b, o3 := orderOf(c1, s0), orderOf(c2, s0), orderOf(c2, s1), orderOf(c3, s1)

	// Fulfilment moves the orders' net from pending to available; o2b
	// stays undelivered.
	for _, o := range []payment.PaymentOrder{o1, o2a, o3} {
		var got payment.PaymentOrder
		if code := api.do("POST", "/v1/payment_orders/"+o.ID.String()+"/fulfil", map[string]any{}, &got); code != 200 || got.FulfilledAt == nil {
			t.Fatalf("fulfil %s: %d %+v", o.ID, code, got)
		}
	}
	// A partial refund after fulfilment (from available) and a full one
	// before (from pending).
	r1 := api.refund(o1.ID, 2500)
	r2 := api.refund(o2b.ID, 0)
	if r1.FeeMinor != 75 || r1.NetMinor != 2425 || r2.AmountMinor != 3000 || r2.FeeMinor != o2b.FeeMinor {
		t.Fatalf("refund split: %+v %+v (order fee %d)", r1, r2, o2b.FeeMinor)
	}
	if code := api.do("POST", "/v1/payment_orders/"+o2b.ID.String()+"/refunds", map[string]any{"amount_minor": 1}, nil); code != 409 {
		t.Fatalf("refund beyond the captured amount: %d, want 409", code)
	}

	wantS0USD := o1.NetMinor + o2a.NetMinor - r1.NetMinor // 9700 + 4850 − 2425
	testenv.Eventually(t, 30*time.Second, "balances after fulfilment and refunds", func() (bool, error) {
		b0, b1 := api.balances(s0.ID), api.balances(s1.ID)
		ok := b0["USD"] == [3]int64{0, wantS0USD, 0} && b1["USD"] == [3]int64{0, 0, 0} && b1["EUR"] == [3]int64{0, o3.NetMinor, 0}
		return because(ok, "seller 0 %v, seller 1 %v", b0, b1)
	})

	// The payout run requests one payout per seller and currency with
	// money available; running it again for the same period requests none.
	runner, err := payout.New(payout.Config{Schedule: "off"}, a.pool, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	period := payout.DayPeriod(time.Now())
	var res payout.RunResult
	testenv.Eventually(t, 30*time.Second, "payout run sees both balances", func() (bool, error) {
		// The payout service's projection of balances lags the API's.
		var n int
		err := a.pool.QueryRow(ctx, `SELECT count(*) FROM payout.balances WHERE available_minor > 0`).Scan(&n)
		return because(err == nil && n == 2, "%d balances with money (%v)", n, err)
	})
	if res, err = runner.RunPayouts(ctx, payout.RunRequest{Period: period}); err != nil || res.Requested != 2 {
		t.Fatalf("payout run: %+v %v", res, err)
	}
	if res, err = runner.RunPayouts(ctx, payout.RunRequest{Period: period}); err != nil || res.Requested != 0 {
		t.Fatalf("second payout run of %s: %+v %v", period, res, err)
	}
	var payouts payment.PayoutList
	testenv.Eventually(t, 60*time.Second, "both payouts paid", func() (bool, error) {
		api.do("GET", "/v1/payouts", nil, &payouts)
		paid := 0
		for _, p := range payouts.Data {
			if p.Status == contracts.PayoutStatusPaid {
				paid++
			}
		}
		return because(paid == 2 && len(payouts.Data) == 2, "%+v", payouts.Data)
	})
	amounts := map[string]int64{}
	for _, p := range payouts.Data {
		amounts[p.SellerID.String()+p.Currency] = p.AmountMinor
	}
	if amounts[s0.ID.String()+"USD"] != wantS0USD || amounts[s1.ID.String()+"EUR"] != o3.NetMinor {
		t.Fatalf("payout amounts %v, want %d and %d", amounts, wantS0USD, o3.NetMinor)
	}
	var pspPayouts int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pspsim.payouts`).Scan(&pspPayouts); err != nil || pspPayouts != 2 {
		t.Fatalf("PSP payouts %d (%v), want 2", pspPayouts, err)
	}
	testenv.Eventually(t, 30*time.Second, "balances paid out", func() (bool, error) {
		b0 := api.balances(s0.ID)
		return because(b0["USD"] == [3]int64{0, 0, wantS0USD}, "seller 0 %v", b0)
	})

	// Tonight's file: 3 charges, 2 refunds, 2 payouts, all known to the ledger.
	awaitVerified(t, a)
	awaitExpected(t, a, 7)
	rec := newReconciler(t, a)
	today := time.Now().UTC()
	sum, err := rec.Run(ctx, reconciler.RunRequest{Date: today})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Lines != 7 || sum.Matched != 7 || sum.MismatchTotal != 0 || !sum.BalancesOK {
		t.Fatalf("reconciliation of a clean day: %+v", sum)
	}
	// The settled batches reach the ledger: the PSP receivable of every
	// settled payment nets to zero, and the bank holds what the PSP says.
	for _, b := range sum.Balances {
		testenv.Eventually(t, 30*time.Second, "settlement posted in "+b.Currency, func() (bool, error) {
			recv, bank := ledgerNet(t, a, contracts.AccountPSPReceivable, b.Currency), ledgerNet(t, a, contracts.AccountBank, b.Currency)
			return because(recv == 0 && bank == b.ClosingMinor, "psp_receivable %d, bank %d, PSP closing balance %d", recv, bank, b.ClosingMinor)
		})
	}
	// Fees: the PSP's 2.90 % of each charge, expensed.
	if fee := ledgerNet(t, a, contracts.AccountPSPFeeExpense, "USD"); fee != 290+(145+87) {
		t.Fatalf("USD psp fees %d, want %d", fee, 290+145+87)
	}

	// A rerun of the day is the same run: same summary, nothing posted twice.
	var before int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM recon.outbox`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	again, err := rec.Run(ctx, reconciler.RunRequest{Date: today})
	if err != nil || again.RunID != sum.RunID || again.Matched != sum.Matched || again.Batches != sum.Batches {
		t.Fatalf("rerun: %+v %v, first %+v", again, err, sum)
	}
	var after int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM recon.outbox`).Scan(&after); err != nil || after != before {
		t.Fatalf("rerun wrote %d events", after-before)
	}
	awaitVerified(t, a)
	assertEventsValid(t, a)
}

// TestReconcileSeededDiscrepancies: every discrepancy the simulator can
// seed in a settlement file is found and classified into its queue, and a
// charge whose webhook never came is confirmed with the PSP and completes.
func TestReconcileSeededDiscrepancies(t *testing.T) {
	t.Parallel()
	// The resolver must not find the lost webhook's payment first.
	a := startAppWith(t, appOptions{executor: executor.Config{ResolveAfter: 10 * time.Minute}})
	ctx := context.Background()
	setFaults(t, a, pspsim.Faults{Seed: 5, DropWebhookRate: 1})
	api, sellers := newMerchant(t, a, 1)
	var direct []payment.Checkout
	for i := range 7 {
		direct = append(direct, api.directCheckout("USD", order(sellers[0], int64(1000+100*i))))
	}
	for _, c := range direct {
		api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
	}
	var hosted payment.Checkout
	if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b", "currency": "USD", "mode": "hosted",
		"return_url": "http://127.0.0.1/r", "orders": []map[string]any{order(sellers[0], 4321)}}, &hosted); code != 201 {
		t.Fatalf("hosted checkout: %d", code)
	}
	api.payHosted(hosted.ID, "4242 4242 4242 4242")
	if n := charges(t, a, hosted.ID); n != 1 {
		t.Fatalf("hosted checkout charged %d times", n)
	}
	if st := api.checkout(hosted.ID).Status; st == payment.StatusSucceeded || st == payment.StatusCompleted {
		t.Fatalf("hosted checkout %s although its webhook was dropped", st)
	}
	pspID := func(c payment.Checkout) string {
		var id string
		if err := a.pool.QueryRow(ctx, `SELECT id FROM pspsim.payments WHERE merchant_reference = $1`, c.ID.String()).Scan(&id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	date := time.Now().UTC().Format(time.DateOnly)
	seeded := map[string]string{} // psp reference → class the reconciler must find
	for i, d := range []struct{ kind, class string }{
		{pspsim.DiscrepancyMissingLine, contracts.MismatchSettlesLater},
		{pspsim.DiscrepancyAlteredAmount, contracts.MismatchAmount},
		{pspsim.DiscrepancyDuplicatedLine, contracts.MismatchDuplicateLine},
		{pspsim.DiscrepancyWrongFee, contracts.MismatchFee},
		{pspsim.DiscrepancyCurrencyMismatch, contracts.MismatchCurrency},
		{pspsim.DiscrepancySettlesLate, contracts.MismatchSettlesLater},
	} {
		ref := pspID(direct[i])
		if _, err := a.sim.sim.AddDiscrepancy(ctx, pspsim.DiscrepancyRequest{Date: date, Kind: d.kind, PSPReference: ref}); err != nil {
			t.Fatalf("seed %s: %v", d.kind, err)
		}
		seeded[ref] = d.class
	}
	unknown, err := a.sim.sim.AddDiscrepancy(ctx, pspsim.DiscrepancyRequest{Date: date, Kind: pspsim.DiscrepancyUnknownReference})
	if err != nil {
		t.Fatal(err)
	}
	seeded[unknown.PSPReference] = contracts.MismatchUnknownReference
	seeded[pspID(hosted)] = contracts.MismatchMissingCapture

	awaitExpected(t, a, 7)
	rec := newReconciler(t, a)
	sum, err := rec.Run(ctx, reconciler.RunRequest{Date: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := rec.Mismatches(ctx, reconciler.Filter{Date: date, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, m := range ms {
		if m.Queue != contracts.MismatchQueue(m.Class) {
			t.Errorf("mismatch %s of class %s in queue %s", m.ID, m.Class, m.Queue)
		}
		if prev, dup := found[m.PSPReference]; dup {
			t.Errorf("%s classified twice: %s and %s", m.PSPReference, prev, m.Class)
		}
		found[m.PSPReference] = m.Class
	}
	for ref, class := range seeded {
		if found[ref] != class {
			t.Errorf("%s: found %q, want %q", ref, found[ref], class)
		}
	}
	if len(found) != len(seeded) {
		t.Errorf("found %v, want exactly %v", found, seeded)
	}
	// Only the untouched charge matched (the duplicated line's first copy
	// settles; its second is the mismatch).
	if sum.Matched != 2 {
		t.Errorf("matched %d lines, want 2 (the untouched charge and the duplicated line's first copy)", sum.Matched)
	}
	// The charge.confirmed the reconciler emitted completes the payment;
	// its capture then settles the parked line.
	api.awaitStatus(hosted.ID, payment.StatusCompleted, 30*time.Second)
	testenv.Eventually(t, 30*time.Second, "missing capture resolved once the capture posted", func() (bool, error) {
		ms, err := rec.Mismatches(ctx, reconciler.Filter{Date: date, Class: contracts.MismatchMissingCapture})
		if err != nil || len(ms) != 1 {
			return because(false, "%d missing captures (%v)", len(ms), err)
		}
		return because(ms[0].Status == reconciler.StatusResolved, "status %s", ms[0].Status)
	})
	if !slices.ContainsFunc(ms, func(m reconciler.Mismatch) bool { return len(m.Evidence) > 2 }) {
		t.Error("mismatches carry no evidence")
	}
	awaitVerified(t, a)
}

// TestPayoutAndRefundWhenThePSPFails: the PSP executes a refund and a
// payout but answers 500 (F20's unknown outcome): each is retried with the
// same key after a lookup, and exactly one PSP refund and one PSP payout
// exist. A payout the PSP then fails returns the money to available, and
// the next period's run pays it.
func TestPayoutAndRefundWhenThePSPFails(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	ctx := context.Background()
	api, sellers := newMerchant(t, a, 1)
	c := api.directCheckout("EUR", order(sellers[0], 10000))
	api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
	o := api.checkout(c.ID).Orders[0]
	if code := api.do("POST", "/v1/payment_orders/"+o.ID.String()+"/fulfil", map[string]any{}, nil); code != 200 {
		t.Fatalf("fulfil: %d", code)
	}

	setFaults(t, a, pspsim.Faults{Seed: 6, FailAfterRefundRate: 1, FailAfterPayoutRate: 1, FailNextPayouts: 1})
	r := api.refund(o.ID, 1000)
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		if err := a.pool.QueryRow(ctx, q, args...).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM pspsim.refunds WHERE merchant_reference = $1`, r.ID.String()); n != 1 {
		t.Fatalf("%d PSP refunds for refund %s, want 1", n, r.ID)
	}
	if n := count(`SELECT count(*) FROM executor.refunds WHERE refund_id = $1 AND attempts >= 2`, r.ID); n != 1 {
		t.Fatalf("the refund was not retried after the PSP's 500 (%d attempts rows with ≥ 2)", n)
	}
	available := o.NetMinor - r.NetMinor
	awaitAvailable := func(want [3]int64) {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, "seller balance", func() (bool, error) {
			b := api.balances(sellers[0].ID)["EUR"]
			return because(b == want, "balance %v, want %v", b, want)
		})
	}
	awaitAvailable([3]int64{0, available, 0})

	runner, err := payout.New(payout.Config{Schedule: "off"}, a.pool, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	runPeriod := func(period string) payment.Payout {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, "payout projection", func() (bool, error) {
			n := count(`SELECT count(*) FROM payout.balances WHERE seller_id = $1 AND available_minor = $2`, sellers[0].ID.String(), available)
			return because(n == 1, "projection lags")
		})
		res, err := runner.RunPayouts(ctx, payout.RunRequest{Period: period})
		if err != nil || res.Requested != 1 {
			t.Fatalf("payout run %s: %+v %v", period, res, err)
		}
		id := payout.ID(sellers[0].ID.String(), "EUR", period)
		var p payment.Payout
		testenv.Eventually(t, 60*time.Second, "payout "+period+" final", func() (bool, error) {
			api.do("GET", "/v1/payouts/"+id.String(), nil, &p)
			return because(p.Status == contracts.PayoutStatusPaid || p.Status == contracts.PayoutStatusFailed, "status %q", p.Status)
		})
		if n := count(`SELECT count(*) FROM pspsim.payouts WHERE merchant_reference = $1`, id.String()); n != 1 {
			t.Fatalf("%d PSP payouts for payout %s, want exactly 1", n, id)
		}
		// The fault path ran: the 500 after commit made the sender try again.
		if n := count(`SELECT count(*) FROM payout.payouts WHERE id = $1 AND attempts >= 2`, id); n != 1 {
			t.Fatalf("payout %s was not retried after the PSP's 500", id)
		}
		return p
	}
	// The PSP answers 500 after creating it, then fails it (account closed):
	// the money comes back.
	first := runPeriod("2026-11-01")
	if first.Status != contracts.PayoutStatusFailed || first.AmountMinor != available || first.FailureCode == nil {
		t.Fatalf("first payout: %+v", first)
	}
	awaitAvailable([3]int64{0, available, 0})
	// The next period pays it (the 500 after commit still applies).
	second := runPeriod("2026-11-02")
	if second.Status != contracts.PayoutStatusPaid || second.AmountMinor != available {
		t.Fatalf("second payout: %+v", second)
	}
	awaitAvailable([3]int64{0, 0, available})
	awaitVerified(t, a)
	assertEventsValid(t, a)
}

// TestRefundAfterPayoutIsRecoveredFromLaterSales: a refund of an order
// already paid out leaves the seller owing the platform (available < 0);
// no payout is made while it is negative, and the next sale's net pays the
// debt first: the next payout is the sale's net minus the debt.
func TestRefundAfterPayoutIsRecoveredFromLaterSales(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	ctx := context.Background()
	api, sellers := newMerchant(t, a, 1)
	seller := sellers[0]
	sell := func(amount int64) payment.PaymentOrder {
		t.Helper()
		c := api.directCheckout("GBP", order(seller, amount))
		api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
		o := api.checkout(c.ID).Orders[0]
		if code := api.do("POST", "/v1/payment_orders/"+o.ID.String()+"/fulfil", map[string]any{}, nil); code != 200 {
			t.Fatalf("fulfil: %d", code)
		}
		return o
	}
	runner, err := payout.New(payout.Config{Schedule: "off"}, a.pool, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	// payOut runs a period once the payout service has seen available,
	// and returns what was requested.
	payOut := func(period string, available int64) payout.RunResult {
		t.Helper()
		testenv.Eventually(t, 30*time.Second, "payout projection", func() (bool, error) {
			var got int64
			err := a.pool.QueryRow(ctx, `SELECT coalesce(max(available_minor), 0) FROM payout.balances WHERE seller_id = $1`, seller.ID.String()).Scan(&got)
			return because(err == nil && got == available, "projected %d, want %d (%v)", got, available, err)
		})
		res, err := runner.RunPayouts(ctx, payout.RunRequest{Period: period})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	awaitBalance := func(want [3]int64) {
		t.Helper()
		testenv.Eventually(t, 60*time.Second, "seller balance", func() (bool, error) {
			b := api.balances(seller.ID)["GBP"]
			return because(b == want, "balance %v, want %v", b, want)
		})
	}

	first := sell(10000) // net 9700
	awaitBalance([3]int64{0, first.NetMinor, 0})
	if res := payOut("2026-10-01", first.NetMinor); res.Requested != 1 {
		t.Fatalf("first payout run: %+v", res)
	}
	awaitBalance([3]int64{0, 0, first.NetMinor})

	// The whole order is refunded after it was paid out: the seller owes
	// its net (9700); the platform gives back its fee.
	r := api.refund(first.ID, 0)
	if r.NetMinor != first.NetMinor || r.FeeMinor != first.FeeMinor {
		t.Fatalf("refund split %+v, order %+v", r, first)
	}
	awaitBalance([3]int64{0, -first.NetMinor, first.NetMinor})
	if res := payOut("2026-10-02", -first.NetMinor); res.Requested != 0 || res.Candidates != 0 {
		t.Fatalf("a payout run while the seller owes money requested %+v", res)
	}

	// The next sale pays the debt first.
	second := sell(20000) // net 19400
	rest := second.NetMinor - first.NetMinor
	awaitBalance([3]int64{0, rest, first.NetMinor})
	if res := payOut("2026-10-03", rest); res.Requested != 1 {
		t.Fatalf("payout after the debt: %+v", res)
	}
	awaitBalance([3]int64{0, 0, first.NetMinor + rest})
	var paid int64
	testenv.Eventually(t, 60*time.Second, "second payout paid", func() (bool, error) {
		var p payment.Payout
		api.do("GET", "/v1/payouts/"+payout.ID(seller.ID.String(), "GBP", "2026-10-03").String(), nil, &p)
		paid = p.AmountMinor
		return because(p.Status == contracts.PayoutStatusPaid, "status %q", p.Status)
	})
	if paid != rest {
		t.Fatalf("second payout %d, want the sale's net %d minus the debt %d", paid, second.NetMinor, first.NetMinor)
	}
	awaitVerified(t, a)
}
