package pspsim_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/pspsim"
)

// TestWebhooksSignedAndRetried: every state change is a webhook signed with
// both secrets (the receiver verifies each), retried with backoff until the
// receiver answers 2xx.
func TestWebhooksSignedAndRetried(t *testing.T) {
	t.Parallel()
	const failFirst = 3
	s := newSim(t, simOptions{failFirst: failFirst})
	ctx := context.Background()
	p, err := s.client.CreatePayment(ctx, direct("hooked", psp.MethodCardSucceeds))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitWebhooksSettled()
	got := s.hooks.forPayment(p.ID)
	types := map[string]psp.Event{}
	for _, d := range got {
		types[d.ev.Type] = d.ev
	}
	if len(got) != 2 || len(types) != 2 {
		t.Fatalf("deliveries %+v, want processing and succeeded once each", got)
	}
	proc, done := types[psp.EventPaymentProcessing], types[psp.EventPaymentSucceeded]
	if proc.Data.Status != "processing" || done.Data.Status != "succeeded" || done.Data.AmountMinor != 2599 ||
		done.Data.Currency != "EUR" || done.Data.MerchantReference != "hooked" || done.Data.Card == nil ||
		done.Data.Card.Last4 != "4242" || !strings.HasPrefix(done.ID, "evt_") || proc.ID == done.ID {
		t.Fatalf("events: processing %+v, succeeded %+v", proc, done)
	}
	evs := s.webhookEvents("payment_id=" + p.ID)
	attempts := 0
	for _, e := range evs {
		attempts += e.Attempts
		if e.State != "delivered" || e.LastStatus != http.StatusOK || e.FinishedAt == nil {
			t.Errorf("event state %+v", e)
		}
	}
	if attempts != 2+failFirst || s.hooks.totalRequests() != 2+failFirst {
		t.Fatalf("%d attempts and %d requests, want %d", attempts, s.hooks.totalRequests(), 2+failFirst)
	}
}

// TestWebhookFaultsRepeatWithSeed: duplicates and drops follow the seed: two
// simulators with the same seed and workload send the same plan, and what the
// receiver gets matches what each simulator says it sent.
func TestWebhookFaultsRepeatWithSeed(t *testing.T) {
	t.Parallel()
	faults := pspsim.Faults{Seed: 20260601, DuplicateWebhookRate: 0.3, DropWebhookRate: 0.2}
	plan := func() string {
		s := newSim(t, simOptions{noRun: true, cfg: func(c *pspsim.Config) { c.Faults = faults }})
		for i := range 15 {
			if _, err := s.client.CreatePayment(context.Background(), direct(fmt.Sprintf("seeded-%d", i), psp.MethodCardSucceeds)); err != nil {
				t.Fatal(err)
			}
		}
		s.run()
		s.awaitWebhooksSettled()
		received := map[string]int{}
		for _, d := range s.hooks.deliveries() {
			received[d.ev.ID]++
		}
		var b strings.Builder
		dropped, duplicated := 0, 0
		for _, e := range s.webhookEvents("") {
			fmt.Fprintf(&b, "%d:%s:%d ", e.Seq, e.State, e.CopiesSent)
			if received[e.ID] != e.CopiesSent {
				t.Errorf("event %s: received %d copies, the simulator sent %d", e.ID, received[e.ID], e.CopiesSent)
			}
			switch {
			case e.State == "dropped":
				dropped++
			case e.State != "delivered":
				t.Errorf("event %+v", e)
			case e.CopiesSent > 1:
				duplicated++
				if e.CopiesSent > 3 {
					t.Errorf("event %s sent %d times", e.ID, e.CopiesSent)
				}
			}
		}
		var view pspsim.FaultsView
		s.admin(http.MethodGet, "/admin/faults", nil, &view)
		if dropped == 0 || duplicated == 0 || int(view.Injected.DroppedWebhooks) != dropped || int(view.Injected.DuplicateWebhooks) != duplicated {
			t.Errorf("%d dropped, %d duplicated of 30 (injected %+v): the faults did not fire", dropped, duplicated, view.Injected)
		}
		return b.String()
	}
	first, second := plan(), plan()
	if first != second {
		t.Fatalf("same seed, different plans:\n%s\n%s", first, second)
	}
}

// TestOutOfOrderWebhooks: with out_of_order_webhooks each payment's final
// event arrives before its processing event.
func TestOutOfOrderWebhooks(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{noRun: true, cfg: func(c *pspsim.Config) { c.Faults.OutOfOrderWebhooks = true }})
	var ids []string
	for i := range 3 {
		p, err := s.client.CreatePayment(context.Background(), direct(fmt.Sprintf("ooo-%d", i), psp.MethodCardDeclined))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.ID)
	}
	s.run()
	s.awaitWebhooksSettled()
	for _, id := range ids {
		got := s.hooks.forPayment(id)
		if len(got) != 2 || got[0].ev.Type != psp.EventPaymentFailed || got[1].ev.Type != psp.EventPaymentProcessing ||
			got[0].ev.Data.FailureCode != "card_declined" {
			t.Errorf("payment %s: %+v, want failed then processing", id, got)
		}
	}
}

