package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// Option configures the consumers.
type Option func(*options)

type options struct{ log *slog.Logger }

// WithLogger sets the logger for events the consumers reject. The default
// is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Consumers returns the ledger's consumers. Run them on a Runner whose Store
// is Store, so each inbox row commits with the journal entry it protects.
func Consumers(opts ...Option) []outbox.ConsumerSpec {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	c := consumer{log: o.log.With("service", "ledger")}
	return []outbox.ConsumerSpec{
		{Name: contracts.LedgerPaymentsConsumer, Stream: contracts.StreamPayments, Handler: c.orderSucceeded},
	}
}

type consumer struct{ log *slog.Logger }

// orderSucceeded posts the captured payment order's entry inside the inbox
// transaction. The inbox skips a message seen before (same ce-id); the
// entry's external id makes a re-send of the same order under a new ce-id a
// no-op too, and a re-send with different figures an ErrExternalIDConflict.
// An invalid event returns an error wrapping ErrInvalidEvent: retrying will
// not fix it, and it must end in the dead-letter queue, not in the books.
func (c consumer) orderSucceeded(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	err := c.postOrderCaptured(ctx, tx, d)
	if errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrExternalIDConflict) || errors.Is(err, ErrInvalidEntry) {
		c.log.ErrorContext(ctx, "rejected payments.order.succeeded: it needs an operator",
			"consumer", contracts.LedgerPaymentsConsumer, "msg_id", d.MsgID, "stream_seq", d.StreamSeq,
			"correlation_id", d.CorrelationID, "err", err)
	}
	return err
}

func (c consumer) postOrderCaptured(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decodeOrderSucceeded(d)
	if err != nil {
		return err
	}
	e, err := OrderCaptured(ev)
	if err != nil {
		return err
	}
	e.SourceMsgID = d.MsgID
	posted, err := Post(ctx, tx, e)
	if err != nil {
		return err
	}
	if !posted {
		c.log.InfoContext(ctx, "payment order already posted; re-sent event ignored",
			"external_id", e.ExternalID, "msg_id", d.MsgID)
	}
	return nil
}

func decodeOrderSucceeded(d outbox.Delivery) (contracts.OrderSucceeded, error) {
	var ev contracts.OrderSucceeded
	if want := contracts.TypeOf(contracts.SubjectOrderSucceeded); d.Type != want {
		return ev, fmt.Errorf("%w: message %s: type %q, want %q", ErrInvalidEvent, d.MsgID, d.Type, want)
	}
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return ev, fmt.Errorf("%w: message %s: decode: %w", ErrInvalidEvent, d.MsgID, err)
	}
	return ev, nil
}
