package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
)

// ErrInvalidEvent marks an event that can never be applied (malformed
// payload, ids that are not UUIDs): retrying cannot help; it belongs in the
// dead-letter stream.
var ErrInvalidEvent = retry.Permanent(errors.New("payment: invalid event"))

// eventSide is the payment service's event-driven half: it applies the
// executor's reports and the ledger's and wallet's confirmations.
type eventSide struct {
	store outbox.Store
	log   *slog.Logger
	now   func() time.Time
}

func decode(d outbox.Delivery, v any) error {
	if err := json.Unmarshal(d.Payload, v); err != nil {
		return fmt.Errorf("%w: %s %s: %v", ErrInvalidEvent, d.Subject, d.MsgID, err)
	}
	return nil
}

func parseID(d outbox.Delivery, field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%w: %s %s: %s %q is not a UUID", ErrInvalidEvent, d.Subject, d.MsgID, field, s)
	}
	return id, nil
}

// consumers returns the payment service's durable consumers.
func (e *eventSide) consumers() []outbox.ConsumerSpec {
	return []outbox.ConsumerSpec{
		{Name: contracts.PaymentRegistrationConsumer, Stream: contracts.StreamPayments, Handler: e.handleRegistration},
		{Name: contracts.CompletionLedgerConsumer, Stream: contracts.StreamLedger, Handler: e.handleLedgerEntry},
		{Name: contracts.CompletionWalletConsumer, Stream: contracts.StreamWallet, Handler: e.handleWalletChange},
		{Name: contracts.PaymentRefundReportsConsumer, Stream: contracts.StreamPayments, Handler: e.handleRefundReport},
		{Name: contracts.PaymentPayoutsConsumer, Stream: contracts.StreamPayouts, Handler: e.handlePayoutChanged},
		{Name: contracts.PaymentReconConsumer, Stream: contracts.StreamRecon, Handler: e.handleChargeConfirmed},
	}
}

// handleChargeConfirmed applies a charge the reconciler found in the
// settlement file and confirmed with the PSP (the webhook never came, the
// resolver had not caught it yet) through applyPSPReport, like any other
// report: forward only, so a checkout that moved in the meantime is left
// alone and order.succeeded is still written once. A confirmation for a
// checkout we do not hold, or that disagrees with it, is quarantined.
func (e *eventSide) handleChargeConfirmed(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if d.Type != contracts.TypeOf(d.Subject) {
		return fmt.Errorf("%w: %s has type %q, this consumer reads %q", ErrInvalidEvent, d.Subject, d.Type, contracts.TypeOf(d.Subject))
	}
	var ev contracts.ChargeConfirmed
	if err := decode(d, &ev); err != nil {
		return err
	}
	hold := func(checkoutID *uuid.UUID, reason string) error {
		e.log.Error("recon confirmation quarantined", "checkout_id", ev.CheckoutID, "reason", reason, "msg_id", d.MsgID)
		return quarantine(ctx, tx, "recon", d.MsgID.String(), checkoutID, reason, json.RawMessage(d.Payload))
	}
	id, err := uuid.Parse(ev.CheckoutID)
	if err != nil {
		return hold(nil, fmt.Sprintf("checkout id %q is not a UUID", ev.CheckoutID))
	}
	r := pspReport{CheckoutID: id, PSPPaymentID: ev.PSPPaymentID, PSPStatus: ev.PSPStatus, AmountMinor: ev.AmountMinor,
		Currency: ev.Currency, Cause: "recon:" + ev.SettlementDate}
	outcome, reason, err := applyPSPReport(ctx, tx, e.store, r, e.now())
	if errors.Is(err, errCheckoutNotFound) {
		return hold(nil, "no such checkout: "+id.String())
	}
	if err != nil {
		return err
	}
	if outcome == outcomeQuarantined {
		return hold(&id, reason)
	}
	return nil
}

