package contracts_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
)

// Declare is run by every replica at start-up: it must be idempotent, keep
// what streams hold, and set the explicit duplicate window on every stream.
func TestDeclareIdempotent(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	js, err := jetstream.New(testenv.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	so := contracts.StreamOptions{Duplicates: 10 * time.Minute}
	if err := contracts.Declare(ctx, js, so, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, contracts.SubjectCheckoutCreated, []byte(`{}`), jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	if err := contracts.Declare(ctx, js, so, contracts.ConsumerOptions{}); err != nil {
		t.Fatalf("second declare: %v", err)
	}
	for _, want := range contracts.Streams(so) {
		s, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Config.Duplicates != 10*time.Minute || info.Config.Storage != jetstream.FileStorage || !info.Config.AllowAtomicPublish {
			t.Errorf("%s: duplicates=%s storage=%v atomic=%v", want.Name, info.Config.Duplicates, info.Config.Storage, info.Config.AllowAtomicPublish)
		}
		if want.Name == contracts.StreamPayments && info.State.Msgs != 1 {
			t.Errorf("%s holds %d messages after re-declare, want 1", want.Name, info.State.Msgs)
		}
	}
	for _, c := range contracts.Consumers(contracts.ConsumerOptions{}) {
		ci, err := js.Consumer(ctx, c.Stream, c.Config.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.Config.Durable, err)
		}
		cfg := ci.CachedInfo().Config
		if cfg.AckPolicy != jetstream.AckExplicitPolicy || cfg.MaxDeliver <= 0 || cfg.AckWait <= 0 {
			t.Errorf("consumer %s: ack=%v max_deliver=%d ack_wait=%s", c.Config.Durable, cfg.AckPolicy, cfg.MaxDeliver, cfg.AckWait)
		}
	}
}

func TestStreamOf(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{
		"payments.order.succeeded": contracts.StreamPayments,
		"ledger.entry.posted":      contracts.StreamLedger,
		"dlq.ledger.payments.x":    contracts.StreamDLQ,
		"paymentsx.order":          "",
		"unknown.thing":            "",
	} {
		if got := contracts.StreamOf(subject); got != want {
			t.Errorf("StreamOf(%q) = %q, want %q", subject, got, want)
		}
	}
}
