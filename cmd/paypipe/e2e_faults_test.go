package main

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/dlq"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/executor"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/pspsim"
)

// fastExecutor compresses the executor's timeouts so fault tests run in
// seconds: a PSP call that takes longer than 300 ms has an unknown outcome.
var fastExecutor = executor.Config{
	CallTimeout: 300 * time.Millisecond, Lease: 2 * time.Second,
	Retry:        retry.Policy{Strategy: retry.Exponential, Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Jitter: 0.5},
	PollInterval: 10 * time.Millisecond,
	ResolveAfter: 200 * time.Millisecond, ResolveMaxInterval: 300 * time.Millisecond, ResolvePollInterval: 20 * time.Millisecond,
}

func setFaults(t *testing.T, a *app, f pspsim.Faults) {
	t.Helper()
	if err := a.sim.sim.SetFaults(f); err != nil {
		t.Fatal(err)
	}
}

// F3/F4: the PSP charges, then its answer is lost (it hangs past the
// executor's timeout, or fails with a 500). The outcome is unknown, never a
// failure: the executor retries with the same idempotency key, the PSP
// returns the same payment, and the buyer is charged once.
func TestPSPAnswerLostAfterCharge(t *testing.T) {
	t.Parallel()
	a := startAppWith(t, appOptions{executor: fastExecutor})
	api, sellers := newMerchant(t, a, 1)
	for _, f := range []pspsim.Faults{
		{Seed: 1, HangAfterChargeRate: 1, HangFor: pspsim.Duration(2 * time.Second)},
		{Seed: 2, FailAfterChargeRate: 1},
	} {
		setFaults(t, a, f)
		var c payment.Checkout
		if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b", "currency": "EUR", "mode": "direct",
			"payment_method": "pm_card_visa", "orders": []map[string]any{{"seller_id": sellers[0].ID, "amount_minor": 2500}}}, &c); code != 201 {
			t.Fatalf("checkout: %d", code)
		}
		api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
		if n := charges(t, a, c.ID); n != 1 {
			t.Fatalf("faults %+v: buyer charged %d times, want 1", f, n)
		}
		// The webhook may complete the payment before the executor learns
		// the outcome; the executor must still get there by retrying.
		var attempts int
		testenv.Eventually(t, 30*time.Second, "executor registered the payment", func() (bool, error) {
			var status string
			err := a.pool.QueryRow(context.Background(), `SELECT status, attempts FROM executor.attempts WHERE checkout_id = $1`, c.ID).Scan(&status, &attempts)
			return status == "registered", err
		})
		if attempts < 2 {
			t.Fatalf("faults %+v: %d attempts; the lost answer was not exercised", f, attempts)
		}
	}
	awaitVerified(t, a)
}

