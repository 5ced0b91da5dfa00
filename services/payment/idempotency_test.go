package payment_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/payment"
)

func TestIdempotentReplay(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	r1 := e.post(e.a.key, "/v1/sellers", "key-1", `{"name":"Ada"}`)
	s1 := decode[payment.Seller](t, r1, http.StatusCreated)
	if r1.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("first response marked as replayed")
	}
	// Same key, same request: the stored answer, byte for byte.
	r2 := e.post(e.a.key, "/v1/sellers", "key-1", `{"name":"Ada"}`)
	if r2.status != http.StatusCreated || !bytes.Equal(r2.body, r1.body) || r2.header.Get("Idempotent-Replayed") != "true" ||
		r2.header.Get("Content-Type") != "application/json" {
		t.Fatalf("replay: %d %v %s, want %s", r2.status, r2.header, r2.body, r1.body)
	}
	// Same key, different body, or the same body to another endpoint: 422.
	for _, req := range []struct{ path, body string }{
		{"/v1/sellers", `{"name":"Bob"}`},
		{"/v1/sellers", `{"name": "Ada"}`}, // the fingerprint is over the exact bytes
		{"/v1/checkouts", `{"name":"Ada"}`},
	} {
		p := problem(t, e.post(e.a.key, req.path, "key-1", req.body), http.StatusUnprocessableEntity, payment.CodeIdempotencyKeyReused)
		if p.Detail == "" {
			t.Error("422 without detail")
		}
	}
	// Keys are per merchant: B's "key-1" is a different key.
	rb := e.post(e.b.key, "/v1/sellers", "key-1", `{"name":"Ada"}`)
	sb := decode[payment.Seller](t, rb, http.StatusCreated)
	if rb.header.Get("Idempotent-Replayed") != "" || sb.ID == s1.ID {
		t.Fatalf("B got A's answer: %s", rb.body)
	}
	if n := e.count(`SELECT count(*) FROM payment.sellers`); n != 2 {
		t.Fatalf("%d sellers, want 2", n)
	}
	// The original answer survives the refused reuses.
	if r := e.post(e.a.key, "/v1/sellers", "key-1", `{"name":"Ada"}`); !bytes.Equal(r.body, r1.body) {
		t.Fatalf("after 422s the replay changed: %s", r.body)
	}
}

// TestStoredValidationError: a request refused for its content is refused
// again, identically, on retry; fixing it needs a new key.
func TestStoredValidationError(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	s := e.seller(e.a, "s")
	bad := fmt.Sprintf(`{"buyer_id":"b","currency":"usd","mode":"hosted","return_url":"https://x.example/","orders":[{"seller_id":%q,"amount_minor":1}]}`, s)
	good := fmt.Sprintf(`{"buyer_id":"b","currency":"USD","mode":"hosted","return_url":"https://x.example/","orders":[{"seller_id":%q,"amount_minor":1}]}`, s)
	r1 := e.post(e.a.key, "/v1/checkouts", "k", bad)
	problem(t, r1, http.StatusBadRequest, payment.CodeValidationFailed)
	r2 := e.post(e.a.key, "/v1/checkouts", "k", bad)
	if r2.status != http.StatusBadRequest || !bytes.Equal(r2.body, r1.body) || r2.header.Get("Idempotent-Replayed") != "true" ||
		r2.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("replayed 400: %d %v %s", r2.status, r2.header, r2.body)
	}
	problem(t, e.post(e.a.key, "/v1/checkouts", "k", good), http.StatusUnprocessableEntity, payment.CodeIdempotencyKeyReused)
	decode[payment.Checkout](t, e.post(e.a.key, "/v1/checkouts", "k2", good), http.StatusCreated)
	if n := e.count(`SELECT count(*) FROM payment.checkouts`); n != 1 {
		t.Fatalf("%d checkouts, want 1", n)
	}
}

