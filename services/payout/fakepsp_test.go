package payout

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/paypipe/paypipe/services/psp"
)

// fakePSP is an in-memory psp.PayoutClient that behaves like a PSP where it
// matters here: an idempotency key names one payout forever (the same key
// returns the same payout and never creates a second), and it keeps the
// truth: how many payouts each key created. Faults are scripted per key and
// consumed one per CreatePayout call.
type fakePSP struct {
	mu      sync.Mutex
	script  map[string][]fault
	byKey   map[string]string // key → payout id
	payouts map[string]psp.Payout
	byRef   map[string]string
	created map[string]int // per key: payouts actually created
	creates map[string]int // per key: CreatePayout calls
	finds   map[string]int // per reference
	gets    map[string]int // per payout id
	seq     int
}

type faultKind int

const (
	faultNone             faultKind = iota
	faultExecuteThenLose            // the PSP creates the payout, then the answer is lost (timeout)
	faultExecuteThenBlock           // the PSP creates the payout, then never answers until ctx ends
	faultRefuse                     // a definite refusal (422 invalid_destination)
	faultFailBefore                 // unknown outcome; the PSP did nothing
	faultWrongAmount                // the PSP answers with another amount
)

type fault struct {
	kind faultKind
	// afterExecute runs once the payout is recorded, before the answer.
	afterExecute func()
}

func newFakePSP() *fakePSP {
	return &fakePSP{script: map[string][]fault{}, byKey: map[string]string{}, payouts: map[string]psp.Payout{},
		byRef: map[string]string{}, created: map[string]int{}, creates: map[string]int{}, finds: map[string]int{}, gets: map[string]int{}}
}

func (f *fakePSP) faults(key string, fs ...fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.script[key] = append(f.script[key], fs...)
}

func (f *fakePSP) CreatePayout(ctx context.Context, req psp.CreatePayoutRequest) (psp.Payout, error) {
	f.mu.Lock()
	f.creates[req.IdempotencyKey]++
	var ft fault
	if s := f.script[req.IdempotencyKey]; len(s) > 0 {
		ft, f.script[req.IdempotencyKey] = s[0], s[1:]
	}
	switch ft.kind {
	case faultRefuse:
		f.mu.Unlock()
		return psp.Payout{}, &psp.Error{HTTPStatus: 422, Code: "invalid_destination", Message: "no bank account on file"}
	case faultFailBefore:
		f.mu.Unlock()
		return psp.Payout{}, fmt.Errorf("%w: 502 bad gateway", psp.ErrUnknownOutcome)
	}
	id, ok := f.byKey[req.IdempotencyKey]
	if !ok {
		f.seq++
		id = fmt.Sprintf("po_%04d", f.seq)
		now := time.Now().UTC()
		f.payouts[id] = psp.Payout{ID: id, Status: psp.PayoutPending, AmountMinor: req.AmountMinor, Currency: req.Currency,
			MerchantReference: req.MerchantReference, Destination: req.Destination, Created: now, Updated: now}
		f.byKey[req.IdempotencyKey] = id
		f.byRef[req.MerchantReference] = id
		f.created[req.IdempotencyKey]++
	}
	p := f.payouts[id]
	f.mu.Unlock()
	if ft.afterExecute != nil {
		ft.afterExecute()
	}
	switch ft.kind {
	case faultExecuteThenLose:
		return psp.Payout{}, fmt.Errorf("%w: context deadline exceeded", psp.ErrUnknownOutcome)
	case faultExecuteThenBlock:
		<-ctx.Done()
		return psp.Payout{}, fmt.Errorf("%w: %w", psp.ErrUnknownOutcome, ctx.Err())
	case faultWrongAmount:
		p.AmountMinor++
	}
	return p, nil
}

func (f *fakePSP) GetPayout(ctx context.Context, id string) (psp.Payout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets[id]++
	p, ok := f.payouts[id]
	if !ok {
		return psp.Payout{}, &psp.Error{HTTPStatus: 404, Code: "not_found", Message: "no such payout"}
	}
	return p, nil
}

func (f *fakePSP) FindPayoutByReference(ctx context.Context, ref string) (psp.Payout, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finds[ref]++
	id, ok := f.byRef[ref]
	if !ok {
		return psp.Payout{}, &psp.Error{HTTPStatus: 404, Code: "not_found", Message: "no such payout"}
	}
	return f.payouts[id], nil
}

// settle moves a payout to a final status at the PSP, as the bank would,
// and returns it (what a webhook would carry).
func (f *fakePSP) settle(ref, status, code string) psp.Payout {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := f.byRef[ref]
	p := f.payouts[id]
	p.Status, p.FailureCode, p.Updated = status, code, time.Now().UTC()
	f.payouts[id] = p
	return p
}

func (f *fakePSP) stats(key string) (created, creates, finds int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created[key], f.creates[key], f.finds[key]
}