// TestDelayedWebhook: pm_card_delayed_webhook succeeds at once; its final
// webhook is held back by DelayedWebhook.
func TestDelayedWebhook(t *testing.T) {
	t.Parallel()
	const delay = 400 * time.Millisecond
	s := newSim(t, simOptions{cfg: func(c *pspsim.Config) { c.DelayedWebhook = delay }})
	start := time.Now()
	p, err := s.client.CreatePayment(context.Background(), direct("late", psp.MethodCardDelayedWebhook))
	if err != nil || p.Status != psp.StatusSucceeded {
		t.Fatalf("%+v, %v", p, err)
	}
	s.awaitWebhooksSettled()
	got := s.hooks.forPayment(p.ID)
	if len(got) != 2 || got[0].ev.Type != psp.EventPaymentProcessing || got[1].ev.Type != psp.EventPaymentSucceeded {
		t.Fatalf("deliveries %+v", got)
	}
	if lag := got[1].at.Sub(start); lag < delay {
		t.Fatalf("the final webhook came %s after the charge, before the %s delay", lag, delay)
	}
}

// TestHostedExpiry: an unpaid hosted payment fails with "expired" after
// HostedTTL, with a webhook, and can no longer be paid.
func TestHostedExpiry(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{cfg: func(c *pspsim.Config) { c.HostedTTL = 200 * time.Millisecond }})
	ctx := context.Background()
	p, err := s.client.CreatePayment(ctx, hosted("unpaid", 990, "USD"))
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the payment to expire", func() (bool, error) {
		got, err := s.client.GetPayment(ctx, p.ID)
		return got.Status == psp.StatusFailed && got.FailureCode == "expired", err
	})
	s.awaitWebhooksSettled()
	got := s.hooks.forPayment(p.ID)
	if len(got) != 1 || got[0].ev.Type != psp.EventPaymentFailed || got[0].ev.Data.FailureCode != "expired" {
		t.Fatalf("expiry webhooks %+v", got)
	}
	if resp, body := getPage(t, p.RedirectURL); resp.StatusCode != 200 || !strings.Contains(body, "expired") || strings.Contains(body, "<form") {
		t.Fatalf("expired page: %d %s", resp.StatusCode, body)
	}
	if st, _, _ := postCard(t, p.RedirectURL, "4242424242424242", nextYear(), "123"); st != http.StatusConflict || len(s.charges("unpaid")) != 0 {
		t.Fatalf("paying an expired payment: %d, %d charges", st, len(s.charges("unpaid")))
	}
	if _, err := s.client.ConfirmPayment(ctx, p.ID, psp.MethodCardSucceeds, "late-confirm"); pspError(t, err).Code != "payment_unexpected_state" {
		t.Fatalf("confirming an expired payment: %v", err)
	}
}

// TestWebhookDeadAfterMaxAge: an event never acknowledged is retried until
// WebhookMaxAge, then marked dead and left alone.
func TestWebhookDeadAfterMaxAge(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{failFirst: 1 << 30, cfg: func(c *pspsim.Config) { c.WebhookMaxAge = 300 * time.Millisecond }})
	p, err := s.client.CreatePayment(context.Background(), direct("unheard", psp.MethodCardSucceeds))
	if err != nil {
		t.Fatal(err)
	}
	s.awaitWebhooksSettled()
	evs := s.webhookEvents("payment_id=" + p.ID)
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	for _, e := range evs {
		if e.State != "dead" || e.Attempts < 2 || e.LastStatus != http.StatusInternalServerError || e.LastError == "" {
			t.Errorf("event %+v, want dead after several 500s", e)
		}
	}
	requests := s.hooks.totalRequests()
	if requests != evs[0].Attempts+evs[1].Attempts {
		t.Fatalf("%d requests for %d attempts", requests, evs[0].Attempts+evs[1].Attempts)
	}
}

// TestWebhooksSurviveRestart: events queued by one simulator process are
// delivered by the next one on the same database.
func TestWebhooksSurviveRestart(t *testing.T) {
	t.Parallel()
	first := newSim(t, simOptions{noRun: true})
	p, err := first.client.CreatePayment(context.Background(), direct("restart", psp.MethodCardSucceeds))
	if err != nil {
		t.Fatal(err)
	}
	if n := first.count(`SELECT count(*) FROM pspsim.webhook_events WHERE state = 'pending'`); n != 2 {
		t.Fatalf("%d pending events before the restart", n)
	}
	second := newSim(t, simOptions{pool: first.pool})
	second.awaitWebhooksSettled()
	if got := second.hooks.forPayment(p.ID); len(got) != 2 {
		t.Fatalf("deliveries after the restart: %+v", got)
	}
	if n := len(first.hooks.deliveries()); n != 0 {
		t.Fatalf("the stopped simulator delivered %d events", n)
	}
}
