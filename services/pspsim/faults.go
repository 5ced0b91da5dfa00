package pspsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
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

const defaultHangFor = 15 * time.Second

func (f Faults) validate() error {
	var errs []error
	for name, r := range map[string]float64{
		"decline_rate": f.DeclineRate, "fail_before_charge_rate": f.FailBeforeChargeRate,
		"fail_after_charge_rate": f.FailAfterChargeRate, "hang_after_charge_rate": f.HangAfterChargeRate,
		"duplicate_webhook_rate": f.DuplicateWebhookRate, "drop_webhook_rate": f.DropWebhookRate,
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
	return errors.Join(errs...)
}

// faultState is the faults in force, their random source and the counts.
type faultState struct {
	mu       sync.Mutex
	f        Faults
	rng      *rand.Rand
	injected Injected
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
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f = f
	// The second PCG word is fixed so that a seed alone names the sequence.
	s.rng = rand.New(rand.NewPCG(f.Seed, 0x9e3779b97f4a7c15))
}

func (s *faultState) view() FaultsView {
	s.mu.Lock()
	defer s.mu.Unlock()
	return FaultsView{Faults: s.f, Injected: s.injected}
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

func (s *faultState) failBefore() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hit(s.f.FailBeforeChargeRate) {
		s.injected.FailBeforeCharge++
		return true
	}
	return false
}

// afterCommit decides the fate of a response whose transaction committed:
// a 500, a hang, or neither.
func (s *faultState) afterCommit() (fail bool, hang time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hit(s.f.FailAfterChargeRate) {
		s.injected.FailAfterCharge++
		return true, 0
	}
	if s.hit(s.f.HangAfterChargeRate) {
		s.injected.HangAfterCharge++
		return false, time.Duration(s.f.HangFor)
	}
	return false, 0
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
