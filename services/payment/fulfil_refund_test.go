package payment_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"math/rand/v2"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/payment"
)

func TestFulfil(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	co := e.paidCheckout(e.a, "USD", false, 5000)
	o := co.Orders[0]
	path := "/v1/payment_orders/" + o.ID.String() + "/fulfil"
	noBody := map[string]string{"Content-Type": ""}

	// Succeeded but not yet recorded by the ledger and the wallet.
	p := problem(t, e.request(http.MethodPost, path, e.a.key, nil, map[string]string{"Idempotency-Key": "f0"}),
		http.StatusConflict, payment.CodeOrderNotFulfillable)
	if !strings.Contains(p.Detail, payment.StatusSucceeded) {
		t.Fatalf("detail %q does not name the status", p.Detail)
	}
	if n := len(e.events(contracts.SubjectOrderFulfilled)); n != 0 {
		t.Fatalf("%d fulfilled events for a refused fulfilment", n)
	}

	co = e.paidCheckout(e.a, "USD", true, 5000)
	o = co.Orders[0]
	if o.Status != payment.StatusCompleted || o.FulfilledAt != nil {
		t.Fatalf("order before fulfilment %+v", o)
	}
	path = "/v1/payment_orders/" + o.ID.String() + "/fulfil"
	// Another merchant's order is exactly a missing one.
	missing := e.request(http.MethodPost, "/v1/payment_orders/"+uuid.NewString()+"/fulfil", e.a.key, nil, map[string]string{"Idempotency-Key": "x1"})
	other := e.request(http.MethodPost, path, e.b.key, nil, map[string]string{"Idempotency-Key": "x1"})
	problem(t, other, http.StatusNotFound, payment.CodeNotFound)
	if !bytes.Equal(missing.body, other.body) {
		t.Fatalf("404 bodies differ: %s vs %s", missing.body, other.body)
	}

	hdr := map[string]string{"Idempotency-Key": "f1"}
	for k, v := range noBody {
		hdr[k] = v
	}
	first := e.request(http.MethodPost, path, e.a.key, nil, hdr)
	got := decode[payment.PaymentOrder](t, first, http.StatusOK)
	if got.FulfilledAt == nil || got.Status != payment.StatusCompleted || got.ID != o.ID {
		t.Fatalf("fulfilled order %+v", got)
	}
	// The same key replays; another key finds the order fulfilled and
	// changes nothing.
	replay := e.request(http.MethodPost, path, e.a.key, nil, hdr)
	if replay.status != http.StatusOK || replay.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(replay.body, first.body) {
		t.Fatalf("replay %d %v %s", replay.status, replay.header, replay.body)
	}
	again := decode[payment.PaymentOrder](t, e.post(e.a.key, path, "f2", `{}`), http.StatusOK)
	if !again.FulfilledAt.Equal(*got.FulfilledAt) {
		t.Fatalf("second fulfilment moved fulfilled_at: %v → %v", got.FulfilledAt, again.FulfilledAt)
	}
	problem(t, e.post(e.a.key, path, "f3", `{"at":"now"}`), http.StatusBadRequest, payment.CodeUnknownField)
	if g := decode[payment.PaymentOrder](t, e.get(e.a.key, "/v1/payment_orders/"+o.ID.String()), http.StatusOK); g.FulfilledAt == nil ||
		!g.FulfilledAt.Equal(*got.FulfilledAt) {
		t.Fatalf("GET after fulfilment %+v", g)
	}

	evs := e.events(contracts.SubjectOrderFulfilled)
	if len(evs) != 1 {
		t.Fatalf("%d fulfilled events, want 1", len(evs))
	}
	var ev contracts.OrderFulfilled
	if err := json.Unmarshal(evs[0].payload, &ev); err != nil {
		t.Fatal(err)
	}
	// created 1, succeeded 2, completed 3, fulfilled 4.
	if ev.PaymentOrderID != o.ID.String() || ev.CheckoutID != co.ID.String() || ev.MerchantID != e.a.id.String() ||
		ev.SellerID != o.SellerID.String() || ev.Currency != "USD" || ev.NetMinor != o.NetMinor ||
		!ev.FulfilledAt.Equal(*got.FulfilledAt) || evs[0].aggregate != o.ID.String() || evs[0].version != "4" {
		t.Fatalf("event %+v (aggregate %s v%s), order %+v", ev, evs[0].aggregate, evs[0].version, o)
	}
	if n := e.count(`SELECT count(*) FROM payment.fulfilments WHERE payment_order_id = $1 AND request_id = $2`,
		o.ID, first.header.Get("Request-Id")); n != 1 {
		t.Fatalf("%d fulfilment audit rows for the first request", n)
	}
	e.validateOutbox()
}

