package dlq

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paypipe/paypipe/internal/testenv"
)

func TestReplayedCollector(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Migrated(t, Schema())
	ctx := context.Background()
	for _, row := range []struct{ action, consumer, id string }{
		{"replay", "ledger-payments", "01a216ca-e156-7079-b7c8-e72e2c538e71"},
		{"replay", "ledger-payments", "01a216ca-e156-7079-b7c8-e72e2c538e72"},
		{"purge", "wallet-payments", ""},
	} {
		var newID any
		var stream, seq any
		if row.action == "replay" {
			newID, stream, seq = row.id, "PAYMENTS", 7
		}
		if _, err := pool.Exec(ctx, `INSERT INTO ops.dlq_audit (action, dlq_stream, dlq_stream_seq, consumer, original_stream, original_subject,
  msg_id, new_nats_msg_id, replay_stream, replay_stream_seq, actor) VALUES ($1, 'DLQ', 1, $2, 'PAYMENTS', 'payments.order.succeeded', 'x', $3, $4, $5, 'test')`,
			row.action, row.consumer, newID, stream, seq); err != nil {
			t.Fatal(err)
		}
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewReplayedCollector(pool, nil))
	want := `
# HELP paypipe_dlq_purged_total Dead letters purged by operators (paypipe dlq purge), from the audit trail.
# TYPE paypipe_dlq_purged_total counter
paypipe_dlq_purged_total{consumer="wallet-payments"} 1
# HELP paypipe_dlq_replayed_total Dead letters replayed by operators (paypipe dlq replay), from the audit trail.
# TYPE paypipe_dlq_replayed_total counter
paypipe_dlq_replayed_total{consumer="ledger-payments"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