// TestConcurrentSameKey is F18: 50 requests with one key at once execute
// once; the others are told the key is in use (429, Retry-After) or, if
// they arrive after it finished, get the replay.
func TestConcurrentSameKey(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	s1, s2 := e.seller(e.a, "s1"), e.seller(e.a, "s2")
	body := checkoutBody("USD", map[uuid.UUID]int64{s1: 1999, s2: 1})
	const n = 50
	results := make([]apiResp, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			results[i] = e.post(e.a.key, "/v1/checkouts", "same-key", body)
		})
	}
	close(start)
	wg.Wait()

	var first []byte
	executed, inUse, replayed := 0, 0, 0
	for _, r := range results {
		switch {
		case r.status == http.StatusCreated && r.header.Get("Idempotent-Replayed") == "":
			executed++
			first = r.body
		case r.status == http.StatusCreated:
			replayed++
		case r.status == http.StatusTooManyRequests:
			problem(t, r, http.StatusTooManyRequests, payment.CodeIdempotencyKeyInUse)
			if r.header.Get("Retry-After") != "1" {
				t.Errorf("429 with Retry-After %q", r.header.Get("Retry-After"))
			}
			inUse++
		default:
			t.Errorf("unexpected answer %d %s", r.status, r.body)
		}
	}
	if executed != 1 {
		t.Fatalf("%d executions, want 1 (%d replays, %d in use)", executed, replayed, inUse)
	}
	for _, r := range results {
		if r.status == http.StatusCreated && !bytes.Equal(r.body, first) {
			t.Fatalf("replay differs:\n%s\n%s", r.body, first)
		}
	}
	c := e.counts()
	if c["checkouts"] != 1 || c["payment_orders"] != 2 || c["outbox"] != 1 || c["idempotency_keys"] != 1+2 /* the sellers' keys */ {
		t.Fatalf("rows after %d concurrent requests: %v", n, c)
	}
	t.Logf("1 executed, %d replayed, %d answered 429", replayed, inUse)
}

// TestInFlightAnswers429AtOnce holds a key's lock, as a request in flight
// does, and checks a second request is answered 429 without waiting.
func TestInFlightAnswers429AtOnce(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, payment.KeyLockID(e.a.id, "busy")); err != nil {
		t.Fatal(err)
	}
	r := e.post(e.a.key, "/v1/sellers", "busy", `{"name":"x"}`)
	problem(t, r, http.StatusTooManyRequests, payment.CodeIdempotencyKeyInUse)
	if r.header.Get("Retry-After") != "1" {
		t.Fatalf("Retry-After %q", r.header.Get("Retry-After"))
	}
	// Another merchant's identical key is not held.
	decode[payment.Seller](t, e.post(e.b.key, "/v1/sellers", "busy", `{"name":"x"}`), http.StatusCreated)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if c := e.counts(); c["sellers"] != 1 || c["idempotency_keys"] != 1 {
		t.Fatalf("the 429 stored something: %v", c)
	}
	// Once the first request is done, the retry runs.
	r = e.post(e.a.key, "/v1/sellers", "busy", `{"name":"x"}`)
	decode[payment.Seller](t, r, http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("the 429 was stored and replayed")
	}
}