func TestRefundPartialThenRest(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	co := e.paidCheckout(e.a, "USD", false, 10000)
	o := co.Orders[0] // fee 300 at 300 bps
	path := "/v1/payment_orders/" + o.ID.String() + "/refunds"

	// Bad input changes nothing.
	p := problem(t, e.post(e.a.key, path, "bad-1", `{"amount_minor":0,"reason":"changed_mind"}`), http.StatusBadRequest, payment.CodeValidationFailed)
	if !hasFieldError(p, "amount_minor", payment.FieldAmountNotPositive) || !hasFieldError(p, "reason", payment.FieldInvalidEnum) {
		t.Fatalf("problem %+v", p)
	}
	problem(t, e.post(e.a.key, path, "bad-2", `{"amount_minor":"10"}`), http.StatusBadRequest, payment.CodeValidationFailed)
	problem(t, e.post(e.b.key, path, "b-1", `{"amount_minor":10}`), http.StatusNotFound, payment.CodeNotFound)

	r1 := decode[payment.Refund](t, e.post(e.a.key, path, "r1", `{"amount_minor":2500,"reason":"requested_by_customer"}`), http.StatusCreated)
	if r1.Object != "refund" || r1.PaymentOrderID != o.ID || r1.AmountMinor != 2500 || r1.Currency != "USD" ||
		r1.FeeMinor != 75 || r1.NetMinor != 2425 || r1.Status != contracts.RefundStatusPending ||
		r1.Reason == nil || *r1.Reason != "requested_by_customer" || r1.FailureCode != nil || r1.CreatedAt.IsZero() {
		t.Fatalf("refund %+v", r1)
	}
	if g := decode[payment.Refund](t, e.get(e.a.key, "/v1/refunds/"+r1.ID.String()), http.StatusOK); !reflect.DeepEqual(g, r1) {
		t.Fatalf("GET refund %+v, POST %+v", g, r1)
	}
	problem(t, e.get(e.b.key, "/v1/refunds/"+r1.ID.String()), http.StatusNotFound, payment.CodeNotFound)

	p = problem(t, e.post(e.a.key, path, "r2", `{"amount_minor":7501}`), http.StatusConflict, payment.CodeRefundExceedsCaptured)
	if !strings.Contains(p.Detail, "7500") {
		t.Fatalf("detail %q does not say what is refundable", p.Detail)
	}
	// No amount: everything that is left.
	r2 := decode[payment.Refund](t, e.request(http.MethodPost, path, e.a.key, nil, map[string]string{"Idempotency-Key": "r3"}), http.StatusCreated)
	if r2.AmountMinor != 7500 || r2.FeeMinor+r1.FeeMinor != o.FeeMinor || r2.Reason != nil {
		t.Fatalf("rest refund %+v (first %+v, order fee %d)", r2, r1, o.FeeMinor)
	}
	problem(t, e.post(e.a.key, path, "r4", `{"amount_minor":1}`), http.StatusConflict, payment.CodeRefundExceedsCaptured)
	if g := decode[payment.PaymentOrder](t, e.get(e.a.key, "/v1/payment_orders/"+o.ID.String()), http.StatusOK); g.RefundedMinor != 10000 {
		t.Fatalf("refunded_minor %d", g.RefundedMinor)
	}

	list := decode[payment.RefundList](t, e.get(e.a.key, path), http.StatusOK)
	if len(list.Data) != 2 || list.HasMore || list.Data[0].ID != r2.ID || list.Data[1].ID != r1.ID {
		t.Fatalf("list %+v", list)
	}
	page := decode[payment.RefundList](t, e.get(e.a.key, path+"?limit=1"), http.StatusOK)
	next := decode[payment.RefundList](t, e.get(e.a.key, path+"?limit=1&starting_after="+page.Data[0].ID.String()), http.StatusOK)
	if !page.HasMore || next.HasMore || len(next.Data) != 1 || next.Data[0].ID != r1.ID {
		t.Fatalf("pages %+v %+v", page, next)
	}
	problem(t, e.get(e.b.key, path), http.StatusNotFound, payment.CodeNotFound)

	evs := e.events(contracts.SubjectRefundCreated)
	if len(evs) != 2 {
		t.Fatalf("%d refund.created events", len(evs))
	}
	var ev contracts.RefundCreated
	if err := json.Unmarshal(evs[0].payload, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.RefundID != r1.ID.String() || ev.PaymentOrderID != o.ID.String() || ev.CheckoutID != co.ID.String() ||
		ev.MerchantID != e.a.id.String() || ev.SellerID != o.SellerID.String() || ev.PSPPaymentID != "pay_"+co.ID.String() ||
		ev.AmountMinor != 2500 || ev.FeeMinor != 75 || ev.NetMinor != 2425 || ev.Reason != "requested_by_customer" ||
		evs[0].aggregate != r1.ID.String() || evs[0].version != "1" {
		t.Fatalf("event %+v", ev)
	}

	// Only captured orders can be refunded.
	unpaid := decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", uuid.NewString(),
		checkoutBody("USD", map[uuid.UUID]int64{o.SellerID: 100})), http.StatusCreated)
	p = problem(t, e.post(e.a.key, "/v1/payment_orders/"+unpaid.Orders[0].ID.String()+"/refunds", "r5", `{}`),
		http.StatusConflict, payment.CodeOrderNotRefundable)
	if !strings.Contains(p.Detail, payment.StatusCreated) {
		t.Fatalf("detail %q", p.Detail)
	}
	e.validateOutbox()
}

