package wallet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// Option configures the consumers.
type Option func(*options)

type options struct {
	log *slog.Logger
	cfg Config
}

// WithLogger sets the logger for events the consumers reject. The default
// is slog.Default().
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithConfig sets the consumers' Config (default: the zero Config).
func WithConfig(cfg Config) Option { return func(o *options) { o.cfg = cfg } }

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
	c := consumer{log: o.log.With("service", "wallet"), cfg: o.cfg.withDefaults(), now: time.Now}
	return []outbox.ConsumerSpec{
		{Name: contracts.WalletPaymentsConsumer, Stream: contracts.StreamPayments, Handler: c.guard(contracts.WalletPaymentsConsumer, c.orderSucceeded)},
		{Name: contracts.WalletFulfilmentsConsumer, Stream: contracts.StreamPayments, Handler: c.guard(contracts.WalletFulfilmentsConsumer, c.orderFulfilled)},
		{Name: contracts.WalletRefundsConsumer, Stream: contracts.StreamPayments, Handler: c.guard(contracts.WalletRefundsConsumer, c.refundSucceeded)},
		{Name: contracts.WalletPayoutsConsumer, Stream: contracts.StreamPayouts, Handler: c.guard(contracts.WalletPayoutsConsumer, c.payout)},
	}
}

type consumer struct {
	log *slog.Logger
	cfg Config
	now func() time.Time
}

// guard logs what needs an operator: an event refused for good (it goes to
// the dead-letter queue). ErrNotYet is expected now and then and retried.
func (c consumer) guard(name string, h outbox.HandlerFunc) outbox.HandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
		err := h(ctx, tx, d)
		if errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrConflict) || errors.Is(err, ErrInvalidChange) {
			c.log.ErrorContext(ctx, "rejected "+d.Subject+": it needs an operator",
				"consumer", name, "msg_id", d.MsgID, "stream_seq", d.StreamSeq,
				"correlation_id", d.CorrelationID, "err", err)
		}
		return err
	}
}

// decode checks that d is the current version of one of subjects and
// decodes its payload; a mismatch is ErrInvalidEvent.
func decode[T any](d outbox.Delivery, subjects ...string) (T, error) {
	var ev T
	known := false
	for _, s := range subjects {
		known = known || d.Type == contracts.TypeOf(s)
	}
	if !known {
		return ev, fmt.Errorf("%w: message %s: type %q, want the v1 of %v", ErrInvalidEvent, d.MsgID, d.Type, subjects)
	}
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return ev, fmt.Errorf("%w: message %s: decode: %w", ErrInvalidEvent, d.MsgID, err)
	}
	return ev, nil
}

// sameSubject refuses a replayed effect that names another balance or
// order than the recorded one.
func sameSubject(prev, c change) error {
	if prev.SellerID != c.SellerID || prev.Currency != c.Currency || prev.PaymentOrderID != c.PaymentOrderID {
		return fmt.Errorf("%w: %s %s: recorded for %s/%s order %q, now %s/%s order %q", ErrConflict, c.Cause, c.Ref,
			prev.SellerID, prev.Currency, prev.PaymentOrderID, c.SellerID, c.Currency, c.PaymentOrderID)
	}
	return nil
}

