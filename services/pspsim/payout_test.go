package pspsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/pspsim"
)

func (s *sim) refundLog(query string) []pspsim.RefundRecord {
	s.t.Helper()
	var page pspsim.RefundRecordsPage
	s.admin(http.MethodGet, "/admin/refunds?limit=1000&"+query, nil, &page)
	return page.Refunds
}

func (s *sim) payoutLog(query string) []pspsim.PayoutRecord {
	s.t.Helper()
	var page pspsim.PayoutRecordsPage
	s.admin(http.MethodGet, "/admin/payouts?limit=1000&"+query, nil, &page)
	return page.Payouts
}

func refundReq(key, paymentID string, amount int64) psp.CreateRefundRequest {
	return psp.CreateRefundRequest{IdempotencyKey: key, PaymentID: paymentID, AmountMinor: amount, Currency: "EUR",
		MerchantReference: key, Reason: "requested_by_customer"}
}

// TestChargeFee: each charge records its fee, half up at Config.FeeBPS.
func TestChargeFee(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{cfg: func(c *pspsim.Config) { c.FeeBPS = 250 }})
	p, err := s.client.CreatePayment(context.Background(), direct("fee-1", psp.MethodCardSucceeds)) // 2599 EUR
	if err != nil {
		t.Fatal(err)
	}
	cs := s.charges("fee-1")
	// 2599 × 2.5 % = 64.975 → 65 (half up).
	if len(cs) != 1 || cs[0].PaymentID != p.ID || cs[0].FeeMinor != 65 || cs[0].FeeBPS != 250 {
		t.Fatalf("charge log %+v; want one charge with fee 65 at 250 bps", cs)
	}
	if _, err := pspsim.New(pspsim.Config{APIKey: "k", WebhookURL: "http://x/y", WebhookSecrets: []string{secretOld}, FeeBPS: 10001}, s.pool, nil); err == nil {
		t.Fatal("FeeBPS 10001 accepted")
	}
}

// TestRefunds: a refund succeeds at once, its key replays it, and what the
// PSP must refuse is refused with a stable code and leaves no row.
func TestRefunds(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()
	p, err := s.client.CreatePayment(ctx, direct("rf-pay", psp.MethodCardSucceeds)) // 2599 EUR
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.client.CreateRefund(ctx, refundReq("rf-1", p.ID, 1000))
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != psp.RefundSucceeded || r.PaymentID != p.ID || r.AmountMinor != 1000 || r.Currency != "EUR" || r.ID[:3] != "re_" {
		t.Fatalf("refund %+v", r)
	}
	again, err := s.client.CreateRefund(ctx, refundReq("rf-1", p.ID, 1000))
	if err != nil || again.ID != r.ID {
		t.Fatalf("replay: %+v, %v; want refund %s", again, err, r.ID)
	}
	if got, err := s.client.GetRefund(ctx, r.ID); err != nil || got != r {
		t.Fatalf("GetRefund: %+v, %v", got, err)
	}
	if got, err := s.client.FindRefundByReference(ctx, "rf-1"); err != nil || got.ID != r.ID {
		t.Fatalf("FindRefundByReference: %+v, %v", got, err)
	}
	if _, err := s.client.FindRefundByReference(ctx, "rf-none"); !psp.IsNotFound(err) {
		t.Fatalf("unknown reference: %v, want not found", err)
	}

	declined, err := s.client.CreatePayment(ctx, direct("rf-declined", psp.MethodCardDeclined))
	if err != nil {
		t.Fatal(err)
	}
	changed := refundReq("rf-1", p.ID, 999)
	usd := refundReq("rf-usd", p.ID, 10)
	usd.Currency = "USD"
	dupRef := refundReq("rf-dup", p.ID, 10)
	dupRef.MerchantReference = "rf-1"
	for _, c := range []struct {
		name   string
		req    psp.CreateRefundRequest
		status int
		code   string
	}{
		{"same key, other body", changed, 422, "idempotency_key_reused"},
		{"failed payment", refundReq("rf-f", declined.ID, 10), 400, "payment_unexpected_state"},
		{"unknown payment", refundReq("rf-u", "pay_nosuchpayment", 10), 404, "not_found"},
		{"other currency", usd, 400, "currency_mismatch"},
		{"more than is left", refundReq("rf-big", p.ID, 1600), 400, "amount_too_large"},
		{"reference reused", dupRef, 409, "duplicate_reference"},
	} {
		_, err := s.client.CreateRefund(ctx, c.req)
		var pe *psp.Error
		if !errors.As(err, &pe) || pe.HTTPStatus != c.status || pe.Code != c.code {
			t.Errorf("%s: %v; want %d %s", c.name, err, c.status, c.code)
		}
	}
	// Exactly what is left can still be refunded; then nothing.
	if _, err := s.client.CreateRefund(ctx, refundReq("rf-rest", p.ID, 1599)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.CreateRefund(ctx, refundReq("rf-more", p.ID, 1)); !psp.IsPermanent(err) {
		t.Fatalf("refund of a fully refunded payment: %v", err)
	}
	log := s.refundLog("payment_id=" + p.ID)
	if len(log) != 2 || log[0].AmountMinor+log[1].AmountMinor != 2599 {
		t.Fatalf("refund log %+v; want 1000 + 1599", log)
	}
	if cs := s.charges("rf-pay"); cs[0].RefundedMinor != 2599 {
		t.Fatalf("charge's refunded total %d", cs[0].RefundedMinor)
	}
}

// TestConcurrentRefundsNeverExceedTheCharge: refunds racing on one payment
// that together exceed it: exactly one succeeds, the others are refused.
func TestConcurrentRefundsNeverExceedTheCharge(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()
	p, err := s.client.CreatePayment(ctx, direct("race-pay", psp.MethodCardSucceeds)) // 2599
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = s.client.CreateRefund(ctx, refundReq("race-"+string(rune('a'+i)), p.ID, 1500))
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var pe *psp.Error
		switch {
		case err == nil:
			ok++
		case errors.As(err, &pe) && pe.Code == "amount_too_large":
		default:
			t.Errorf("unexpected outcome: %v", err)
		}
	}
	log := s.refundLog("payment_id=" + p.ID)
	if ok != 1 || len(log) != 1 || log[0].AmountMinor != 1500 {
		t.Fatalf("%d refunds succeeded, log %+v; want exactly one of 1500", ok, log)
	}
}

