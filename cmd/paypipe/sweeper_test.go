package main

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/payment"
)

func TestSweeperDeletesOnlyExpiredRows(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	schema := payment.Schema()
	pool, _ := testenv.Migrated(t, schema)
	writeCheckoutEvents(t, ctx, pool, schema.Store, 3)
	// Row 1: published long ago (expired). Row 2: published just now. Row 3: pending.
	if _, err := pool.Exec(ctx, `UPDATE payment.outbox SET published_at = CASE WHEN id = (SELECT min(id) FROM payment.outbox)
THEN now() - interval '2 days' ELSE now() END WHERE id < (SELECT max(id) FROM payment.outbox)`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO payment.inbox (consumer, msg_id, subject, processed_at) VALUES
('c', $1, 's', now() - interval '50 days'), ('c', $2, 's', now())`, uuid.New(), uuid.New()); err != nil {
		t.Fatal(err)
	}
	passes := make(chan [2]int64, 100)
	sw, err := newSweeper(sweeperConfig{
		Store: schema.Store, Pool: pool, Interval: 10 * time.Millisecond,
		OutboxRetention: 24 * time.Hour, InboxRetention: 40 * 24 * time.Hour,
		afterPass: func(o, i int64) { passes <- [2]int64{o, i} },
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = sw.Run(runCtx) })
	next := func() [2]int64 {
		t.Helper()
		select {
		case p := <-passes:
			return p
		case <-ctx.Done():
			t.Fatal("no sweeper pass before the test's deadline")
			return [2]int64{}
		}
	}
	first := next()
	second := next()
	stop()
	wg.Wait()
	if first != [2]int64{1, 1} || second != [2]int64{0, 0} {
		t.Fatalf("passes deleted %v then %v; want [1 1] then [0 0]", first, second)
	}
	var outboxRows, inboxRows int
	if err := pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM payment.outbox), (SELECT count(*) FROM payment.inbox)`).Scan(&outboxRows, &inboxRows); err != nil {
		t.Fatal(err)
	}
	if outboxRows != 2 || inboxRows != 1 {
		t.Fatalf("left %d outbox and %d inbox rows; want 2 and 1", outboxRows, inboxRows)
	}
}
