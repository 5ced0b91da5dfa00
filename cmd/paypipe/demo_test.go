package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/verify"
)

// TestDemo runs the README's first command against a fresh database, twice:
// the second run must show and check only its own objects, next to the
// first run's.
func TestDemo(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	for run := 1; run <= 2; run++ {
		start := time.Now()
		r := paypipe(t, vars, "demo")
		if r.code != exitOK {
			t.Fatalf("run %d: exit %d\nstdout:\n%s\nstderr:\n%s", run, r.code, r.stdout, r.stderr)
		}
		for _, want := range []string{
			// 2: the hosted page was paid and its redirect shown, not followed.
			`the page asks for the checkout's amount: OK`,
			`(?m)→ 303 See Other, Location: http://127\.0\.0\.1/shop/return\?checkout=[0-9a-f-]{36}&status=succeeded$`,
			`the PSP took the card and sent the buyer back to the merchant: OK`,
			// 2e: the replay.
			`second POST → 201, Idempotent-Replayed: true, body identical to the first: true`,
			`the second answer is the first one replayed, not a second checkout: OK`,
			// 3: the decline is shown as failed, everything else completed.
			`(?m)^   b\s+direct\s+EUR 25\.00\s+failed\s+card_declined\s`,
			`(?m)^   c1\s+direct\s+JPY 1500\s+completed\s`,
			`(?m)^   c2\s+direct\s+KWD 12\.345\s+completed\s`,
			`the declined card failed, every other checkout completed: OK`,
			// 4: the trail.
			`each stored once and applied once by every consumer subscribed to it: OK`,
			`(?m)^   PAYMENTS\s+\d+\s+payments\.order\.succeeded\s+payments\.order\.succeeded\.v1\s+a/1\s+\+\S+\s+(ledger|wallet)-payments`,
			// 5: ledger, wallets, charges.
			`6 paid orders, one entry each: .*: OK`,
			`every seller's pending balance is the net of its paid orders .*: OK`,
			`(?m)^   b\s+failed\s+1\s+0\s+-`,
			`one charge per paid checkout \(5\), none for the declined: OK`,
			// 6: pay-out.
			`every seller's delivered net is available, less the refund's share; nothing is left pending: OK`,
			`a second run for the same period requests nothing: OK`,
			`one payout per seller and currency \(6\), each the whole available balance: OK`,
			`(?m)^   Atelier Ada\s+USD 29\.10\s+paid\s+po_[a-z0-9]+\s`,
			`after the payouts every balance is paid out: pending 0, available 0: OK`,
			// 7: reconciliation (run 2's file holds run 1's lines too).
			`every line of the file matched the ledger \((\d+) of \d+\), no mismatch: OK`,
			`running the day again returns the same run, posting nothing twice: OK`,
			// 8: verify.
			`I2 ledger balanced per entry and currency; balances equal postings: OK`,
			`I3 wallet equals ledger seller_payable: OK`,
			`I5 no event lost: outbox rows unpublished after the grace period: OK`,
			`I9 payout safety: payouts whose amount differs from what the wallet reserved for them: OK`,
			`(?m)^paypipe demo: OK in \S+$`,
		} {
			if !regexp.MustCompile(want).MatchString(r.stdout) {
				t.Errorf("run %d: output lacks %s:\n%s", run, want, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "FAILED") {
			t.Errorf("run %d: a check failed:\n%s", run, r.stdout)
		}
		if el := time.Since(start); el > 30*time.Second {
			t.Errorf("run %d took %s; the demo must finish well under a minute", run, el)
		}
		t.Logf("run %d: %s", run, time.Since(start))
	}

	// What the runs left, read from the database rather than the output.
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, vars["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var checkouts, failed, completed, badCharges int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE status = 'failed'), count(*) FILTER (WHERE status = 'completed'),
  count(*) FILTER (WHERE (SELECT count(*) FROM pspsim.charges ch WHERE ch.merchant_reference = c.id::text) <> CASE WHEN status = 'completed' THEN 1 ELSE 0 END)
FROM payment.checkouts c`).Scan(&checkouts, &failed, &completed, &badCharges); err != nil {
		t.Fatal(err)
	}
	if checkouts != 12 || failed != 2 || completed != 10 || badCharges != 0 {
		t.Errorf("after two runs: %d checkouts, %d failed, %d completed, %d with a wrong number of charges; want 12, 2, 10, 0",
			checkouts, failed, completed, badCharges)
	}
	rep, err := verify.Run(ctx, pool, verify.Options{Grace: time.Millisecond})
	if err != nil || !rep.OK() {
		t.Errorf("verify after the runs: %v %+v", err, rep.Violations)
	}
	// Each run's data directory (NATS store) is removed.
	entries, err := os.ReadDir(vars["PAYPIPE_DATA_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("data dir not cleaned up: %v", entries)
	}
}

// A demo that cannot finish in time fails, says why, and still cleans up.
func TestDemoTimeout(t *testing.T) {
	t.Parallel()
	vars := freshEnv(t)
	r := paypipe(t, vars, "demo", "--timeout", "1ms")
	if r.code != exitError || !strings.Contains(r.stderr, "gave up after --timeout 1ms") || strings.Contains(r.stdout, "paypipe demo: OK") {
		t.Fatalf("demo --timeout 1ms: %+v", r)
	}
	entries, err := os.ReadDir(vars["PAYPIPE_DATA_DIR"])
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("data dir not cleaned up: %v", entries)
	}
}

func TestSubjectMatches(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		filter, subject string
		want            bool
	}{
		{"payments.order.succeeded", "payments.order.succeeded", true},
		{"payments.order.succeeded", "payments.order.failed", false},
		{"payments.order.succeeded", "payments.order", false},
		{"payments.*.succeeded", "payments.order.succeeded", true},
		{"payments.*", "payments.order.succeeded", false},
		{"payments.>", "payments.order.succeeded", true},
		{"payments.>", "payments", false},
		{"ledger.>", "payments.order.succeeded", false},
	} {
		if got := subjectMatches(c.filter, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", c.filter, c.subject, got, c.want)
		}
	}
}