// TestRefundFaultsAfterCommit: a 500 or a held answer after the commit
// leaves exactly one refund, which the retry with the same key learns.
func TestRefundFaultsAfterCommit(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{})
	ctx := context.Background()
	p, err := s.client.CreatePayment(ctx, direct("rff-pay", psp.MethodCardSucceeds))
	if err != nil {
		t.Fatal(err)
	}
	s.setFaults(pspsim.Faults{FailAfterRefundRate: 1})
	if _, err := s.client.CreateRefund(ctx, refundReq("rff-1", p.ID, 100)); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("500 after commit: %v, want an unknown outcome", err)
	}
	again, err := s.client.CreateRefund(ctx, refundReq("rff-1", p.ID, 100))
	if err != nil || again.Status != psp.RefundSucceeded {
		t.Fatalf("retry: %+v, %v (a replay is never hidden by a fault)", again, err)
	}

	s.setFaults(pspsim.Faults{HangAfterRefundRate: 1, HangFor: pspsim.Duration(5 * time.Second)})
	short, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: s.url, APIKey: s.apiKey, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := short.CreateRefund(ctx, refundReq("rff-2", p.ID, 200)); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("held answer: %v, want an unknown outcome", err)
	}
	found, err := s.client.FindRefundByReference(ctx, "rff-2")
	if err != nil || found.AmountMinor != 200 {
		t.Fatalf("the held refund happened: %+v, %v", found, err)
	}
	s.setFaults(pspsim.Faults{FailBeforeRefundRate: 1})
	if _, err := s.client.CreateRefund(ctx, refundReq("rff-3", p.ID, 300)); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("500 before: %v", err)
	}
	for ref, want := range map[string]int{"rff-1": 1, "rff-2": 1, "rff-3": 0} {
		if got := s.refundLog("merchant_reference=" + ref); len(got) != want {
			t.Errorf("%s: %d refunds in the log, want %d", ref, len(got), want)
		}
	}
	if v := s.srv.Faults(); v.Injected.FailAfterRefund != 1 || v.Injected.HangAfterRefund != 1 || v.Injected.FailBeforeRefund != 1 {
		t.Errorf("injected %+v", v.Injected)
	}
}

