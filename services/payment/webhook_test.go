package payment

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/services/psp"
)

func TestWebhookSucceededAppliesOnce(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := f.webhookBody("evt_1", psp.StatusSucceeded, f.amount, f.currency)
	// The PSP delivers the same event five times, concurrently (F6).
	var wg sync.WaitGroup
	results := make([]webhookResult, 5)
	for i := range results {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = f.deliver(body) }()
	}
	wg.Wait()
	applied := 0
	for _, r := range results {
		if r.status != http.StatusOK {
			t.Fatalf("status %d %s", r.status, r.detail)
		}
		if !r.duplicate && r.outcome == outcomeApplied {
			applied++
		}
	}
	if applied != 1 {
		t.Fatalf("%d deliveries applied, want 1", applied)
	}
	if s := f.status("checkouts", f.checkout); s != StatusSucceeded {
		t.Fatalf("checkout %s", s)
	}
	evs := f.outboxEvents(contracts.SubjectOrderSucceeded)
	if len(evs) != 2 {
		t.Fatalf("%d order.succeeded events, want 2 (one per order)", len(evs))
	}
	var total int64
	for _, b := range evs {
		var ev contracts.OrderSucceeded
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.FeeMinor+ev.NetMinor != ev.AmountMinor || ev.PSPPaymentID != "pay_1" || ev.CheckoutID != f.checkout.String() {
			t.Fatalf("bad event %+v", ev)
		}
		total += ev.AmountMinor
	}
	if total != f.amount {
		t.Fatalf("events total %d, checkout %d", total, f.amount)
	}
	f.assertMonotonic()
}

// Out-of-order reports (F7): success first, then a stale "processing" webhook
// and the executor's late "requires_action" registration: nothing regresses.
func TestStaleReportsDoNotRegress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if r := f.deliver(f.webhookBody("evt_2", psp.StatusSucceeded, f.amount, f.currency)); r.outcome != outcomeApplied {
		t.Fatalf("%+v", r)
	}
	if r := f.deliver(f.webhookBody("evt_1", psp.StatusProcessing, f.amount, f.currency)); r.outcome != outcomeNoChange || r.status != 200 {
		t.Fatalf("stale processing: %+v", r)
	}
	err := applyInTx(f, pspReport{CheckoutID: f.checkout, PSPPaymentID: "pay_1", PSPStatus: psp.StatusRequiresAction,
		AmountMinor: f.amount, Currency: f.currency, RedirectURL: "http://psp/pay/x", Cause: "executor:registered"})
	if err != nil {
		t.Fatal(err)
	}
	if s := f.status("checkouts", f.checkout); s != StatusSucceeded {
		t.Fatalf("checkout regressed to %s", s)
	}
	if n := len(f.outboxEvents(contracts.SubjectOrderSucceeded)); n != 2 {
		t.Fatalf("%d events", n)
	}
	f.assertMonotonic()
}

