package payment

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
)

// An order completes once ledger and wallet both recorded it, in either
// order and however often they report; the checkout completes with its last
// order. Each completion event is written once.
func TestCompletion(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if r := f.deliver(f.webhookBody("evt_1", "succeeded", f.amount, f.currency)); r.outcome != outcomeApplied {
		t.Fatalf("%+v", r)
	}
	mark := func(order int, column string) {
		t.Helper()
		err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
			return f.side.markRecorded(context.Background(), tx, f.orders[order], column)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	mark(0, "ledger_recorded_at")
	mark(0, "ledger_recorded_at") // duplicate report
	if s := f.status("payment_orders", f.orders[0]); s != StatusSucceeded {
		t.Fatalf("order completed with only the ledger: %s", s)
	}
	mark(0, "wallet_recorded_at")
	if s := f.status("payment_orders", f.orders[0]); s != StatusCompleted {
		t.Fatalf("order 0 is %s", s)
	}
	if s := f.status("checkouts", f.checkout); s != StatusSucceeded {
		t.Fatalf("checkout completed with an open order: %s", s)
	}
	mark(1, "wallet_recorded_at") // the wallet first this time
	mark(1, "ledger_recorded_at")
	mark(1, "ledger_recorded_at")
	mark(0, "wallet_recorded_at")
	if s := f.status("checkouts", f.checkout); s != StatusCompleted {
		t.Fatalf("checkout is %s", s)
	}
	if n := len(f.outboxEvents(contracts.SubjectOrderCompleted)); n != 2 {
		t.Fatalf("%d order.completed events, want 2", n)
	}
	if n := len(f.outboxEvents(contracts.SubjectCheckoutCompleted)); n != 1 {
		t.Fatalf("%d checkout.completed events, want 1", n)
	}
	f.assertMonotonic()
}