// orderSucceeded adds a succeeded payment order's net to its seller's
// pending balance. The inbox skips a message seen before (same ce-id); the
// change's key (order_succeeded, payment order id) makes a re-send under a
// new ce-id a no-op too.
func (c consumer) orderSucceeded(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.OrderSucceeded](d, contracts.SubjectOrderSucceeded)
	if err != nil {
		return err
	}
	if err := ValidateOrderSucceeded(ev); err != nil {
		return err
	}
	b, applied, err := apply(ctx, tx, change{
		SellerID:       ev.SellerID,
		MerchantID:     ev.MerchantID,
		Currency:       ev.Currency,
		Cause:          contracts.CauseOrderSucceeded,
		Ref:            ev.PaymentOrderID,
		PaymentOrderID: ev.PaymentOrderID,
		DeltaPending:   ev.NetMinor,
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

// orderFulfilled moves a delivered order's funds from pending to available:
// the order's net minus what its refunds already took from pending, and
// never more than pending. The amount depends on the balance, so the
// effect's key is checked before it is computed: a re-send is a no-op
// however the balance changed since. A fulfilment that arrives before its
// order's credit returns ErrNotYet (retried).
func (c consumer) orderFulfilled(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.OrderFulfilled](d, contracts.SubjectOrderFulfilled)
	if err != nil {
		return err
	}
	if err := invalid(ev.Validate()); err != nil {
		return err
	}
	ch := change{SellerID: ev.SellerID, MerchantID: ev.MerchantID, Currency: ev.Currency,
		Cause: contracts.CauseOrderFulfilled, Ref: ev.PaymentOrderID, PaymentOrderID: ev.PaymentOrderID}
	b, credit, done, err := orderEffect(ctx, tx, ch, "order "+ev.PaymentOrderID+" fulfilled")
	if err != nil || done {
		return err
	}
	if credit.DeltaPending != ev.NetMinor {
		return fmt.Errorf("%w: order %s fulfilled with net %d, credited %d", ErrConflict, ev.PaymentOrderID, ev.NetMinor, credit.DeltaPending)
	}
	taken, err := sumDeltaPending(ctx, tx, contracts.CauseRefund, ev.PaymentOrderID) // ≤ 0
	if err != nil {
		return err
	}
	move := max(min(ev.NetMinor+taken, b.PendingMinor), 0)
	ch.DeltaPending, ch.DeltaAvailable = -move, move
	_, err = record(ctx, tx, b, ch)
	return err
}

// orderEffect starts a change ch that concerns one payment order (a
// fulfilment, a refund): it locks the balance, reports done for an effect
// recorded before (a re-send: nothing to do, or ErrConflict if recorded for
// another subject), and returns the order's credit. The balance or the
// credit missing is ErrNotYet: the order's payments.order.succeeded has not
// been applied yet, and the event is retried.
func orderEffect(ctx context.Context, tx pgx.Tx, ch change, what string) (b Balance, credit change, done bool, err error) {
	b, found, err := lockBalance(ctx, tx, ch.SellerID, ch.Currency, ch.MerchantID, false)
	if err != nil {
		return b, credit, false, err
	}
	if !found {
		return b, credit, false, fmt.Errorf("%w: %s", ErrNotYet, what)
	}
	if prev, recorded, err := findChange(ctx, tx, ch.Cause, ch.Ref); err != nil || recorded {
		if err == nil {
			err = sameSubject(prev, ch)
		}
		return b, credit, true, err
	}
	credit, ok, err := findChange(ctx, tx, contracts.CauseOrderSucceeded, ch.PaymentOrderID)
	if err != nil {
		return b, credit, false, err
	}
	if !ok {
		return b, credit, false, fmt.Errorf("%w: %s", ErrNotYet, what)
	}
	if err := sameSubject(credit, ch); err != nil {
		return b, credit, false, err
	}
	return b, credit, false, sameMerchant(b, ch)
}

// refundSucceeded takes a refund's net from the seller: from available if
// the order was fulfilled (it may go negative: a refund after a pay-out,
// recovered from later sales), else from pending, and from available for
// whatever pending lacks. Like a fulfilment it waits (ErrNotYet) for its
// order's credit, so a refund of an unfulfilled order is taken from that
// order's pending funds.
func (c consumer) refundSucceeded(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.RefundSucceeded](d, contracts.SubjectRefundSucceeded)
	if err != nil {
		return err
	}
	if err := invalid(ev.Validate()); err != nil {
		return err
	}
	ch := change{SellerID: ev.SellerID, MerchantID: ev.MerchantID, Currency: ev.Currency,
		Cause: contracts.CauseRefund, Ref: ev.RefundID, PaymentOrderID: ev.PaymentOrderID}
	b, _, done, err := orderEffect(ctx, tx, ch, "refund "+ev.RefundID+" of order "+ev.PaymentOrderID)
	if err != nil || done {
		return err
	}
	_, fulfilled, err := findChange(ctx, tx, contracts.CauseOrderFulfilled, ev.PaymentOrderID)
	if err != nil {
		return err
	}
	fromPending := int64(0)
	if !fulfilled {
		fromPending = min(ev.NetMinor, b.PendingMinor)
	}
	ch.DeltaPending, ch.DeltaAvailable = -fromPending, -(ev.NetMinor - fromPending)
	_, err = record(ctx, tx, b, ch)
	return err
}

// payout handles the payout consumer's two subjects.
func (c consumer) payout(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if d.Type == contracts.TypeOf(contracts.SubjectPayoutFailed) {
		return c.payoutFailed(ctx, tx, d)
	}
	return c.payoutRequested(ctx, tx, d)
}

