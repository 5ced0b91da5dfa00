package pg_test

import (
	"context"
	"strings"
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

func TestWithDatabase(t *testing.T) {
	t.Parallel()
	got, err := pg.WithDatabase("postgres://u:p@127.0.0.1:55432/paypipe?sslmode=disable", "x_1")
	if err != nil || got != "postgres://u:p@127.0.0.1:55432/x_1?sslmode=disable" {
		t.Fatalf("got %q, %v", got, err)
	}
	if got, _ := pg.WithDatabase("host=/tmp dbname=paypipe", "x_1"); got != "host=/tmp dbname=paypipe dbname=x_1" {
		t.Fatalf("got %q", got)
	}
	if r := pg.Redact("postgres://u:secret@127.0.0.1:5432/db"); strings.Contains(r, "secret") {
		t.Fatalf("Redact leaked the password: %s", r)
	}
}

func TestScratchDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	conn, name, drop, err := pg.ScratchDatabase(ctx, testenv.DatabaseURL(t), "t_scratch_", t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := pg.Open(ctx, conn, pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := p.QueryRow(ctx, `SELECT current_database()`).Scan(&got); err != nil || got != name {
		t.Fatalf("connected to %q (%v), want %q", got, err, name)
	}
	p.Close()
	drop()
	admin, err := pg.Open(ctx, testenv.DatabaseURL(t), pg.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil || n != 0 {
		t.Fatalf("database %s still exists after drop (%d, %v)", name, n, err)
	}
}
