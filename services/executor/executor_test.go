package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
)

// TestExactlyOneChargeDespiteUnknownOutcomes: whatever mix of lost answers
// the PSP produces, each checkout is created once at the PSP, every call
// carries the checkout id as idempotency key and reference, and exactly one
// registered event reports the payment (RELIABILITY F3, F4, F5).
func TestExactlyOneChargeDespiteUnknownOutcomes(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	cases := []struct {
		name       string
		mode       string
		faults     []fault
		wantStatus string
	}{
		{"fail before, then charge then time out", contracts.ModeDirect,
			[]fault{{kind: faultFailBefore}, {kind: faultChargeThenHang}}, psp.StatusSucceeded},
		{"charge then time out, then lost answer", contracts.ModeDirect,
			[]fault{{kind: faultChargeThenHang}, {kind: faultChargeThenUnknown}}, psp.StatusSucceeded},
		{"hosted: lost answer, then fail before", contracts.ModeHosted,
			[]fault{{kind: faultChargeThenUnknown}, {kind: faultFailBefore}}, psp.StatusRequiresAction},
	}
	checkouts := make([]contracts.CheckoutCreated, len(cases))
	for i, c := range cases {
		checkouts[i] = newCheckout(c.mode, "")
		env.psp.faults(checkouts[i].CheckoutID, c.faults...)
	}
	run := env.start(testConfig())
	for _, co := range checkouts {
		env.publish(co)
	}
	for i, c := range cases {
		co := checkouts[i]
		env.awaitEvent(contracts.SubjectCheckoutRegistered, co.CheckoutID)
		a := env.awaitStatus(co.CheckoutID, "registered")
		run.awaitPasses(t, 2) // anything still to come would come now
		var reg contracts.CheckoutRegistered
		env.exactlyOne(contracts.SubjectCheckoutRegistered, co.CheckoutID, &reg)

		if n := env.psp.chargesFor(co.CheckoutID); n != 1 {
			t.Errorf("%s: %d payments created at the PSP, want 1", c.name, n)
		}
		calls := env.psp.createsFor(co.CheckoutID)
		if len(calls) != len(c.faults)+1 || a.attempts != len(calls) {
			t.Errorf("%s: %d create calls over %d attempts, want %d", c.name, len(calls), a.attempts, len(c.faults)+1)
		}
		for _, call := range calls {
			if call.req.IdempotencyKey != co.CheckoutID || call.req.MerchantReference != co.CheckoutID {
				t.Errorf("%s: call with key %q reference %q, want both %s", c.name, call.req.IdempotencyKey, call.req.MerchantReference, co.CheckoutID)
			}
			if call.req.AmountMinor != co.AmountMinor || call.req.Currency != co.Currency ||
				call.req.Confirm != (c.mode == contracts.ModeDirect) || call.req.PaymentMethod != co.PaymentMethod || call.req.ReturnURL != co.ReturnURL {
				t.Errorf("%s: request %+v does not match checkout %+v", c.name, call.req, co)
			}
		}
		p, _ := env.psp.paymentFor(co.CheckoutID)
		want := contracts.CheckoutRegistered{
			CheckoutID: co.CheckoutID, MerchantID: co.MerchantID, PSPPaymentID: p.ID, PSPStatus: c.wantStatus,
			AmountMinor: co.AmountMinor, Currency: co.Currency, RedirectURL: p.RedirectURL, RegisteredAt: reg.RegisteredAt,
		}
		if reg != want || reg.RegisteredAt.IsZero() {
			t.Errorf("%s: registered event\n got %+v\nwant %+v", c.name, reg, want)
		}
		if deref(a.pspPaymentID) != p.ID || deref(a.pspStatus) != c.wantStatus || a.key != co.CheckoutID || a.leaseUntil != nil {
			t.Errorf("%s: attempt row %+v", c.name, a)
		}
		if c.mode == contracts.ModeHosted && !strings.HasPrefix(reg.RedirectURL, "https://psp.test/pay/") {
			t.Errorf("%s: hosted registration without the PSP's redirect URL: %q", c.name, reg.RedirectURL)
		}
	}
	if got := run.counter(t, "paypipe_executor_attempts_total", map[string]string{"outcome": outcomeUnknown}); got != 6 {
		t.Errorf("unknown outcomes counted %v, want 6", got)
	}
	if got := run.counter(t, "paypipe_executor_attempts_total", map[string]string{"outcome": outcomeRegistered}); got != 3 {
		t.Errorf("registrations counted %v, want 3", got)
	}
}

