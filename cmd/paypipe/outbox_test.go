package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/payment"
)

// writeCheckoutEvents writes n payments.checkout.created rows into store's
// outbox, each in its own transaction as payment would: the outbox commands
// only see rows, so the rows need no checkout behind them.
func writeCheckoutEvents(t *testing.T, ctx context.Context, pool *pgxpool.Pool, store outbox.Store, n int) {
	t.Helper()
	for range n {
		id := uuid.NewString()
		payload, err := json.Marshal(contracts.CheckoutCreated{CheckoutID: id, Currency: "EUR", AmountMinor: 100, Mode: contracts.ModeDirect})
		if err != nil {
			t.Fatal(err)
		}
		if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			return store.Write(ctx, tx, &outbox.Message{
				Subject: contracts.SubjectCheckoutCreated, Type: contracts.TypeOf(contracts.SubjectCheckoutCreated),
				Source: contracts.SourcePayment, AggregateID: id, AggregateVersion: 1, Payload: payload,
			})
		}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOutboxStatus(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	r := paypipe(t, vars, "outbox", "status", "-o", "json")
	if r.code != exitError || !strings.Contains(r.stderr, "migrate up") {
		t.Fatalf("before migrations: want a hint to migrate, got %+v", r)
	}
	if r := paypipe(t, vars, "migrate", "up"); r.code != exitOK {
		t.Fatalf("migrate up: %+v", r)
	}
	r = paypipe(t, vars, "outbox", "status", "-o", "json")
	if r.code != exitOK {
		t.Fatalf("outbox status: %+v", r)
	}
	var sts []outbox.Status
	if err := json.Unmarshal([]byte(r.stdout), &sts); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
	svcs := registry()
	if len(sts) != len(svcs) {
		t.Fatalf("statuses of %d schemas, want %d: %+v", len(sts), len(svcs), sts)
	}
	for i, s := range svcs {
		if sts[i] != (outbox.Status{Schema: s.store().Schema()}) {
			t.Errorf("empty outbox of %s: %+v", s.name, sts[i])
		}
	}
	r = paypipe(t, vars, "outbox", "status", "--schema", "payment")
	if r.code != exitOK || !strings.Contains(r.stdout, "BACKLOG") || !strings.Contains(r.stdout, "payment") || strings.Contains(r.stdout, "ledger") {
		t.Fatalf("outbox status (text): %+v", r)
	}
}

func TestOutboxRedriveRefusesTheFuture(t *testing.T) {
	t.Parallel()
	// No database needed: the argument is refused before anything is opened.
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, since := range []string{future, "-2h"} {
		r := paypipe(t, map[string]string{"DATABASE_URL": "postgres://unused@127.0.0.1:1/x"}, "outbox", "redrive", "--since", since)
		if r.code == exitOK || !strings.Contains(r.stderr, "in the future") || r.stdout != "" {
			t.Errorf("--since %s: %+v; want a non-zero exit saying it is in the future", since, r)
		}
	}
}

func TestOutboxRedrive(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// Every schema, since a redrive without --schema visits them all.
	pool, url := testenv.Migrated(t, schemasOf(registry())...)
	vars := map[string]string{"DATABASE_URL": url}
	store := payment.Schema().Store
	writeCheckoutEvents(t, ctx, pool, store, 3)
	// Two rows published (no relay runs here), one still pending.
	if _, err := pool.Exec(ctx, `UPDATE payment.outbox SET published_at = now() WHERE id IN (SELECT id FROM payment.outbox ORDER BY id LIMIT 2)`); err != nil {
		t.Fatal(err)
	}
	r := paypipe(t, vars, "outbox", "redrive", "--since", "1h", "--schema", "payment")
	if r.code != exitOK || !strings.Contains(r.stdout, "payment: re-queued 2 rows") {
		t.Fatalf("redrive: %+v", r)
	}
	var pending int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM payment.outbox WHERE published_at IS NULL`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != 3 {
		t.Fatalf("pending after redrive: %d, want 3", pending)
	}
	r = paypipe(t, vars, "outbox", "redrive", "--since", time.Now().Add(-time.Minute).Format(time.RFC3339))
	if r.code != exitOK || !strings.Contains(r.stdout, "re-queued 0 rows in total") {
		t.Fatalf("second redrive: %+v", r)
	}
	for _, s := range registry() {
		if !strings.Contains(r.stdout, s.store().Schema()+": re-queued 0 rows") {
			t.Errorf("second redrive did not visit %s: %s", s.name, r.stdout)
		}
	}
}

func TestParseSince(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2h":                        now.Add(-2 * time.Hour),
		"1d":                        now.Add(-24 * time.Hour),
		"2026-11-26T09:00:00Z":      time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC),
		"2026-11-26T10:00:00+01:00": time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC),
		"0s":                        now,
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "soon", "-1h", "2026-11-26T12:00:01Z", "2026-11-26"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q): want an error", in)
		}
	}
}
