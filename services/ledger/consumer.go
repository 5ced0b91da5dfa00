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
		{Name: contracts.LedgerPaymentsConsumer, Stream: contracts.StreamPayments, Handler: c.guard(contracts.LedgerPaymentsConsumer, c.orderSucceeded)},
		{Name: contracts.LedgerRefundsConsumer, Stream: contracts.StreamPayments, Handler: c.guard(contracts.LedgerRefundsConsumer, c.refundSucceeded)},
		{Name: contracts.LedgerPayoutsConsumer, Stream: contracts.StreamPayouts, Handler: c.guard(contracts.LedgerPayoutsConsumer, c.payoutChanged)},
		{Name: contracts.LedgerSettlementsConsumer, Stream: contracts.StreamRecon, Handler: c.guard(contracts.LedgerSettlementsConsumer, c.batchSettled)},
	}
}

type consumer struct{ log *slog.Logger }

// guard logs what an operator must look at: an event the ledger refuses for
// good (it goes to the dead-letter queue, never half into the books).
func (c consumer) guard(name string, h outbox.HandlerFunc) outbox.HandlerFunc {
	return func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
		err := h(ctx, tx, d)
		if errors.Is(err, ErrInvalidEvent) || errors.Is(err, ErrExternalIDConflict) || errors.Is(err, ErrInvalidEntry) || errors.Is(err, ErrAccountType) {
			c.log.ErrorContext(ctx, "rejected "+d.Subject+": it needs an operator",
				"consumer", name, "msg_id", d.MsgID, "stream_seq", d.StreamSeq,
				"correlation_id", d.CorrelationID, "err", err)
		}
		return err
	}
}

// post posts e and notes a replay. The inbox skips a message seen before
// (same ce-id); the entry's external id makes a re-send of the same effect
// under a new ce-id a no-op too, and a re-send with different figures an
// ErrExternalIDConflict.
func (c consumer) post(ctx context.Context, tx pgx.Tx, d outbox.Delivery, e Entry) error {
	e.SourceMsgID = d.MsgID
	posted, err := Post(ctx, tx, e)
	if err != nil {
		return err
	}
	if !posted {
		c.log.InfoContext(ctx, "entry already posted; re-sent event ignored",
			"external_id", e.ExternalID, "msg_id", d.MsgID)
	}
	return nil
}

// orderSucceeded posts the captured payment order's entry inside the inbox
// transaction. An invalid event returns an error wrapping ErrInvalidEvent:
// retrying will not fix it, and it must end in the dead-letter queue.
func (c consumer) orderSucceeded(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.OrderSucceeded](d, contracts.SubjectOrderSucceeded)
	if err != nil {
		return err
	}
	e, err := OrderCaptured(ev)
	if err != nil {
		return err
	}
	return c.post(ctx, tx, d, e)
}

// refundSucceeded posts a succeeded refund's reversal.
func (c consumer) refundSucceeded(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.RefundSucceeded](d, contracts.SubjectRefundSucceeded)
	if err != nil {
		return err
	}
	e, err := OrderRefunded(ev)
	if err != nil {
		return err
	}
	return c.post(ctx, tx, d, e)
}

// payoutChanged posts a payout's entries: initiated on created, paid on
// paid, returned on failed.
//
// Events of one payout may arrive in any order (the relay and the runner
// keep no order across messages). Posting paid or returned before initiated
// would leave payout_in_transit negative, so paid and failed first post the
// initiation from their own payload (it carries the seller, currency and
// amount), in the same transaction; the created event arriving later finds
// it by external id and is a no-op, or a conflict if its figures differ.
//
// Paid and returned exclude each other: the payout's initiation row is
// locked before either is checked and posted, so even concurrent
// contradictory events cannot post both; the second is refused for an
// operator.
func (c consumer) payoutChanged(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.PayoutChanged](d, contracts.SubjectPayoutCreated, contracts.SubjectPayoutPaid, contracts.SubjectPayoutFailed)
	if err != nil {
		return err
	}
	if want := payoutStatusOf[d.Type]; ev.Status != want {
		return fmt.Errorf("%w: payout %q: status %q on %s", ErrInvalidEvent, ev.PayoutID, ev.Status, d.Type)
	}
	var final Entry
	var other string
	switch d.Type {
	case contracts.TypeOf(contracts.SubjectPayoutCreated):
		e, err := PayoutInitiated(ev)
		if err != nil {
			return err
		}
		return c.post(ctx, tx, d, e)
	case contracts.TypeOf(contracts.SubjectPayoutPaid):
		if final, err = PayoutPaid(ev); err != nil {
			return err
		}
		other = PayoutReturnedExternalID(ev.PayoutID)
	default:
		var ok bool
		if final, ok, err = PayoutReturned(ev); err != nil {
			return err
		}
		if !ok {
			c.log.InfoContext(ctx, "payout failed before it was created: nothing to return",
				"payout_id", ev.PayoutID, "msg_id", d.MsgID)
			return nil
		}
		other = PayoutPaidExternalID(ev.PayoutID)
	}
	initiated, err := PayoutInitiated(ev)
	if err != nil {
		return err
	}
	if err := c.post(ctx, tx, d, initiated); err != nil {
		return err
	}
	if err := lockEntry(ctx, tx, initiated.ExternalID); err != nil {
		return err
	}
	exists, err := entryExists(ctx, tx, other)
	if err != nil {
		return err
	}
	if exists {
		return fmt.Errorf("%w: payout %q: %s, but %s is posted: a payout is either paid or returned",
			ErrInvalidEvent, ev.PayoutID, d.Subject, other)
	}
	return c.post(ctx, tx, d, final)
}

// payoutStatusOf is the status a payout has after each event the ledger reads.
var payoutStatusOf = map[string]string{
	contracts.TypeOf(contracts.SubjectPayoutCreated): contracts.PayoutStatusCreated,
	contracts.TypeOf(contracts.SubjectPayoutPaid):    contracts.PayoutStatusPaid,
	contracts.TypeOf(contracts.SubjectPayoutFailed):  contracts.PayoutStatusFailed,
}

// batchSettled posts a settled batch's entry. A batch whose figures are all
// zero (payout lines only) posts nothing.
func (c consumer) batchSettled(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	ev, err := decode[contracts.BatchSettled](d, contracts.SubjectReconBatchSettled)
	if err != nil {
		return err
	}
	e, ok, err := Settlement(ev)
	if err != nil {
		return err
	}
	if !ok {
		c.log.InfoContext(ctx, "settled batch moves nothing: no entry", "batch_id", ev.BatchID, "msg_id", d.MsgID)
		return nil
	}
	return c.post(ctx, tx, d, e)
}

// decode checks that d is the current version of one of subjects and
// decodes its payload. A mismatch is ErrInvalidEvent: an unknown version is
// dead-lettered until a ledger that knows it replays it.
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
