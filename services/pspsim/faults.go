package pspsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// Faults are the failures the simulator injects on demand (Config.Faults at
// start, POST /admin/faults later). Rates are probabilities from 0 to 1.
//
// Every decision is drawn from one math/rand/v2 PCG seeded with Seed, in the
// order the simulator meets the decisions, so a sequential workload sees the
// same faults on every run with the same seed. Concurrent requests draw in
// whatever order they arrive.
type Faults struct {
	Seed uint64 `json:"seed"`
	// DeclineRate declines a charge that would have succeeded
	// (failure_code card_declined), on every path that charges.
	DeclineRate float64 `json:"decline_rate"`
	// FailBeforeChargeRate answers a create or confirm with 500 before doing
	// anything: nothing is stored, a retry starts afresh.
	FailBeforeChargeRate float64 `json:"fail_before_charge_rate"`
	// FailAfterChargeRate answers 500 after the request's transaction
	// committed (a charge, or a new hosted payment): the caller cannot know.
	FailAfterChargeRate float64 `json:"fail_after_charge_rate"`
	// HangAfterChargeRate holds the response for HangFor after the commit,
	// longer than any sane client timeout.
	HangAfterChargeRate float64 `json:"hang_after_charge_rate"`
	// HangFor defaults to 15s (the client's default timeout is 10s).
	HangFor Duration `json:"hang_for"`
	// LatencyMS delays every create and confirm before it starts.
	LatencyMS int `json:"latency_ms"`
	// DuplicateWebhookRate sends an event 2 or 3 times, same id and body,
	// concurrently.
	DuplicateWebhookRate float64 `json:"duplicate_webhook_rate"`
	// OutOfOrderWebhooks sends each claimed batch of events in reverse order
	// (a charge's processing and final events are always in one batch).
	OutOfOrderWebhooks bool `json:"out_of_order_webhooks"`
	// DropWebhookRate never sends an event (state "dropped"): the receiver
	// must find out by polling.
	DropWebhookRate float64 `json:"drop_webhook_rate"`

	// Refunds: a 500 before anything is done, a 500 after the refund
	// committed, a response held for HangFor after the commit.
	FailBeforeRefundRate float64 `json:"fail_before_refund_rate"`
	FailAfterRefundRate  float64 `json:"fail_after_refund_rate"`
	HangAfterRefundRate  float64 `json:"hang_after_refund_rate"`
	// Payouts: the same three for POST /v1/payouts.
	FailBeforePayoutRate float64 `json:"fail_before_payout_rate"`
	FailAfterPayoutRate  float64 `json:"fail_after_payout_rate"`
	HangAfterPayoutRate  float64 `json:"hang_after_payout_rate"`
	// A payout created while one of these holds fails (instead of being
	// paid) after PayoutDelay, with PayoutFailureCode: the next
	// FailNextPayouts payouts, every payout to one of
	// FailPayoutDestinations, and a share PayoutFailureRate of the others.
	FailNextPayouts        int      `json:"fail_next_payouts"`
	FailPayoutDestinations []string `json:"fail_payout_destinations,omitempty"`
	PayoutFailureRate      float64  `json:"payout_failure_rate"`
	// PayoutFailureCode defaults to account_closed.
	PayoutFailureCode string `json:"payout_failure_code,omitempty"`
}

// Injected counts the faults injected since start, for a harness's report.
type Injected struct {
	Declines          int64 `json:"declines"`
	FailBeforeCharge  int64 `json:"fail_before_charge"`
	FailAfterCharge   int64 `json:"fail_after_charge"`
	HangAfterCharge   int64 `json:"hang_after_charge"`
	DuplicateWebhooks int64 `json:"duplicate_webhooks"`
	ReorderedBatches  int64 `json:"reordered_batches"`
	DroppedWebhooks   int64 `json:"dropped_webhooks"`
	FailBeforeRefund  int64 `json:"fail_before_refund"`
	FailAfterRefund   int64 `json:"fail_after_refund"`
	HangAfterRefund   int64 `json:"hang_after_refund"`
	FailBeforePayout  int64 `json:"fail_before_payout"`
	FailAfterPayout   int64 `json:"fail_after_payout"`
	HangAfterPayout   int64 `json:"hang_after_payout"`
	FailedPayouts     int64 `json:"failed_payouts"`
}

