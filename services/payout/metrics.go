package payout

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	transitions *prometheus.CounterVec
	calls       *prometheus.CounterVec
	sends       *prometheus.CounterVec
	polls       *prometheus.CounterVec
	webhooks    *prometheus.CounterVec
	stuck       prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_payout_transitions_total",
			Help: "Payout status changes by from and to status (from is empty for a requested payout).",
		}, []string{"from", "to"}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_payout_psp_calls_total",
			Help: "PSP payout API calls by call (create, find, get) and outcome (ok, refused, not_found, unknown).",
		}, []string{"call", "outcome"}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_payout_sends_total",
			Help: "Send attempts by outcome: sent, failed, unknown (retried with the same key), stuck, lease_lost, error.",
		}, []string{"outcome"}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_payout_polls_total",
			Help: "Resolver polls of sent payouts by result: final, pending, error, horizon, quarantined, lease_lost.",
		}, []string{"result"}),
		webhooks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_payout_webhooks_total",
			Help: "PSP payout webhooks by outcome: applied, no_change, ignored, quarantined, duplicate, bad_signature, malformed, error.",
		}, []string{"outcome"}),
		stuck: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paypipe_payout_stuck_total",
			Help: "Payouts marked stuck: no answer from the PSP within the give-up window. Each needs an operator.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	for _, v := range []**prometheus.CounterVec{&m.transitions, &m.calls, &m.sends, &m.polls, &m.webhooks} {
		if *v, err = register(reg, *v); err != nil {
			return nil, err
		}
	}
	if m.stuck, err = register(reg, m.stuck); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so that several services in one process share their metrics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("payout: register metrics: %w", err)
	}
	return c, nil
}