// TestRetryAfterIsHonoured: a 429 is "not now", never a failure, and the
// next attempt waits at least the PSP's Retry-After even though the
// configured backoff is far shorter.
func TestRetryAfterIsHonoured(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	co := newCheckout(contracts.ModeDirect, "")
	const retryAfter = 300 * time.Millisecond
	env.psp.faults(co.CheckoutID, fault{kind: faultTooMany, retryAfter: retryAfter})
	env.start(testConfig())
	env.publish(co)
	env.awaitEvent(contracts.SubjectCheckoutRegistered, co.CheckoutID)
	calls := env.psp.createsFor(co.CheckoutID)
	if len(calls) != 2 || env.psp.chargesFor(co.CheckoutID) != 1 {
		t.Fatalf("%d calls, %d charges; want 2 and 1", len(calls), env.psp.chargesFor(co.CheckoutID))
	}
	if gap := calls[1].at.Sub(calls[0].at); gap < retryAfter {
		t.Fatalf("retried %s after a 429 with Retry-After %s", gap, retryAfter)
	}
}

// TestPermanentErrorRejects: a definite refusal from the PSP ends the
// checkout with a rejected event, and nothing was charged. A refusal after
// a lost answer is still a refusal.
func TestPermanentErrorRejects(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	first := newCheckout(contracts.ModeDirect, "")
	env.psp.faults(first.CheckoutID, fault{kind: faultPermanent})
	later := newCheckout(contracts.ModeDirect, "")
	env.psp.faults(later.CheckoutID, fault{kind: faultFailBefore}, fault{kind: faultPermanent})
	run := env.start(testConfig())
	for _, co := range []contracts.CheckoutCreated{first, later} {
		env.publish(co)
	}
	for _, co := range []contracts.CheckoutCreated{first, later} {
		env.awaitEvent(contracts.SubjectCheckoutRejected, co.CheckoutID)
		a := env.awaitStatus(co.CheckoutID, "rejected")
		run.awaitPasses(t, 2)
		var rej contracts.CheckoutRejected
		env.exactlyOne(contracts.SubjectCheckoutRejected, co.CheckoutID, &rej)
		if rej.CheckoutID != co.CheckoutID || rej.MerchantID != co.MerchantID || rej.Code != "card_declined" ||
			rej.Message != "Your card was declined." || rej.RejectedAt.IsZero() {
			t.Errorf("rejected event %+v", rej)
		}
		if n := env.psp.chargesFor(co.CheckoutID); n != 0 {
			t.Errorf("%d payments created for a rejected checkout, want 0", n)
		}
		if n := env.outboxRows(contracts.SubjectCheckoutRegistered, co.CheckoutID); n != 0 {
			t.Errorf("%d registered events for a rejected checkout", n)
		}
		if !strings.Contains(deref(a.lastError), "card_declined") {
			t.Errorf("last_error %q", deref(a.lastError))
		}
	}
	if n := len(env.psp.createsFor(later.CheckoutID)); n != 2 {
		t.Errorf("later refusal: %d calls, want 2", n)
	}
}

