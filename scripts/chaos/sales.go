package main

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/paypipe/paypipe/services/payment"
)

// Kinds of sale operations (what a merchant does with a paid order).
const (
	kindFulfil     = "fulfil"
	kindRefund     = "refund"
	kindRefundRace = "refund_race" // one of 4 concurrent refunds of one order, distinct keys
	kindRefundF19  = "refund_f19"  // a full refund racing a payout run on the same seller
)

// saleOp is a client operation on a paid order: a fulfilment or a refund,
// sent with its Idempotency-Key and retried with the same key and bytes
// like a checkout.
type saleOp struct {
	N           int // the checkout operation it follows (-1: F19)
	Kind        string
	OrderID     string
	SellerID    string
	OrderAmount int64
	// Amount is a refund's requested amount; 0 asks for the rest.
	Amount int64
	Key    string
	Body   []byte
	Race   int // refund races: which race (1-based), 0 otherwise

	Outcome  string
	Status   int
	Response []byte
	RefundID string
	Attempts int
	Err      string
	Resolved bool
}

func (s *saleOp) path() string {
	if s.Kind == kindFulfil {
		return "/v1/payment_orders/" + s.OrderID + "/fulfil"
	}
	return "/v1/payment_orders/" + s.OrderID + "/refunds"
}

// refundExceeded reports a definite 409 refund-exceeds-captured: the
// expected answer to the refunds of a race that no longer fit.
func (s *saleOp) refundExceeded() bool {
	return s.Outcome == outcomeFail && s.Status == http.StatusConflict && strings.Contains(string(s.Response), "refund-exceeds-captured")
}

// refundRace is 4 refunds of one order sent at once with distinct keys,
// each of 2/5 of the amount: exactly ⌊amount / each⌋ may be accepted.
type refundRace struct {
	id     int
	amount int64
	each   int64
	ops    []*saleOp
}

// fulfilledOrder is an order fulfilled with no refund planned: F19 refunds
// such orders while a payout run pays their seller.
type fulfilledOrder struct {
	orderID, sellerID string
	amount            int64
}

// sales is the workload's record of sale operations.
type sales struct {
	mu        sync.Mutex
	ops       []*saleOp
	races     []*refundRace
	fulfilled []fulfilledOrder
	sem       chan struct{}
}

func (w *workload) addSaleOps(ops ...*saleOp) {
	w.sales.mu.Lock()
	w.sales.ops = append(w.sales.ops, ops...)
	w.sales.mu.Unlock()
}

func (w *workload) saleOps() []*saleOp {
	w.sales.mu.Lock()
	defer w.sales.mu.Unlock()
	return append([]*saleOp{}, w.sales.ops...)
}

// takeFulfilled removes and returns up to n fulfilled orders of one seller.
func (w *workload) takeFulfilled(n int) []fulfilledOrder {
	w.sales.mu.Lock()
	defer w.sales.mu.Unlock()
	if len(w.sales.fulfilled) == 0 {
		return nil
	}
	seller := w.sales.fulfilled[0].sellerID
	var out []fulfilledOrder
	rest := w.sales.fulfilled[:0]
	for _, f := range w.sales.fulfilled {
		if f.sellerID == seller && len(out) < n {
			out = append(out, f)
			continue
		}
		rest = append(rest, f)
	}
	w.sales.fulfilled = rest
	return out
}

func (h *history) addSale(s *saleOp, event string, extra map[string]any) {
	rec := map[string]any{"t": time.Now().UTC().Format(time.RFC3339Nano), "op": s.N, "kind": s.Kind, "event": event,
		"key": s.Key, "order": s.OrderID}
	if s.Amount > 0 {
		rec["amount_minor"] = s.Amount
	}
	if s.Race > 0 {
		rec["race"] = s.Race
	}
	if s.RefundID != "" {
		rec["refund"] = s.RefundID
	}
	for k, v := range extra {
		rec[k] = v
	}
	b, _ := json.Marshal(rec)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.w.Write(append(b, '\n'))
}

// keySeed derives a retry jitter stream from an operation's key.
func keySeed(key string) uint64 {
	f := fnv.New64a()
	f.Write([]byte(key))
	return f.Sum64()
}

