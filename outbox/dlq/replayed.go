package dlq

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// ReplayedCollector reports paypipe_dlq_replayed_total{consumer} and
// paypipe_dlq_purged_total{consumer}. Replays and purges run in the
// operator's `paypipe dlq` process, which nothing scrapes; the audit table
// (ops.dlq_audit) is their durable record, so the counters are read from it
// when Prometheus scrapes a serving process. They only ever grow: audit rows
// are append-only.
type ReplayedCollector struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	replayed *prometheus.Desc
	purged   *prometheus.Desc
}

// NewReplayedCollector returns the collector; register it yourself.
func NewReplayedCollector(pool *pgxpool.Pool, log *slog.Logger) *ReplayedCollector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &ReplayedCollector{
		pool: pool, log: log,
		replayed: prometheus.NewDesc("paypipe_dlq_replayed_total", "Dead letters replayed by operators (paypipe dlq replay), from the audit trail.", []string{"consumer"}, nil),
		purged:   prometheus.NewDesc("paypipe_dlq_purged_total", "Dead letters purged by operators (paypipe dlq purge), from the audit trail.", []string{"consumer"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *ReplayedCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.replayed
	ch <- c.purged
}

// Collect implements prometheus.Collector. If the audit cannot be read the
// series are left out of the scrape (and logged), never reported as zero.
func (c *ReplayedCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	rows, err := c.pool.Query(ctx, `SELECT action, consumer, count(*) FROM ops.dlq_audit GROUP BY action, consumer`)
	if err != nil {
		c.log.Warn("dlq audit scrape failed", "err", err)
		return
	}
	type count struct {
		action, consumer string
		n                int64
	}
	counts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (count, error) {
		var x count
		err := r.Scan(&x.action, &x.consumer, &x.n)
		return x, err
	})
	if err != nil {
		c.log.Warn("dlq audit scrape failed", "err", err)
		return
	}
	for _, x := range counts {
		desc := c.purged
		if x.action == ActionReplay {
			desc = c.replayed
		}
		ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(x.n), x.consumer)
	}
}