func applyInTx(f *fixture, r pspReport) error {
	ctx := context.Background()
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, _, err := applyPSPReport(ctx, tx, f.side.store, r, f.now); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// S8: unauthenticated or stale webhooks are refused with 400 and leave no trace.
func TestWebhookSignatureRejected(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	body := f.webhookBody("evt_1", psp.StatusSucceeded, f.amount, f.currency)
	cfg := WebhookConfig{Secrets: []string{testSecret}}.withDefaults()
	tampered := append([]byte{}, body...)
	tampered[len(tampered)-2] ^= 1
	for name, header := range map[string]string{
		"missing":       "",
		"wrong secret":  psp.Sign(body, f.now, "other"),
		"stale -301s":   psp.Sign(body, f.now.Add(-301*time.Second), testSecret),
		"future +301s":  psp.Sign(body, f.now.Add(301*time.Second), testSecret),
		"garbage":       "t=abc,v1=zz",
		"tampered body": psp.Sign(body, f.now, testSecret),
	} {
		b := body
		if name == "tampered body" {
			b = tampered
		}
		r := f.side.receiveWebhook(context.Background(), f.pool, cfg, header, b)
		if r.status != http.StatusBadRequest || r.problem != CodeWebhookSignature {
			t.Errorf("%s: %+v", name, r)
		}
	}
	// Accepted within tolerance, and with the old secret during a rotation.
	rot := WebhookConfig{Secrets: []string{"new", testSecret}}.withDefaults()
	if r := f.side.receiveWebhook(context.Background(), f.pool, rot, psp.Sign(body, f.now.Add(-299*time.Second), testSecret), body); r.status != 200 {
		t.Fatalf("rotation/tolerance: %+v", r)
	}
	if n := f.count(`SELECT count(*) FROM payment.webhook_receipts`); n != 1 {
		t.Fatalf("%d receipts, want only the accepted one", n)
	}
}

// S8: a signed webhook whose money disagrees with the checkout is quarantined,
// not applied; unknown event types and unknown checkouts are acknowledged.
func TestWebhookQuarantineAndIgnore(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for i, c := range []struct {
		amount   int64
		currency string
	}{{f.amount + 1, f.currency}, {f.amount, "EUR"}} {
		r := f.deliver(f.webhookBody(fmt.Sprintf("evt_bad_%d", i), psp.StatusSucceeded, c.amount, c.currency))
		if r.status != 200 || r.outcome != outcomeQuarantined {
			t.Fatalf("mismatch %d: %+v", i, r)
		}
	}
	unknown := []byte(`{"id":"evt_x","type":"payment.refund_created","created":"2026-01-01T00:00:00Z","data":{}}`)
	if r := f.deliver(unknown); r.status != 200 || r.outcome != outcomeIgnored {
		t.Fatalf("unknown type: %+v", r)
	}
	other := f.webhookBody("evt_other", psp.StatusSucceeded, f.amount, f.currency)
	other = []byte(string(other[:0]) + fmt.Sprintf(`{"id":"evt_other","type":"payment.succeeded","created":"2026-01-01T00:00:00Z","data":{"id":"pay_9","status":"succeeded","amount_minor":%d,"currency":"USD","merchant_reference":"00000000-0000-0000-0000-000000000001"}}`, f.amount))
	if r := f.deliver(other); r.status != 200 || r.outcome != outcomeQuarantined {
		t.Fatalf("unknown checkout: %+v", r)
	}
	if s := f.status("checkouts", f.checkout); s != StatusCreated {
		t.Fatalf("checkout moved to %s on quarantined reports", s)
	}
	if n := f.count(`SELECT count(*) FROM payment.quarantine`); n != 3 {
		t.Fatalf("%d quarantined, want 3", n)
	}
	if n := len(f.outboxEvents(contracts.SubjectOrderSucceeded)); n != 0 {
		t.Fatalf("%d events from quarantined reports", n)
	}
}

// A failed payment is final: a later success report is quarantined for a
// person (money may have moved), never silently dropped or applied.
func TestContradictoryFinalStatus(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if r := f.deliver(f.webhookBody("evt_f", psp.StatusFailed, f.amount, f.currency)); r.outcome != outcomeApplied {
		t.Fatalf("%+v", r)
	}
	if n := len(f.outboxEvents(contracts.SubjectOrderFailed)); n != 2 {
		t.Fatalf("%d order.failed events", n)
	}
	if r := f.deliver(f.webhookBody("evt_s", psp.StatusSucceeded, f.amount, f.currency)); r.outcome != outcomeQuarantined {
		t.Fatalf("%+v", r)
	}
	if s := f.status("checkouts", f.checkout); s != StatusFailed {
		t.Fatalf("checkout %s", s)
	}
	if n := len(f.outboxEvents(contracts.SubjectOrderSucceeded)); n != 0 {
		t.Fatalf("%d succeeded events", n)
	}
}

// Through the HTTP handler: the route needs no API key, answers 400 problem
// JSON on a bad signature and 200 JSON on an accepted event.
func TestWebhookHTTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	svc, err := New(Config{Webhook: WebhookConfig{Secrets: []string{testSecret + "-long-enough"}}}, f.pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(svc.Handler())
	defer srv.Close()
	post := func(body []byte, sig string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/psp/webhooks", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(psp.SignatureHeader, sig)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	body := f.webhookBody("evt_http", psp.StatusSucceeded, f.amount, f.currency)
	res := post(body, psp.Sign(body, time.Now(), "wrong-secret-0123456789"))
	if res.StatusCode != 400 || res.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("bad signature: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	drainBody(res)
	res = post(body, psp.Sign(body, time.Now(), testSecret+"-long-enough"))
	var out struct {
		Received bool   `json:"received"`
		Outcome  string `json:"outcome"`
	}
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil || res.StatusCode != 200 || out.Outcome != outcomeApplied {
		t.Fatalf("good webhook: %d %+v %v", res.StatusCode, out, err)
	}
	res.Body.Close()
	big := bytes.Repeat([]byte("x"), 300<<10)
	res = post(big, psp.Sign(big, time.Now(), testSecret+"-long-enough"))
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized webhook: %d", res.StatusCode)
	}
	drainBody(res)
}
