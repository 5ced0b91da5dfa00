package payment_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/psp"
)

// Refund reports move a refund forward only: a failed refund makes its
// amount refundable again, a success is written once, and reports that
// disagree with the refund are quarantined, never applied.
func TestRefundReportsForwardOnly(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	co := e.paidCheckout(e.a, "USD", false, 10000)
	o := co.Orders[0]
	path := "/v1/payment_orders/" + o.ID.String() + "/refunds"
	report := func(rf payment.Refund, status string, amount int64, pspID string) {
		t.Helper()
		e.deliver(contracts.PaymentRefundReportsConsumer, contracts.SubjectRefundReported, contracts.RefundReported{
			RefundID: rf.ID.String(), MerchantID: e.a.id.String(), PSPRefundID: pspID, Status: status,
			AmountMinor: amount, Currency: rf.Currency, FailureCode: map[bool]string{true: "card_closed"}[status == contracts.RefundStatusFailed],
			ReportedAt: time.Now(),
		})
	}
	get := func(id uuid.UUID) payment.Refund {
		t.Helper()
		return decode[payment.Refund](t, e.get(e.a.key, "/v1/refunds/"+id.String()), http.StatusOK)
	}
	quarantined := func() int { return e.count(`SELECT count(*) FROM payment.quarantine`) }

	r1 := decode[payment.Refund](t, e.post(e.a.key, path, "r1", `{}`), http.StatusCreated)
	report(r1, contracts.RefundStatusFailed, r1.AmountMinor+1, "") // the PSP's amount disagrees
	if q := quarantined(); q != 1 || get(r1.ID).Status != contracts.RefundStatusPending {
		t.Fatalf("mismatched report: %d quarantined, refund %+v", q, get(r1.ID))
	}
	report(r1, contracts.RefundStatusPending, r1.AmountMinor, "re_1") // nothing to move
	report(r1, contracts.RefundStatusFailed, r1.AmountMinor, "")
	if g := get(r1.ID); g.Status != contracts.RefundStatusFailed || g.FailureCode == nil || *g.FailureCode != "card_closed" {
		t.Fatalf("failed refund %+v", g)
	}
	report(r1, contracts.RefundStatusSucceeded, r1.AmountMinor, "re_1") // contradicts a final status
	if q := quarantined(); q != 2 || get(r1.ID).Status != contracts.RefundStatusFailed {
		t.Fatalf("contradiction: %d quarantined, refund %+v", q, get(r1.ID))
	}
	report(r1, contracts.RefundStatusFailed, r1.AmountMinor, "") // a late duplicate
	if n := len(e.events(contracts.SubjectRefundFailed)); n != 1 {
		t.Fatalf("%d refund.failed events", n)
	}
	// The failed amount is refundable again, fee included.
	r2 := decode[payment.Refund](t, e.post(e.a.key, path, "r2", `{}`), http.StatusCreated)
	if r2.AmountMinor != o.AmountMinor || r2.FeeMinor != o.FeeMinor {
		t.Fatalf("refund after a failed one %+v, order %+v", r2, o)
	}
	report(r2, contracts.RefundStatusSucceeded, r2.AmountMinor, "") // success needs the PSP's id
	if q := quarantined(); q != 3 || get(r2.ID).Status != contracts.RefundStatusPending {
		t.Fatalf("success without id: %d quarantined", q)
	}
	report(r2, contracts.RefundStatusSucceeded, r2.AmountMinor, "re_2")
	report(r2, contracts.RefundStatusSucceeded, r2.AmountMinor, "re_2") // redelivered under a new id
	report(r2, contracts.RefundStatusPending, r2.AmountMinor, "re_2")   // stale
	if g := get(r2.ID); g.Status != contracts.RefundStatusSucceeded {
		t.Fatalf("refund %+v", g)
	}
	evs := e.events(contracts.SubjectRefundSucceeded)
	if len(evs) != 1 {
		t.Fatalf("%d refund.succeeded events", len(evs))
	}
	var ev contracts.RefundSucceeded
	if err := json.Unmarshal(evs[0].payload, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.RefundID != r2.ID.String() || ev.PSPRefundID != "re_2" || ev.PSPPaymentID != "pay_"+co.ID.String() ||
		ev.AmountMinor != o.AmountMinor || ev.FeeMinor != o.FeeMinor || ev.NetMinor != o.NetMinor ||
		ev.SellerID != o.SellerID.String() || ev.CheckoutID != co.ID.String() || evs[0].version != "2" {
		t.Fatalf("event %+v v%s", ev, evs[0].version)
	}
	var failed contracts.RefundFailed
	if err := json.Unmarshal(e.events(contracts.SubjectRefundFailed)[0].payload, &failed); err != nil {
		t.Fatal(err)
	}
	if failed.RefundID != r1.ID.String() || failed.FailureCode != "card_closed" || failed.AmountMinor != r1.AmountMinor {
		t.Fatalf("failed event %+v", failed)
	}
	// A report about a refund nobody created.
	e.deliver(contracts.PaymentRefundReportsConsumer, contracts.SubjectRefundReported, contracts.RefundReported{
		RefundID: uuid.NewString(), MerchantID: e.a.id.String(), Status: contracts.RefundStatusSucceeded, PSPRefundID: "re_x",
		AmountMinor: 1, Currency: "USD", ReportedAt: time.Now()})
	if q := quarantined(); q != 4 {
		t.Fatalf("unknown refund: %d quarantined", q)
	}
	if n := e.count(`SELECT count(*) FROM payment.status_transitions WHERE object_type = 'refund'`); n != 4 {
		t.Fatalf("%d refund transitions, want 4 (2 created, failed, succeeded)", n)
	}
	e.validateOutbox()
}

func payoutEvent(m tenant, seller uuid.UUID, id uuid.UUID, status string, version int64, created time.Time) contracts.PayoutChanged {
	ev := contracts.PayoutChanged{PayoutID: id.String(), MerchantID: m.id.String(), SellerID: seller.String(), Currency: "USD",
		Period: "2026-01-05", Status: status, AmountMinor: 4200, Version: version, CreatedAt: created,
		ChangedAt: created.Add(time.Duration(version) * time.Minute)}
	if version >= 2 {
		ev.PSPPayoutID = "po_" + id.String()[:8]
	}
	return ev
}

var payoutSubject = map[string]string{
	contracts.PayoutStatusCreated: contracts.SubjectPayoutCreated, contracts.PayoutStatusSent: contracts.SubjectPayoutSent,
	contracts.PayoutStatusPaid: contracts.SubjectPayoutPaid, contracts.PayoutStatusFailed: contracts.SubjectPayoutFailed,
	contracts.PayoutStatusCanceled: contracts.SubjectPayoutCanceled,
}

func (e *apiEnv) payout(ev contracts.PayoutChanged) {
	e.t.Helper()
	e.deliver(contracts.PaymentPayoutsConsumer, payoutSubject[ev.Status], ev)
}

// The projection keeps the highest version whatever order the events come in.
func TestPayoutsProjectionOutOfOrder(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	seller := e.seller(e.a, "s")
	id, created := uuid.New(), time.Now().UTC().Truncate(time.Microsecond)
	e.payout(payoutEvent(e.a, seller, id, contracts.PayoutStatusPaid, 3, created))
	e.payout(payoutEvent(e.a, seller, id, contracts.PayoutStatusCreated, 1, created))
	e.payout(payoutEvent(e.a, seller, id, contracts.PayoutStatusSent, 2, created))
	p := decode[payment.Payout](t, e.get(e.a.key, "/v1/payouts/"+id.String()), http.StatusOK)
	if p.Status != contracts.PayoutStatusPaid || p.Object != "payout" || p.SellerID != seller || p.AmountMinor != 4200 ||
		p.Currency != "USD" || p.Period != "2026-01-05" || p.PSPPayoutID == nil || !p.CreatedAt.Equal(created) ||
		!p.UpdatedAt.Equal(created.Add(3*time.Minute)) || p.FailureCode != nil {
		t.Fatalf("payout %+v", p)
	}
	// A failed payout of another seller, then its stale created.
	id2 := uuid.New()
	failed := payoutEvent(e.a, seller, id2, contracts.PayoutStatusFailed, 4, created)
	failed.FailureCode = "account_closed"
	e.payout(failed)
	e.payout(payoutEvent(e.a, seller, id2, contracts.PayoutStatusCreated, 1, created))
	p = decode[payment.Payout](t, e.get(e.a.key, "/v1/payouts/"+id2.String()), http.StatusOK)
	if p.Status != contracts.PayoutStatusFailed || p.FailureCode == nil || *p.FailureCode != "account_closed" {
		t.Fatalf("payout %+v", p)
	}
	// Another merchant's payout is a missing one.
	missing := e.get(e.b.key, "/v1/payouts/"+uuid.NewString())
	other := e.get(e.b.key, "/v1/payouts/"+id.String())
	problem(t, other, http.StatusNotFound, payment.CodeNotFound)
	if string(missing.body) != string(other.body) {
		t.Fatalf("404 bodies differ")
	}
}

func TestListPayouts(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	s1, s2 := e.seller(e.a, "s1"), e.seller(e.a, "s2")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ids []uuid.UUID // oldest first
	for i := range 5 {
		id := uuid.New()
		seller, status := s1, contracts.PayoutStatusPaid
		if i%2 == 1 {
			seller, status = s2, contracts.PayoutStatusSent
		}
		e.payout(payoutEvent(e.a, seller, id, status, int64(2+i%2), base.Add(time.Duration(i)*time.Hour)))
		ids = append(ids, id)
	}
	bSeller := e.seller(e.b, "b")
	e.payout(payoutEvent(e.b, bSeller, uuid.New(), contracts.PayoutStatusPaid, 3, base))

	var got []uuid.UUID
	after := ""
	for pages := 0; ; pages++ {
		if pages > 3 {
			t.Fatal("pagination does not end")
		}
		l := decode[payment.PayoutList](t, e.get(e.a.key, "/v1/payouts?limit=2"+after), http.StatusOK)
		for _, p := range l.Data {
			got = append(got, p.ID)
		}
		if !l.HasMore {
			break
		}
		after = "&starting_after=" + l.Data[len(l.Data)-1].ID.String()
	}
	if len(got) != 5 {
		t.Fatalf("%d payouts listed, want 5 (B's must not appear)", len(got))
	}
	for i, id := range got {
		if id != ids[4-i] {
			t.Fatalf("position %d: %s, want %s (newest first)", i, id, ids[4-i])
		}
	}
	count := func(query string) int {
		t.Helper()
		return len(decode[payment.PayoutList](t, e.get(e.a.key, "/v1/payouts?"+query), http.StatusOK).Data)
	}
	if n := count("seller_id=" + s2.String()); n != 2 {
		t.Fatalf("seller filter: %d", n)
	}
	if n := count("status=paid"); n != 3 {
		t.Fatalf("status filter: %d", n)
	}
	if n := count("created_after=" + base.Add(90*time.Minute).Format(time.RFC3339)); n != 3 {
		t.Fatalf("created_after filter: %d", n)
	}
	if n := count("seller_id=" + bSeller.String()); n != 0 {
		t.Fatalf("another merchant's seller: %d", n)
	}
	if l := decode[payment.PayoutList](t, e.get(e.b.key, "/v1/payouts"), http.StatusOK); len(l.Data) != 1 || l.Data[0].SellerID != bSeller {
		t.Fatalf("B's list %+v", l)
	}
	for _, q := range []string{"status=pending", "seller_id=x", "created_after=yesterday", "limit=0", "limit=101", "foo=1",
		"starting_after=" + uuid.NewString()} {
		problem(t, e.get(e.a.key, "/v1/payouts?"+q), http.StatusBadRequest, payment.CodeInvalidParameter)
	}
	// B's payout is no cursor for A.
	bList := decode[payment.PayoutList](t, e.get(e.b.key, "/v1/payouts"), http.StatusOK)
	problem(t, e.get(e.a.key, "/v1/payouts?starting_after="+bList.Data[0].ID.String()), http.StatusBadRequest, payment.CodeInvalidParameter)
}

// The reconciler's confirmation of a charge the webhook never reported
// advances a processing checkout like any PSP report, once.
func TestReconConfirmation(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	orders := map[uuid.UUID]int64{e.seller(e.a, "s1"): 1200, e.seller(e.a, "s2"): 800}
	co := decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", "c1", checkoutBody("USD", orders)), http.StatusCreated)
	pspID := "pay_" + co.ID.String()
	e.deliver(contracts.PaymentRegistrationConsumer, contracts.SubjectCheckoutRegistered, contracts.CheckoutRegistered{
		CheckoutID: co.ID.String(), MerchantID: e.a.id.String(), PSPPaymentID: pspID, PSPStatus: psp.StatusProcessing,
		AmountMinor: co.AmountMinor, Currency: "USD"})
	if g := decode[payment.Checkout](t, e.get(e.a.key, "/v1/checkouts/"+co.ID.String()), http.StatusOK); g.Status != payment.StatusProcessing {
		t.Fatalf("checkout %s", g.Status)
	}
	confirm := func(checkoutID string, amount int64) {
		t.Helper()
		e.deliver(contracts.PaymentReconConsumer, contracts.SubjectReconChargeConfirmed, contracts.ChargeConfirmed{
			CheckoutID: checkoutID, PSPPaymentID: pspID, PSPStatus: psp.StatusSucceeded, AmountMinor: amount, Currency: "USD",
			SettlementDate: "2026-01-05", ConfirmedAt: time.Now()})
	}
	confirm(co.ID.String(), co.AmountMinor+1) // disagrees: quarantined
	if g := decode[payment.Checkout](t, e.get(e.a.key, "/v1/checkouts/"+co.ID.String()), http.StatusOK); g.Status != payment.StatusProcessing {
		t.Fatalf("a mismatched confirmation moved the checkout to %s", g.Status)
	}
	confirm(co.ID.String(), co.AmountMinor)
	confirm(co.ID.String(), co.AmountMinor) // the reconciler reruns the day
	g := decode[payment.Checkout](t, e.get(e.a.key, "/v1/checkouts/"+co.ID.String()), http.StatusOK)
	if g.Status != payment.StatusSucceeded {
		t.Fatalf("checkout %s after the confirmation", g.Status)
	}
	evs := e.events(contracts.SubjectOrderSucceeded)
	if len(evs) != 2 {
		t.Fatalf("%d order.succeeded events, want 2 (one per order, once)", len(evs))
	}
	for _, r := range evs {
		var ev contracts.OrderSucceeded
		if err := json.Unmarshal(r.payload, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.CheckoutAmountMinor != co.AmountMinor || ev.PSPPaymentID != pspID || orders[uuid.MustParse(ev.SellerID)] != ev.AmountMinor {
			t.Fatalf("event %+v", ev)
		}
	}
	if n := e.count(`SELECT count(*) FROM payment.status_transitions WHERE cause = 'recon:2026-01-05'`); n != 3 {
		t.Fatalf("%d transitions caused by the reconciler, want 3 (checkout and 2 orders)", n)
	}
	confirm(uuid.NewString(), 100) // a checkout we never had
	var reasons []string
	rows, err := e.pool.Query(t.Context(), `SELECT reason FROM payment.quarantine WHERE source = 'recon' ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, r)
	}
	if len(reasons) != 2 || !strings.Contains(reasons[0], "amount") || !strings.Contains(reasons[1], "no such checkout") {
		t.Fatalf("quarantined: %s", fmt.Sprint(reasons))
	}
	e.validateOutbox()
}

// Only the wallet's credit of a captured order marks it recorded; a
// fulfilment's or a refund's balance change updates the projection only.
func TestWalletCausesOtherThanCaptureDoNotComplete(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	co := e.paidCheckout(e.a, "USD", false, 5000)
	o := co.Orders[0]
	e.deliver(contracts.CompletionLedgerConsumer, contracts.SubjectLedgerEntryPosted, contracts.LedgerEntryPosted{
		EntryID: uuid.NewString(), Kind: contracts.EntryOrderCaptured, MerchantID: e.a.id.String(), PaymentOrderID: o.ID.String(), Currency: "USD"})
	bal := func(cause string, version, pending, available int64) contracts.WalletBalanceChanged {
		return contracts.WalletBalanceChanged{SellerID: o.SellerID.String(), MerchantID: e.a.id.String(), Currency: "USD",
			Cause: cause, PaymentOrderID: o.ID.String(), Ref: o.ID.String(), PendingMinor: pending, AvailableMinor: available, Version: version}
	}
	e.deliver(contracts.CompletionWalletConsumer, contracts.SubjectWalletBalance, bal(contracts.CauseRefund, 2, 100, 0))
	if s := decode[payment.PaymentOrder](t, e.get(e.a.key, "/v1/payment_orders/"+o.ID.String()), http.StatusOK).Status; s != payment.StatusSucceeded {
		t.Fatalf("a refund's balance change completed the order: %s", s)
	}
	e.deliver(contracts.CompletionWalletConsumer, contracts.SubjectWalletBalance, bal(contracts.CauseOrderSucceeded, 1, o.NetMinor, 0))
	if s := decode[payment.PaymentOrder](t, e.get(e.a.key, "/v1/payment_orders/"+o.ID.String()), http.StatusOK).Status; s != payment.StatusCompleted {
		t.Fatalf("order %s after the wallet's credit", s)
	}
	// The projection kept version 2 although version 1 came later.
	s := decode[payment.Seller](t, e.get(e.a.key, "/v1/sellers/"+o.SellerID.String()), http.StatusOK)
	if len(s.Balances) != 1 || s.Balances[0].PendingMinor != 100 {
		t.Fatalf("balances %+v", s.Balances)
	}
}
