package demo_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/demo"
)

func TestValidateOrder(t *testing.T) {
	t.Parallel()
	if err := demo.ValidateOrder("alice", 1, "EUR"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		customer string
		amount   int64
		currency string
		want     string
	}{
		{"alice", 0, "EUR", "positive"},
		{"alice", -5, "EUR", "positive"},
		{"alice", 5, "eur", "upper-case"},
		{"alice", 5, "EURO", "upper-case"},
		{"alice", 5, "", "upper-case"},
		{"  ", 5, "EUR", "customer is required"},
		{strings.Repeat("x", demo.MaxCustomerLen+1), 5, "EUR", "longer than"},
		{"a\x00b", 5, "EUR", "control"},
		{"\xff", 5, "EUR", "UTF-8"},
	} {
		err := demo.ValidateOrder(tc.customer, tc.amount, tc.currency)
		if !errors.Is(err, demo.ErrInvalidOrder) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ValidateOrder(%q, %d, %q) = %v; want ErrInvalidOrder mentioning %q", tc.customer, tc.amount, tc.currency, err, tc.want)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		amount   int64
		currency string
		want     string
	}{
		{1234, "EUR", "12.34"}, {5, "USD", "0.05"}, {1200, "JPY", "1200"}, {1234, "KWD", "1.234"},
		{-1, "EUR", "-0.01"}, {-9223372036854775808, "EUR", "-92233720368547758.08"},
	} {
		if got := demo.FormatAmount(tc.amount, tc.currency); got != tc.want {
			t.Errorf("FormatAmount(%d, %s) = %s, want %s", tc.amount, tc.currency, got, tc.want)
		}
	}
}

func TestPlaceOrderWritesOrderAndEventTogether(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, demo.Schema())

	// Invalid input writes nothing.
	if _, _, err := demo.PlaceOrder(ctx, pool, "bob", 0, "EUR"); !errors.Is(err, demo.ErrInvalidOrder) {
		t.Fatalf("zero amount: %v", err)
	}
	orderID, msgID, err := demo.PlaceOrder(ctx, pool, "alice", 4200, "EUR")
	if err != nil {
		t.Fatal(err)
	}
	var orders, rows int
	var subject, agg string
	var headers map[string]string
	var payload []byte
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM demo.orders`).Scan(&orders); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT count(*), min(subject), min(aggregate_id), (array_agg(headers))[1], (array_agg(payload))[1]
FROM demo.outbox WHERE msg_id = $1`, msgID).Scan(&rows, &subject, &agg, &headers, &payload); err != nil {
		t.Fatal(err)
	}
	if orders != 1 || rows != 1 {
		t.Fatalf("orders=%d outbox rows=%d, want 1 and 1", orders, rows)
	}
	if subject != demo.SubjectOrderPlaced || agg != orderID.String() ||
		headers[outbox.HeaderType] != demo.TypeOrderPlaced || headers[outbox.HeaderSource] != demo.Source ||
		headers[outbox.HeaderAggregateVersion] != "1" || headers[outbox.HeaderID] != msgID.String() {
		t.Fatalf("outbox row: subject=%s aggregate=%s headers=%v", subject, agg, headers)
	}
	var ev demo.OrderPlaced
	if err := json.Unmarshal(payload, &ev); err != nil {
		t.Fatal(err)
	}
	if ev != (demo.OrderPlaced{OrderID: orderID, Customer: "alice", AmountMinor: 4200, Currency: "EUR"}) {
		t.Fatalf("payload %+v", ev)
	}

	// A transaction that rolls back leaves neither the order nor the event.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := demo.PlaceOrderTx(ctx, tx, "carol", 1, "USD"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM demo.orders) + (SELECT count(*) FROM demo.outbox)`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 2 {
		t.Fatalf("after rollback: %d rows in orders+outbox, want 2", rows)
	}
}