func payoutReq(ref, dest string, amount int64) psp.CreatePayoutRequest {
	return psp.CreatePayoutRequest{IdempotencyKey: "key-" + ref, AmountMinor: amount, Currency: "EUR",
		MerchantReference: ref, Destination: dest, Description: "payout " + ref}
}

// TestPayouts: a payout is pending, then paid after PayoutDelay or failed
// when a fault says so; each end is one signed payout webhook (the receiver
// verifies every signature); a key replays its payout, and the payout log
// holds one row per merchant reference.
func TestPayouts(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{cfg: func(c *pspsim.Config) {
		c.PayoutDelay = 50 * time.Millisecond
		c.PayoutInterval = 10 * time.Millisecond
		c.Faults = pspsim.Faults{FailPayoutDestinations: []string{"seller-closed"}}
	}})
	ctx := context.Background()
	po, err := s.client.CreatePayout(ctx, payoutReq("po-1", "seller-1", 5000))
	if err != nil {
		t.Fatal(err)
	}
	if po.Status != psp.PayoutPending || po.ID[:3] != "po_" || po.Destination != "seller-1" {
		t.Fatalf("payout %+v", po)
	}
	if again, err := s.client.CreatePayout(ctx, payoutReq("po-1", "seller-1", 5000)); err != nil || again.ID != po.ID {
		t.Fatalf("replay: %+v, %v", again, err)
	}
	changed := payoutReq("po-1", "seller-1", 5001)
	if _, err := s.client.CreatePayout(ctx, changed); !psp.IsPermanent(err) {
		t.Fatalf("same key, other amount: %v", err)
	}
	otherKey := payoutReq("po-1", "seller-1", 5000)
	otherKey.IdempotencyKey = "another"
	if _, err := s.client.CreatePayout(ctx, otherKey); err == nil || pspError(t, err).Code != "duplicate_reference" {
		t.Fatalf("same reference, other key: %v", err)
	}
	bad, err := s.client.CreatePayout(ctx, payoutReq("po-2", "seller-closed", 700))
	if err != nil {
		t.Fatal(err)
	}
	s.setFaults(pspsim.Faults{FailNextPayouts: 1, PayoutFailureCode: "invalid_account_number"})
	next, err := s.client.CreatePayout(ctx, payoutReq("po-3", "seller-3", 800))
	if err != nil {
		t.Fatal(err)
	}
	fine, err := s.client.CreatePayout(ctx, payoutReq("po-4", "seller-4", 900))
	if err != nil {
		t.Fatal(err)
	}

	testenv.Eventually(t, 10*time.Second, "four payout webhooks", func() (bool, error) {
		return len(s.hooks.payoutEvents()) >= 4, nil
	})
	s.awaitWebhooksSettled()
	want := map[string]struct{ typ, status, code string }{
		po.ID:   {psp.EventPayoutPaid, psp.PayoutPaid, ""},
		bad.ID:  {psp.EventPayoutFailed, psp.PayoutFailed, "account_closed"},
		next.ID: {psp.EventPayoutFailed, psp.PayoutFailed, "invalid_account_number"},
		fine.ID: {psp.EventPayoutPaid, psp.PayoutPaid, ""},
	}
	evs := s.hooks.payoutEvents()
	if len(evs) != 4 {
		t.Fatalf("%d payout webhooks, want 4: %+v", len(evs), evs)
	}
	for _, ev := range evs {
		w, ok := want[ev.Data.ID]
		if !ok || ev.Type != w.typ || ev.Data.Status != w.status || ev.Data.FailureCode != w.code {
			t.Errorf("webhook %+v; want %+v", ev, w)
		}
		got, err := s.client.GetPayout(ctx, ev.Data.ID)
		if err != nil || got.Status != w.status || got.FailureCode != w.code {
			t.Errorf("GetPayout %s: %+v, %v", ev.Data.ID, got, err)
		}
	}
	if len(s.hooks.deliveries()) != 0 {
		t.Errorf("payout events reached the payment webhook endpoint: %+v", s.hooks.deliveries())
	}
	log := s.payoutLog("")
	if len(log) != 4 {
		t.Fatalf("payout log %+v; want 4 rows", log)
	}
	for _, rec := range log {
		if (rec.Status == psp.PayoutPaid) != (rec.PaidAt != nil) {
			t.Errorf("payout record %+v", rec)
		}
	}
	if found, err := s.client.FindPayoutByReference(ctx, "po-4"); err != nil || found.ID != fine.ID {
		t.Fatalf("FindPayoutByReference: %+v, %v", found, err)
	}
	if _, err := s.client.FindPayoutByReference(ctx, "po-none"); !psp.IsNotFound(err) {
		t.Fatalf("unknown payout reference: %v", err)
	}
	if v := s.srv.Faults(); v.Injected.FailedPayouts != 2 || v.FailNextPayouts != 0 {
		t.Errorf("faults after the run %+v", v)
	}
}

