package executor

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one registrar attempt (label of paypipe_executor_attempts_total).
const (
	outcomeRegistered = "registered" // the PSP has the payment; registered event written
	outcomeRejected   = "rejected"   // permanent refusal; rejected event written
	outcomeUnknown    = "unknown"    // no answer; retried later with the same key
	outcomeStuck      = "stuck"      // no answer within GiveUpAfter; operator needed
	outcomeLeaseLost  = "lease_lost" // another registrar took the row over; result dropped
	outcomeError      = "error"      // our own database failed; the lease will expire
)

// Results of one resolver poll (label of paypipe_executor_polls_total).
const (
	pollFinal     = "final"   // status became final; resolved event written
	pollUnchanged = "pending" // still not final; polled again later
	pollError     = "error"   // the PSP or the database failed; polled again later
	pollHorizon   = "horizon" // gave up polling at ResolveHorizon
	pollLeaseLost = "lease_lost"
)

type metrics struct {
	attempts *prometheus.CounterVec
	stuck    prometheus.Counter
	inFlight prometheus.Gauge
	polls    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_executor_attempts_total",
			Help: "PSP payment attempts by outcome: registered, rejected, unknown (retried with the same key), stuck, lease_lost, error.",
		}, []string{"outcome"}),
		stuck: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paypipe_executor_stuck_total",
			Help: "Checkouts marked stuck: no answer from the PSP within the give-up window. Each needs an operator.",
		}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "paypipe_executor_in_flight",
			Help: "Attempts and polls in progress in this process: a PSP call and the write-back of its answer.",
		}),
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_executor_polls_total",
			Help: "Resolver polls of registered payments by result: final, pending, error, horizon, lease_lost.",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	m.attempts, err = register(reg, m.attempts)
	if err != nil {
		return nil, err
	}
	if m.stuck, err = register(reg, m.stuck); err != nil {
		return nil, err
	}
	if m.inFlight, err = register(reg, m.inFlight); err != nil {
		return nil, err
	}
	if m.polls, err = register(reg, m.polls); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so that several executors in one process share their metrics.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, fmt.Errorf("executor: register metrics: %w", err)
	}
	return c, nil
}
