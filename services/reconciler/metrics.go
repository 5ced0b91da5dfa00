package reconciler

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
)

type metrics struct {
	lines       *prometheus.CounterVec
	mismatches  *prometheus.CounterVec
	runDuration prometheus.Histogram
	runFailures prometheus.Counter
	pspLookups  prometheus.Counter
	openQueue   *prometheus.GaugeVec
	chunkPhase  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_recon_lines_total",
			Help: "Settlement file lines reconciled, by outcome: matched or the mismatch class.",
		}, []string{"outcome"}),
		mismatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_recon_mismatches_total",
			Help: "Mismatches found (new rows in the queues), by class.",
		}, []string{"class"}),
		runDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "paypipe_recon_run_duration_seconds",
			Help:    "Duration of completed reconciliation runs (download excluded when a file is given).",
			Buckets: []float64{0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600},
		}),
		runFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paypipe_recon_run_failures_total",
			Help: "Reconciliation runs that stopped before completing (they resume on the next run).",
		}),
		pspLookups: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paypipe_recon_psp_lookups_total",
			Help: "PSP look-ups of charges the ledger did not know.",
		}),
		openQueue: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "paypipe_recon_open_mismatches",
			Help: "Open mismatches per queue (auto, finance, investigation), as of the last run or resolution.",
		}, []string{"queue"}),
		chunkPhase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "paypipe_recon_chunk_phase_seconds",
			Help:    "Time one file chunk spends per phase (read, lookup, classify, settle, mismatches, resolve, outbox, cursor, commit): where a slow run's time goes.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1},
		}, []string{"phase"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lines, m.mismatches, m.runDuration, m.runFailures, m.pspLookups, m.openQueue, m.chunkPhase} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}

// refreshQueueDepth sets the open-queue gauges from the table.
func (r *Reconciler) refreshQueueDepth(ctx context.Context) {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	depth := map[string]float64{contracts.QueueAuto: 0, contracts.QueueFinance: 0, contracts.QueueInvestigation: 0}
	rows, err := r.pool.Query(qctx, `SELECT queue, count(*) FROM recon.mismatches WHERE status = 'open' GROUP BY queue`)
	if err != nil {
		r.log.WarnContext(ctx, "queue depth not refreshed", "err", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var q string
		var n int64
		if err := rows.Scan(&q, &n); err != nil {
			return
		}
		depth[q] = float64(n)
	}
	if rows.Err() != nil {
		return
	}
	for q, n := range depth {
		r.m.openQueue.WithLabelValues(q).Set(n)
	}
}

// phaseClock attributes a chunk's wall time to its phases.
type phaseClock struct {
	h    *prometheus.HistogramVec
	last time.Time
}

func (m *metrics) clock() *phaseClock { return &phaseClock{h: m.chunkPhase, last: time.Now()} }

// lap records the time since the previous lap as phase.
func (c *phaseClock) lap(phase string) {
	now := time.Now()
	c.h.WithLabelValues(phase).Observe(now.Sub(c.last).Seconds())
	c.last = now
}
