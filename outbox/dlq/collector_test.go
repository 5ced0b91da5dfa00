package dlq_test

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/dlq"
)

// Depth is per consumer, over all its original subjects; a declared consumer
// without dead letters reports 0, and an unreadable DLQ reports nothing
// rather than a reassuring 0.
func TestDepthCollector(t *testing.T) {
	t.Parallel()
	e := newMvEnv(t)
	ctx := context.Background()
	pub, err := dlq.NewPublisher(dlq.PublisherConfig{JetStream: e.js})
	if err != nil {
		t.Fatal(err)
	}
	for i, d := range []struct{ consumer, subject string }{
		{contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded},
		{contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded},
		{contracts.LedgerPaymentsConsumer, contracts.SubjectOrderFailed},
		{contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded},
		{"someone-else", contracts.SubjectLedgerEntryPosted},
	} {
		err := pub.DeadLetter(ctx, outbox.DeadLetter{
			Consumer: d.consumer, Stream: contracts.StreamOf(d.subject), Sequence: uint64(i + 1), Subject: d.subject,
			Payload: []byte(`{}`), Attempts: 1, Permanent: true,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	col, err := dlq.NewDepthCollector(dlq.DepthConfig{JetStream: e.js, Consumers: []string{
		contracts.LedgerPaymentsConsumer, contracts.WalletPaymentsConsumer, contracts.ExecutorCheckoutsConsumer,
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP paypipe_dlq_depth Dead letters in the DLQ stream per consumer that gave up.
# TYPE paypipe_dlq_depth gauge
paypipe_dlq_depth{consumer="executor-checkouts"} 0
paypipe_dlq_depth{consumer="ledger-payments"} 3
paypipe_dlq_depth{consumer="someone-else"} 1
paypipe_dlq_depth{consumer="wallet-payments"} 1
`
	if err := testutil.CollectAndCompare(col, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}

	if err := e.js.DeleteStream(ctx, contracts.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(col); n != 0 {
		t.Fatalf("%d series without a DLQ stream, want none", n)
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(col); err != nil {
		t.Fatal(err)
	}
}
