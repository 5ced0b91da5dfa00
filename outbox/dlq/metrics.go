package dlq

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the dead-letter metrics of a process. One Metrics is shared by
// the Publisher every consumer runner uses and by the Mover, so a message is
// counted once whichever of them stored it.
type Metrics struct {
	deadLettered *prometheus.CounterVec
	lost         *prometheus.CounterVec
	advisories   *prometheus.CounterVec
}

// Advisory results (paypipe_dlq_advisories_total{result}).
const (
	resultMoved     = "moved"     // copied to the DLQ
	resultDuplicate = "duplicate" // the DLQ already had it (the consumer dead-lettered it itself)
	resultSkipped   = "skipped"   // nothing to do: our own Term, or about the DLQ or ADVISORIES streams
	resultLost      = "lost"      // the original is gone (aged out, deleted): counted in paypipe_dlq_lost_total
	resultFailed    = "failed"    // transient failure, nacked for another try
	resultInvalid   = "invalid"   // not an advisory the mover understands
)

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		deadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_dlq_dead_lettered_total",
			Help: "Messages stored in the DLQ, by the consumer that gave up and reason (permanent, max_deliveries, terminated). A re-publish the DLQ deduplicated is not counted.",
		}, []string{"consumer", "reason"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_dlq_lost_total",
			Help: "Dead messages the DLQ mover could not copy because the original was gone from its stream (aged out or deleted). Alert on any increase.",
		}, []string{"consumer"}),
		advisories: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_dlq_advisories_total",
			Help: "MAX_DELIVERIES and MSG_TERMINATED advisories handled by the DLQ mover, by kind and result (moved, duplicate, skipped, lost, failed, invalid).",
		}, []string{"kind", "result"}),
	}
	if reg != nil {
		reg.MustRegister(m.deadLettered, m.lost, m.advisories)
	}
	return m
}

func (m *Metrics) storedDeadLetter(consumer, reason string) {
	if m != nil {
		m.deadLettered.WithLabelValues(consumer, reason).Inc()
	}
}

func (m *Metrics) lostDeadLetter(consumer string) {
	if m != nil {
		m.lost.WithLabelValues(consumer).Inc()
	}
}

func (m *Metrics) advisory(kind, result string) {
	if m != nil {
		m.advisories.WithLabelValues(kind, result).Inc()
	}
}