// send posts s, retrying with the same key and bytes on connection errors,
// 429 and 5xx until a definite answer or budget.
func (w *workload) send(ctx context.Context, s *saleOp, budget time.Duration) {
	deadline := time.Now().Add(budget)
	r := rand.New(rand.NewPCG(w.cfg.Seed, keySeed(s.Key)))
	w.hist.addSale(s, "invoke", nil)
	for attempt := 1; ; attempt++ {
		s.Attempts++
		rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		res, err := w.api.do(rctx, http.MethodPost, s.path(), s.Key, s.Body)
		cancel()
		w.stats.note(res, err)
		if !retryable(res, err) {
			s.Status, s.Response = res.status, res.body
			extra := map[string]any{"http": res.status, "attempts": s.Attempts}
			if res.status/100 == 2 {
				s.Outcome, s.Err = outcomeOK, ""
				if s.Kind != kindFulfil {
					var rf payment.Refund
					if jerr := json.Unmarshal(res.body, &rf); jerr != nil || rf.ID.String() == "" {
						s.Outcome, s.Err = outcomeFail, fmt.Sprintf("2xx without a refund: %v", jerr)
					} else {
						s.RefundID = rf.ID.String()
						extra["refund_amount"] = rf.AmountMinor
					}
				}
			} else {
				s.Outcome, s.Err = outcomeFail, fmt.Sprintf("%d %s", res.status, truncate(res.body, 300))
			}
			if s.Err != "" {
				extra["err"] = s.Err
			}
			w.hist.addSale(s, s.Outcome, extra)
			return
		}
		if err != nil {
			s.Err = err.Error()
		} else {
			s.Err = fmt.Sprintf("%d %s", res.status, truncate(res.body, 200))
		}
		wait := backoff(r, attempt, res)
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			s.Outcome = outcomeInfo
			w.hist.addSale(s, outcomeInfo, map[string]any{"attempts": s.Attempts, "err": s.Err})
			return
		}
		sleepCtx(ctx, wait)
	}
}

// awaitFinal polls the checkout until it is completed or failed (or budget
// runs out) and returns it: orders can be fulfilled only once completed.
func (w *workload) awaitFinal(ctx context.Context, id string, budget time.Duration) (payment.Checkout, bool) {
	deadline := time.Now().Add(budget)
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := w.api.do(rctx, http.MethodGet, "/v1/checkouts/"+id, "", nil)
		cancel()
		var co payment.Checkout
		if err == nil && res.status == http.StatusOK && json.Unmarshal(res.body, &co) == nil && payment.Terminal(co.Status) {
			return co, true
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return co, false
		}
		sleepCtx(ctx, min(200*time.Millisecond*time.Duration(attempt), 2*time.Second))
	}
}

