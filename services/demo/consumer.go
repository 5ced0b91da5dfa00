package demo

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// Consumer is the demo-projector: it adds every placed order to its
// currency's total. Run it on a Runner whose Store is Store, so the inbox row
// lands in the demo schema next to the totals it protects.
func Consumer() outbox.ConsumerSpec {
	return outbox.ConsumerSpec{Name: contracts.DemoConsumer, Stream: contracts.StreamDemo, Handler: applyOrderPlaced}
}

// applyOrderPlaced runs inside the inbox transaction: the runner has already
// claimed (demo-projector, msg id), so reaching this code means the message
// was not applied before. An error rolls both back and the message is
// redelivered; an undecodable or invalid payload keeps failing until the
// consumer's MaxDeliver stops it, instead of being counted wrong.
func applyOrderPlaced(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if d.Type != TypeOrderPlaced {
		return fmt.Errorf("demo-projector: message %s: unsupported type %q (want %s)", d.MsgID, d.Type, TypeOrderPlaced)
	}
	var ev OrderPlaced
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return fmt.Errorf("demo-projector: message %s: decode: %w", d.MsgID, err)
	}
	if err := ev.validate(); err != nil {
		return fmt.Errorf("demo-projector: message %s: %w", d.MsgID, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO demo.order_totals AS t (currency, orders, amount_minor) VALUES ($1, 1, $2)
ON CONFLICT (currency) DO UPDATE SET orders = t.orders + 1, amount_minor = t.amount_minor + excluded.amount_minor`,
		ev.Currency, ev.AmountMinor); err != nil {
		return fmt.Errorf("demo-projector: message %s: add to %s total: %w", d.MsgID, ev.Currency, err)
	}
	return nil
}