// TestDuplicateCheckoutCreated: the same checkout delivered twice under two
// message ids (a producer re-send after the broker's window, a replay)
// yields one attempt, one payment at the PSP and one registered event,
// whether the copies race through the consumer's workers or the second
// arrives, with another amount even, after the registration.
func TestDuplicateCheckoutCreated(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	ctx := context.Background()
	racing := newCheckout(contracts.ModeDirect, "")
	late := newCheckout(contracts.ModeDirect, "")
	run := env.start(testConfig())
	inboxed := func(ids ...uuid.UUID) {
		t.Helper()
		testenv.Eventually(t, 15*time.Second, "copies through the inbox", func() (bool, error) {
			var n int
			err := env.pool.QueryRow(ctx, `SELECT count(*) FROM executor.inbox WHERE consumer = $1 AND msg_id = ANY($2)`,
				contracts.ExecutorCheckoutsConsumer, ids).Scan(&n)
			return n == len(ids), err
		})
	}
	inboxed(env.publish(racing), env.publish(racing))
	env.publish(late)
	env.awaitEvent(contracts.SubjectCheckoutRegistered, late.CheckoutID)
	altered := late
	altered.AmountMinor = 999_999
	inboxed(env.publish(altered))
	env.awaitEvent(contracts.SubjectCheckoutRegistered, racing.CheckoutID)
	run.awaitPasses(t, 2)

	for _, co := range []contracts.CheckoutCreated{racing, late} {
		var rows int
		if err := env.pool.QueryRow(ctx, `SELECT count(*) FROM executor.attempts WHERE checkout_id = $1`, co.CheckoutID).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		a, _ := env.attempt(co.CheckoutID)
		if rows != 1 || a.request.AmountMinor != co.AmountMinor {
			t.Fatalf("%d attempt rows, request %+v; want 1 row for %d", rows, a.request, co.AmountMinor)
		}
		var reg contracts.CheckoutRegistered
		env.exactlyOne(contracts.SubjectCheckoutRegistered, co.CheckoutID, &reg)
		calls := env.psp.createsFor(co.CheckoutID)
		if env.psp.chargesFor(co.CheckoutID) != 1 || len(calls) != 1 || calls[0].req.AmountMinor != co.AmountMinor || reg.AmountMinor != co.AmountMinor {
			t.Fatalf("charges %d, calls %+v, registered %+v; want one call for %d", env.psp.chargesFor(co.CheckoutID), calls, reg, co.AmountMinor)
		}
	}
}

// TestKilledRegistrarResumesWithSameKey (RELIABILITY F2): the registrar dies
// after the PSP recorded the payment and before the answer was committed. A
// new executor leaves the row alone while the dead one's lease lives, then
// takes it over, calls with the same key, gets the original payment back,
// and registers it once.
func TestKilledRegistrarResumesWithSameKey(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	co := newCheckout(contracts.ModeDirect, "")
	cfg := testConfig()
	cfg.CallTimeout = 200 * time.Millisecond
	cfg.Lease = 600 * time.Millisecond
	var dead atomic.Pointer[running]
	killed := make(chan struct{})
	env.psp.faults(co.CheckoutID, fault{kind: faultChargeThenHang, afterCharge: func() { dead.Load().cancel(); close(killed) }})
	dead.Store(env.start(cfg))
	env.publish(co)
	select {
	case <-killed:
	case <-time.After(15 * time.Second):
		t.Fatal("the PSP never saw the call that kills the registrar")
	}
	dead.Load().stop()

	a, ok := env.attempt(co.CheckoutID)
	if !ok || a.status != "in_flight" || a.attempts != 1 || a.leaseUntil == nil {
		t.Fatalf("after the kill: %+v (found %v), want in_flight under lease after 1 attempt", a, ok)
	}
	if env.psp.chargesFor(co.CheckoutID) != 1 || env.outboxRows(contracts.SubjectCheckoutRegistered, co.CheckoutID) != 0 {
		t.Fatal("the PSP should hold the payment and nothing should be recorded yet")
	}
	leaseEnd := *a.leaseUntil

	cfg = testConfig()
	cfg.Lease = 300 * time.Millisecond
	next := env.start(cfg)
	env.awaitEvent(contracts.SubjectCheckoutRegistered, co.CheckoutID)
	next.awaitPasses(t, 2)
	var reg contracts.CheckoutRegistered
	env.exactlyOne(contracts.SubjectCheckoutRegistered, co.CheckoutID, &reg)
	calls := env.psp.createsFor(co.CheckoutID)
	p, _ := env.psp.paymentFor(co.CheckoutID)
	if env.psp.chargesFor(co.CheckoutID) != 1 || len(calls) != 2 || calls[0].req != calls[1].req {
		t.Fatalf("charges %d, calls %+v; want 1 charge and 2 identical calls", env.psp.chargesFor(co.CheckoutID), calls)
	}
	if calls[1].at.Before(leaseEnd) {
		t.Fatalf("the new registrar called at %s, inside the dead one's lease (until %s)", calls[1].at, leaseEnd)
	}
	if reg.PSPPaymentID != p.ID || reg.PSPStatus != psp.StatusSucceeded {
		t.Fatalf("registered %+v, want payment %s succeeded", reg, p.ID)
	}
	if a := env.awaitStatus(co.CheckoutID, "registered"); a.attempts != 2 {
		t.Fatalf("attempts %d, want 2", a.attempts)
	}
}