// sell is what the merchant does after a checkout: for a seeded share of
// the completed ones, each order is fulfilled (70%) and/or refunded (full,
// partial, partial then the rest; before or after fulfilment), or raced by
// 4 concurrent refunds (6%). Every choice comes from the seed and the
// checkout's number.
func (w *workload) sell(ctx context.Context, o *op) {
	r := rand.New(rand.NewPCG(w.cfg.Seed, uint64(o.N)+3<<40))
	if r.Float64() >= w.cfg.SaleShare {
		return
	}
	co, ok := w.awaitFinal(ctx, o.CheckoutID, 2*w.cfg.OpTimeout)
	if !ok {
		w.hist.add(o, "sell", map[string]any{"result": "checkout not final in time: nothing sold"})
		return
	}
	if co.Status != "completed" {
		return
	}
	for _, po := range co.Orders {
		fulfil := r.Float64() < 0.7
		plan := r.Float64()
		refundFirst := r.Float64() < 0.5
		partial := 1 + r.Int64N(max(1, po.AmountMinor/2))
		base := &saleOp{N: o.N, OrderID: po.ID.String(), SellerID: po.SellerID.String(), OrderAmount: po.AmountMinor}
		mk := func(kind string, amount int64) *saleOp {
			s := *base
			s.Kind, s.Amount, s.Key = kind, amount, seededUUID(r)
			if kind == kindFulfil {
				s.Body = []byte("{}")
			} else {
				req := map[string]any{"reason": "requested_by_customer"}
				if amount > 0 {
					req["amount_minor"] = amount
				}
				s.Body, _ = json.Marshal(req)
			}
			return &s
		}
		var refunds []*saleOp
		race := false
		switch {
		case plan < 0.15:
			refunds = []*saleOp{mk(kindRefund, 0)}
		case plan < 0.30:
			refunds = []*saleOp{mk(kindRefund, partial)}
		case plan < 0.38:
			refunds = []*saleOp{mk(kindRefund, partial), mk(kindRefund, 0)}
		case plan < 0.44:
			race = true
		}
		var fop *saleOp
		if fulfil {
			fop = mk(kindFulfil, 0)
		}
		var rc *refundRace
		if race {
			each := max(1, po.AmountMinor*2/5)
			rc = &refundRace{amount: po.AmountMinor, each: each}
			for range 4 {
				s := mk(kindRefundRace, each)
				rc.ops = append(rc.ops, s)
			}
		}
		if fop != nil && !refundFirst {
			w.addSaleOps(fop)
			w.send(ctx, fop, w.cfg.OpTimeout)
		}
		for _, s := range refunds {
			w.addSaleOps(s)
			w.send(ctx, s, w.cfg.OpTimeout)
		}
		if rc != nil {
			w.sales.mu.Lock()
			rc.id = len(w.sales.races) + 1
			w.sales.races = append(w.sales.races, rc)
			w.sales.mu.Unlock()
			for _, s := range rc.ops {
				s.Race = rc.id
			}
			w.addSaleOps(rc.ops...)
			var wg sync.WaitGroup
			gate := make(chan struct{})
			for _, s := range rc.ops {
				wg.Go(func() {
					<-gate
					w.send(ctx, s, w.cfg.OpTimeout)
				})
			}
			close(gate)
			wg.Wait()
		}
		if fop != nil && refundFirst {
			w.addSaleOps(fop)
			w.send(ctx, fop, w.cfg.OpTimeout)
		}
		if fop != nil && fop.Outcome == outcomeOK && len(refunds) == 0 && rc == nil {
			w.sales.mu.Lock()
			w.sales.fulfilled = append(w.sales.fulfilled, fulfilledOrder{orderID: base.OrderID, sellerID: base.SellerID, amount: po.AmountMinor})
			w.sales.mu.Unlock()
		}
	}
}

// resolveSales answers every sale operation left indeterminate, with its
// key (I11).
func (w *workload) resolveSales(ctx context.Context, budget time.Duration) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, w.cfg.Concurrency)
	for _, s := range w.saleOps() {
		if s.Outcome != outcomeInfo {
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			w.send(ctx, s, budget)
			if s.Outcome != outcomeInfo {
				s.Resolved = true
			}
		})
	}
	wg.Wait()
}

// measureSales judges the clients' record of sale operations: every one
// answered, no unexpected 4xx, and each refund race accepted exactly the
// refunds that fit (never more than the order's amount).
func (w *workload) measureSales(s *Summary) {
	for _, op := range w.saleOps() {
		s.Client.Ops++
		if op.Outcome == outcomeInfo || op.Resolved {
			s.Client.IndeterminateOps++
		}
		switch {
		case op.Outcome == outcomeInfo:
			s.Safety.UnresolvedClientOps++
		case op.Outcome == outcomeOK && op.Kind == kindFulfil:
			s.Sales.Fulfilments++
		case op.Outcome == outcomeOK:
			s.Sales.RefundsAccepted++
		case op.Kind == kindRefundRace && op.refundExceeded():
			s.Sales.RaceRefusals++
		default:
			s.Safety.UnexpectedResponses++
			if s.Safety.UnexpectedResponses <= 10 {
				s.Failures = append(s.Failures, fmt.Sprintf("op %d %s of order %s: %s", op.N, op.Kind, op.OrderID, op.Err))
			}
		}
	}
	w.sales.mu.Lock()
	races := append([]*refundRace{}, w.sales.races...)
	w.sales.mu.Unlock()
	s.Sales.RefundRaces = int64(len(races))
	for _, rc := range races {
		accepted := int64(0)
		for _, op := range rc.ops {
			if op.Outcome == outcomeOK {
				accepted++
			}
		}
		if want := min(int64(len(rc.ops)), rc.amount/rc.each); accepted != want {
			s.Safety.RefundRaceViolations++
			s.Failures = append(s.Failures, fmt.Sprintf("refund race %d on order %s (%d): %d refunds of %d accepted, want %d",
				rc.id, rc.ops[0].OrderID, rc.amount, accepted, rc.each, want))
		}
	}
}