// TestPipelineAppliesEveryOrderExactlyOnce runs the real pipeline (PostgreSQL,
// embedded JetStream, relay in atomic-batch mode, runner) and checks the
// totals against the orders three times: after the first delivery, after a
// re-drive of every row (the broker drops the copies), and after a replay of
// every message under new Nats-Msg-Ids (the broker stores them; the inbox
// drops them).
func TestPipelineAppliesEveryOrderExactlyOnce(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pool, _ := testenv.Migrated(t, demo.Schema())
	nc := testenv.Connect(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics := outbox.NewMetrics(reg)
	relay, err := outbox.NewRelay(outbox.RelayConfig{Store: demo.Store, Pool: pool, Conn: nc,
		Mode: outbox.PublishAtomicBatch, StreamOf: contracts.StreamOf, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	runner, err := outbox.NewRunner(outbox.RunnerConfig{Store: demo.Store, Pool: pool, Conn: nc, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Add(demo.Consumer()); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	wg.Go(func() { _ = relay.Run(runCtx) })
	wg.Go(func() {
		if err := runner.Run(runCtx); err != nil {
			t.Errorf("runner: %v", err)
		}
	})

	start := time.Now().Add(-time.Second)
	const workers, perWorker = 6, 15
	currencies := []string{"EUR", "USD", "JPY"}
	want := map[string]demo.Total{}
	var mu sync.Mutex
	var msgIDs []uuid.UUID
	var placeWG sync.WaitGroup
	for w := range workers {
		placeWG.Go(func() {
			for i := range perWorker {
				cur := currencies[(w+i)%len(currencies)]
				amount := int64(100 + 37*w + 1001*i)
				_, id, err := demo.PlaceOrder(ctx, pool, fmt.Sprintf("customer-%d-%d", w, i), amount, cur)
				if err != nil {
					t.Errorf("place: %v", err)
					return
				}
				relay.Wake()
				mu.Lock()
				msgIDs = append(msgIDs, id)
				tot := want[cur]
				tot.Currency, tot.Orders, tot.AmountMinor = cur, tot.Orders+1, tot.AmountMinor+amount
				want[cur] = tot
				mu.Unlock()
			}
		})
	}
	placeWG.Wait()
	const n = workers * perWorker
	if len(msgIDs) != n {
		t.Fatalf("placed %d of %d", len(msgIDs), n)
	}

	counter := func(name string, labels map[string]string) float64 { return gather(t, reg, name, labels) }
	applied := map[string]string{"consumer": contracts.DemoConsumer, "result": "applied"}
	duplicate := map[string]string{"consumer": contracts.DemoConsumer, "result": "duplicate"}
	testenv.Eventually(t, 30*time.Second, "every order applied", func() (bool, error) {
		return counter("paypipe_consumer_messages_total", applied) == n, nil
	})
	checkTotals(t, pool, want)
	var inboxRows int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM demo.inbox WHERE consumer = $1 AND msg_id = ANY($2)`, contracts.DemoConsumer, msgIDs).Scan(&inboxRows); err != nil {
		t.Fatal(err)
	}
	if inboxRows != n {
		t.Fatalf("inbox rows %d, want %d", inboxRows, n)
	}

	// Re-drive: every row goes out again with its original Nats-Msg-Id, and
	// JetStream, inside its duplicate window, stores none of them.
	stream, err := js.Stream(ctx, contracts.StreamDemo)
	if err != nil {
		t.Fatal(err)
	}
	before, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	requeued, err := demo.Store.Redrive(ctx, pool, start)
	if err != nil || requeued != n {
		t.Fatalf("redrive: %d rows, %v; want %d", requeued, err, n)
	}
	relay.Wake()
	testenv.Eventually(t, 30*time.Second, "re-driven rows acknowledged as duplicates", func() (bool, error) {
		return counter("paypipe_outbox_relay_rows_total", map[string]string{"schema": "demo", "result": "duplicate"}) == n, nil
	})
	after, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.State.Msgs != before.State.Msgs {
		t.Fatalf("re-drive stored %d new messages, want 0", after.State.Msgs-before.State.Msgs)
	}

	// Replay past the broker's window: same ce-id, new Nats-Msg-Id, as `dlq
	// replay` does. The stream stores them; the inbox must drop them.
	for seq := uint64(1); seq <= before.State.LastSeq; seq++ {
		raw, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(raw.Subject)
		for k, v := range raw.Header {
			// Stored messages keep the relay's Nats-Batch-* headers; copied
			// onto a plain publish they would open a bogus atomic batch.
			if !strings.HasPrefix(strings.ToLower(k), "nats-") {
				m.Header[k] = v
			}
		}
		m.Header.Set(outbox.HeaderOriginalMsgID, raw.Header.Get(outbox.HeaderID))
		m.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
		m.Data = raw.Data
		ack, err := js.PublishMsg(ctx, m)
		if err != nil || ack.Duplicate {
			t.Fatalf("replay of seq %d: %+v, %v", seq, ack, err)
		}
	}
	testenv.Eventually(t, 30*time.Second, "replayed messages skipped by the inbox", func() (bool, error) {
		return counter("paypipe_consumer_messages_total", duplicate) == n, nil
	})
	if got := counter("paypipe_consumer_messages_total", applied); got != n {
		t.Fatalf("applied %v times, want %d", got, n)
	}
	checkTotals(t, pool, want)
}

func checkTotals(t *testing.T, pool *pgxpool.Pool, want map[string]demo.Total) {
	t.Helper()
	got, err := demo.Totals(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("totals %v, want %v", got, want)
	}
	for cur, w := range want {
		if got[cur] != w {
			t.Errorf("%s: total %+v, want %+v", cur, got[cur], w)
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}
