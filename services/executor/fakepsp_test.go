package executor

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/paypipe/paypipe/services/psp"
)

// fakePSP is a scripted, in-memory psp.Client. It behaves like a PSP where
// it matters here: an idempotency key names one payment forever (the same
// key returns the same payment and never creates a second; the same key
// with a different request is refused), and it keeps the ledger of truth:
// how many payments each key actually created. Faults are scripted per
// idempotency key and consumed one per CreatePayment call.
type fakePSP struct {
	mu       sync.Mutex
	script   map[string][]fault // per key, consumed in order
	always   map[string]fault   // per key, once the script is used up
	byKey    map[string]string  // key → payment id
	reqOf    map[string]psp.CreatePaymentRequest
	payments map[string]psp.Payment
	byRef    map[string]string
	charges  map[string]int // per key: payments created
	creates  []createCall
	gets     map[string]int // per payment id
	finds    map[string]int // per reference
	seq      int
	// refunds is the PSP's refund API (fakerefunds_test.go).
	refunds *fakeRefunds
}

type faultKind int

const (
	faultNone              faultKind = iota
	faultFailBefore                  // unknown outcome; the PSP did nothing
	faultChargeThenUnknown           // the PSP created the payment, then the answer was lost (a 502)
	faultChargeThenHang              // the PSP created the payment, then never answered (until ctx ends)
	faultPermanent                   // a definite refusal (402 card_declined)
	faultTooMany                     // 429 with RetryAfter; the PSP did nothing
)

type fault struct {
	kind       faultKind
	retryAfter time.Duration
	// afterCharge runs once the payment is recorded, before the answer (the
	// kill test cancels the registrar here).
	afterCharge func()
}

type createCall struct {
	req   psp.CreatePaymentRequest
	at    time.Time
	fault faultKind
}

func newFakePSP() *fakePSP {
	return &fakePSP{
		script: map[string][]fault{}, always: map[string]fault{},
		byKey: map[string]string{}, reqOf: map[string]psp.CreatePaymentRequest{},
		payments: map[string]psp.Payment{}, byRef: map[string]string{},
		charges: map[string]int{}, gets: map[string]int{}, finds: map[string]int{},
		refunds: newFakeRefunds(),
	}
}

// faults scripts the next CreatePayment calls with key.
func (f *fakePSP) faults(key string, fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[key] = append(f.script[key], fs...)
}

// faultAlways applies ft to every call with key once its script is used up.
func (f *fakePSP) faultAlways(key string, ft fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.always[key] = ft
}

func (f *fakePSP) next(req psp.CreatePaymentRequest) fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ft fault
	if s := f.script[req.IdempotencyKey]; len(s) > 0 {
		ft, f.script[req.IdempotencyKey] = s[0], s[1:]
	} else {
		ft = f.always[req.IdempotencyKey]
	}
	f.creates = append(f.creates, createCall{req: req, at: time.Now(), fault: ft.kind})
	return ft
}

func (f *fakePSP) CreatePayment(ctx context.Context, req psp.CreatePaymentRequest) (psp.Payment, error) {
	ft := f.next(req)
	switch ft.kind {
	case faultFailBefore:
		return psp.Payment{}, fmt.Errorf("%w: connection reset before the request was read", psp.ErrUnknownOutcome)
	case faultPermanent:
		return psp.Payment{}, &psp.Error{HTTPStatus: 402, Code: "card_declined", Message: "Your card was declined."}
	case faultTooMany:
		return psp.Payment{}, &psp.Error{HTTPStatus: 429, Code: "rate_limited", Message: "Too many requests.", RetryAfterDelay: ft.retryAfter}
	}
	p, err := f.create(req)
	if err != nil {
		return psp.Payment{}, err
	}
	if ft.afterCharge != nil {
		ft.afterCharge()
	}
	switch ft.kind {
	case faultChargeThenUnknown:
		return psp.Payment{}, fmt.Errorf("%w: 502 bad gateway", psp.ErrUnknownOutcome)
	case faultChargeThenHang:
		<-ctx.Done()
		return psp.Payment{}, fmt.Errorf("%w: %w", psp.ErrUnknownOutcome, ctx.Err())
	}
	return p, nil
}

// create is the PSP's idempotent create.
func (f *fakePSP) create(req psp.CreatePaymentRequest) (psp.Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id, ok := f.byKey[req.IdempotencyKey]; ok {
		if f.reqOf[req.IdempotencyKey] != req {
			return psp.Payment{}, &psp.Error{HTTPStatus: 422, Code: "idempotency_key_reused",
				Message: "Keys for idempotent requests can only be used with the same parameters."}
		}
		return f.payments[id], nil
	}
	f.seq++
	now := time.Now().UTC()
	p := psp.Payment{
		ID: fmt.Sprintf("pay_%04d", f.seq), AmountMinor: req.AmountMinor, Currency: req.Currency,
		MerchantReference: req.MerchantReference, Created: now, Updated: now,
	}
	switch {
	case !req.Confirm:
		p.Status = psp.StatusRequiresAction
		p.RedirectURL = "https://psp.test/pay/" + p.ID
	case req.PaymentMethod == psp.MethodCardSucceeds:
		p.Status = psp.StatusSucceeded
		p.Card = &psp.Card{Brand: "visa", Last4: "4242"}
	case req.PaymentMethod == psp.MethodCardDeclined:
		p.Status, p.FailureCode = psp.StatusFailed, "card_declined"
	default:
		p.Status = psp.StatusProcessing
	}
	f.byKey[req.IdempotencyKey] = p.ID
	f.reqOf[req.IdempotencyKey] = req
	f.payments[p.ID] = p
	f.byRef[req.MerchantReference] = p.ID
	f.charges[req.IdempotencyKey]++
	return p, nil
}

func (f *fakePSP) GetPayment(ctx context.Context, id string) (psp.Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets[id]++
	p, ok := f.payments[id]
	if !ok {
		return psp.Payment{}, &psp.Error{HTTPStatus: 404, Code: "not_found", Message: "No such payment."}
	}
	return p, nil
}

func (f *fakePSP) FindByReference(ctx context.Context, ref string) (psp.Payment, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds[ref]++
	id, ok := f.byRef[ref]
	if !ok {
		return psp.Payment{}, &psp.Error{HTTPStatus: 404, Code: "not_found", Message: "No payment with this reference."}
	}
	return f.payments[id], nil
}

func (f *fakePSP) ListPayments(ctx context.Context, lp psp.ListParams) (psp.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []psp.Payment
	for _, p := range f.payments {
		if lp.MerchantReference == "" || p.MerchantReference == lp.MerchantReference {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return psp.Page{Payments: out}, nil
}

// setStatus is the buyer (or the bank) moving a payment on.
func (f *fakePSP) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.payments[id]
	p.Status, p.Updated = status, time.Now().UTC()
	f.payments[id] = p
}

func (f *fakePSP) chargesFor(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.charges[key]
}

func (f *fakePSP) paymentFor(key string) (psp.Payment, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.byKey[key]
	return f.payments[id], ok
}

// createsFor returns the CreatePayment calls whose merchant reference is ref
// (whatever key they carried).
func (f *fakePSP) createsFor(ref string) []createCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []createCall
	for _, c := range f.creates {
		if c.req.MerchantReference == ref {
			out = append(out, c)
		}
	}
	return out
}

func (f *fakePSP) getsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gets[id]
}

func (f *fakePSP) findsOf(ref string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.finds[ref]
}
