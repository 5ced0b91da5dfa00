package payment

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/psp"
)

const testSecret = "whsec_test"

type fixture struct {
	t        *testing.T
	pool     *pgxpool.Pool
	side     *eventSide
	merchant uuid.UUID
	checkout uuid.UUID
	orders   []uuid.UUID
	sellers  []uuid.UUID
	amount   int64
	currency string
	now      time.Time
}

// newFixture migrates a fresh database and inserts a merchant (fee 300 bps),
// two sellers and one checkout of two orders (USD 60.00 + 40.00).
func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool, _ := testenv.Migrated(t, Schema())
	f := &fixture{t: t, pool: pool, merchant: uuid.New(), checkout: uuid.New(), currency: "USD", now: time.Now()}
	f.side = &eventSide{store: outbox.MustStore("payment"), log: slog.New(slog.DiscardHandler), now: func() time.Time { return f.now }}
	mustExec(t, pool, `INSERT INTO payment.merchants (id, name, fee_bps) VALUES ($1, 'm', 300)`, f.merchant)
	amounts := []int64{6000, 4000}
	for _, a := range amounts {
		f.amount += a
	}
	mustExec(t, pool, `INSERT INTO payment.checkouts (id, merchant_id, buyer_id, currency, amount_minor, mode, status)
VALUES ($1, $2, 'buyer-1', $3, $4, 'hosted', 'created')`, f.checkout, f.merchant, f.currency, f.amount)
	for _, a := range amounts {
		seller, order := uuid.New(), uuid.New()
		fee, err := money.Fee(a, 300)
		if err != nil {
			t.Fatal(err)
		}
		mustExec(t, pool, `INSERT INTO payment.sellers (id, merchant_id, name) VALUES ($1, $2, 's')`, seller, f.merchant)
		mustExec(t, pool, `INSERT INTO payment.payment_orders (id, checkout_id, merchant_id, seller_id, currency, amount_minor, fee_minor, net_minor, status)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'created')`, order, f.checkout, f.merchant, seller, f.currency, a, fee, a-fee)
		f.sellers = append(f.sellers, seller)
		f.orders = append(f.orders, order)
	}
	return f
}

func mustExec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (f *fixture) webhookBody(eventID, status string, amount int64, currency string) []byte {
	f.t.Helper()
	b, err := json.Marshal(psp.Event{ID: eventID, Type: "payment." + status, Created: f.now, Data: psp.Payment{
		ID: "pay_1", Status: status, AmountMinor: amount, Currency: currency, MerchantReference: f.checkout.String(),
	}})
	if err != nil {
		f.t.Fatal(err)
	}
	return b
}

// deliver signs body now and hands it to the receiver.
func (f *fixture) deliver(body []byte) webhookResult {
	return f.side.receiveWebhook(context.Background(), f.pool, WebhookConfig{Secrets: []string{testSecret}}.withDefaults(),
		psp.Sign(body, f.now, testSecret), body)
}

func (f *fixture) status(table string, id uuid.UUID) string {
	f.t.Helper()
	var s string
	if err := f.pool.QueryRow(context.Background(), `SELECT status FROM payment.`+table+` WHERE id = $1`, id).Scan(&s); err != nil {
		f.t.Fatal(err)
	}
	return s
}

// outboxEvents returns the payloads written to payment's outbox per subject.
func (f *fixture) outboxEvents(subject string) [][]byte {
	f.t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT payload FROM payment.outbox WHERE subject = $1 ORDER BY id`, subject)
	if err != nil {
		f.t.Fatal(err)
	}
	var out [][]byte
	for rows.Next() {
		var p []byte
		if err := rows.Scan(&p); err != nil {
			f.t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func (f *fixture) count(sql string, args ...any) int {
	f.t.Helper()
	var n int
	if err := f.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatal(err)
	}
	return n
}

// assertMonotonic checks every recorded transition moved forward (I10).
func (f *fixture) assertMonotonic() {
	f.t.Helper()
	rows, err := f.pool.Query(context.Background(), `SELECT from_status, to_status FROM payment.status_transitions
WHERE object_type IN ('checkout', 'payment_order')`)
	if err != nil {
		f.t.Fatal(err)
	}
	for rows.Next() {
		var from, to string
		if err := rows.Scan(&from, &to); err != nil {
			f.t.Fatal(err)
		}
		if from == "" && to == StatusCreated {
			continue // creation
		}
		if !CanMove(from, to) {
			f.t.Errorf("recorded transition %s → %s is not forward", from, to)
		}
	}
}

func drainBody(r *http.Response) { _, _ = io.Copy(io.Discard, r.Body); r.Body.Close() }
