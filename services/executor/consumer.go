package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
)

// ErrInvalidCheckout is wrapped by every validation error of a
// checkout.created event. Such an event keeps failing until the consumer's
// MaxDeliver sends it to the dead-letter queue: it is a contract bug, and
// guessing would risk charging the wrong amount.
// Permanent: dead-lettered at once, retrying cannot fix the event.
var ErrInvalidCheckout = retry.Permanent(errors.New("executor: invalid checkout"))

// request is what the executor sends to the PSP for a checkout, stored with
// the attempt so every retry sends exactly the same request.
type request struct {
	AmountMinor       int64  `json:"amount_minor"`
	Currency          string `json:"currency"`
	Mode              string `json:"mode"`
	PaymentMethod     string `json:"payment_method,omitempty"`
	ReturnURL         string `json:"return_url,omitempty"`
	MerchantReference string `json:"merchant_reference"`
}

// handleCheckoutCreated runs inside the inbox transaction. It only records
// the attempt: the PSP is called later, by the registrar, outside any
// transaction. A second checkout.created for the same checkout (a re-send
// under a new message id, a replay) hits the primary key and changes
// nothing, whatever its payload.
func (e *Executor) handleCheckoutCreated(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if want := contracts.TypeOf(contracts.SubjectCheckoutCreated); d.Type != want {
		return fmt.Errorf("%w: message %s: unsupported type %q (want %s)", ErrInvalidCheckout, d.MsgID, d.Type, want)
	}
	var ev contracts.CheckoutCreated
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return fmt.Errorf("%w: message %s: decode: %w", ErrInvalidCheckout, d.MsgID, err)
	}
	checkoutID, merchantID, req, err := requestOf(ev)
	if err != nil {
		return fmt.Errorf("message %s: %w", d.MsgID, err)
	}
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("executor: encode request: %w", err)
	}
	tag, err := tx.Exec(ctx, `INSERT INTO executor.attempts (checkout_id, merchant_id, idempotency_key, request, status)
VALUES ($1, $2, $3, $4, 'pending') ON CONFLICT (checkout_id) DO NOTHING`,
		checkoutID, merchantID, checkoutID.String(), body)
	if err != nil {
		return fmt.Errorf("executor: record attempt for checkout %s: %w", checkoutID, err)
	}
	if tag.RowsAffected() == 0 {
		e.log.Info("checkout already recorded; event ignored", "checkout_id", checkoutID, "msg_id", d.MsgID)
		return nil
	}
	return nil // the registrar is woken after the commit (Consumers' AfterCommit)
}

// requestOf validates the event and builds the PSP request.
func requestOf(ev contracts.CheckoutCreated) (checkoutID, merchantID uuid.UUID, req request, err error) {
	var errs []error
	checkoutID, cerr := uuid.Parse(ev.CheckoutID)
	if cerr != nil || checkoutID == uuid.Nil {
		errs = append(errs, fmt.Errorf("checkout_id %q is not a UUID", ev.CheckoutID))
	}
	merchantID, merr := uuid.Parse(ev.MerchantID)
	if merr != nil || merchantID == uuid.Nil {
		errs = append(errs, fmt.Errorf("merchant_id %q is not a UUID", ev.MerchantID))
	}
	if _, err := money.ParseCurrency(ev.Currency); err != nil {
		errs = append(errs, err)
	}
	if err := money.ValidAmount(ev.AmountMinor); err != nil {
		errs = append(errs, err)
	}
	switch ev.Mode {
	case contracts.ModeHosted:
	case contracts.ModeDirect:
		if ev.PaymentMethod == "" {
			errs = append(errs, errors.New("direct checkout without payment_method"))
		}
	default:
		errs = append(errs, fmt.Errorf("mode %q: want %s or %s", ev.Mode, contracts.ModeHosted, contracts.ModeDirect))
	}
	if len(errs) > 0 {
		return uuid.Nil, uuid.Nil, request{}, fmt.Errorf("%w: checkout %q: %w", ErrInvalidCheckout, ev.CheckoutID, errors.Join(errs...))
	}
	return checkoutID, merchantID, request{
		AmountMinor:       ev.AmountMinor,
		Currency:          ev.Currency,
		Mode:              ev.Mode,
		PaymentMethod:     ev.PaymentMethod,
		ReturnURL:         ev.ReturnURL,
		MerchantReference: checkoutID.String(),
	}, nil
}
