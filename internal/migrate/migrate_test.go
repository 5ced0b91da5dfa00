package migrate_test

import (
	"context"
	"testing"
	"testing/fstest"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
)

// Up is applied by every replica at start-up: running it twice, or from two
// replicas at once, must apply each migration exactly once.
func TestUpIdempotentAndStatus(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.DB(t)
	ctx := context.Background()
	s := migrate.Schema{Store: outbox.MustStore("svc"), SQL: fstest.MapFS{
		"00002_things.sql": {Data: []byte("-- +goose Up\nCREATE TABLE svc.things (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE svc.things;\n")},
	}}
	before, err := migrate.StatusOf(ctx, pool, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(before) != 2 || before[0].Applied || before[1].Applied {
		t.Fatalf("status before: %+v", before)
	}
	errs := make(chan error, 2)
	for i := 0; i < 2; i++ {
		go func() { errs <- migrate.Up(ctx, pool, nil, s) }()
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := migrate.Up(ctx, pool, nil, s); err != nil {
		t.Fatal(err)
	}
	after, err := migrate.StatusOf(ctx, pool, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != 2 || !after[0].Applied || !after[1].Applied || after[0].Version != 1 || after[1].Version != 2 {
		t.Fatalf("status after: %+v", after)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM svc.goose_db_version WHERE version_id > 0`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d versions recorded, want 2", n)
	}
}
