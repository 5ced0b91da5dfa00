package pg_test

import (
	"context"
	"testing"

	"github.com/paypipe/paypipe/internal/pg"
	"github.com/paypipe/paypipe/internal/testenv"
)

func TestOpenSetsTimeoutsAndServerIsDurable(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	p, err := pg.Open(ctx, testenv.DatabaseURL(t), pg.Options{AppName: "pg-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := pg.CheckDurability(ctx, p); err != nil {
		t.Fatal(err)
	}
	var st, idle, app string
	if err := p.QueryRow(ctx, `SELECT current_setting('statement_timeout'), current_setting('idle_in_transaction_session_timeout'), current_setting('application_name')`).Scan(&st, &idle, &app); err != nil {
		t.Fatal(err)
	}
	if st != "30s" || idle != "1min" || app != "pg-test" {
		t.Fatalf("statement_timeout=%s idle_in_transaction_session_timeout=%s application_name=%s", st, idle, app)
	}
	if _, err := pg.Open(ctx, "", pg.Options{}); err == nil {
		t.Fatal("Open accepted an empty URL")
	}
}
