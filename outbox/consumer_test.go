package outbox_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
)

// 50 concurrent deliveries of one message: the inbox's primary key lets
// exactly one apply the effect.
func TestInboxConcurrentSameMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := uuid.Must(uuid.NewV7())
	var applied atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := e.store.Handle(context.Background(), e.pool, testConsumer, id, testSubject,
				func(ctx context.Context, tx pgx.Tx) error {
					return recordEffect(ctx, tx, outbox.Delivery{MsgID: id})
				})
			if err != nil {
				t.Error(err)
			}
			if ok {
				applied.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if applied.Load() != 1 {
		t.Fatalf("%d handlers applied the message, want 1", applied.Load())
	}
	if got := e.effects(t)[id]; got != 1 {
		t.Fatalf("effect applied %d times, want 1", got)
	}
}

// The same event reaches the consumer 50 times as distinct NATS messages
// (as after redeliveries, republishes past the duplicate window, or DLQ
// replays): the runner applies it once and acks the rest as duplicates.
func TestRunnerSameEventDelivered50Times(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := uuid.Must(uuid.NewV7())
	for i := 0; i < 50; i++ {
		m := nats.NewMsg(testSubject)
		m.Header.Set(outbox.HeaderID, id.String())
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", id, i))
		m.Data = []byte(`{}`)
		if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	metrics := outbox.NewMetrics(nil)
	e.runRunner(t, e.nc, outbox.RunnerConfig{Metrics: metrics, Workers: 16})
	testenv.Eventually(t, 30*time.Second, "50 deliveries handled", func() (bool, error) {
		return metrics.ConsumerCount(testConsumer, "applied")+metrics.ConsumerCount(testConsumer, "duplicate") == 50, nil
	})
	if a := metrics.ConsumerCount(testConsumer, "applied"); a != 1 {
		t.Fatalf("applied %v times, want 1", a)
	}
	if got := e.effects(t)[id]; got != 1 {
		t.Fatalf("effect applied %d times, want 1", got)
	}
}

// End to end through relay and runner, with the consumer's database
// connection killed before its first commit: nothing of that attempt
// survives, the message is redelivered and applied once.
func TestConsumerCrashBeforeCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ids := e.write(t, 20, 20)
	drain(t, e, e.relay(t, outbox.RelayConfig{}))

	var crashed atomic.Bool
	var redelivered atomic.Uint64
	metrics := outbox.NewMetrics(nil)
	cfg := outbox.WithBeforeCommit(outbox.RunnerConfig{Metrics: metrics}, func(ctx context.Context, tx pgx.Tx) error {
		if crashed.CompareAndSwap(false, true) {
			return terminateBackend(ctx, tx)
		}
		return nil
	})
	cfg = outbox.WithAfterCommit(cfg, func(d outbox.Delivery) {
		if d.NumDelivered > 1 {
			redelivered.Add(1)
		}
	})
	e.runRunner(t, e.nc, cfg)
	testenv.Eventually(t, 30*time.Second, "all 20 applied", func() (bool, error) {
		return metrics.ConsumerCount(testConsumer, "applied") == 20, nil
	})
	if metrics.ConsumerCount(testConsumer, "error") != 1 || redelivered.Load() != 1 {
		t.Fatalf("errors=%v redelivered=%d, want the one crashed message redelivered",
			metrics.ConsumerCount(testConsumer, "error"), redelivered.Load())
	}
	eff := e.effects(t)
	for _, id := range ids {
		if eff[id] != 1 {
			t.Fatalf("message %s applied %d times, want 1", id, eff[id])
		}
	}
}