// TestLookupAfterAttempts: after LookupAfter unknown outcomes the registrar
// asks the PSP by reference first. If the payment exists, that is the
// answer and no create is sent; if the PSP never heard of it, it is created,
// with the same key.
func TestLookupAfterAttempts(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	cfg := testConfig()
	cfg.LookupAfter = 2
	exists := newCheckout(contracts.ModeDirect, "")
	env.psp.faults(exists.CheckoutID, fault{kind: faultChargeThenUnknown}, fault{kind: faultFailBefore})
	missing := newCheckout(contracts.ModeDirect, "")
	env.psp.faults(missing.CheckoutID, fault{kind: faultFailBefore}, fault{kind: faultFailBefore})
	run := env.start(cfg)
	env.publish(exists)
	env.publish(missing)
	for _, co := range []contracts.CheckoutCreated{exists, missing} {
		env.awaitEvent(contracts.SubjectCheckoutRegistered, co.CheckoutID)
	}
	run.awaitPasses(t, 2)

	var reg contracts.CheckoutRegistered
	env.exactlyOne(contracts.SubjectCheckoutRegistered, exists.CheckoutID, &reg)
	p, _ := env.psp.paymentFor(exists.CheckoutID)
	if n := len(env.psp.createsFor(exists.CheckoutID)); n != 2 {
		t.Errorf("found by lookup: %d creates, want 2 (none after the lookup)", n)
	}
	if env.psp.findsOf(exists.CheckoutID) != 1 || env.psp.chargesFor(exists.CheckoutID) != 1 || reg.PSPPaymentID != p.ID {
		t.Errorf("found by lookup: %d lookups, %d charges, registered %s (PSP has %s)",
			env.psp.findsOf(exists.CheckoutID), env.psp.chargesFor(exists.CheckoutID), reg.PSPPaymentID, p.ID)
	}

	env.exactlyOne(contracts.SubjectCheckoutRegistered, missing.CheckoutID, nil)
	calls := env.psp.createsFor(missing.CheckoutID)
	if len(calls) != 3 || env.psp.findsOf(missing.CheckoutID) != 1 || env.psp.chargesFor(missing.CheckoutID) != 1 {
		t.Errorf("not found by lookup: %d creates, %d lookups, %d charges; want 3, 1, 1",
			len(calls), env.psp.findsOf(missing.CheckoutID), env.psp.chargesFor(missing.CheckoutID))
	}
	for _, c := range calls {
		if c.req.IdempotencyKey != missing.CheckoutID {
			t.Errorf("create after lookup with key %q, want %s", c.req.IdempotencyKey, missing.CheckoutID)
		}
	}
}

