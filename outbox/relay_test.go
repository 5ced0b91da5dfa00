package outbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
)

// Transaction A inserts first and commits last. A relay polling by an
// increasing id would advance past A's row while A is open and skip it
// forever; the SKIP LOCKED claim must publish every row exactly once.
func TestRelayOutOfOrderCommits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	r := e.relay(t, outbox.RelayConfig{})

	txA, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer txA.Rollback(ctx)
	a := &outbox.Message{Subject: testSubject, Type: "t.v1", Source: "test", Payload: []byte(`{"tx":"A"}`)}
	if err := e.store.Write(ctx, txA, a); err != nil {
		t.Fatal(err)
	}
	idsB := e.write(t, 5, 1) // B commits five rows with higher ids while A is open

	res, err := r.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 5 {
		t.Fatalf("first pass published %d, want B's 5 (A is uncommitted)", res.Published)
	}
	if err := txA.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sum := drain(t, e, r)
	if sum.Published != 1 || sum.Duplicates != 0 {
		t.Fatalf("after A commits: %+v, want A's row published once", sum)
	}
	e.assertExactlyOnce(t, append(idsB, a.ID))
}

// The relay's connection dies after every PubAck arrived and before the
// rows are marked: the rows stay pending, the next relay re-sends them with
// the same Nats-Msg-Id, JetStream answers Duplicate, the stream holds one copy.
func TestRelayKilledBetweenPubAckAndMark(t *testing.T) {
	t.Parallel()
	for _, mode := range []outbox.PublishMode{outbox.PublishAsync, outbox.PublishAtomicBatch} {
		t.Run(mode.String(), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{})
			ctx := context.Background()
			ids := e.write(t, 50, 10)
			streamOf := func(string) string { return testStream }

			crashing := e.relay(t, outbox.WithAfterPublish(outbox.RelayConfig{Mode: mode, StreamOf: streamOf}, terminateBackend))
			if _, err := crashing.RunOnce(ctx); err == nil {
				t.Fatal("relay pass survived its connection being killed")
			}
			if got := len(e.streamIDs(t)); got != 50 {
				t.Fatalf("stream holds %d messages after the crashed pass, want 50 (published before the crash)", got)
			}
			if b := e.backlog(t); b != 50 {
				t.Fatalf("backlog %d after the crash, want 50: rows must stay pending", b)
			}

			// New rows join the re-sent ones: in atomic mode the batch now mixes
			// duplicates and new ids, the server refuses it whole, and the relay
			// falls back to one-by-one sends.
			more := e.write(t, 10, 10)
			metrics := outbox.NewMetrics(nil)
			r := e.relay(t, outbox.RelayConfig{Mode: mode, StreamOf: streamOf, Metrics: metrics})
			sum := drain(t, e, r)
			if sum.Duplicates != 50 || sum.Published != 10 || sum.Failed != 0 {
				t.Fatalf("restart pass: %+v, want 50 duplicates and 10 published", sum)
			}
			e.assertExactlyOnce(t, append(ids, more...))
		})
	}
}

// A clean atomic batch pass stores everything with one PubAck per batch.
func TestRelayAtomicBatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ids := e.write(t, 1200, 100)
	metrics := outbox.NewMetrics(nil)
	r := e.relay(t, outbox.RelayConfig{Mode: outbox.PublishAtomicBatch, BatchSize: 1000, Metrics: metrics,
		StreamOf: func(string) string { return testStream }})
	sum := drain(t, e, r)
	if sum.Published != 1200 || sum.Duplicates != 0 {
		t.Fatalf("%+v, want 1200 published", sum)
	}
	e.assertExactlyOnce(t, ids)
}

// Three relays drain 20,000 rows together: SKIP LOCKED gives each row to one
// relay, so no row is sent twice (no Duplicate acks) and none is missed.
func TestThreeRelays(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ids := e.write(t, 20_000, 1000)
	var wg sync.WaitGroup
	var published, dups, failed atomic.Int64
	for i := 0; i < 3; i++ {
		r := e.relay(t, outbox.RelayConfig{BatchSize: 200})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for empty := 0; empty < 3; {
				res, err := r.RunOnce(context.Background())
				if err != nil {
					t.Error(err)
					return
				}
				published.Add(int64(res.Published))
				dups.Add(int64(res.Duplicates))
				failed.Add(int64(res.Failed))
				if res.Claimed == 0 {
					empty++
				}
			}
		}()
	}
	wg.Wait()
	if published.Load() != 20_000 || dups.Load() != 0 || failed.Load() != 0 {
		t.Fatalf("published=%d duplicates=%d failed=%d, want 20000/0/0", published.Load(), dups.Load(), failed.Load())
	}
	if b := e.backlog(t); b != 0 {
		t.Fatalf("backlog %d", b)
	}
	e.assertExactlyOnce(t, ids)
}

