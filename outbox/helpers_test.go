package outbox_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/natsserver"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
)

const (
	testStream   = "T"
	testSubject  = "t.thing.happened"
	testConsumer = "t-effects"
)

type env struct {
	pool  *pgxpool.Pool
	store outbox.Store
	srv   *natsserver.Server
	nc    *nats.Conn
	js    jetstream.JetStream
}

type envOpts struct {
	duplicates time.Duration
	ackWait    time.Duration
}

// newEnv gives a test a migrated database (schema obx plus an effects table
// the handlers write to), an embedded nats-server and stream T.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	store := outbox.MustStore("obx")
	pool, _ := testenv.Migrated(t, migrate.Schema{Store: store})
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE obx.effects (msg_id uuid NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	srv := testenv.NATS(t)
	nc := testenv.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if o.duplicates == 0 {
		o.duplicates = 2 * time.Minute
	}
	if o.ackWait == 0 {
		o.ackWait = 30 * time.Second
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: testStream, Subjects: []string{"t.>"}, Storage: jetstream.FileStorage,
		Duplicates: o.duplicates, MaxAge: time.Hour, AllowAtomicPublish: true,
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, testStream, jetstream.ConsumerConfig{
		Durable: testConsumer, AckPolicy: jetstream.AckExplicitPolicy, AckWait: o.ackWait,
		MaxDeliver: 20, DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		t.Fatal(err)
	}
	return &env{pool: pool, store: store, srv: srv, nc: nc, js: js}
}

// write commits n messages, per transactions of perTx, and returns their ids.
func (e *env) write(t *testing.T, n, perTx int) []uuid.UUID {
	t.Helper()
	ctx := context.Background()
	var ids []uuid.UUID
	for done := 0; done < n; {
		k := min(perTx, n-done)
		err := pgx.BeginFunc(ctx, e.pool, func(tx pgx.Tx) error {
			msgs := make([]*outbox.Message, k)
			for i := range msgs {
				msgs[i] = &outbox.Message{Subject: testSubject, Type: "t.thing.happened.v1", Source: "paypipe/test",
					Payload: []byte(fmt.Sprintf(`{"n":%d}`, done+i))}
			}
			if err := e.store.Write(ctx, tx, msgs...); err != nil {
				return err
			}
			for _, m := range msgs {
				ids = append(ids, m.ID)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		done += k
	}
	return ids
}

func (e *env) relay(t *testing.T, cfg outbox.RelayConfig) *outbox.Relay {
	t.Helper()
	cfg.Store, cfg.Pool, cfg.Conn = e.store, e.pool, e.nc
	r, err := outbox.NewRelay(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (e *env) backlog(t *testing.T) int64 {
	t.Helper()
	st, err := e.store.Status(context.Background(), e.pool)
	if err != nil {
		t.Fatal(err)
	}
	return st.Backlog
}

// streamIDs reads the whole stream and counts each Nats-Msg-Id.
func (e *env) streamIDs(t *testing.T) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, testStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.State.Msgs)
	counts := map[string]int{}
	if total == 0 {
		return counts
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for seen := 0; seen < total; {
		batch, err := c.Fetch(min(1000, total-seen), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			counts[m.Headers().Get(jetstream.MsgIDHeader)]++
			seen++
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
	return counts
}

// assertExactlyOnce checks that the stream holds each id once and nothing else.
func (e *env) assertExactlyOnce(t *testing.T, ids []uuid.UUID) {
	t.Helper()
	counts := e.streamIDs(t)
	if len(counts) != len(ids) {
		t.Fatalf("stream holds %d distinct ids, want %d", len(counts), len(ids))
	}
	for _, id := range ids {
		if c := counts[id.String()]; c != 1 {
			t.Fatalf("id %s is in the stream %d times, want 1", id, c)
		}
	}
}

// drain runs RunOnce until the backlog is empty, summing the results.
func drain(t *testing.T, e *env, r *outbox.Relay) outbox.BatchResult {
	t.Helper()
	var sum outbox.BatchResult
	deadline := time.Now().Add(60 * time.Second)
	for {
		res, err := r.RunOnce(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		sum.Claimed += res.Claimed
		sum.Published += res.Published
		sum.Duplicates += res.Duplicates
		sum.Failed += res.Failed
		if res.Claimed == 0 && e.backlog(t) == 0 {
			return sum
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained: %+v", sum)
		}
	}
}

// effects counts rows of the effects table per msg id.
func (e *env) effects(t *testing.T) map[uuid.UUID]int {
	t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT msg_id, count(*) FROM obx.effects GROUP BY msg_id`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uuid.UUID]int{}
	for rows.Next() {
		var id uuid.UUID
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		out[id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// recordEffect is the handler every consumer test uses: one effects row per
// applied message, in the inbox transaction.
func recordEffect(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	_, err := tx.Exec(ctx, `INSERT INTO obx.effects (msg_id) VALUES ($1)`, d.MsgID)
	return err
}

// runRunner starts a consumer runner on nc and stops it when the test ends.
func (e *env) runRunner(t *testing.T, nc *nats.Conn, cfg outbox.RunnerConfig) (stop func()) {
	t.Helper()
	cfg.Store, cfg.Pool, cfg.Conn = e.store, e.pool, nc
	if cfg.NakDelay == nil {
		cfg.NakDelay = func(uint64) time.Duration { return 10 * time.Millisecond }
	}
	r, err := outbox.NewRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Add(outbox.ConsumerSpec{Name: testConsumer, Stream: testStream, Handler: recordEffect}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	select {
	case <-r.Running():
	case err := <-done:
		cancel()
		t.Fatalf("runner stopped: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("runner did not start")
	}
	var stopped bool
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("runner did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func terminateBackend(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_terminate_backend(pg_backend_pid())`)
	if err == nil {
		return fmt.Errorf("backend survived pg_terminate_backend")
	}
	return fmt.Errorf("connection killed: %w", err)
}