// TestStuckAfterGiveUp: attempts are unbounded in count but bounded in time.
// A checkout the PSP never answers for is marked stuck (never failed: it
// may have been charged), counted, and no longer called for; no event is
// emitted about it.
func TestStuckAfterGiveUp(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	cfg := testConfig()
	cfg.GiveUpAfter = 300 * time.Millisecond
	co := newCheckout(contracts.ModeDirect, "")
	env.psp.faultAlways(co.CheckoutID, fault{kind: faultFailBefore})
	run := env.start(cfg)
	start := time.Now()
	env.publish(co)
	a := env.awaitStatus(co.CheckoutID, "stuck")
	if time.Since(start) < cfg.GiveUpAfter {
		t.Fatalf("stuck after %s, before GiveUpAfter %s", time.Since(start), cfg.GiveUpAfter)
	}
	calls := len(env.psp.createsFor(co.CheckoutID))
	run.awaitPasses(t, 3)
	if n := len(env.psp.createsFor(co.CheckoutID)); n != calls || n < 2 || a.attempts != n {
		t.Fatalf("%d calls before stuck (attempts %d), %d after; want ≥ 2 and no more", calls, a.attempts, n)
	}
	if !strings.Contains(deref(a.lastError), "outcome unknown") || a.leaseUntil != nil {
		t.Fatalf("stuck row %+v", a)
	}
	for _, s := range []string{contracts.SubjectCheckoutRegistered, contracts.SubjectCheckoutRejected} {
		if n := env.outboxRows(s, co.CheckoutID); n != 0 {
			t.Fatalf("%d %s events for a stuck checkout", n, s)
		}
	}
	if got := run.counter(t, "paypipe_executor_stuck_total", nil); got != 1 {
		t.Fatalf("stuck counter %v, want 1", got)
	}
	counts, err := run.ex.StatusCounts(context.Background())
	if err != nil || counts["stuck"] != 1 {
		t.Fatalf("status counts %v, %v", counts, err)
	}

	// The PSP answers again; an operator retries. The same key is sent, and
	// the checkout is registered with one charge.
	if err := run.ex.RetryStuck(context.Background(), uuid.NewString()); !errors.Is(err, ErrNotStuck) {
		t.Fatalf("retry of an unknown checkout: %v, want ErrNotStuck", err)
	}
	env.psp.faultAlways(co.CheckoutID, fault{})
	if err := run.ex.RetryStuck(context.Background(), co.CheckoutID); err != nil {
		t.Fatal(err)
	}
	env.awaitEvent(contracts.SubjectCheckoutRegistered, co.CheckoutID)
	env.exactlyOne(contracts.SubjectCheckoutRegistered, co.CheckoutID, nil)
	if n := env.psp.chargesFor(co.CheckoutID); n != 1 {
		t.Fatalf("%d payments after the retry, want 1", n)
	}
	for _, c := range env.psp.createsFor(co.CheckoutID) {
		if c.req.IdempotencyKey != co.CheckoutID {
			t.Fatalf("retry sent key %q", c.req.IdempotencyKey)
		}
	}
}

// TestResolver: a hosted payment is polled while not final and resolved
// once when its status turns final, then no longer polled; payments final
// at registration (direct succeeded or declined) are never polled
// (RELIABILITY F8: the webhook may never come).
func TestResolver(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	hosted := newCheckout(contracts.ModeHosted, "")
	succeeded := newCheckout(contracts.ModeDirect, psp.MethodCardSucceeds)
	declined := newCheckout(contracts.ModeDirect, psp.MethodCardDeclined)
	run := env.start(testConfig())
	for _, co := range []contracts.CheckoutCreated{hosted, succeeded, declined} {
		env.publish(co)
	}
	a := env.awaitStatus(hosted.CheckoutID, "registered")
	id := deref(a.pspPaymentID)
	testenv.Eventually(t, 10*time.Second, "polls while requires_action", func() (bool, error) {
		return env.psp.getsOf(id) >= 2, nil
	})
	env.psp.setStatus(id, psp.StatusProcessing)
	testenv.Eventually(t, 10*time.Second, "processing seen", func() (bool, error) {
		a, _ := env.attempt(hosted.CheckoutID)
		return deref(a.pspStatus) == psp.StatusProcessing, nil
	})
	if n := env.outboxRows(contracts.SubjectCheckoutResolved, hosted.CheckoutID); n != 0 {
		t.Fatalf("%d resolved events before the status was final", n)
	}
	env.psp.setStatus(id, psp.StatusSucceeded)
	env.awaitEvent(contracts.SubjectCheckoutResolved, hosted.CheckoutID)
	a = env.awaitStatus(hosted.CheckoutID, "registered")
	gets := env.psp.getsOf(id)
	run.awaitPasses(t, 5)
	if n := env.psp.getsOf(id); n != gets {
		t.Fatalf("polled %d more times after the status became final", n-gets)
	}
	var res contracts.CheckoutResolved
	ev := env.exactlyOne(contracts.SubjectCheckoutResolved, hosted.CheckoutID, &res)
	if res.CheckoutID != hosted.CheckoutID || res.MerchantID != hosted.MerchantID || res.PSPPaymentID != id ||
		res.PSPStatus != psp.StatusSucceeded || res.AmountMinor != hosted.AmountMinor || res.Currency != hosted.Currency {
		t.Fatalf("resolved event %+v", res)
	}
	if ev.header.Get(outbox.HeaderAggregateVersion) != "2" {
		t.Fatalf("resolved event has aggregate version %q, want 2 (after registered)", ev.header.Get(outbox.HeaderAggregateVersion))
	}
	if a.nextPollAt != nil || deref(a.pspStatus) != psp.StatusSucceeded {
		t.Fatalf("resolved row %+v", a)
	}

	for _, co := range []struct {
		c      contracts.CheckoutCreated
		status string
	}{{succeeded, psp.StatusSucceeded}, {declined, psp.StatusFailed}} {
		var reg contracts.CheckoutRegistered
		env.awaitEvent(contracts.SubjectCheckoutRegistered, co.c.CheckoutID)
		env.exactlyOne(contracts.SubjectCheckoutRegistered, co.c.CheckoutID, &reg)
		if reg.PSPStatus != co.status || (co.status == psp.StatusFailed && reg.FailureCode != "card_declined") {
			t.Fatalf("registered %+v, want %s", reg, co.status)
		}
		a, _ := env.attempt(co.c.CheckoutID)
		if n := env.psp.getsOf(reg.PSPPaymentID); n != 0 || a.nextPollAt != nil || a.polls != 0 {
			t.Fatalf("%s at registration: polled %d times (row polls %d, next_poll_at %v)", co.status, n, a.polls, a.nextPollAt)
		}
		if n := env.outboxRows(contracts.SubjectCheckoutResolved, co.c.CheckoutID); n != 0 {
			t.Fatalf("%d resolved events for a payment final at registration", n)
		}
	}
	if got := run.counter(t, "paypipe_executor_polls_total", map[string]string{"result": pollFinal}); got != 1 {
		t.Fatalf("final polls counted %v, want 1", got)
	}
}