// nats-server is stopped and restarted on the same store while writers and a
// relay run through 10,000 events: nothing is lost, nothing is duplicated in
// the stream, and the checkout side (the writers) never waits for the broker.
func TestRelayNATSRestartMidRun(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := e.relay(t, outbox.RelayConfig{PublishTimeout: 2 * time.Second, PollInterval: 5 * time.Millisecond,
		Retry: retry.Policy{Strategy: retry.Fixed, Initial: 50 * time.Millisecond}})
	relayDone := make(chan error, 1)
	go func() { relayDone <- r.Run(ctx) }()

	const writers, perWriter = 10, 1000
	var mu sync.Mutex
	var ids []uuid.UUID
	var written atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perWriter; i += 10 {
				var batch []uuid.UUID
				err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
					msgs := make([]*outbox.Message, 10)
					for k := range msgs {
						msgs[k] = &outbox.Message{Subject: testSubject, Type: "t.v1", Source: "test", Payload: []byte(`{}`)}
					}
					if err := e.store.Write(ctx, tx, msgs...); err != nil {
						return err
					}
					for _, m := range msgs {
						batch = append(batch, m.ID)
					}
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids = append(ids, batch...)
				mu.Unlock()
				written.Add(10)
			}
		}()
	}
	testenv.Eventually(t, 30*time.Second, "2,000 events written", func() (bool, error) { return written.Load() >= 2000, nil })
	e.srv.Stop()
	// Writers keep committing while the broker is down.
	before := written.Load()
	testenv.Eventually(t, 30*time.Second, "writes continuing while NATS is down", func() (bool, error) {
		return written.Load() >= before+1000, nil
	})
	if b := e.backlog(t); b == 0 {
		t.Fatal("no backlog while NATS was down: the outage was not exercised")
	}
	if err := e.srv.Start(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	testenv.Eventually(t, 60*time.Second, "backlog drained after restart", func() (bool, error) {
		st, err := e.store.Status(ctx, e.pool)
		return st.Backlog == 0, err
	})
	cancel()
	if err := <-relayDone; err != nil {
		t.Fatal(err)
	}
	if len(ids) != writers*perWriter {
		t.Fatalf("wrote %d ids, want %d", len(ids), writers*perWriter)
	}
	e.assertExactlyOnce(t, ids)
}

func TestWriteValidates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	bad := []*outbox.Message{
		{Subject: "", Type: "x", Source: "s"},
		{Subject: "a.*.c", Type: "x", Source: "s"},
		{Subject: "a..c", Type: "x", Source: "s"},
		{Subject: "a.b", Source: "s"},
		{Subject: "a.b", Type: "x"},
		{Subject: "a.b", Type: "x", Source: "s", Payload: make([]byte, outbox.MaxPayloadBytes+1)},
		{Subject: "a.b", Type: "x", Source: "s", Headers: map[string]string{outbox.HeaderID: "spoofed"}},
	}
	for i, m := range bad {
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return e.store.Write(ctx, tx, m) })
		if !errors.Is(err, outbox.ErrInvalidMessage) {
			t.Errorf("case %d: err = %v, want ErrInvalidMessage", i, err)
		}
	}
	if b := e.backlog(t); b != 0 {
		t.Fatalf("rejected messages left %d rows", b)
	}
}

// Redrive re-queues published rows; a send inside the duplicate window is
// acknowledged as a duplicate and adds nothing to the stream.
func TestRedriveInsideWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	ids := e.write(t, 20, 20)
	r := e.relay(t, outbox.RelayConfig{})
	drain(t, e, r)
	n, err := e.store.Redrive(ctx, e.pool, time.Now().Add(-time.Hour))
	if err != nil || n != 20 {
		t.Fatalf("redrive = %d, %v; want 20", n, err)
	}
	sum := drain(t, e, r)
	if sum.Duplicates != 20 || sum.Published != 0 {
		t.Fatalf("%+v, want 20 duplicates", sum)
	}
	e.assertExactlyOnce(t, ids)
	if _, err := e.store.Redrive(ctx, e.pool, time.Now().Add(time.Hour)); err == nil {
		t.Fatal("redrive accepted a future time")
	}
}

// A row whose send fails is due again after the relay's retry policy, and
// stays pending (never dropped); a policy that could give up is refused.
func TestRelayRetryPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	for name, p := range map[string]retry.Policy{
		"max attempts": {Strategy: retry.Fixed, Initial: time.Second, MaxAttempts: 5},
		"max elapsed":  {Strategy: retry.Fixed, Initial: time.Second, MaxElapsed: time.Hour},
		"invalid":      {Strategy: retry.Exponential, Initial: time.Second, Jitter: 2},
	} {
		if _, err := outbox.NewRelay(outbox.RelayConfig{Store: e.store, Pool: e.pool, Conn: e.nc, Retry: p}); err == nil {
			t.Errorf("%s: NewRelay accepted %+v", name, p)
		}
	}

	const step = time.Hour
	r := e.relay(t, outbox.RelayConfig{Retry: retry.Policy{Strategy: retry.Incremental, Initial: step, Step: step}})
	// No stream listens on this subject: JetStream answers "no responders".
	msg := &outbox.Message{Subject: "nostream.thing", Type: "t.v1", Source: "paypipe/test", Payload: []byte(`{}`)}
	if err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error { return e.store.Write(ctx, tx, msg) }); err != nil {
		t.Fatal(err)
	}
	for attempt := 1; attempt <= 2; attempt++ {
		res, err := r.RunOnce(ctx)
		if err != nil || res.Claimed != 1 || res.Failed != 1 {
			t.Fatalf("attempt %d: %+v, %v; want the row claimed and failed", attempt, res, err)
		}
		var attempts int
		var wait time.Duration
		if err := e.pool.QueryRow(ctx, `SELECT attempts, next_attempt_at - now() FROM obx.outbox WHERE published_at IS NULL`).Scan(&attempts, &wait); err != nil {
			t.Fatal(err)
		}
		// Incremental: attempt n waits n·step; the test's own statements
		// take well under a minute.
		want := time.Duration(attempt) * step
		if attempts != attempt || wait > want || wait < want-time.Minute {
			t.Fatalf("after attempt %d: attempts %d, due in %s; want %d, about %s", attempt, attempts, wait, attempt, want)
		}
		if res, err := r.RunOnce(ctx); err != nil || res.Claimed != 0 {
			t.Fatalf("row claimed again before its delay: %+v, %v", res, err)
		}
		// Make it due now, keeping its attempt count.
		if _, err := e.pool.Exec(ctx, `UPDATE obx.outbox SET next_attempt_at = now()`); err != nil {
			t.Fatal(err)
		}
	}
}