// TestPayoutFaultsAfterCommit: a 500 or a held answer after the commit
// leaves exactly one payout per reference; the retry with the same key
// gets it.
func TestPayoutFaultsAfterCommit(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{cfg: func(c *pspsim.Config) { c.PayoutDelay = time.Hour }})
	ctx := context.Background()
	s.setFaults(pspsim.Faults{FailAfterPayoutRate: 1})
	if _, err := s.client.CreatePayout(ctx, payoutReq("pf-1", "seller", 100)); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("500 after commit: %v", err)
	}
	first, err := s.client.CreatePayout(ctx, payoutReq("pf-1", "seller", 100))
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	s.setFaults(pspsim.Faults{HangAfterPayoutRate: 1, HangFor: pspsim.Duration(5 * time.Second)})
	short, err := psp.NewHTTPClient(psp.HTTPClientConfig{BaseURL: s.url, APIKey: s.apiKey, Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := short.CreatePayout(ctx, payoutReq("pf-2", "seller", 200)); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("held answer: %v", err)
	}
	s.setFaults(pspsim.Faults{})
	second, err := s.client.CreatePayout(ctx, payoutReq("pf-2", "seller", 200))
	if err != nil {
		t.Fatal(err)
	}
	log := s.payoutLog("")
	if len(log) != 2 || log[0].ID != first.ID || log[1].ID != second.ID {
		t.Fatalf("payout log %+v; want exactly pf-1 and pf-2", log)
	}
}

// TestPayoutWebhookURLValidated: PayoutWebhookURL may be left empty
// (derived from WebhookURL: TestPayouts shows the deliveries arrive on the
// payout path) but not be set to something unusable.
func TestPayoutWebhookURLValidated(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Migrated(t, pspsim.Schema())
	base := pspsim.Config{APIKey: "k", WebhookURL: "https://shop.example:8443/hooks/psp?x=1", WebhookSecrets: []string{secretOld}}
	if _, err := pspsim.New(base, pool, nil); err != nil {
		t.Fatal(err)
	}
	bad := base
	bad.PayoutWebhookURL = "/relative"
	if _, err := pspsim.New(bad, pool, nil); err == nil {
		t.Fatal("relative PayoutWebhookURL accepted")
	}
}

// TestPayoutValidation: refused requests store nothing.
func TestPayoutValidation(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{noRun: true})
	for _, c := range []struct{ name, body, param string }{
		{"zero", `{"amount_minor":0,"currency":"EUR","merchant_reference":"a","destination":"d"}`, "amount_minor"},
		{"too much", `{"amount_minor":` + jsonInt(money.MaxAmount+1) + `,"currency":"EUR","merchant_reference":"a","destination":"d"}`, "amount_minor"},
		{"currency", `{"amount_minor":1,"currency":"eur","merchant_reference":"a","destination":"d"}`, "currency"},
		{"no destination", `{"amount_minor":1,"currency":"EUR","merchant_reference":"a"}`, "destination"},
		{"no reference", `{"amount_minor":1,"currency":"EUR","destination":"d"}`, "merchant_reference"},
	} {
		st, _, b := s.raw(http.MethodPost, "/v1/payouts", "", map[string]string{"Idempotency-Key": "k-" + c.name}, c.body)
		var pb struct{ Code, Param string }
		_ = json.Unmarshal(b, &pb)
		if st != 400 || pb.Code != "invalid_request" || pb.Param != c.param {
			t.Errorf("%s: %d %s", c.name, st, b)
		}
	}
	if n := s.count(`SELECT count(*) FROM pspsim.payouts`) + s.count(`SELECT count(*) FROM pspsim.request_keys`); n != 0 {
		t.Fatalf("%d rows stored by refused requests", n)
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }
