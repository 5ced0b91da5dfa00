package outbox

import (
	"context"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's and consumers' Prometheus metrics. One Metrics is
// shared by every relay and consumer of a process; labels tell them apart.
type Metrics struct {
	relayRows      *prometheus.CounterVec
	relayBatch     *prometheus.HistogramVec
	relayLag       *prometheus.HistogramVec
	relayFallbacks *prometheus.CounterVec
	consumerMsgs   *prometheus.CounterVec
	consumerTime   *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		relayRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_outbox_relay_rows_total",
			Help: "Outbox rows handled by relays, by result: published (stored as new), duplicate (PubAck said already stored), failed (left pending with backoff).",
		}, []string{"schema", "result"}),
		relayBatch: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "paypipe_outbox_relay_batch_size",
			Help:    "Rows claimed per non-empty relay pass.",
			Buckets: []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000},
		}, []string{"schema"}),
		relayLag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "paypipe_outbox_relay_lag_seconds",
			Help:    "Time from the outbox row's insert (in the committing transaction) to its PubAck.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300},
		}, []string{"schema"}),
		relayFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_outbox_relay_batch_fallbacks_total",
			Help: "Atomic batches the server refused and the relay re-sent one message at a time.",
		}, []string{"schema"}),
		consumerMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paypipe_consumer_messages_total",
			Help: "Deliveries handled by consumers, by result: applied, duplicate (inbox already had it), error (nacked for redelivery), dead_lettered (stored in the DLQ, then terminated).",
		}, []string{"consumer", "result"}),
		consumerTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "paypipe_consumer_handle_seconds",
			Help:    "Handler transaction time, inbox claim to commit.",
			Buckets: prometheus.DefBuckets,
		}, []string{"consumer"}),
	}
	if reg != nil {
		reg.MustRegister(m.relayRows, m.relayBatch, m.relayLag, m.relayFallbacks, m.consumerMsgs, m.consumerTime)
	}
	return m
}

// BacklogCollector reports each store's outbox backlog and the age of its
// oldest pending row, read from PostgreSQL when Prometheus scrapes.
type BacklogCollector struct {
	pool    *pgxpool.Pool
	stores  []Store
	log     *slog.Logger
	backlog *prometheus.Desc
	oldest  *prometheus.Desc
}

// NewBacklogCollector returns a collector for stores; register it yourself.
func NewBacklogCollector(pool *pgxpool.Pool, log *slog.Logger, stores ...Store) *BacklogCollector {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &BacklogCollector{
		pool: pool, stores: stores, log: log,
		backlog: prometheus.NewDesc("paypipe_outbox_backlog", "Outbox rows not yet published.", []string{"schema"}, nil),
		oldest:  prometheus.NewDesc("paypipe_outbox_oldest_pending_age_seconds", "Age of the oldest unpublished outbox row (0 when none).", []string{"schema"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.oldest
}

// Collect implements prometheus.Collector. A store that cannot be read is
// left out of the scrape (and logged) rather than reported as zero.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range c.stores {
		st, err := s.Status(ctx, c.pool)
		if err != nil {
			c.log.Warn("outbox backlog scrape failed", "schema", s.schema, "err", err)
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.Backlog), s.schema)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, st.OldestPendingAge.Seconds(), s.schema)
	}
}