// payoutRequested reserves everything available for a payout, under the
// balance row's lock: concurrent refunds, fulfilments and other payouts of
// the seller wait for it or it for them, so a reservation never exceeds what
// was available when it was made (RELIABILITY.md F19, I9). The decision is
// made once per payout id: a re-sent request finds the reservation (or the
// rejection) and does nothing, emits nothing, even though available has
// changed since.
func (c consumer) payoutRequested(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.PayoutRequest](d, contracts.SubjectPayoutRequested)
	if err != nil {
		return err
	}
	if err := invalid(ev.Validate()); err != nil {
		return err
	}
	ch := change{SellerID: ev.SellerID, MerchantID: ev.MerchantID, Currency: ev.Currency,
		Cause: contracts.CausePayoutReserved, Ref: ev.PayoutID}
	b, found, err := lockBalance(ctx, tx, ev.SellerID, ev.Currency, ev.MerchantID, false)
	if err != nil {
		return err
	}
	if found {
		if err := sameMerchant(b, ch); err != nil {
			return err
		}
	}
	if prev, done, err := findChange(ctx, tx, ch.Cause, ch.Ref); err != nil || done {
		if err == nil {
			err = sameSubject(prev, ch)
		}
		return err
	}
	if done, err := rejected(ctx, tx, ev.PayoutID); err != nil || done {
		return err
	}
	amount := b.AvailableMinor // 0 without a balance
	if amount < c.cfg.MinPayoutMinor {
		reason := RejectNothingAvailable
		if amount > 0 {
			reason = RejectBelowMinimum
		}
		rej := contracts.PayoutRejected{PayoutID: ev.PayoutID, MerchantID: ev.MerchantID, SellerID: ev.SellerID,
			Currency: ev.Currency, Reason: reason, AvailableMinor: amount, RejectedAt: c.now().UTC().Truncate(time.Microsecond)}
		first, err := recordRejection(ctx, tx, rej)
		if err != nil || !first {
			return err
		}
		return writeEvent(ctx, tx, contracts.SubjectWalletPayoutRejected, ev.PayoutID, rej)
	}
	ch.DeltaAvailable, ch.DeltaPaidOut = -amount, amount
	after, err := record(ctx, tx, b, ch)
	if err != nil {
		return err
	}
	return writeEvent(ctx, tx, contracts.SubjectWalletPayoutReserved, ev.PayoutID, contracts.PayoutReserved{
		PayoutID: ev.PayoutID, MerchantID: ev.MerchantID, SellerID: ev.SellerID, Currency: ev.Currency,
		AmountMinor: amount, ReservedAt: after.UpdatedAt.UTC(),
	})
}

// payoutFailed returns a failed payout's reservation to available. Only a
// reserved payout returns anything; the amount is the one reserved. The
// event's amount must agree with it (the ledger returns the event's amount
// to seller_payable), except 0: a payout that failed before it was created
// was never initiated in the ledger, and its reservation returns all the
// same.
func (c consumer) payoutFailed(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.PayoutChanged](d, contracts.SubjectPayoutFailed)
	if err != nil {
		return err
	}
	if err := ValidatePayoutChanged(ev); err != nil {
		return err
	}
	if ev.Status != contracts.PayoutStatusFailed {
		return fmt.Errorf("%w: payout %q: status %q on %s", ErrInvalidEvent, ev.PayoutID, ev.Status, d.Subject)
	}
	ch := change{SellerID: ev.SellerID, MerchantID: ev.MerchantID, Currency: ev.Currency,
		Cause: contracts.CausePayoutReturned, Ref: ev.PayoutID}
	b, found, err := lockBalance(ctx, tx, ev.SellerID, ev.Currency, ev.MerchantID, false)
	if err != nil {
		return err
	}
	if !found {
		c.log.InfoContext(ctx, "failed payout was never reserved: nothing to return", "payout_id", ev.PayoutID, "msg_id", d.MsgID)
		return nil
	}
	if prev, done, err := findChange(ctx, tx, ch.Cause, ch.Ref); err != nil || done {
		if err == nil {
			err = sameSubject(prev, ch)
		}
		return err
	}
	reserved, ok, err := findChange(ctx, tx, contracts.CausePayoutReserved, ev.PayoutID)
	if err != nil {
		return err
	}
	if !ok {
		c.log.InfoContext(ctx, "failed payout was never reserved: nothing to return", "payout_id", ev.PayoutID, "msg_id", d.MsgID)
		return nil
	}
	if err := sameSubject(reserved, ch); err != nil {
		return err
	}
	if err := sameMerchant(b, ch); err != nil {
		return err
	}
	amount := reserved.DeltaPaidOut
	if ev.AmountMinor != 0 && ev.AmountMinor != amount {
		return fmt.Errorf("%w: payout %s failed with amount %d, reserved %d", ErrConflict, ev.PayoutID, ev.AmountMinor, amount)
	}
	ch.DeltaPaidOut, ch.DeltaAvailable = -amount, amount
	_, err = record(ctx, tx, b, ch)
	return err
}
