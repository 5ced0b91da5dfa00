package wallet_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/ledger"
	"github.com/paypipe/paypipe/services/wallet"
)

// both runs the wallet's and the ledger's real handlers in their inbox
// transactions on one database, as their runners do.
type both struct {
	t      *testing.T
	pool   *pgxpool.Pool
	wallet map[string]outbox.ConsumerSpec
	ledger map[string]outbox.ConsumerSpec
}

func newBoth(t *testing.T, cfg wallet.Config) *both {
	pool, _ := testenv.Migrated(t, ledger.Schema(), wallet.Schema())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := &both{t: t, pool: pool, wallet: map[string]outbox.ConsumerSpec{}, ledger: map[string]outbox.ConsumerSpec{}}
	for _, s := range wallet.Consumers(wallet.WithLogger(log), wallet.WithConfig(cfg)) {
		b.wallet[s.Name] = s
	}
	for _, s := range ledger.Consumers(ledger.WithLogger(log)) {
		b.ledger[s.Name] = s
	}
	return b
}

func handle(t *testing.T, pool *pgxpool.Pool, store outbox.Store, spec outbox.ConsumerSpec, subject string, msgID uuid.UUID, v any) error {
	payload, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	d := outbox.Delivery{MsgID: msgID, Subject: subject, Type: contracts.TypeOf(subject), Payload: payload}
	_, err = store.Handle(context.Background(), pool, spec.Name, d.MsgID, d.Subject, func(ctx context.Context, tx pgx.Tx) error {
		return spec.Handler(ctx, tx, d)
	})
	return err
}

// w delivers v to a wallet consumer under a new ce-id; wID under msgID.
func (b *both) w(consumer, subject string, v any) error {
	return b.wID(consumer, subject, uuid.New(), v)
}

func (b *both) wID(consumer, subject string, msgID uuid.UUID, v any) error {
	return handle(b.t, b.pool, wallet.Store, b.wallet[consumer], subject, msgID, v)
}

func (b *both) l(consumer, subject string, v any) error {
	return handle(b.t, b.pool, ledger.Store, b.ledger[consumer], subject, uuid.New(), v)
}

func (b *both) ok(err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatal(err)
	}
}

func (b *both) balance(seller, cur string) wallet.Balance {
	b.t.Helper()
	bs, err := wallet.Balances(context.Background(), b.pool, seller)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, x := range bs {
		if x.Currency == cur {
			return x
		}
	}
	return wallet.Balance{}
}