// FaultsView is the body of GET /admin/faults (and of POST's answer):
// the faults in force and the counts injected so far.
type FaultsView struct {
	Faults
	Injected Injected `json:"injected"`
}

// Duration is a time.Duration written in JSON as Go syntax ("1.5s").
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string such as "2s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w", s, err)
	}
	*d = Duration(v)
	return nil
}

const (
	defaultHangFor           = 15 * time.Second
	defaultPayoutFailureCode = "account_closed"
	maxFailDestinations      = 100
)

func (f Faults) validate() error {
	var errs []error
	for name, r := range map[string]float64{
		"decline_rate": f.DeclineRate, "fail_before_charge_rate": f.FailBeforeChargeRate,
		"fail_after_charge_rate": f.FailAfterChargeRate, "hang_after_charge_rate": f.HangAfterChargeRate,
		"duplicate_webhook_rate": f.DuplicateWebhookRate, "drop_webhook_rate": f.DropWebhookRate,
		"fail_before_refund_rate": f.FailBeforeRefundRate, "fail_after_refund_rate": f.FailAfterRefundRate,
		"hang_after_refund_rate": f.HangAfterRefundRate, "fail_before_payout_rate": f.FailBeforePayoutRate,
		"fail_after_payout_rate": f.FailAfterPayoutRate, "hang_after_payout_rate": f.HangAfterPayoutRate,
		"payout_failure_rate": f.PayoutFailureRate,
	} {
		if !(r >= 0 && r <= maxFaultRate) { // also refuses NaN
			errs = append(errs, fmt.Errorf("faults: %s %v: want 0 to 1", name, r))
		}
	}
	if f.HangFor < 0 || time.Duration(f.HangFor) > maxHangFor {
		errs = append(errs, fmt.Errorf("faults: hang_for %s: want 0 (default %s) to %s", time.Duration(f.HangFor), defaultHangFor, maxHangFor))
	}
	if f.LatencyMS < 0 || int64(f.LatencyMS) > maxLatency.Milliseconds() {
		errs = append(errs, fmt.Errorf("faults: latency_ms %d: want 0 to %d", f.LatencyMS, maxLatency.Milliseconds()))
	}
	if f.FailNextPayouts < 0 || f.FailNextPayouts > 1_000_000 {
		errs = append(errs, fmt.Errorf("faults: fail_next_payouts %d: want 0 to 1000000", f.FailNextPayouts))
	}
	if len(f.FailPayoutDestinations) > maxFailDestinations {
		errs = append(errs, fmt.Errorf("faults: fail_payout_destinations: at most %d", maxFailDestinations))
	}
	for _, d := range f.FailPayoutDestinations {
		if msg := checkText(d, maxReferenceLen, true); msg != "" {
			errs = append(errs, fmt.Errorf("faults: fail_payout_destinations: a destination %s", msg))
		}
	}
	if f.PayoutFailureCode != "" && !validFailureCode(f.PayoutFailureCode) {
		errs = append(errs, fmt.Errorf("faults: payout_failure_code %q: want 1 to 64 of a-z, 0-9, _", f.PayoutFailureCode))
	}
	return errors.Join(errs...)
}

func validFailureCode(c string) bool {
	if len(c) == 0 || len(c) > 64 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !(b >= 'a' && b <= 'z' || b >= '0' && b <= '9' || b == '_') {
			return false
		}
	}
	return true
}

// faultState is the faults in force, their random source and the counts.
type faultState struct {
	mu       sync.Mutex
	f        Faults
	rng      *rand.Rand
	injected Injected
	failNext int // payouts still to fail of f.FailNextPayouts
}

func newFaultState(f Faults) *faultState {
	s := &faultState{}
	s.set(f)
	return s
}

