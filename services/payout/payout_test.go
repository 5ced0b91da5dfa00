package payout

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/psp"
)

const period = "2025-03-14"

// requestedPayout projects one seller's balance, runs the period and
// returns the requested payout.
func (e *env) requestedPayout(r *running, available int64) Payout {
	e.t.Helper()
	seller, merchant := uuid.NewString(), uuid.NewString()
	e.balance(seller, merchant, "EUR", available, 1)
	e.projected(seller, "EUR", 1)
	res, err := r.svc.RunPayouts(context.Background(), RunRequest{Period: period, SellerID: seller})
	if err != nil {
		e.t.Fatal(err)
	}
	if res.Requested != 1 {
		e.t.Fatalf("run for %s: %+v, want 1 requested", seller, res)
	}
	return e.payout(ID(seller, "EUR", period).String())
}

// sentPayout takes a payout to sent: requested, reserved by the "wallet",
// sent by the sender.
func (e *env) sentPayout(r *running, amount int64) Payout {
	e.t.Helper()
	p := e.requestedPayout(r, amount)
	e.reserve(p, amount)
	return e.awaitStatus(p.ID, contracts.PayoutStatusSent)
}

func TestRunPayoutsIsIdempotentPerPeriod(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	ctx := context.Background()
	merchant := uuid.NewString()
	withMoney := []string{uuid.NewString(), uuid.NewString()}
	empty := uuid.NewString()
	e.balance(withMoney[0], merchant, "EUR", 1000, 1)
	e.balance(withMoney[0], merchant, "USD", 500, 1)
	e.balance(withMoney[1], merchant, "EUR", 250, 3)
	e.balance(withMoney[1], merchant, "EUR", 9999, 2) // stale: version 3 stands
	e.balance(empty, merchant, "EUR", 0, 1)
	e.projected(withMoney[0], "EUR", 1)
	e.projected(withMoney[0], "USD", 1)
	e.projected(withMoney[1], "EUR", 3)
	e.projected(empty, "EUR", 1)
	// The stale event may still be in flight; wait for its inbox row.
	testenv.Eventually(t, 10*time.Second, "all balance events consumed", func() (bool, error) {
		var n int
		err := e.pool.QueryRow(ctx, `SELECT count(*) FROM payout.inbox WHERE consumer = $1`, contracts.PayoutBalancesConsumer).Scan(&n)
		return n == 5, err
	})
	var avail int64
	if err := e.pool.QueryRow(ctx, `SELECT available_minor FROM payout.balances WHERE seller_id = $1`, withMoney[1]).Scan(&avail); err != nil || avail != 250 {
		t.Fatalf("projection of a stale event: available %d (%v), want 250 (version 3 wins)", avail, err)
	}

	first, err := r.svc.RunPayouts(ctx, RunRequest{Period: period})
	if err != nil {
		t.Fatal(err)
	}
	if first != (RunResult{Period: period, Candidates: 3, Requested: 3}) {
		t.Fatalf("first run: %+v, want 3 candidates, 3 requested", first)
	}
	second, err := r.svc.RunPayouts(ctx, RunRequest{Period: period})
	if err != nil {
		t.Fatal(err)
	}
	if second != (RunResult{Period: period, Candidates: 3, AlreadyRequested: 3}) {
		t.Fatalf("second run: %+v, want nothing new, 3 already requested", second)
	}
	var rows, events int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM payout.payouts WHERE period = $1`, period).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM payout.outbox WHERE subject = $1`, contracts.SubjectPayoutRequested).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if rows != 3 || events != 3 {
		t.Fatalf("%d payouts and %d requested events, want 3 and 3", rows, events)
	}
	for _, c := range []struct{ seller, currency string }{{withMoney[0], "EUR"}, {withMoney[0], "USD"}, {withMoney[1], "EUR"}} {
		id := ID(c.seller, c.currency, period).String()
		evs := e.events(id)
		if len(evs) != 1 || evs[0].subject != contracts.SubjectPayoutRequested || evs[0].version != 1 {
			t.Fatalf("events of %s: %v, want one requested v1", id, subjects(evs))
		}
		var req contracts.PayoutRequest
		if err := json.Unmarshal(evs[0].payload, &req); err != nil {
			t.Fatal(err)
		}
		if req.PayoutID != id || req.SellerID != c.seller || req.Currency != c.currency || req.MerchantID != merchant || req.Period != period {
			t.Errorf("requested event %+v does not describe %s %s %s", req, c.seller, c.currency, period)
		}
	}
	// A new period is a new payout; a filtered run requests only its own.
	next, err := r.svc.RunPayouts(ctx, RunRequest{Period: "2025-03-15", SellerID: withMoney[0], Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	if next.Requested != 1 || next.Candidates != 1 {
		t.Fatalf("filtered run of a new period: %+v, want 1 requested", next)
	}
	for _, bad := range []RunRequest{{}, {Period: "2025-3-15"}, {Period: "2025-03-15T10:00:00+02:00"}, {Period: period, Currency: "EURO"}} {
		if _, err := r.svc.RunPayouts(ctx, bad); !errorsIs(err, ErrInvalidRun) {
			t.Errorf("RunPayouts(%+v): %v, want ErrInvalidRun", bad, err)
		}
	}
}

func TestConcurrentRunsRequestEachPayoutOnce(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.BatchSize = 3 // several batches, interleaved between the runs
	r := e.start(cfg)
	ctx := context.Background()
	const sellers = 20
	for i := range sellers {
		_ = i
		e.balance(uuid.NewString(), uuid.NewString(), "EUR", 100, 1)
	}
	testenv.Eventually(t, 15*time.Second, "balances projected", func() (bool, error) {
		var n int
		err := e.pool.QueryRow(ctx, `SELECT count(*) FROM payout.balances`).Scan(&n)
		return n == sellers, err
	})
	var wg sync.WaitGroup
	results := make([]RunResult, 2)
	for i := range results {
		wg.Go(func() {
			res, err := r.svc.RunPayouts(ctx, RunRequest{Period: period})
			if err != nil {
				t.Errorf("run %d: %v", i, err)
			}
			results[i] = res
		})
	}
	wg.Wait()
	if got := results[0].Requested + results[1].Requested; got != sellers {
		t.Fatalf("runs requested %d + %d payouts, want %d in all", results[0].Requested, results[1].Requested, sellers)
	}
	for i, res := range results {
		if res.Candidates != sellers || res.Requested+res.AlreadyRequested != sellers {
			t.Errorf("run %d: %+v", i, res)
		}
	}
	var rows, events int
	if err := e.pool.QueryRow(ctx, `SELECT count(*) FROM payout.payouts`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := e.pool.QueryRow(ctx, `SELECT count(DISTINCT aggregate_id) FROM payout.outbox WHERE subject = $1 HAVING count(*) = count(DISTINCT aggregate_id)`,
		contracts.SubjectPayoutRequested).Scan(&events); err != nil {
		t.Fatalf("requested events: %v (a payout requested twice?)", err)
	}
	if rows != sellers || events != sellers {
		t.Fatalf("%d payouts, %d requested events, want %d each", rows, events, sellers)
	}
}

func TestPayoutLifecycleToPaid(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.requestedPayout(r, 12345)
	e.reserve(p, 12000) // the wallet decides the amount
	sent := e.awaitStatus(p.ID, contracts.PayoutStatusSent)
	if sent.AmountMinor != 12000 || sent.PSPPayoutID == "" {
		t.Fatalf("sent payout %+v: want amount 12000 and a PSP id", sent)
	}
	if created, creates, _ := e.psp.stats(p.ID); created != 1 || creates != 1 {
		t.Fatalf("PSP: %d payouts from %d creates, want 1 and 1", created, creates)
	}
	pp := e.psp.settle(p.ID, psp.PayoutPaid, "")
	if code, body := r.webhook(t, psp.EventPayoutPaid, pp, testSecret); code != 200 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	paid := e.payout(p.ID)
	if paid.Status != contracts.PayoutStatusPaid || paid.Version != 4 {
		t.Fatalf("after the paid webhook: %s v%d, want paid v4", paid.Status, paid.Version)
	}
	// The same webhook again (the PSP retries) changes nothing.
	body, _ := json.Marshal(psp.PayoutEvent{ID: "evt_same", Type: psp.EventPayoutPaid, Created: time.Now(), Data: pp})
	for range 2 {
		if code, resp := r.post(t, body, psp.Sign(body, time.Now(), testSecret)); code != 200 {
			t.Fatalf("repeated webhook: %d %s", code, resp)
		}
	}
	if got := e.payout(p.ID); got.Version != 4 {
		t.Fatalf("repeated webhooks moved the payout to v%d", got.Version)
	}
	evs := e.events(p.ID)
	want := []string{contracts.SubjectPayoutRequested, contracts.SubjectPayoutCreated, contracts.SubjectPayoutSent, contracts.SubjectPayoutPaid}
	if !slices.Equal(subjects(evs), want) {
		t.Fatalf("events %v, want %v", subjects(evs), want)
	}
	for i, ev := range evs {
		if ev.version != int64(i+1) {
			t.Errorf("%s has version %d, want %d", ev.subject, ev.version, i+1)
		}
		if i == 0 {
			continue
		}
		var ch contracts.PayoutChanged
		if err := json.Unmarshal(ev.payload, &ch); err != nil {
			t.Fatal(err)
		}
		if ch.Version != ev.version || ch.AmountMinor != 12000 || ch.PayoutID != p.ID || ch.Period != period {
			t.Errorf("%s payload %+v", ev.subject, ch)
		}
		if ev.subject != contracts.SubjectPayoutCreated && ch.PSPPayoutID != pp.ID {
			t.Errorf("%s: psp_payout_id %q, want %q", ev.subject, ch.PSPPayoutID, pp.ID)
		}
	}
	// Published, not just written.
	testenv.Eventually(t, 15*time.Second, "payout events published", func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM payout.outbox WHERE aggregate_id = $1 AND published_at IS NULL`, p.ID).Scan(&n)
		return n == 0, err
	})
	var audit int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM payout.transitions WHERE payout_id = $1`, p.ID).Scan(&audit); err != nil || audit != 4 {
		t.Fatalf("%d audit rows (%v), want 4", audit, err)
	}
	if got := r.counter(t, "paypipe_payout_transitions_total", map[string]string{"from": "sent", "to": "paid"}); got != 1 {
		t.Errorf("sent→paid transitions metric %v, want 1", got)
	}
}

func TestWebhookFailedFailsThePayout(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.sentPayout(r, 5000)
	pp := e.psp.settle(p.ID, psp.PayoutFailed, "account_closed")
	if code, body := r.webhook(t, psp.EventPayoutFailed, pp, testSecret); code != 200 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	got := e.payout(p.ID)
	if got.Status != contracts.PayoutStatusFailed || got.FailureCode != "account_closed" {
		t.Fatalf("payout %s (%q), want failed (account_closed)", got.Status, got.FailureCode)
	}
	evs := e.events(p.ID)
	last := evs[len(evs)-1]
	var ch contracts.PayoutChanged
	if err := json.Unmarshal(last.payload, &ch); err != nil {
		t.Fatal(err)
	}
	if last.subject != contracts.SubjectPayoutFailed || ch.FailureCode != "account_closed" || ch.AmountMinor != 5000 {
		t.Fatalf("last event %s %+v, want payouts.payout.failed with the code and amount", last.subject, ch)
	}
	// A later, contradicting "paid" is quarantined, not applied.
	pp.Status = psp.PayoutPaid
	if code, _ := r.webhook(t, psp.EventPayoutPaid, pp, testSecret); code != 200 {
		t.Fatalf("contradicting webhook: %d", code)
	}
	if got := e.payout(p.ID); got.Status != contracts.PayoutStatusFailed {
		t.Fatalf("a contradicting webhook moved the payout to %s", got.Status)
	}
	e.assertQuarantined(p.ID, 1)
}

func (e *env) assertQuarantined(payoutID string, want int) {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM payout.quarantine WHERE payout_id = $1`, payoutID).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	if n != want {
		e.t.Fatalf("%d quarantined reports for %s, want %d", n, payoutID, want)
	}
}

func TestWebhookDisagreeingAmountIsQuarantined(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.sentPayout(r, 5000)
	pp := e.psp.settle(p.ID, psp.PayoutPaid, "")
	pp.AmountMinor = 50000
	code, body := r.webhook(t, psp.EventPayoutPaid, pp, testSecret)
	if code != 200 {
		t.Fatalf("webhook: %d %s", code, body)
	}
	if got := e.payout(p.ID); got.Status != contracts.PayoutStatusSent {
		t.Fatalf("payout %s after a webhook with another amount, want sent", got.Status)
	}
	e.assertQuarantined(p.ID, 1)
}

func TestWebhookBadSignatureChangesNothing(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.sentPayout(r, 700)
	pp := e.psp.settle(p.ID, psp.PayoutPaid, "")
	body, _ := json.Marshal(psp.PayoutEvent{ID: "evt_forged", Type: psp.EventPayoutPaid, Created: time.Now(), Data: pp})
	for name, sig := range map[string]string{
		"wrong secret": psp.Sign(body, time.Now(), "not-the-secret"),
		"stale":        psp.Sign(body, time.Now().Add(-time.Hour), testSecret),
		"missing":      "",
		"malformed":    "t=abc,v1=zz",
	} {
		code, resp := r.post(t, body, sig)
		if code != 400 {
			t.Errorf("%s signature: %d, want 400", name, code)
		}
		var prob map[string]any
		if err := json.Unmarshal(resp, &prob); err != nil || prob["status"] != float64(400) || prob["type"] == "" {
			t.Errorf("%s signature: body %s is not a problem document", name, resp)
		}
	}
	var receipts int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM payout.webhook_receipts`).Scan(&receipts); err != nil {
		t.Fatal(err)
	}
	if got := e.payout(p.ID); got.Status != contracts.PayoutStatusSent || receipts != 0 {
		t.Fatalf("after forged webhooks: status %s, %d receipts; want sent and none", got.Status, receipts)
	}
	// The same body, correctly signed, is accepted: the test's webhook is valid.
	if code, _ := r.post(t, body, psp.Sign(body, time.Now(), testSecret)); code != 200 {
		t.Fatalf("signed webhook: %d", code)
	}
	e.awaitStatus(p.ID, contracts.PayoutStatusPaid)
}

func TestWebhookDatabaseDownIs503(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.sentPayout(r, 700)
	pp := e.psp.settle(p.ID, psp.PayoutPaid, "")
	// A service on a closed pool stands for a database that does not answer.
	svc, err := New(testConfig(), e.pool, e.psp, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc.pool = closedPool(t)
	down := &running{svc: svc, srv: httptestServer(t, svc)}
	code, body := down.webhook(t, psp.EventPayoutPaid, pp, testSecret)
	if code != 503 {
		t.Fatalf("webhook with the database down: %d %s, want 503", code, body)
	}
	if got := e.payout(p.ID); got.Status != contracts.PayoutStatusSent {
		t.Fatalf("payout %s, want sent", got.Status)
	}
}

func TestPSPTimeoutAfterExecutingMakesOnePayout(t *testing.T) { // RELIABILITY F20
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.requestedPayout(r, 9000)
	e.psp.faults(p.ID, fault{kind: faultExecuteThenLose}, fault{kind: faultFailBefore})
	e.reserve(p, 9000)
	sent := e.awaitStatus(p.ID, contracts.PayoutStatusSent)
	created, creates, finds := e.psp.stats(p.ID)
	if created != 1 {
		t.Fatalf("the PSP made %d payouts for %s, want exactly 1", created, p.ID)
	}
	if finds == 0 {
		t.Errorf("the retry did not look the payout up first (%d creates, %d finds)", creates, finds)
	}
	if sent.PSPPayoutID == "" || sent.Attempts < 2 {
		t.Fatalf("sent payout %+v: want a PSP id after ≥ 2 attempts", sent)
	}
	evs := e.events(p.ID)
	if n := countSubject(evs, contracts.SubjectPayoutSent); n != 1 {
		t.Fatalf("%d sent events, want 1", n)
	}
	if got := r.counter(t, "paypipe_payout_sends_total", map[string]string{"outcome": sendUnknown}); got < 1 {
		t.Errorf("unknown outcomes counted %v, want ≥ 1", got)
	}
}

func countSubject(evs []outboxEvent, subject string) int {
	n := 0
	for _, ev := range evs {
		if ev.subject == subject {
			n++
		}
	}
	return n
}

func TestCrashBetweenPSPCallAndWriteIsRetriedByLookup(t *testing.T) {
	e := newEnv(t)
	first := e.start(testConfig())
	p := e.requestedPayout(first, 4200)
	executed := make(chan struct{})
	e.psp.faults(p.ID, fault{kind: faultExecuteThenBlock, afterExecute: func() { close(executed) }})
	e.reserve(p, 4200)
	<-executed
	first.stop() // the process dies after the PSP executed, before the write
	if got := e.payout(p.ID); got.Status != contracts.PayoutStatusCreated || got.LastError != "" {
		t.Fatalf("after the crash: %s (%q), want created with nothing recorded", got.Status, got.LastError)
	}
	e.start(testConfig()) // a new process: the lease expires, the payout is retried
	sent := e.awaitStatus(p.ID, contracts.PayoutStatusSent)
	created, _, finds := e.psp.stats(p.ID)
	if created != 1 || finds == 0 {
		t.Fatalf("PSP: %d payouts, %d lookups; want 1 payout found by lookup", created, finds)
	}
	if sent.Attempts != 2 {
		t.Errorf("attempts %d, want 2 (the crashed one and the retry)", sent.Attempts)
	}
}

func TestLostWebhookIsResolvedByPolling(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.ResolveAfter = 20 * time.Millisecond
	cfg.ResolveMaxInterval = 40 * time.Millisecond
	r := e.start(cfg)
	p := e.sentPayout(r, 3300)
	e.psp.settle(p.ID, psp.PayoutPaid, "") // the webhook never comes
	paid := e.awaitStatus(p.ID, contracts.PayoutStatusPaid)
	if paid.Version != 4 {
		t.Fatalf("paid at v%d, want 4", paid.Version)
	}
	if n := countSubject(e.events(p.ID), contracts.SubjectPayoutPaid); n != 1 {
		t.Fatalf("%d paid events, want 1", n)
	}
	if got := r.counter(t, "paypipe_payout_polls_total", map[string]string{"result": pollFinal}); got != 1 {
		t.Errorf("final polls %v, want 1", got)
	}
}

func TestRefusedPayoutFails(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.requestedPayout(r, 800)
	e.psp.faults(p.ID, fault{kind: faultRefuse})
	e.reserve(p, 800)
	failed := e.awaitStatus(p.ID, contracts.PayoutStatusFailed)
	if failed.FailureCode != "invalid_destination" {
		t.Fatalf("failure code %q, want the PSP's", failed.FailureCode)
	}
	if created, _, _ := e.psp.stats(p.ID); created != 0 {
		t.Fatalf("a refused payout exists at the PSP %d times", created)
	}
	want := []string{contracts.SubjectPayoutRequested, contracts.SubjectPayoutCreated, contracts.SubjectPayoutFailed}
	if got := subjects(e.events(p.ID)); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestRejectedReservationCancels(t *testing.T) {
	e := newEnv(t)
	r := e.start(testConfig())
	p := e.requestedPayout(r, 100)
	e.emit(contracts.SubjectWalletPayoutRejected, p.ID, 1, contracts.PayoutRejected{PayoutID: p.ID, MerchantID: p.MerchantID,
		SellerID: p.SellerID, Currency: p.Currency, Reason: "nothing available", AvailableMinor: 0, RejectedAt: time.Now().UTC()})
	got := e.awaitStatus(p.ID, contracts.PayoutStatusCanceled)
	if got.Reason != "nothing available" || got.AmountMinor != 0 {
		t.Fatalf("canceled payout %+v", got)
	}
	// A late reservation for the canceled payout changes nothing.
	e.reserve(p, 100)
	testenv.Eventually(t, 10*time.Second, "late reservation consumed", func() (bool, error) {
		var n int
		err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM payout.inbox WHERE consumer = $1`, contracts.PayoutReservationsConsumer).Scan(&n)
		return n == 2, err
	})
	if got := e.payout(p.ID); got.Status != contracts.PayoutStatusCanceled {
		t.Fatalf("a late reservation moved a canceled payout to %s", got.Status)
	}
	want := []string{contracts.SubjectPayoutRequested, contracts.SubjectPayoutCanceled}
	if got := subjects(e.events(p.ID)); !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestScheduleTicksAndPeriods(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 14, 1, 30, 0, 0, time.UTC)
	daily, err := parseSchedule("daily@02:00")
	if err != nil {
		t.Fatal(err)
	}
	if got := daily.last(at); !got.Equal(time.Date(2025, 3, 13, 2, 0, 0, 0, time.UTC)) || daily.period(got) != "2025-03-13" {
		t.Errorf("daily last tick before 02:00: %s (%s)", got, daily.period(got))
	}
	if got := daily.next(at); !got.Equal(time.Date(2025, 3, 14, 2, 0, 0, 0, time.UTC)) {
		t.Errorf("daily next tick: %s", got)
	}
	hourly, err := parseSchedule("1h")
	if err != nil {
		t.Fatal(err)
	}
	if got := hourly.period(hourly.last(at)); got != "2025-03-14T01:00:00Z" {
		t.Errorf("hourly period %q", got)
	}
	for _, bad := range []string{"daily@25:00", "weekly", "10ms", "-1h"} {
		if _, err := parseSchedule(bad); err == nil {
			t.Errorf("schedule %q accepted", bad)
		}
	}
	if s, err := parseSchedule("off"); err != nil || !s.off {
		t.Errorf("off: %+v %v", s, err)
	}
}

func TestScheduledRunRequestsPayouts(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.Schedule = "daily@02:00"
	now := time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)
	cfg.hooks.now = func() time.Time { return now }
	ran := make(chan RunResult, 10)
	cfg.hooks.afterScheduledRun = func(p string, res RunResult, err error) {
		if err == nil && res.Requested > 0 {
			ran <- res
		}
	}
	seller := uuid.NewString()
	// Projected before the service starts, so its first run finds it.
	if _, err := e.pool.Exec(context.Background(), `INSERT INTO payout.balances (seller_id, currency, merchant_id, available_minor, version)
VALUES ($1, 'EUR', $2, 100, 1)`, seller, uuid.NewString()); err != nil {
		t.Fatal(err)
	}
	e.start(cfg) // starts after the 02:00 tick: catches it up at once
	select {
	case res := <-ran:
		if res.Period != "2025-03-14" || res.Requested != 1 {
			t.Fatalf("scheduled run %+v, want 1 payout for 2025-03-14", res)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no scheduled run")
	}
	e.payout(ID(seller, "EUR", "2025-03-14").String())
}

// A payout whose PSP outcome stays unknown past GiveUpAfter is stuck, never
// failed; an operator's RetryStuck puts it back with the same key, and the
// PSP still makes one payout.
func TestStuckPayoutIsRetriedByAnOperator(t *testing.T) {
	e := newEnv(t)
	cfg := testConfig()
	cfg.GiveUpAfter = time.Millisecond
	r := e.start(cfg)
	p := e.requestedPayout(r, 4200)
	e.psp.faults(p.ID, fault{kind: faultExecuteThenLose}, fault{kind: faultFailBefore}, fault{kind: faultFailBefore})
	if err := r.svc.RetryStuck(context.Background(), p.ID); !errors.Is(err, ErrNotStuck) {
		t.Fatalf("retry of a payout that is not stuck: %v, want ErrNotStuck", err)
	}
	e.reserve(p, 4200)
	var stuck Payout
	testenv.Eventually(t, 10*time.Second, "payout stuck", func() (bool, error) {
		stuck = e.payout(p.ID)
		return stuck.Stuck, nil
	})
	if stuck.Status != contracts.PayoutStatusCreated || stuck.PSPPayoutID != "" {
		t.Fatalf("stuck payout %+v: want created, no PSP id, never failed", stuck)
	}
	if err := r.svc.RetryStuck(context.Background(), "not-an-id"); !errors.Is(err, ErrInvalidRun) {
		t.Fatalf("retry of a malformed id: %v", err)
	}
	// The operator retries until the PSP answers (the first retry meets
	// the scripted failure, and the 1 ms window makes it stuck again).
	var sent Payout
	testenv.Eventually(t, 10*time.Second, "payout sent after retries", func() (bool, error) {
		sent = e.payout(p.ID)
		if sent.Status == contracts.PayoutStatusSent {
			return true, nil
		}
		if sent.Stuck {
			if err := r.svc.RetryStuck(context.Background(), p.ID); err != nil && !errors.Is(err, ErrNotStuck) {
				return false, err
			}
		}
		return false, nil
	})
	if created, _, _ := e.psp.stats(p.ID); created != 1 {
		t.Fatalf("the PSP made %d payouts, want 1", created)
	}
	if sent.PSPPayoutID == "" || sent.Stuck {
		t.Fatalf("sent payout %+v", sent)
	}
}