// F6/F7: every webhook is sent 2–3 times, concurrently, and each batch in
// reverse order (succeeded before processing): one transition, one journal
// entry per order, nothing regresses.
func TestWebhooksDuplicatedAndReordered(t *testing.T) {
	t.Parallel()
	a := startAppWith(t, appOptions{executor: fastExecutor})
	setFaults(t, a, pspsim.Faults{Seed: 3, DuplicateWebhookRate: 1, OutOfOrderWebhooks: true})
	api, sellers := newMerchant(t, a, 2)
	var c payment.Checkout
	if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b", "currency": "USD", "mode": "hosted",
		"return_url": "http://127.0.0.1/r", "orders": []map[string]any{
			{"seller_id": sellers[0].ID, "amount_minor": 1000}, {"seller_id": sellers[1].ID, "amount_minor": 3000}}}, &c); code != 201 {
		t.Fatalf("checkout: %d", code)
	}
	api.payHosted(c.ID, "4242 4242 4242 4242")
	api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
	awaitVerified(t, a)
	ctx := context.Background()
	var toSucceeded, entries, receipts int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM payment.status_transitions WHERE object_id = $1 AND to_status = 'succeeded'`, c.ID).Scan(&toSucceeded); err != nil {
		t.Fatal(err)
	}
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM ledger.journal_entries WHERE payment_order_id = ANY($1)`,
		[]string{c.Orders[0].ID.String(), c.Orders[1].ID.String()}).Scan(&entries); err != nil {
		t.Fatal(err)
	}
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM payment.webhook_receipts`).Scan(&receipts); err != nil {
		t.Fatal(err)
	}
	if toSucceeded != 1 || entries != 2 {
		t.Fatalf("transitions to succeeded %d (want 1), journal entries %d (want 2)", toSucceeded, entries)
	}
	if receipts == 0 {
		t.Fatal("no webhook was received: the duplicate path was not exercised")
	}
	if charges(t, a, c.ID) != 1 {
		t.Fatal("charged more than once")
	}
}

// F8: the PSP never sends the webhook. The executor's resolver polls the PSP
// and completes the payment anyway.
func TestDroppedWebhookResolvedByPolling(t *testing.T) {
	t.Parallel()
	a := startAppWith(t, appOptions{executor: fastExecutor})
	setFaults(t, a, pspsim.Faults{Seed: 4, DropWebhookRate: 1})
	api, sellers := newMerchant(t, a, 1)
	var c payment.Checkout
	if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b", "currency": "GBP", "mode": "hosted",
		"return_url": "http://127.0.0.1/r", "orders": []map[string]any{{"seller_id": sellers[0].ID, "amount_minor": 999}}}, &c); code != 201 {
		t.Fatalf("checkout: %d", code)
	}
	api.payHosted(c.ID, "4242 4242 4242 4242")
	api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
	var receipts int
	if err := a.pool.QueryRow(context.Background(), `SELECT count(*) FROM payment.webhook_receipts`).Scan(&receipts); err != nil {
		t.Fatal(err)
	}
	if receipts != 0 {
		t.Fatalf("%d webhooks arrived; they were all meant to be dropped", receipts)
	}
	var cause string
	if err := a.pool.QueryRow(context.Background(), `SELECT cause FROM payment.status_transitions WHERE object_id = $1 AND to_status = 'succeeded'`, c.ID).Scan(&cause); err != nil {
		t.Fatal(err)
	}
	if cause != "executor:payments.checkout.resolved" {
		t.Fatalf("succeeded by %q, want the resolver", cause)
	}
	awaitVerified(t, a)
}

// F18: 50 concurrent requests with one Idempotency-Key create one checkout
// and one PSP payment; the others get 429 (in flight) or the replay.
func TestConcurrentSameIdempotencyKey(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	api, sellers := newMerchant(t, a, 1)
	key := uuid.NewString()
	body := `{"buyer_id":"b","currency":"USD","mode":"direct","payment_method":"pm_card_visa","orders":[{"seller_id":"` + sellers[0].ID.String() + `","amount_minor":4200}]}`
	var wg sync.WaitGroup
	codes := make([]int, 50)
	start := make(chan struct{})
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest("POST", api.base+"/v1/checkouts", stringsReader(body))
			req.Header.Set("Authorization", "Bearer "+api.key)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", key)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			res.Body.Close()
			codes[i] = res.StatusCode
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for _, c := range codes {
		switch c {
		case 201:
			created++
		case 429:
		default:
			t.Fatalf("unexpected status %d in %v", c, codes)
		}
	}
	// A replay of the finished request also answers 201 (the stored
	// response), so count rows, not statuses.
	ctx := context.Background()
	var checkouts, pspPayments int
	testenv.Eventually(t, 30*time.Second, "the PSP payment", func() (bool, error) {
		if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM payment.checkouts`).Scan(&checkouts); err != nil {
			return false, err
		}
		err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pspsim.payments`).Scan(&pspPayments)
		return pspPayments >= 1, err
	})
	awaitVerified(t, a)
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM pspsim.payments`).Scan(&pspPayments); err != nil {
		t.Fatal(err)
	}
	if checkouts != 1 || pspPayments != 1 || created < 1 {
		t.Fatalf("checkouts %d, PSP payments %d, 201s %d; want 1, 1, ≥1", checkouts, pspPayments, created)
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }

// F15 (first half, on the real wiring): a malformed event reaches the
// ledger and the wallet; both consumers dead-letter it at once (it can
// never apply), the DLQ holds one entry per consumer with the evidence, and
// the pipeline keeps flowing for everyone else.
func TestPoisonMessageDeadLettered(t *testing.T) {
	t.Parallel()
	a := startApp(t)
	ctx := context.Background()
	poison := nats.NewMsg(contracts.SubjectOrderSucceeded)
	poisonID := uuid.Must(uuid.NewV7()).String()
	poison.Header.Set(outbox.HeaderID, poisonID)
	poison.Header.Set(outbox.HeaderType, contracts.TypeOf(contracts.SubjectOrderSucceeded))
	poison.Header.Set(outbox.HeaderSource, "chaos/poison")
	poison.Data = []byte(`{"payment_order_id":"not-a-uuid","amount_minor":-5}`)
	if _, err := a.js.PublishMsg(ctx, poison); err != nil {
		t.Fatal(err)
	}
	admin := dlq.NewAdmin(a.js, a.pool)
	var entries []dlq.Entry
	testenv.Eventually(t, 30*time.Second, "the poison message in the DLQ for ledger and wallet", func() (bool, error) {
		var err error
		entries, err = admin.List(ctx, dlq.Filter{}, 10)
		return len(entries) == 2, err
	})
	consumers := map[string]bool{}
	for _, e := range entries {
		if e.MsgID != poisonID || e.Reason != dlq.ReasonPermanent || e.OriginalSubject != contracts.SubjectOrderSucceeded || e.Error == "" {
			t.Fatalf("DLQ entry %+v", e)
		}
		consumers[e.Consumer] = true
	}
	if !consumers[contracts.LedgerPaymentsConsumer] || !consumers[contracts.WalletPaymentsConsumer] {
		t.Fatalf("dead-lettered by %v", consumers)
	}
	// Everyone else keeps going.
	api, sellers := newMerchant(t, a, 1)
	var c payment.Checkout
	if code := api.do("POST", "/v1/checkouts", map[string]any{"buyer_id": "b", "currency": "USD", "mode": "direct",
		"payment_method": "pm_card_visa", "orders": []map[string]any{{"seller_id": sellers[0].ID, "amount_minor": 700}}}, &c); code != 201 {
		t.Fatalf("checkout: %d", code)
	}
	api.awaitStatus(c.ID, payment.StatusCompleted, 30*time.Second)
	awaitVerified(t, a)
}
