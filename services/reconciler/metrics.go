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
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.lines, m.mismatches, m.runDuration, m.runFailures, m.pspLookups, m.openQueue} {
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