// TestResolverStopsAtHorizon: a payment that never becomes final (the buyer
// walked away from the hosted page) is polled until ResolveHorizon, then
// left alone, with no resolved event.
func TestResolverStopsAtHorizon(t *testing.T) {
	t.Parallel()
	env := newEnv(t)
	cfg := testConfig()
	cfg.ResolveHorizon = 200 * time.Millisecond
	co := newCheckout(contracts.ModeHosted, "")
	run := env.start(cfg)
	env.publish(co)
	a := env.awaitStatus(co.CheckoutID, "registered")
	testenv.Eventually(t, 10*time.Second, "polling stopped", func() (bool, error) {
		return run.counter(t, "paypipe_executor_polls_total", map[string]string{"result": pollHorizon}) == 1, nil
	})
	gets := env.psp.getsOf(deref(a.pspPaymentID))
	run.awaitPasses(t, 5)
	a, _ = env.attempt(co.CheckoutID)
	if n := env.psp.getsOf(deref(a.pspPaymentID)); n != gets || gets < 2 || a.nextPollAt != nil || a.polls != gets {
		t.Fatalf("polls: %d at the horizon, %d later, row %+v", gets, n, a)
	}
	if n := env.outboxRows(contracts.SubjectCheckoutResolved, co.CheckoutID); n != 0 {
		t.Fatalf("%d resolved events for a payment that never became final", n)
	}
}