// The consumer commits, then its NATS connection dies before the ack. The
// server redelivers after AckWait to a fresh consumer process (new
// connection); its inbox finds the row and acks without a second effect.
func TestConsumerCrashAfterCommitBeforeAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{ackWait: time.Second})
	ids := e.write(t, 1, 1)
	drain(t, e, e.relay(t, outbox.RelayConfig{}))

	nc1 := testenv.Connect(t, e.srv)
	m1 := outbox.NewMetrics(nil)
	committed := make(chan struct{})
	cfg := outbox.WithAfterCommit(outbox.RunnerConfig{Metrics: m1}, func(outbox.Delivery) {
		nc1.Close() // the process dies between commit and ack
		close(committed)
	})
	stop1 := e.runRunner(t, nc1, cfg)
	select {
	case <-committed:
	case <-time.After(30 * time.Second):
		t.Fatal("first consumer never committed")
	}
	stop1()
	if got := e.effects(t)[ids[0]]; got != 1 {
		t.Fatalf("after the first attempt: %d effects, want 1", got)
	}

	m2 := outbox.NewMetrics(nil)
	e.runRunner(t, testenv.Connect(t, e.srv), outbox.RunnerConfig{Metrics: m2})
	testenv.Eventually(t, 30*time.Second, "redelivery skipped by the inbox", func() (bool, error) {
		return m2.ConsumerCount(testConsumer, "duplicate") == 1, nil
	})
	if a := m2.ConsumerCount(testConsumer, "applied"); a != 0 {
		t.Fatalf("second consumer applied %v, want 0", a)
	}
	if got := e.effects(t)[ids[0]]; got != 1 {
		t.Fatalf("effects %d, want 1", got)
	}
}

// With a 1 s duplicate window, a re-send after the window is stored again:
// the stream holds two copies, and the consumer's inbox applies the effect once.
func TestRepublishAfterDuplicateWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{duplicates: time.Second})
	ctx := context.Background()
	ids := e.write(t, 1, 1)
	r := e.relay(t, outbox.RelayConfig{})
	if sum := drain(t, e, r); sum.Published != 1 {
		t.Fatalf("%+v", sum)
	}
	// Re-drive until the broker stores the copy as new: inside the window
	// it answers Duplicate and stores nothing.
	var dupsInWindow int
	testenv.Eventually(t, 15*time.Second, "a re-send stored after the window", func() (bool, error) {
		if _, err := e.store.Redrive(ctx, e.pool, time.Now().Add(-time.Hour)); err != nil {
			return false, err
		}
		sum := drain(t, e, r)
		dupsInWindow += sum.Duplicates
		return sum.Published == 1, nil
	})
	counts := e.streamIDs(t)
	if counts[ids[0].String()] != 2 || len(counts) != 1 {
		t.Fatalf("stream ids %v, want the one id twice", counts)
	}
	metrics := outbox.NewMetrics(nil)
	e.runRunner(t, e.nc, outbox.RunnerConfig{Metrics: metrics})
	testenv.Eventually(t, 30*time.Second, "both copies handled", func() (bool, error) {
		return metrics.ConsumerCount(testConsumer, "applied")+metrics.ConsumerCount(testConsumer, "duplicate") == 2, nil
	})
	if metrics.ConsumerCount(testConsumer, "applied") != 1 {
		t.Fatalf("applied %v, want 1", metrics.ConsumerCount(testConsumer, "applied"))
	}
	if got := e.effects(t)[ids[0]]; got != 1 {
		t.Fatalf("effects %d, want 1", got)
	}
	t.Logf("re-sends answered Duplicate inside the window: %d", dupsInWindow)
}

// A handler error rolls back its writes (including outbox rows it wrote) and
// the message is retried; a handler's outgoing messages commit with its effect.
func TestHandlerErrorRollsBackOutgoingMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	in := uuid.Must(uuid.NewV7())
	attempt := 0
	for {
		attempt++
		_, err := e.store.Handle(ctx, e.pool, testConsumer, in, testSubject, func(ctx context.Context, tx pgx.Tx) error {
			out := &outbox.Message{Subject: "t.next.happened", Type: "t.next.v1", Source: "test", Payload: []byte(`{}`)}
			if err := e.store.Write(ctx, tx, out); err != nil {
				return err
			}
			if attempt == 1 {
				return fmt.Errorf("transient failure")
			}
			return nil
		})
		if attempt == 1 {
			if err == nil {
				t.Fatal("first attempt should fail")
			}
			if b := e.backlog(t); b != 0 {
				t.Fatalf("failed attempt left %d outbox rows", b)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if b := e.backlog(t); b != 1 {
		t.Fatalf("backlog %d, want the one outgoing message", b)
	}
}