// TestInternalErrorReleasesTheKey: a 5xx rolls back the key with the rows,
// so the client's retry with the same key runs afresh.
func TestInternalErrorReleasesTheKey(t *testing.T) {
	t.Parallel()
	e := newAPIEnv(t, payment.Config{})
	ctx := context.Background()
	s := e.seller(e.a, "s")
	body := checkoutBody("USD", map[uuid.UUID]int64{s: 500})
	// Break the outbox: the checkout's last write fails.
	if _, err := e.pool.Exec(ctx, `ALTER TABLE payment.outbox RENAME TO outbox_away`); err != nil {
		t.Fatal(err)
	}
	p := problem(t, e.post(e.a.key, "/v1/checkouts", "retry-me", body), http.StatusInternalServerError, payment.CodeInternal)
	if p.Detail != "" {
		t.Fatalf("internal detail leaked: %q", p.Detail)
	}
	if _, err := e.pool.Exec(ctx, `ALTER TABLE payment.outbox_away RENAME TO outbox`); err != nil {
		t.Fatal(err)
	}
	if c := e.counts(); c["checkouts"]+c["payment_orders"]+c["status_transitions"]+c["outbox"] != 0 || c["idempotency_keys"] != 1 {
		t.Fatalf("the failed request left rows: %v", c)
	}
	r := e.post(e.a.key, "/v1/checkouts", "retry-me", body)
	decode[payment.Checkout](t, r, http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "" {
		t.Fatal("the retry was a replay of the failure")
	}
	if c := e.counts(); c["checkouts"] != 1 || c["outbox"] != 1 {
		t.Fatalf("after the retry: %v", c)
	}
}

// TestKeyExpiry: keys live Config.IdempotencyTTL; the sweeper (Service.Run)
// deletes expired ones, and a key past its TTL, swept or not, starts a new
// request (F23).
func TestKeyExpiry(t *testing.T) {
	t.Parallel()
	ttl := 2 * time.Hour
	e := newAPIEnv(t, payment.Config{IdempotencyTTL: ttl, SweepInterval: 20 * time.Millisecond})
	ctx := context.Background()
	first := decode[payment.Seller](t, e.post(e.a.key, "/v1/sellers", "old", `{"name":"x"}`), http.StatusCreated)
	decode[payment.Seller](t, e.post(e.a.key, "/v1/sellers", "fresh", `{"name":"y"}`), http.StatusCreated)
	decode[payment.Seller](t, e.post(e.a.key, "/v1/sellers", "unswept", `{"name":"z"}`), http.StatusCreated)
	var lifetime time.Duration
	if err := e.pool.QueryRow(ctx, `SELECT (extract(epoch FROM expires_at - created_at) * 1e6)::bigint * interval '1 microsecond'
FROM payment.idempotency_keys WHERE key = 'fresh'`).Scan(&lifetime); err != nil || lifetime != ttl {
		t.Fatalf("key lifetime %s (%v), want %s", lifetime, err, ttl)
	}
	if _, err := e.pool.Exec(ctx, `UPDATE payment.idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'old'`); err != nil {
		t.Fatal(err)
	}

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- e.svc.Run(runCtx) }()
	testenv.Eventually(t, 10*time.Second, "the expired key to be swept", func() (bool, error) {
		return e.count(`SELECT count(*) FROM payment.idempotency_keys WHERE key = 'old'`) == 0, nil
	})
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop")
	}
	if n := e.count(`SELECT count(*) FROM payment.idempotency_keys WHERE key IN ('fresh', 'unswept')`); n != 2 {
		t.Fatalf("live keys swept: %d left of 2", n)
	}
	// The swept key starts a new request: a second seller.
	r := e.post(e.a.key, "/v1/sellers", "old", `{"name":"x"}`)
	again := decode[payment.Seller](t, r, http.StatusCreated)
	if r.header.Get("Idempotent-Replayed") != "" || again.ID == first.ID {
		t.Fatalf("swept key replayed: %s", r.body)
	}
	// An expired key the sweeper has not reached yet is claimed afresh,
	// even for a different body.
	if _, err := e.pool.Exec(ctx, `UPDATE payment.idempotency_keys SET expires_at = now() - interval '1 second' WHERE key = 'unswept'`); err != nil {
		t.Fatal(err)
	}
	r = e.post(e.a.key, "/v1/sellers", "unswept", `{"name":"other"}`)
	if s := decode[payment.Seller](t, r, http.StatusCreated); s.Name != "other" || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("expired key: %s", r.body)
	}
	if n := e.count(`SELECT count(*) FROM payment.idempotency_keys WHERE key = 'unswept' AND expires_at > now() + interval '1 hour'`); n != 1 {
		t.Fatal("the re-claimed key did not get a new lifetime")
	}
	// SweepIdempotencyKeys reports what it deleted.
	if _, err := e.pool.Exec(ctx, `UPDATE payment.idempotency_keys SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	all := e.count(`SELECT count(*) FROM payment.idempotency_keys`)
	if n, err := e.svc.SweepIdempotencyKeys(ctx); err != nil || n != int64(all) || all == 0 {
		t.Fatalf("sweep: %d, %v; want %d", n, err, all)
	}
}
