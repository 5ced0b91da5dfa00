package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/demo"
)

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
	if len(sts) != 1 || sts[0] != (outbox.Status{Schema: "demo"}) {
		t.Fatalf("empty outbox: %+v", sts)
	}
	r = paypipe(t, vars, "outbox", "status", "--schema", "demo")
	if r.code != exitOK || !strings.Contains(r.stdout, "BACKLOG") || !strings.Contains(r.stdout, "demo") {
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
	pool, url := testenv.Migrated(t, demo.Schema())
	vars := map[string]string{"DATABASE_URL": url}
	for range 3 {
		if _, _, err := demo.PlaceOrder(ctx, pool, "ada", 100, "EUR"); err != nil {
			t.Fatal(err)
		}
	}
	// Two rows published an hour ago, one still pending.
	if _, err := pool.Exec(ctx, `UPDATE demo.outbox SET published_at = now() WHERE id IN (SELECT id FROM demo.outbox ORDER BY id LIMIT 2)`); err != nil {
		t.Fatal(err)
	}
	r := paypipe(t, vars, "outbox", "redrive", "--since", "1h", "--schema", "demo")
	if r.code != exitOK || !strings.Contains(r.stdout, "demo: re-queued 2 rows") {
		t.Fatalf("redrive: %+v", r)
	}
	var pending int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM demo.outbox WHERE published_at IS NULL`).Scan(&pending); err != nil {
		t.Fatal(err)
	}
	if pending != 3 {
		t.Fatalf("pending after redrive: %d, want 3", pending)
	}
	r = paypipe(t, vars, "outbox", "redrive", "--since", time.Now().Add(-time.Minute).Format(time.RFC3339))
	if r.code != exitOK || !strings.Contains(r.stdout, "re-queued 0 rows in total") {
		t.Fatalf("second redrive: %+v", r)
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
