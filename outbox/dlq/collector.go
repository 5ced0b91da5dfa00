package dlq

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
)

// DepthConfig configures a DepthCollector.
type DepthConfig struct {
	// JetStream is required.
	JetStream jetstream.JetStream
	// Stream is the DLQ stream: default contracts.StreamDLQ.
	Stream string
	// Consumers are reported even with an empty DLQ (depth 0), so that an
	// alert on depth > 0 has a series to watch before the first dead
	// letter. Others appear once they have dead letters.
	Consumers []string
	// Timeout bounds one scrape's reads: default 2s.
	Timeout time.Duration
	// MaxSubjects bounds how many distinct DLQ subjects a scrape reads
	// (the server pages them): default 100,000. Above it the scrape reports
	// nothing and logs, rather than stall Prometheus.
	MaxSubjects int
	Logger      *slog.Logger
}

// DepthCollector reports paypipe_dlq_depth{consumer}: the dead letters each
// consumer has in the DLQ, read from the stream's per-subject counts
// (dlq.<consumer>.<original subject>) when Prometheus scrapes. A purge or
// an expiry (MaxAge) lowers it; a replay does not, the entry stays until
// purged.
type DepthCollector struct {
	cfg   DepthConfig
	depth *prometheus.Desc
}

// NewDepthCollector returns a collector; register it yourself.
func NewDepthCollector(cfg DepthConfig) (*DepthCollector, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("dlq: depth collector needs JetStream")
	}
	if cfg.Stream == "" {
		cfg.Stream = contracts.StreamDLQ
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.MaxSubjects <= 0 {
		cfg.MaxSubjects = 100_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &DepthCollector{
		cfg:   cfg,
		depth: prometheus.NewDesc("paypipe_dlq_depth", "Dead letters in the DLQ stream per consumer that gave up.", []string{"consumer"}, nil),
	}, nil
}

// Describe implements prometheus.Collector.
func (c *DepthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.depth }

// Collect implements prometheus.Collector. If the stream cannot be read in
// time the scrape leaves the metric out (and logs) rather than report zero:
// an unknown depth must not look like an empty DLQ.
func (c *DepthCollector) Collect(ch chan<- prometheus.Metric) {
	depth, err := c.Depth(context.Background())
	if err != nil {
		c.cfg.Logger.Warn("dlq depth scrape failed", "stream", c.cfg.Stream, "err", err)
		return
	}
	for consumer, n := range depth {
		ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(n), consumer)
	}
}

// errTooManySubjects is returned by Depth above MaxSubjects.
var errTooManySubjects = errors.New("dlq: too many DLQ subjects to count per scrape")

// Depth returns the number of dead letters per consumer (every configured
// consumer included), reading the stream within Timeout.
func (c *DepthCollector) Depth(ctx context.Context) (map[string]uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	s, err := c.cfg.JetStream.Stream(ctx, c.cfg.Stream)
	if err != nil {
		return nil, err
	}
	// The cheap call first: the subject count decides whether the paged
	// per-subject read is affordable.
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.NumSubjects > uint64(c.cfg.MaxSubjects) {
		return nil, errTooManySubjects
	}
	out := make(map[string]uint64, len(c.cfg.Consumers))
	for _, name := range c.cfg.Consumers {
		out[name] = 0
	}
	if info.State.Msgs == 0 {
		return out, nil
	}
	info, err = s.Info(ctx, jetstream.WithSubjectFilter(SubjectPrefix+">"))
	if err != nil {
		return nil, err
	}
	for subject, n := range info.State.Subjects {
		consumer, _, ok := strings.Cut(strings.TrimPrefix(subject, SubjectPrefix), ".")
		if !ok {
			continue
		}
		out[consumer] += n
	}
	return out, nil
}