// handleRegistration applies executor's report of the PSP's answer:
// registered (hosted page ready, or a direct charge's result), resolved (a
// poll found the final status) or rejected (the PSP refused the payment).
func (e *eventSide) handleRegistration(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if d.Type != contracts.TypeOf(d.Subject) {
		// A future version on the same subject must not be decoded as v1.
		return fmt.Errorf("%w: %s has type %q, this consumer reads %q", ErrInvalidEvent, d.Subject, d.Type, contracts.TypeOf(d.Subject))
	}
	var r pspReport
	switch d.Subject {
	case contracts.SubjectCheckoutRegistered, contracts.SubjectCheckoutResolved:
		var ev contracts.CheckoutRegistered
		if err := decode(d, &ev); err != nil {
			return err
		}
		id, err := parseID(d, "checkout_id", ev.CheckoutID)
		if err != nil {
			return err
		}
		r = pspReport{CheckoutID: id, PSPPaymentID: ev.PSPPaymentID, PSPStatus: ev.PSPStatus, AmountMinor: ev.AmountMinor,
			Currency: ev.Currency, RedirectURL: ev.RedirectURL, FailureCode: ev.FailureCode, Cause: "executor:" + d.Subject}
	case contracts.SubjectCheckoutRejected:
		var ev contracts.CheckoutRejected
		if err := decode(d, &ev); err != nil {
			return err
		}
		id, err := parseID(d, "checkout_id", ev.CheckoutID)
		if err != nil {
			return err
		}
		r = pspReport{CheckoutID: id, FailureCode: "psp_rejected:" + ev.Code, Cause: "executor:" + d.Subject, Rejection: true}
	default:
		e.log.Warn("registration consumer: unexpected subject; acked without effect", "subject", d.Subject, "msg_id", d.MsgID)
		return nil
	}
	outcome, reason, err := applyPSPReport(ctx, tx, e.store, r, e.now())
	if errors.Is(err, errCheckoutNotFound) {
		return fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if err != nil {
		return err
	}
	if outcome == outcomeQuarantined {
		e.log.Error("executor report quarantined", "checkout_id", r.CheckoutID, "reason", reason, "msg_id", d.MsgID)
		return quarantine(ctx, tx, "executor", d.MsgID.String(), &r.CheckoutID, reason, json.RawMessage(d.Payload))
	}
	return nil
}

// lockOrder finds an order's checkout and locks the checkout, then the order
// (the same lock order as every other path).
func lockOrder(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) (checkoutRow, error) {
	var checkoutID uuid.UUID
	err := tx.QueryRow(ctx, `SELECT checkout_id FROM payment.payment_orders WHERE id = $1`, orderID).Scan(&checkoutID)
	if errors.Is(err, pgx.ErrNoRows) {
		return checkoutRow{}, fmt.Errorf("%w: payment order %s", errCheckoutNotFound, orderID)
	}
	if err != nil {
		return checkoutRow{}, fmt.Errorf("payment: find order %s: %w", orderID, err)
	}
	return lockCheckout(ctx, tx, checkoutID)
}

func (e *eventSide) handleLedgerEntry(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var ev contracts.LedgerEntryPosted
	if err := decode(d, &ev); err != nil {
		return err
	}
	if ev.Kind != contracts.EntryOrderCaptured {
		return nil // other entries (pay-outs, settlements) do not complete orders
	}
	orderID, err := parseID(d, "payment_order_id", ev.PaymentOrderID)
	if err != nil {
		return err
	}
	return e.markRecorded(ctx, tx, orderID, "ledger_recorded_at")
}

func (e *eventSide) handleWalletChange(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var ev contracts.WalletBalanceChanged
	if err := decode(d, &ev); err != nil {
		return err
	}
	sellerID, err := parseID(d, "seller_id", ev.SellerID)
	if err != nil {
		return err
	}
	merchantID, err := parseID(d, "merchant_id", ev.MerchantID)
	if err != nil {
		return err
	}
	// The projection keeps the newest balance: events of one seller and
	// currency can arrive out of order, the version says which is newer.
	if _, err := tx.Exec(ctx, `INSERT INTO payment.seller_balances
  (seller_id, currency, merchant_id, pending_minor, available_minor, paid_out_minor, version, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT (seller_id, currency) DO UPDATE SET pending_minor = EXCLUDED.pending_minor,
  available_minor = EXCLUDED.available_minor, paid_out_minor = EXCLUDED.paid_out_minor,
  version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
WHERE payment.seller_balances.version < EXCLUDED.version`,
		sellerID, ev.Currency, merchantID, ev.PendingMinor, ev.AvailableMinor, ev.PaidOutMinor, ev.Version, e.now()); err != nil {
		return fmt.Errorf("payment: seller balance projection: %w", err)
	}
	// Only the credit of a captured order completes it; fulfilments,
	// refunds and payouts change the balance (above) and nothing else.
	if ev.Cause != contracts.CauseOrderSucceeded {
		return nil
	}
	ref := ev.PaymentOrderID
	if ref == "" {
		ref = ev.Ref // the order id under its newer name
	}
	if ref == "" {
		return fmt.Errorf("%w: %s %s: %s without a payment order id", ErrInvalidEvent, d.Subject, d.MsgID, ev.Cause)
	}
	orderID, err := parseID(d, "payment_order_id", ref)
	if err != nil {
		return err
	}
	return e.markRecorded(ctx, tx, orderID, "wallet_recorded_at")
}

// markRecorded notes that the ledger or the wallet recorded an order, and
// completes the order (and its checkout) once both have.
func (e *eventSide) markRecorded(ctx context.Context, tx pgx.Tx, orderID uuid.UUID, column string) error {
	c, err := lockOrder(ctx, tx, orderID)
	if errors.Is(err, errCheckoutNotFound) {
		return fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if err != nil {
		return err
	}
	now := e.now()
	var o orderRow
	var ledgerAt, walletAt *time.Time
	// column is one of two constants, never input.
	err = tx.QueryRow(ctx, `UPDATE payment.payment_orders SET `+column+` = coalesce(`+column+`, $2)
WHERE id = $1 RETURNING id, seller_id, amount_minor, fee_minor, net_minor, status, version, ledger_recorded_at, wallet_recorded_at`,
		orderID, now).Scan(&o.id, &o.sellerID, &o.amount, &o.fee, &o.net, &o.status, &o.version, &ledgerAt, &walletAt)
	if err != nil {
		return fmt.Errorf("payment: mark order %s: %w", orderID, err)
	}
	if o.status != StatusSucceeded || ledgerAt == nil || walletAt == nil {
		return nil
	}
	if _, err := tx.Exec(ctx, `UPDATE payment.payment_orders SET status = $2, version = version + 1, updated_at = $3 WHERE id = $1`,
		o.id, StatusCompleted, now); err != nil {
		return fmt.Errorf("payment: complete order %s: %w", o.id, err)
	}
	if err := recordTransition(ctx, tx, "payment_order", o.id, o.status, StatusCompleted, "ledger+wallet recorded"); err != nil {
		return err
	}
	msgs := []*outbox.Message{}
	m, err := newEvent(contracts.SubjectOrderCompleted, contracts.SourcePayment, o.id, o.version+1, contracts.OrderCompleted{
		PaymentOrderID: o.id.String(), CheckoutID: c.id.String(), MerchantID: c.merchantID.String(),
		SellerID: o.sellerID.String(), CompletedAt: now.UTC(),
	})
	if err != nil {
		return err
	}
	msgs = append(msgs, m)
	var open int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM payment.payment_orders WHERE checkout_id = $1 AND status <> $2`,
		c.id, StatusCompleted).Scan(&open); err != nil {
		return fmt.Errorf("payment: count open orders: %w", err)
	}
	if open == 0 && CanMove(c.status, StatusCompleted) {
		if _, err := tx.Exec(ctx, `UPDATE payment.checkouts SET status = $2, version = version + 1, updated_at = $3 WHERE id = $1`,
			c.id, StatusCompleted, now); err != nil {
			return fmt.Errorf("payment: complete checkout %s: %w", c.id, err)
		}
		if err := recordTransition(ctx, tx, "checkout", c.id, c.status, StatusCompleted, "all orders completed"); err != nil {
			return err
		}
		m, err := newEvent(contracts.SubjectCheckoutCompleted, contracts.SourcePayment, c.id, c.version+1, contracts.CheckoutCompleted{
			CheckoutID: c.id.String(), MerchantID: c.merchantID.String(), CompletedAt: now.UTC(),
		})
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	return e.store.Write(ctx, tx, msgs...)
}