// The platform gives its fee back pro rata on the cumulative amount, so a
// full refund in any number of parts returns exactly the order's fee, each
// part's fee stays within [0, part], and the 128-bit product never
// overflows, up to money.MaxAmount.
func TestRefundFeeProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 7))
	for i := range 20000 {
		var amount int64
		switch i % 3 {
		case 0:
			amount = 3 + rng.Int64N(1000)
		case 1:
			amount = 3 + rng.Int64N(money.MaxAmount-2)
		default:
			amount = money.MaxAmount - rng.Int64N(10)
		}
		bps := rng.IntN(10001)
		fee, err := money.Fee(amount, bps)
		if err != nil {
			t.Fatal(err)
		}
		// Three parts, each at least 1.
		a := 1 + rng.Int64N(amount-2)
		b := 1 + rng.Int64N(amount-a-1)
		parts := []int64{a, b, amount - a - b}
		var refunded, feeRefunded int64
		for _, part := range parts {
			f, err := payment.RefundFee(amount, fee, refunded, feeRefunded, part)
			if err != nil {
				t.Fatalf("amount %d fee %d parts %v: %v", amount, fee, parts, err)
			}
			// The cumulative fee is the exact rounded pro rata share.
			want := new(big.Int).Mul(big.NewInt(fee), big.NewInt(refunded+part))
			want.Mul(want, big.NewInt(2)).Add(want, big.NewInt(amount)).Quo(want, big.NewInt(2*amount))
			if f < 0 || f > part || feeRefunded+f != want.Int64() {
				t.Fatalf("amount %d fee %d parts %v: part %d fee %d, cumulative %d want %s", amount, fee, parts, part, f, feeRefunded+f, want)
			}
			refunded += part
			feeRefunded += f
		}
		if feeRefunded != fee {
			t.Fatalf("amount %d fee %d parts %v: fees refunded %d", amount, fee, parts, feeRefunded)
		}
	}
	// Out-of-range inputs are refused, never computed.
	for _, in := range [][5]int64{{0, 0, 0, 0, 1}, {100, 3, 90, 0, 11}, {100, 101, 0, 0, 1}, {100, 3, 0, 0, 0}, {money.MaxAmount + 1, 0, 0, 0, 1}} {
		if _, err := payment.RefundFee(in[0], in[1], in[2], in[3], in[4]); err == nil {
			t.Errorf("RefundFee%v accepted", in)
		}
	}
}

