package demo

import (
	"context"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
)

// Store is the demo schema's outbox and inbox.
var Store = outbox.MustStore("demo")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the demo service's migrations: the outbox and inbox tables, then
// migrations/*.sql.
func Schema() migrate.Schema {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		panic(err) // the embed pattern above guarantees the directory
	}
	return migrate.Schema{Store: Store, SQL: sub}
}

// PlaceOrder validates and places an order in its own transaction. See
// PlaceOrderTx.
func PlaceOrder(ctx context.Context, pool *pgxpool.Pool, customer string, amountMinor int64, currency string) (orderID, msgID uuid.UUID, err error) {
	if err := ValidateOrder(customer, amountMinor, currency); err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("demo: place order: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	orderID, msgID, err = PlaceOrderTx(ctx, tx, customer, amountMinor, currency)
	if err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	// A failed COMMIT means neither the order nor its event exists: report
	// it, never the ids.
	if err := tx.Commit(ctx); err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("demo: place order: commit: %w", err)
	}
	return orderID, msgID, nil
}

// PlaceOrderTx inserts the order and writes its demo.order.placed event to
// the outbox in the caller's transaction: both exist if and only if tx
// commits. It returns the order id and the event's message id (ce-id and
// Nats-Msg-Id).
func PlaceOrderTx(ctx context.Context, tx pgx.Tx, customer string, amountMinor int64, currency string) (orderID, msgID uuid.UUID, err error) {
	if err := ValidateOrder(customer, amountMinor, currency); err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	orderID, err = uuid.NewV7()
	if err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("demo: order id: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO demo.orders (id, customer, amount_minor, currency) VALUES ($1, $2, $3, $4)`,
		orderID, customer, amountMinor, currency); err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("demo: insert order: %w", err)
	}
	payload, err := json.Marshal(OrderPlaced{OrderID: orderID, Customer: customer, AmountMinor: amountMinor, Currency: currency})
	if err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("demo: encode event: %w", err)
	}
	msg := &outbox.Message{
		Subject:          SubjectOrderPlaced,
		Type:             TypeOrderPlaced,
		Source:           Source,
		AggregateID:      orderID.String(),
		AggregateVersion: 1, // an order is placed once; later events would count up
		Payload:          payload,
	}
	if err := Store.Write(ctx, tx, msg); err != nil {
		return uuid.Nil, uuid.Nil, fmt.Errorf("demo: write event: %w", err)
	}
	return orderID, msg.ID, nil
}

// Totals reads the projection, keyed by currency.
func Totals(ctx context.Context, pool *pgxpool.Pool) (map[string]Total, error) {
	rows, err := pool.Query(ctx, `SELECT currency, orders, amount_minor FROM demo.order_totals`)
	if err != nil {
		return nil, fmt.Errorf("demo: read totals: %w", err)
	}
	defer rows.Close()
	out := map[string]Total{}
	for rows.Next() {
		var t Total
		if err := rows.Scan(&t.Currency, &t.Orders, &t.AmountMinor); err != nil {
			return nil, fmt.Errorf("demo: read totals: %w", err)
		}
		out[t.Currency] = t
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("demo: read totals: %w", err)
	}
	return out, nil
}

// FormatAmount renders minor units with the currency's ISO 4217 exponent
// (JPY 1200 → "1200", EUR 1234 → "12.34"), in integer arithmetic.
func FormatAmount(amountMinor int64, currency string) string {
	exp := 2
	switch currency {
	case "JPY", "KRW", "CLP", "ISK", "VND", "XAF", "XOF":
		exp = 0
	case "BHD", "JOD", "KWD", "OMR", "TND":
		exp = 3
	}
	if exp == 0 {
		return strconv.FormatInt(amountMinor, 10)
	}
	sign := ""
	u := uint64(amountMinor)
	if amountMinor < 0 {
		sign, u = "-", uint64(-(amountMinor+1))+1 // safe for MinInt64
	}
	div := uint64(1)
	for range exp {
		div *= 10
	}
	return fmt.Sprintf("%s%d.%0*d", sign, u/div, exp, u%div)
}