// set replaces the faults and restarts the random sequence from the seed;
// the counts keep running.
func (s *faultState) set(f Faults) {
	if f.HangFor == 0 {
		f.HangFor = Duration(defaultHangFor)
	}
	if f.PayoutFailureCode == "" {
		f.PayoutFailureCode = defaultPayoutFailureCode
	}
	f.FailPayoutDestinations = append([]string(nil), f.FailPayoutDestinations...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f = f
	s.failNext = f.FailNextPayouts
	// The second PCG word is fixed so that a seed alone names the sequence.
	s.rng = rand.New(rand.NewPCG(f.Seed, 0x9e3779b97f4a7c15))
}

func (s *faultState) view() FaultsView {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.f
	f.FailNextPayouts = s.failNext // what is left
	f.FailPayoutDestinations = append([]string(nil), f.FailPayoutDestinations...)
	return FaultsView{Faults: f, Injected: s.injected}
}

// hit draws against rate; 0 and 1 draw nothing, so turning one fault fully
// on or off does not shift the others' sequence. Callers hold mu.
func (s *faultState) hit(rate float64) bool {
	switch {
	case rate <= 0:
		return false
	case rate >= 1:
		return true
	}
	return s.rng.Float64() < rate
}

func (s *faultState) latency() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return time.Duration(s.f.LatencyMS) * time.Millisecond
}

func (s *faultState) decline() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hit(s.f.DeclineRate) {
		s.injected.Declines++
		return true
	}
	return false
}

// webhookPlan decides, for one claimed event, whether it is dropped (only on
// its first attempt: a dropped event is never sent) and how many copies go
// out.
func (s *faultState) webhookPlan(firstAttempt bool) (drop bool, copies int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if firstAttempt && s.hit(s.f.DropWebhookRate) {
		s.injected.DroppedWebhooks++
		return true, 0
	}
	if s.hit(s.f.DuplicateWebhookRate) {
		s.injected.DuplicateWebhooks++
		return false, 2 + s.rng.IntN(2)
	}
	return false, 1
}

func (s *faultState) reverseBatch(n int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f.OutOfOrderWebhooks && n > 1 {
		s.injected.ReorderedBatches++
		return true
	}
	return false
}

// requestKind names the endpoints the before/after-commit faults apply to.
type requestKind int

const (
	kindCharge requestKind = iota // create or confirm a payment
	kindRefund
	kindPayout
)

func (k requestKind) String() string {
	switch k {
	case kindRefund:
		return "refund"
	case kindPayout:
		return "payout"
	}
	return "charge"
}

// knobs returns kind's fault rates (500 before the work, 500 and hang after
// its commit) and the counters they feed.
func (s *faultState) knobs(k requestKind) (before, fail, hang float64, nBefore, nFail, nHang *int64) {
	switch k {
	case kindRefund:
		return s.f.FailBeforeRefundRate, s.f.FailAfterRefundRate, s.f.HangAfterRefundRate,
			&s.injected.FailBeforeRefund, &s.injected.FailAfterRefund, &s.injected.HangAfterRefund
	case kindPayout:
		return s.f.FailBeforePayoutRate, s.f.FailAfterPayoutRate, s.f.HangAfterPayoutRate,
			&s.injected.FailBeforePayout, &s.injected.FailAfterPayout, &s.injected.HangAfterPayout
	}
	return s.f.FailBeforeChargeRate, s.f.FailAfterChargeRate, s.f.HangAfterChargeRate,
		&s.injected.FailBeforeCharge, &s.injected.FailAfterCharge, &s.injected.HangAfterCharge
}

// failBefore decides whether a request of kind k fails with a 500 before
// doing anything.
func (s *faultState) failBefore(k requestKind) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rate, _, _, n, _, _ := s.knobs(k)
	if s.hit(rate) {
		*n++
		return true
	}
	return false
}

// afterCommit decides the fate of the response to a request of kind k
// whose transaction committed: a 500, a hang, or neither.
func (s *faultState) afterCommit(k requestKind) (fail bool, hang time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, failRate, hangRate, _, failN, hangN := s.knobs(k)
	if s.hit(failRate) {
		*failN++
		return true, 0
	}
	if s.hit(hangRate) {
		*hangN++
		return false, time.Duration(s.f.HangFor)
	}
	return false, 0
}

// payoutFailure decides, when a payout is created, whether it will fail
// and with which code ("" when it will be paid).
func (s *faultState) payoutFailure(destination string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := false
	switch {
	case s.failNext > 0:
		s.failNext--
		fail = true
	case slices.Contains(s.f.FailPayoutDestinations, destination):
		fail = true
	default:
		fail = s.hit(s.f.PayoutFailureRate)
	}
	if !fail {
		return ""
	}
	s.injected.FailedPayouts++
	return s.f.PayoutFailureCode
}