// With failed refunds in between (whose amount and fee go back), every
// refund's fee stays within [0, amount] and the fee given back never
// exceeds the order's; refunding everything gives back exactly the fee.
func TestRefundFeeWithFailures(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 13))
	for range 20000 {
		amount := 2 + rng.Int64N(500)
		fee, err := money.Fee(amount, rng.IntN(10001))
		if err != nil {
			t.Fatal(err)
		}
		type rf struct{ amount, fee int64 }
		var live []rf
		var refunded, feeRefunded int64
		for step := 0; refunded < amount && step < 50; step++ {
			if len(live) > 0 && rng.IntN(3) == 0 { // a pending refund fails
				k := rng.IntN(len(live))
				refunded -= live[k].amount
				feeRefunded -= live[k].fee
				live = append(live[:k], live[k+1:]...)
				continue
			}
			part := 1 + rng.Int64N(amount-refunded)
			f, err := payment.RefundFee(amount, fee, refunded, feeRefunded, part)
			if err != nil {
				t.Fatal(err)
			}
			if f < 0 || f > part || feeRefunded+f > fee {
				t.Fatalf("amount %d fee %d: refund %d got fee %d with %d of the fee already back", amount, fee, part, f, feeRefunded)
			}
			live = append(live, rf{part, f})
			refunded += part
			feeRefunded += f
		}
		if rest := amount - refunded; rest > 0 {
			f, err := payment.RefundFee(amount, fee, refunded, feeRefunded, rest)
			if err != nil {
				t.Fatal(err)
			}
			feeRefunded += f
		}
		if feeRefunded != fee {
			t.Fatalf("amount %d fee %d: fully refunded, fee given back %d", amount, fee, feeRefunded)
		}
	}
}

// Full refunds in three parts through the API give back exactly the fee.
func TestRefundInThreePartsAPI(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	co := e.paidCheckout(e.a, "EUR", false, 1001, 333, 99999)
	for i, o := range co.Orders {
		path := "/v1/payment_orders/" + o.ID.String() + "/refunds"
		a, b := o.AmountMinor/3, o.AmountMinor/7
		var fees, nets int64
		for j, part := range []int64{a, b, o.AmountMinor - a - b} {
			r := decode[payment.Refund](t, e.post(e.a.key, path, fmt.Sprintf("o%d-p%d", i, j), fmt.Sprintf(`{"amount_minor":%d}`, part)), http.StatusCreated)
			fees += r.FeeMinor
			nets += r.NetMinor
		}
		if fees != o.FeeMinor || nets != o.NetMinor {
			t.Fatalf("order %+v: refunds gave back fee %d and net %d", o, fees, nets)
		}
	}
	e.validateOutbox()
}

// Concurrent refunds of one order with distinct keys: exactly as many
// succeed as the captured amount allows, never more.
func TestConcurrentRefundsNeverExceedCaptured(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	co := e.paidCheckout(e.a, "USD", false, 10000)
	path := "/v1/payment_orders/" + co.Orders[0].ID.String() + "/refunds"
	const n, part = 20, 700
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			statuses[i] = e.post(e.a.key, path, fmt.Sprintf("c-%d", i), fmt.Sprintf(`{"amount_minor":%d}`, part)).status
		})
	}
	wg.Wait()
	created, refused := 0, 0
	for _, s := range statuses {
		switch s {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
			refused++
		default:
			t.Fatalf("status %d", s)
		}
	}
	if created != 10000/part || refused != n-created {
		t.Fatalf("%d created, %d refused; want %d and %d", created, refused, 10000/part, n-10000/part)
	}
	var sum, recorded int64
	if err := e.pool.QueryRow(context.Background(), `SELECT coalesce(sum(r.amount_minor), 0), max(o.refunded_minor)
FROM payment.payment_orders o LEFT JOIN payment.refunds r ON r.payment_order_id = o.id WHERE o.id = $1`, co.Orders[0].ID).
		Scan(&sum, &recorded); err != nil {
		t.Fatal(err)
	}
	if sum != int64(created*part) || recorded != sum || sum > co.Orders[0].AmountMinor {
		t.Fatalf("refunds sum %d, order records %d", sum, recorded)
	}
	if n := len(e.events(contracts.SubjectRefundCreated)); n != created {
		t.Fatalf("%d refund.created events for %d refunds", n, created)
	}
}