func (b *both) count(sql string, args ...any) int {
	b.t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		b.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// outbox returns the wallet's events of subject, in order, each checked
// against its schema.
func outboxOf[T any](b *both, subject string) []T {
	b.t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT payload FROM wallet.outbox WHERE subject = $1 ORDER BY id`, subject)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []T
	var payload []byte
	if _, err := pgx.ForEachRow(rows, []any{&payload}, func() error {
		checkSchema(b.t, contracts.TypeOf(subject), payload)
		var ev T
		if err := json.Unmarshal(payload, &ev); err != nil {
			return err
		}
		out = append(out, ev)
		return nil
	}); err != nil {
		b.t.Fatal(err)
	}
	return out
}

func checkSchema(t *testing.T, ceType string, payload []byte) {
	t.Helper()
	err := contracts.ValidateEvent(ceType, payload)
	if errors.Is(err, contracts.ErrUnknownEventType) {
		t.Logf("TODO: no schema for %s yet", ceType)
		return
	}
	if err != nil {
		t.Errorf("%s does not validate: %v\n%s", ceType, err, payload)
	}
}

// noDrift asserts RELIABILITY.md I3 and a balanced ledger.
func (b *both) noDrift() {
	b.t.Helper()
	drifts, err := wallet.CheckAgainstLedger(context.Background(), b.pool)
	if err != nil || len(drifts) != 0 {
		b.t.Fatalf("wallet ≠ ledger: %+v, %v", drifts, err)
	}
	v, err := ledger.CheckBalanced(context.Background(), b.pool)
	if err != nil || len(v) != 0 {
		b.t.Fatalf("ledger: %+v, %v", v, err)
	}
}

func fulfilled(o contracts.OrderSucceeded) contracts.OrderFulfilled {
	return contracts.OrderFulfilled{PaymentOrderID: o.PaymentOrderID, CheckoutID: o.CheckoutID, MerchantID: o.MerchantID,
		SellerID: o.SellerID, Currency: o.Currency, NetMinor: o.NetMinor, FulfilledAt: time.Now().UTC()}
}

func refund(o contracts.OrderSucceeded, amount, fee int64) contracts.RefundSucceeded {
	return contracts.RefundSucceeded{RefundID: uuid.NewString(), PaymentOrderID: o.PaymentOrderID, CheckoutID: o.CheckoutID,
		MerchantID: o.MerchantID, SellerID: o.SellerID, PSPPaymentID: o.PSPPaymentID, PSPRefundID: "re_" + uuid.NewString()[:8],
		Currency: o.Currency, AmountMinor: amount, FeeMinor: fee, NetMinor: amount - fee, SucceededAt: time.Now().UTC()}
}

func request(merchant, seller, cur string) contracts.PayoutRequest {
	return contracts.PayoutRequest{PayoutID: uuid.NewString(), MerchantID: merchant, SellerID: seller, Currency: cur,
		Period: "2026-03-02", RequestedAt: time.Now().UTC()}
}

// payoutEvent is what the payout service emits once the wallet reserved.
func payoutEvent(r contracts.PayoutReserved, status string, version int64) contracts.PayoutChanged {
	p := contracts.PayoutChanged{PayoutID: r.PayoutID, MerchantID: r.MerchantID, SellerID: r.SellerID, Currency: r.Currency,
		Period: "2026-03-02", Status: status, AmountMinor: r.AmountMinor, Version: version, CreatedAt: r.ReservedAt, ChangedAt: time.Now().UTC()}
	switch status {
	case contracts.PayoutStatusPaid:
		p.PSPPayoutID = "po_" + r.PayoutID[:8]
	case contracts.PayoutStatusFailed:
		p.FailureCode = "account_closed"
	}
	return p
}

func paidOrder(merchant, seller, cur string, amount, fee int64) contracts.OrderSucceeded {
	o := order(merchant, seller, cur, amount, fee)
	o.PSPPaymentID = "pay_" + o.PaymentOrderID[:8]
	return o
}

// TestFulfilmentAndRefunds: a fulfilment or refund before its order's
// credit is retried (transient), a refund before fulfilment comes from
// pending and the fulfilment then moves only the remainder, a refund after
// fulfilment comes from available; re-sends and redeliveries change
// nothing; every event carries its ref and deltas.
func TestFulfilmentAndRefunds(t *testing.T) {
	t.Parallel()
	b := newBoth(t, wallet.Config{})
	merchant, seller := uuid.NewString(), uuid.NewString()
	o := paidOrder(merchant, seller, "EUR", 10_000, 300) // net 9,700

	early := refund(o, 1_000, 30) // net 970
	for _, err := range []error{
		b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)),
		b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, early),
	} {
		if !errors.Is(err, wallet.ErrNotYet) || errors.Is(err, wallet.ErrInvalidEvent) {
			t.Fatalf("before the credit: %v; want the transient ErrNotYet", err)
		}
	}
	if n := b.count(`SELECT (SELECT count(*) FROM wallet.changes) + (SELECT count(*) FROM wallet.inbox) + (SELECT count(*) FROM wallet.balances)`); n != 0 {
		t.Fatalf("a retried event left %d rows", n)
	}

	b.ok(b.w(contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded, o))
	msg := uuid.New()
	for range 2 { // the retried refund, then redelivered under the same ce-id
		b.ok(b.wID(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, msg, early))
	}
	b.ok(b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, early)) // re-sent, new ce-id
	if got := b.balance(seller, "EUR"); got.PendingMinor != 9_700-970 || got.AvailableMinor != 0 {
		t.Fatalf("after the early refund: %+v", got)
	}
	b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)))
	if got := b.balance(seller, "EUR"); got.PendingMinor != 0 || got.AvailableMinor != 8_730 {
		t.Fatalf("after fulfilment: %+v; want pending 0, available 8730", got)
	}
	// A second order keeps pending non-empty, so a re-sent fulfilment that
	// recomputed would move more: it must not.
	o2 := paidOrder(merchant, seller, "EUR", 5_000, 0)
	b.ok(b.w(contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded, o2))
	b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)))
	late := refund(o, 2_000, 60) // net 1,940, after fulfilment: from available
	b.ok(b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, late))
	b.ok(b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, late))
	got := b.balance(seller, "EUR")
	if got.PendingMinor != 5_000 || got.AvailableMinor != 8_730-1_940 || got.PaidOutMinor != 0 || got.Version != 5 {
		t.Fatalf("balance %+v; want pending 5000, available 6790, version 5", got)
	}
	// Conflicts: the same refund with another split, a fulfilment whose
	// net disagrees with the credit.
	other := late
	other.FeeMinor, other.NetMinor = 61, late.NetMinor-1
	if err := b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, other); err != nil {
		t.Fatalf("a re-sent refund is recognised by its id: %v", err)
	}
	f2 := fulfilled(o2)
	f2.NetMinor++
	if err := b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, f2); !errors.Is(err, wallet.ErrConflict) {
		t.Fatalf("fulfilment with another net: %v; want ErrConflict", err)
	}
	bad := refund(o2, 100, 0)
	bad.PSPRefundID = ""
	if err := b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, bad); !errors.Is(err, wallet.ErrInvalidEvent) {
		t.Fatalf("refund without the PSP's id: %v; want ErrInvalidEvent", err)
	}

	evs := outboxOf[contracts.WalletBalanceChanged](b, contracts.SubjectWalletBalance)
	want := []contracts.WalletBalanceChanged{
		{Cause: contracts.CauseOrderSucceeded, Ref: o.PaymentOrderID, PaymentOrderID: o.PaymentOrderID, DeltaPendingMinor: 9_700, PendingMinor: 9_700},
		{Cause: contracts.CauseRefund, Ref: early.RefundID, PaymentOrderID: o.PaymentOrderID, DeltaPendingMinor: -970, PendingMinor: 8_730},
		{Cause: contracts.CauseOrderFulfilled, Ref: o.PaymentOrderID, PaymentOrderID: o.PaymentOrderID, DeltaPendingMinor: -8_730, DeltaAvailableMinor: 8_730, AvailableMinor: 8_730},
		{Cause: contracts.CauseOrderSucceeded, Ref: o2.PaymentOrderID, PaymentOrderID: o2.PaymentOrderID, DeltaPendingMinor: 5_000, PendingMinor: 5_000, AvailableMinor: 8_730},
		{Cause: contracts.CauseRefund, Ref: late.RefundID, PaymentOrderID: o.PaymentOrderID, DeltaAvailableMinor: -1_940, PendingMinor: 5_000, AvailableMinor: 6_790},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, ev := range evs {
		w := want[i]
		w.SellerID, w.MerchantID, w.Currency, w.Version, w.ChangedAt = seller, merchant, "EUR", int64(i+1), ev.ChangedAt
		if ev != w {
			t.Errorf("event %d: %+v\nwant %+v", i, ev, w)
		}
	}
	if n := b.count(`SELECT count(*) FROM wallet.changes WHERE payment_order_id = $1`, o.PaymentOrderID); n != 4 {
		t.Errorf("%d changes name order %s, want 4", n, o.PaymentOrderID)
	}
}

// TestPayoutReserveAndReturn: a request reserves everything available,
// once per payout id whatever happens to the balance later; nothing
// available or below the minimum is a rejection, also final; a failed
// payout returns what was reserved, once, and only if it was reserved.
func TestPayoutReserveAndReturn(t *testing.T) {
	t.Parallel()
	b := newBoth(t, wallet.Config{MinPayoutMinor: 500})
	merchant, seller := uuid.NewString(), uuid.NewString()

	none := request(merchant, seller, "EUR") // no balance at all
	b.ok(b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutRequested, none))
	o := paidOrder(merchant, seller, "EUR", 10_000, 0)
	b.ok(b.w(contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded, o))
	b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)))
	b.ok(b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutRequested, none)) // re-sent once money is there: still rejected

	p := request(merchant, seller, "EUR")
	msg := uuid.New()
	for range 2 {
		b.ok(b.wID(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutRequested, msg, p))
	}
	o2 := paidOrder(merchant, seller, "EUR", 3_000, 0)
	b.ok(b.w(contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded, o2))
	b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o2)))
	b.ok(b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutRequested, p)) // re-sent: available is 3,000 now, but p is decided
	if got := b.balance(seller, "EUR"); got.AvailableMinor != 3_000 || got.PaidOutMinor != 10_000 {
		t.Fatalf("after reservation: %+v", got)
	}
	b.ok(b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, refund(o2, 2_700, 0)))
	small := request(merchant, seller, "EUR") // 300 available < 500
	b.ok(b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutRequested, small))

	reserved := outboxOf[contracts.PayoutReserved](b, contracts.SubjectWalletPayoutReserved)
	if len(reserved) != 1 || reserved[0].PayoutID != p.PayoutID || reserved[0].AmountMinor != 10_000 || reserved[0].SellerID != seller {
		t.Fatalf("reserved events %+v", reserved)
	}
	rejected := outboxOf[contracts.PayoutRejected](b, contracts.SubjectWalletPayoutRejected)
	if len(rejected) != 2 || rejected[0].PayoutID != none.PayoutID || rejected[0].Reason != wallet.RejectNothingAvailable || rejected[0].AvailableMinor != 0 ||
		rejected[1].PayoutID != small.PayoutID || rejected[1].Reason != wallet.RejectBelowMinimum || rejected[1].AvailableMinor != 300 {
		t.Fatalf("rejected events %+v", rejected)
	}

	// The payout fails: the reservation returns, once.
	failed := payoutEvent(reserved[0], contracts.PayoutStatusFailed, 3)
	wrong := failed
	wrong.AmountMinor = 9_999
	if err := b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutFailed, wrong); !errors.Is(err, wallet.ErrConflict) {
		t.Fatalf("failed with another amount: %v; want ErrConflict", err)
	}
	for range 2 {
		b.ok(b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutFailed, failed))
	}
	// A payout never reserved fails: nothing to return.
	never := payoutEvent(contracts.PayoutReserved{PayoutID: small.PayoutID, MerchantID: merchant, SellerID: seller, Currency: "EUR", AmountMinor: 300},
		contracts.PayoutStatusFailed, 2)
	b.ok(b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutFailed, never))
	got := b.balance(seller, "EUR")
	if got.AvailableMinor != 10_300 || got.PaidOutMinor != 0 || got.PendingMinor != 0 {
		t.Fatalf("after the failed payout: %+v; want available 10300, paid out 0", got)
	}
	changes := outboxOf[contracts.WalletBalanceChanged](b, contracts.SubjectWalletBalance)
	last := changes[len(changes)-1]
	if last.Cause != contracts.CausePayoutReturned || last.Ref != p.PayoutID || last.DeltaAvailableMinor != 10_000 || last.DeltaPaidOutMinor != -10_000 || last.PaymentOrderID != "" {
		t.Fatalf("return event %+v", last)
	}
	if n := b.count(`SELECT count(*) FROM wallet.changes WHERE cause IN ($1, $2)`, contracts.CausePayoutReserved, contracts.CausePayoutReturned); n != 2 {
		t.Fatalf("%d payout changes, want 2", n)
	}
}

// TestConcurrentRefundsAndPayouts is RELIABILITY.md F19: refunds and payout
// requests (each request delivered twice, under two ce-ids) race on one
// seller through the real handlers in real transactions. Every reservation
// took exactly what was available just before it, never more; the sum of
// reservations is what was paid out; every payout id is decided once.
func TestConcurrentRefundsAndPayouts(t *testing.T) {
	t.Parallel()
	b := newBoth(t, wallet.Config{})
	merchant, seller := uuid.NewString(), uuid.NewString()
	const orders = 12
	var os []contracts.OrderSucceeded
	for i := range orders {
		o := paidOrder(merchant, seller, "USD", int64(10_000+i*113), int64(300+i))
		os = append(os, o)
		b.ok(b.w(contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded, o))
		if i%3 != 0 { // a third stays pending
			b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)))
		}
	}
	var work []func() error
	var payouts []contracts.PayoutRequest
	for i := range 8 {
		p := request(merchant, seller, "USD")
		payouts = append(payouts, p)
		for range 2 {
			work = append(work, func() error { return b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutRequested, p) })
		}
		r := refund(os[i], 4_000, 120)
		work = append(work, func() error { return b.w(contracts.WalletRefundsConsumer, contracts.SubjectRefundSucceeded, r) })
	}
	// Fulfilments of the pending third make money available mid-race, so
	// later requests have something to reserve.
	for i := 0; i < orders; i += 3 {
		f := fulfilled(os[i])
		work = append(work, func() error { return b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, f) })
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(work))
	for _, f := range work {
		wg.Go(func() { errs <- f() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	// Replay the history in version order: each reservation must equal the
	// available balance just before it, which must have been positive.
	rows, err := b.pool.Query(context.Background(), `SELECT cause, ref, delta_pending, delta_available, delta_paid_out, version
FROM wallet.changes WHERE seller_id = $1 AND currency = 'USD' ORDER BY version`, seller)
	if err != nil {
		t.Fatal(err)
	}
	var pending, available, paidOut, reservedSum, version int64
	reservedIDs := map[string]bool{}
	var cause, ref string
	var dp, da, dpo, v int64
	if _, err := pgx.ForEachRow(rows, []any{&cause, &ref, &dp, &da, &dpo, &v}, func() error {
		version++
		if v != version {
			t.Errorf("version %d after %d", v, version-1)
		}
		if cause == contracts.CausePayoutReserved {
			if available <= 0 || -da != available || dpo != available {
				t.Errorf("reservation %s took %d with %d available", ref, dpo, available)
			}
			if reservedIDs[ref] {
				t.Errorf("payout %s reserved twice", ref)
			}
			reservedIDs[ref] = true
			reservedSum += dpo
		}
		pending, available, paidOut = pending+dp, available+da, paidOut+dpo
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	got := b.balance(seller, "USD")
	if got.PendingMinor != pending || got.AvailableMinor != available || got.PaidOutMinor != paidOut || got.Version != version {
		t.Fatalf("balance %+v; the history sums to pending %d available %d paid out %d version %d", got, pending, available, paidOut, version)
	}
	t.Logf("%d of %d payouts reserved, %d paid out, %d available", len(reservedIDs), len(payouts), reservedSum, got.AvailableMinor)
	if reservedSum != got.PaidOutMinor || reservedSum == 0 {
		t.Fatalf("Σ reservations %d, paid out %d", reservedSum, got.PaidOutMinor)
	}
	reserved := outboxOf[contracts.PayoutReserved](b, contracts.SubjectWalletPayoutReserved)
	rejected := outboxOf[contracts.PayoutRejected](b, contracts.SubjectWalletPayoutRejected)
	if len(reserved)+len(rejected) != len(payouts) || len(reserved) != len(reservedIDs) {
		t.Fatalf("%d reserved + %d rejected events for %d payouts (%d reservations)", len(reserved), len(rejected), len(payouts), len(reservedIDs))
	}
	var eventSum int64
	for _, r := range reserved {
		eventSum += r.AmountMinor
	}
	if eventSum != reservedSum {
		t.Fatalf("reserved events sum to %d, reservations to %d", eventSum, reservedSum)
	}
	for _, r := range rejected {
		if r.AvailableMinor > 0 {
			t.Errorf("rejected %s with %d available", r.PayoutID, r.AvailableMinor)
		}
	}
	if got.PendingMinor < 0 || got.PaidOutMinor < 0 {
		t.Fatalf("negative balance %+v", got)
	}
}

// TestWalletMatchesLedgerAfterPayouts feeds a scripted mix of the pay-out
// flow to both services, with events of one effect re-sent and some out of
// order, and checks I3 (wallet pending + available = ledger seller payable)
// and the ledger's balance once everything is applied.
func TestWalletMatchesLedgerAfterPayouts(t *testing.T) {
	t.Parallel()
	b := newBoth(t, wallet.Config{})
	merchant := uuid.NewString()
	sellers := []string{uuid.NewString(), uuid.NewString(), uuid.NewString()}
	toBoth := func(wc, lc, subject string, v any) {
		t.Helper()
		b.ok(b.w(wc, subject, v))
		b.ok(b.l(lc, subject, v))
	}
	var orders []contracts.OrderSucceeded
	for i, s := range sellers {
		for j := range 4 {
			o := paidOrder(merchant, s, []string{"EUR", "JPY"}[j%2], int64(5_000+i*1_000+j*250), int64(150+j))
			o.CheckoutAmountMinor = o.AmountMinor
			orders = append(orders, o)
			toBoth(contracts.WalletPaymentsConsumer, contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded, o)
		}
	}
	b.noDrift()
	for i, o := range orders {
		r := refund(o, o.AmountMinor/4, o.FeeMinor/4)
		switch i % 4 {
		case 0: // refund before fulfilment
			toBoth(contracts.WalletRefundsConsumer, contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, r)
			b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)))
		case 1: // refund after fulfilment, re-sent to both
			b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)))
			toBoth(contracts.WalletRefundsConsumer, contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, r)
			toBoth(contracts.WalletRefundsConsumer, contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, r)
		case 2: // fulfilled only
			b.ok(b.w(contracts.WalletFulfilmentsConsumer, contracts.SubjectOrderFulfilled, fulfilled(o)))
		}
	}
	b.noDrift()

	// Pay-outs: the test plays the payout service, which learns the amount
	// from wallet.payout.reserved.
	var reqs []contracts.PayoutRequest
	for _, s := range sellers {
		for _, cur := range []string{"EUR", "JPY"} {
			r := request(merchant, s, cur)
			reqs = append(reqs, r)
			b.ok(b.w(contracts.WalletPayoutsConsumer, contracts.SubjectPayoutRequested, r))
		}
	}
	reserved := outboxOf[contracts.PayoutReserved](b, contracts.SubjectWalletPayoutReserved)
	if len(reserved) != len(reqs) {
		t.Fatalf("%d reservations for %d requests", len(reserved), len(reqs))
	}
	sort.Slice(reserved, func(i, j int) bool { return reserved[i].PayoutID < reserved[j].PayoutID })
	for i, r := range reserved {
		created := payoutEvent(r, contracts.PayoutStatusCreated, 2)
		switch i % 3 {
		case 0: // created, paid
			b.ok(b.l(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutCreated, created))
			b.ok(b.l(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutPaid, payoutEvent(r, contracts.PayoutStatusPaid, 4)))
		case 1: // paid before created
			b.ok(b.l(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutPaid, payoutEvent(r, contracts.PayoutStatusPaid, 4)))
			b.ok(b.l(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutCreated, created))
		case 2: // created, failed (to both)
			b.ok(b.l(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutCreated, created))
			toBoth(contracts.WalletPayoutsConsumer, contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutFailed, payoutEvent(r, contracts.PayoutStatusFailed, 4))
		}
	}
	// A refund after the pay-out may leave a seller owing.
	last := orders[1]
	toBoth(contracts.WalletRefundsConsumer, contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, refund(last, last.AmountMinor/2, last.FeeMinor/2))
	b.noDrift()

	bs, err := ledger.Balances(context.Background(), b.pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range bs {
		if x.Account == contracts.AccountPayoutInTransit && x.Net() != 0 {
			t.Errorf("payout in transit %s %d, want 0: every payout ended", x.Currency, x.Net())
		}
	}
}
