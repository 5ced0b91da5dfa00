package wallet

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

// Consumers returns the wallet's consumers. Run them on a Runner whose Store
// is Store, so each inbox row commits with the balance change it protects.
func Consumers(opts ...Option) []outbox.ConsumerSpec {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	c := consumer{log: o.log.With("service", "wallet")}
	return []outbox.ConsumerSpec{
		{Name: contracts.WalletPaymentsConsumer, Stream: contracts.StreamPayments, Handler: c.orderSucceeded},
	}
}

type consumer struct{ log *slog.Logger }

// orderSucceeded adds a succeeded payment order's net to its seller's
// pending balance, inside the inbox transaction. The inbox skips a message
// seen before (same ce-id); the change's key (order_succeeded, payment order
// id) makes a re-send under a new ce-id a no-op too. An invalid or
// conflicting event returns an error (ErrInvalidEvent, ErrConflict) that
// retrying will not fix: it must end in the dead-letter queue.
func (c consumer) orderSucceeded(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	err := c.creditPending(ctx, tx, d)
	if errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalidChange) {
		c.log.ErrorContext(ctx, "rejected payments.order.succeeded: it needs an operator",
			"consumer", contracts.WalletPaymentsConsumer, "msg_id", d.MsgID, "stream_seq", d.StreamSeq,
			"correlation_id", d.CorrelationID, "err", err)
	}
	return err
}

func (c consumer) creditPending(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if want := contracts.TypeOf(contracts.SubjectOrderSucceeded); d.Type != want {
		return fmt.Errorf("%w: message %s: type %q, want %q", ErrInvalidEvent, d.MsgID, d.Type, want)
	}
	var ev contracts.OrderSucceeded
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return fmt.Errorf("%w: message %s: decode: %w", ErrInvalidEvent, d.MsgID, err)
	}
	if err := ValidateOrderSucceeded(ev); err != nil {
		return err
	}
	b, applied, err := apply(ctx, tx, change{
		SellerID:     ev.SellerID,
		MerchantID:   ev.MerchantID,
		Currency:     ev.Currency,
		Cause:        contracts.CauseOrderSucceeded,
		Ref:          ev.PaymentOrderID,
		DeltaPending: ev.NetMinor,
	})
	if err != nil {
		return err
	}
	if !applied {
		c.log.InfoContext(ctx, "payment order already credited; re-sent event ignored",
			"payment_order_id", ev.PaymentOrderID, "msg_id", d.MsgID, "seller_id", b.SellerID, "version", b.Version)
	}
	return nil
}
