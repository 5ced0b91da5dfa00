package outbox

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Crash points for the fault tests (package outbox_test).

func WithAfterPublish(cfg RelayConfig, f func(ctx context.Context, tx pgx.Tx) error) RelayConfig {
	cfg.afterPublish = f
	return cfg
}

func WithBeforeCommit(cfg RunnerConfig, f func(ctx context.Context, tx pgx.Tx) error) RunnerConfig {
	cfg.hooks.inbox.beforeCommit = f
	return cfg
}

func WithAfterCommit(cfg RunnerConfig, f func(Delivery)) RunnerConfig {
	cfg.hooks.afterCommit = f
	return cfg
}

func (m *Metrics) ConsumerCount(consumer, result string) float64 {
	return testutil.ToFloat64(m.consumerMsgs.WithLabelValues(consumer, result))
}

func (m *Metrics) RelayCount(schema, result string) float64 {
	return testutil.ToFloat64(m.relayRows.WithLabelValues(schema, result))
}
