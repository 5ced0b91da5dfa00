// Package testenv gives tests real dependencies: a fresh PostgreSQL database
// per test (on the server DATABASE_URL names; `go tool task pg:up` starts
// one) and an embedded nats-server with JetStream per test, which the test
// can stop and restart on the same store.
package testenv

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/natsserver"
	"github.com/paypipe/paypipe/internal/pg"
)

// DatabaseURL returns DATABASE_URL or fails the test with how to get one.
func DatabaseURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		t.Fatal("DATABASE_URL is not set: run the tests with `go tool task test` (it starts PostgreSQL), or export DATABASE_URL=$(scripts/pg.sh url)")
	}
	return u
}

// DB creates an empty database for this test and returns a pool on it. The
// database is dropped when the test ends.
func DB(t testing.TB) (*pgxpool.Pool, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url, _, drop, err := pg.ScratchDatabase(ctx, DatabaseURL(t), "t_", t.Logf)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	pool, err := pg.Open(ctx, url, pg.Options{MaxConns: 40, AppName: "paypipe-test"})
	if err != nil {
		drop()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		drop()
	})
	return pool, url
}

// Migrated returns a fresh database with schemas migrated.
func Migrated(t testing.TB, schemas ...migrate.Schema) (*pgxpool.Pool, string) {
	t.Helper()
	pool, url := DB(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := migrate.Up(ctx, pool, nil, schemas...); err != nil {
		t.Fatalf("testenv: migrate: %v", err)
	}
	return pool, url
}

// NATS starts an embedded JetStream server (sync_interval always) on a
// temporary store; it is stopped when the test ends.
func NATS(t testing.TB) *natsserver.Server {
	t.Helper()
	return NATSWith(t, natsserver.Config{})
}

// NATSWith is NATS with a config; StoreDir defaults to a temporary directory.
func NATSWith(t testing.TB, cfg natsserver.Config) *natsserver.Server {
	t.Helper()
	if cfg.StoreDir == "" {
		cfg.StoreDir = t.TempDir()
	}
	s, err := natsserver.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// Connect opens a client connection that reconnects forever (tests restart
// the server under it); it is closed when the test ends.
func Connect(t testing.TB, s *natsserver.Server) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectBufSize(64<<20), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("testenv: nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// Eventually polls cond until it returns true, failing the test after
// timeout. It awaits a condition; it is not a sleep.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok && err == nil {
			return
		}
		lastErr = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
