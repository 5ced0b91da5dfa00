package executor

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/paypipe/paypipe/services/psp"
)

// fakeRefunds is the fake PSP's refund API: an idempotency key names one
// refund forever, and it counts the refunds each key actually made. Faults
// are scripted per key, one per CreateRefund call.
type fakeRefunds struct {
	mu      sync.Mutex
	script  map[string][]refundFault
	byKey   map[string]string
	byRef   map[string]string
	refunds map[string]psp.Refund
	made    map[string]int // per key: refunds created
	creates map[string]int
	finds   map[string]int
	seq     int
	// status is what a new refund starts as (default succeeded).
	status string
}

type refundFault int

const (
	refundFaultNone            refundFault = iota
	refundFaultExecuteThenLose             // refunded, then the answer is lost
	refundFaultRefuse                      // 422 charge_already_refunded: nothing refunded
)

func newFakeRefunds() *fakeRefunds {
	return &fakeRefunds{script: map[string][]refundFault{}, byKey: map[string]string{}, byRef: map[string]string{},
		refunds: map[string]psp.Refund{}, made: map[string]int{}, creates: map[string]int{}, finds: map[string]int{}}
}

func (f *fakePSP) CreateRefund(ctx context.Context, req psp.CreateRefundRequest) (psp.Refund, error) {
	r := f.refunds
	r.mu.Lock()
	defer r.mu.Unlock()
	r.creates[req.IdempotencyKey]++
	var ft refundFault
	if s := r.script[req.IdempotencyKey]; len(s) > 0 {
		ft, r.script[req.IdempotencyKey] = s[0], s[1:]
	}
	if ft == refundFaultRefuse {
		return psp.Refund{}, &psp.Error{HTTPStatus: 422, Code: "charge_already_refunded", Message: "the charge is fully refunded"}
	}
	id, ok := r.byKey[req.IdempotencyKey]
	if !ok {
		r.seq++
		id = fmt.Sprintf("re_%04d", r.seq)
		status := r.status
		if status == "" {
			status = psp.RefundSucceeded
		}
		now := time.Now().UTC()
		r.refunds[id] = psp.Refund{ID: id, PaymentID: req.PaymentID, Status: status, AmountMinor: req.AmountMinor,
			Currency: req.Currency, MerchantReference: req.MerchantReference, Created: now, Updated: now}
		r.byKey[req.IdempotencyKey], r.byRef[req.MerchantReference] = id, id
		r.made[req.IdempotencyKey]++
	}
	if ft == refundFaultExecuteThenLose {
		return psp.Refund{}, fmt.Errorf("%w: context deadline exceeded", psp.ErrUnknownOutcome)
	}
	return r.refunds[id], nil
}

func (f *fakePSP) GetRefund(ctx context.Context, id string) (psp.Refund, error) {
	r := f.refunds
	r.mu.Lock()
	defer r.mu.Unlock()
	rf, ok := r.refunds[id]
	if !ok {
		return psp.Refund{}, &psp.Error{HTTPStatus: 404, Code: "not_found", Message: "no such refund"}
	}
	return rf, nil
}

func (f *fakePSP) FindRefundByReference(ctx context.Context, ref string) (psp.Refund, error) {
	r := f.refunds
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finds[ref]++
	id, ok := r.byRef[ref]
	if !ok {
		return psp.Refund{}, &psp.Error{HTTPStatus: 404, Code: "not_found", Message: "no such refund"}
	}
	return r.refunds[id], nil
}

func (r *fakeRefunds) faults(key string, fs ...refundFault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script[key] = append(r.script[key], fs...)
}

// settle moves a refund to a final status, as the PSP would later.
func (r *fakeRefunds) settle(ref, status string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := r.byRef[ref]
	rf := r.refunds[id]
	rf.Status, rf.Updated = status, time.Now().UTC()
	r.refunds[id] = rf
}

func (r *fakeRefunds) stats(key string) (made, creates, finds int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.made[key], r.creates[key], r.finds[key]
}

func (r *fakeRefunds) setStatus(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = s
}