// TestLeaseGuard: a registrar whose lease expired and whose row was claimed
// again cannot record its answer, whatever the answer, nor emit an event;
// the current holder can.
func TestLeaseGuard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, Schema())
	ex, err := New(testConfig(), pool, newFakePSP(), nil)
	if err != nil {
		t.Fatal(err)
	}
	co := newCheckout(contracts.ModeDirect, "")
	body, _ := json.Marshal(co)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := outbox.Delivery{MsgID: uuid.New(), Subject: contracts.SubjectCheckoutCreated, Type: contracts.TypeOf(contracts.SubjectCheckoutCreated), Payload: body}
	if err := ex.handleCheckoutCreated(ctx, tx, d); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := ex.claimAttempts(ctx, 10)
	if err != nil || len(first) != 1 {
		t.Fatalf("claim: %v, %v", first, err)
	}
	if again, err := ex.claimAttempts(ctx, 10); err != nil || len(again) != 0 {
		t.Fatalf("claimed a leased row again: %v, %v", again, err)
	}
	if _, err := pool.Exec(ctx, `UPDATE executor.attempts SET lease_until = now() - interval '1 ms'`); err != nil {
		t.Fatal(err)
	}
	second, err := ex.claimAttempts(ctx, 10)
	if err != nil || len(second) != 1 || second[0].attempts != 2 || second[0].key != co.CheckoutID {
		t.Fatalf("reclaim after expiry: %+v, %v", second, err)
	}
	pay := psp.Payment{ID: "pay_1", Status: psp.StatusSucceeded, AmountMinor: co.AmountMinor, Currency: co.Currency, MerchantReference: co.CheckoutID}
	for name, record := range map[string]func() (string, error){
		"registered": func() (string, error) { return ex.recordRegistered(ctx, first[0], pay) },
		"rejected": func() (string, error) {
			return ex.recordRejected(ctx, first[0], &psp.Error{HTTPStatus: 402, Code: "card_declined"})
		},
		"unknown": func() (string, error) { return ex.recordUnknown(ctx, first[0], psp.ErrUnknownOutcome) },
	} {
		if got, err := record(); got != outcomeLeaseLost || err != nil {
			t.Fatalf("stale %s write-back: %q, %v; want lease_lost", name, got, err)
		}
	}
	var events int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM executor.outbox`).Scan(&events); err != nil || events != 0 {
		t.Fatalf("%d events after stale write-backs (%v)", events, err)
	}
	if got, err := ex.recordRegistered(ctx, second[0], pay); got != outcomeRegistered || err != nil {
		t.Fatalf("current holder: %q, %v", got, err)
	}
	var status string
	if err := pool.QueryRow(ctx, `SELECT status || '/' || (SELECT count(*) FROM executor.outbox) FROM executor.attempts`).Scan(&status); err != nil || status != "registered/1" {
		t.Fatalf("after the holder's write-back: %q, %v", status, err)
	}
}

// TestInvalidCheckoutRefused: an event that breaks the contract fails (and
// will reach the dead-letter queue) instead of being guessed at, and writes
// nothing.
func TestInvalidCheckoutRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, Schema())
	ex, err := New(testConfig(), pool, newFakePSP(), nil)
	if err != nil {
		t.Fatal(err)
	}
	typ := contracts.TypeOf(contracts.SubjectCheckoutCreated)
	for name, tc := range map[string]struct {
		typ    string
		mutate func(*contracts.CheckoutCreated)
	}{
		"wrong type":        {contracts.TypeOf(contracts.SubjectCheckoutRegistered), func(*contracts.CheckoutCreated) {}},
		"bad checkout id":   {typ, func(c *contracts.CheckoutCreated) { c.CheckoutID = "42" }},
		"bad merchant id":   {typ, func(c *contracts.CheckoutCreated) { c.MerchantID = "" }},
		"lower-case EUR":    {typ, func(c *contracts.CheckoutCreated) { c.Currency = "eur" }},
		"unknown currency":  {typ, func(c *contracts.CheckoutCreated) { c.Currency = "XXX" }},
		"zero amount":       {typ, func(c *contracts.CheckoutCreated) { c.AmountMinor = 0 }},
		"too large":         {typ, func(c *contracts.CheckoutCreated) { c.AmountMinor = 100_000_000_000 }},
		"unknown mode":      {typ, func(c *contracts.CheckoutCreated) { c.Mode = "crypto" }},
		"direct, no method": {typ, func(c *contracts.CheckoutCreated) { c.PaymentMethod = "" }},
	} {
		co := newCheckout(contracts.ModeDirect, "")
		tc.mutate(&co)
		body, _ := json.Marshal(co)
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return ex.handleCheckoutCreated(ctx, tx, outbox.Delivery{MsgID: uuid.New(), Type: tc.typ, Payload: body})
		})
		if !errors.Is(err, ErrInvalidCheckout) {
			t.Errorf("%s: %v, want ErrInvalidCheckout", name, err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM executor.attempts`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d attempts recorded from invalid events (%v)", n, err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.LookupAfter != 3 || c.GiveUpAfter != 24*time.Hour || c.ResolveAfter != time.Minute ||
		c.ResolveMaxInterval != 10*time.Minute || c.ResolveHorizon != 48*time.Hour || c.Lease <= 2*c.CallTimeout ||
		c.Retry != (retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.5}) {
		t.Fatalf("defaults %+v", c)
	}
	for name, bad := range map[string]Config{
		"negative timeout":     {CallTimeout: -time.Second},
		"negative count":       {LookupAfter: -1},
		"lease too short":      {CallTimeout: time.Second, Lease: 2 * time.Second},
		"batch too large":      {BatchSize: 1001},
		"too many calls":       {Concurrency: 1000},
		"base above max":       {Retry: retry.Policy{Strategy: retry.Exponential, Initial: time.Hour, Max: time.Minute}},
		"retry gives up":       {Retry: retry.Policy{Strategy: retry.Fixed, Initial: time.Second, MaxAttempts: 10}},
		"retry has a deadline": {Retry: retry.Policy{Strategy: retry.Fixed, Initial: time.Second, MaxElapsed: time.Hour}},
		"retry jitter above 1": {Retry: retry.Policy{Strategy: retry.Fixed, Initial: time.Second, Jitter: 2}},
		"first poll after end": {ResolveAfter: time.Hour, ResolveHorizon: time.Minute},
	} {
		if _, err := bad.withDefaults(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestRejection(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err            error
		code, contains string
	}{
		{&psp.Error{HTTPStatus: 402, Code: "card_declined", Message: "Declined."}, "card_declined", "Declined."},
		{fmt.Errorf("create payment: %w", &psp.Error{HTTPStatus: 400}), "http_400", "HTTP 400"},
	} {
		code, msg := rejection(tc.err)
		if code != tc.code || !strings.Contains(msg, tc.contains) {
			t.Errorf("rejection(%v) = %q, %q", tc.err, code, msg)
		}
		body, _ := json.Marshal(contracts.CheckoutRejected{CheckoutID: uuid.NewString(), MerchantID: uuid.NewString(),
			Code: code, Message: msg, RejectedAt: time.Now().UTC()})
		if err := contracts.ValidateEvent(contracts.TypeOf(contracts.SubjectCheckoutRejected), body); err != nil {
			t.Errorf("rejection(%v): %v", tc.err, err)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	t.Parallel()
	c, err := Config{Retry: retry.Policy{Strategy: retry.Exponential, Initial: 100 * time.Millisecond, Max: 10 * time.Second, Jitter: 0.5}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 100; attempt++ {
		ceil := c.Retry.Max
		if attempt < 20 {
			ceil = min(c.Retry.Initial<<(attempt-1), c.Retry.Max)
		}
		d := c.retryDelay(attempt, psp.ErrUnknownOutcome)
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: delay %s outside [%s, %s]", attempt, d, ceil/2, ceil)
		}
	}
	if d := c.retryDelay(1, &psp.Error{HTTPStatus: 429, RetryAfterDelay: 42 * time.Second}); d != 42*time.Second {
		t.Fatalf("429 Retry-After 42s: delay %s", d)
	}
	if d := c.retryDelay(1, fmt.Errorf("create payment: %w", &psp.Error{HTTPStatus: 429, RetryAfterDelay: 1000 * time.Hour})); d != retry.DefaultMaxRetryAfter {
		t.Fatalf("absurd Retry-After: delay %s, want the %s cap", d, retry.DefaultMaxRetryAfter)
	}
	for polls := 0; polls <= 100; polls++ {
		ceil := c.ResolveMaxInterval
		if polls < 20 {
			ceil = min(c.ResolveAfter<<polls, c.ResolveMaxInterval)
		}
		if d := c.pollDelay(polls); d < ceil/2 || d > ceil {
			t.Fatalf("poll %d: delay %s outside [%s, %s]", polls, d, ceil/2, ceil)
		}
	}
}

// TestMetricsShared: executors of one process share one registry (the
// collectors registered first are reused, not a registration panic).
func TestMetricsShared(t *testing.T) {
	t.Parallel()
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	var exs []*Executor
	for range 2 {
		ex, err := New(Config{Registerer: reg}, pool, newFakePSP(), nil)
		if err != nil {
			t.Fatal(err)
		}
		exs = append(exs, ex)
	}
	exs[0].metrics.stuck.Inc()
	exs[1].metrics.stuck.Inc()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "paypipe_executor_stuck_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Fatalf("shared stuck counter %v, want 2", v)
			}
			return
		}
	}
	t.Fatal("paypipe_executor_stuck_total not registered")
}
