package payment

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/psp"
)

// pspReport is what a PSP said about a checkout's payment, from whichever
// channel brought it: a signed webhook, executor's registration, or
// executor's resolver poll. All three go through applyPSPReport, so the
// order in which they arrive does not matter: the first report of a final
// status moves the checkout, later and stale ones change nothing.
type pspReport struct {
	CheckoutID   uuid.UUID
	PSPPaymentID string
	PSPStatus    string
	AmountMinor  int64
	Currency     string
	RedirectURL  string
	FailureCode  string
	// Cause names the channel and its id, for the audit trail
	// (e.g. "webhook:evt_123", "executor:registered").
	Cause string
	// Rejection marks executor's report that the PSP refused to create the
	// payment: nothing exists at the PSP, so there is no amount or payment
	// id to compare, and the only possible move is to failed.
	Rejection bool
}

// Outcomes of applying a report.
const (
	outcomeApplied     = "applied"
	outcomeNoChange    = "no_change"
	outcomeQuarantined = "quarantined"
	outcomeIgnored     = "ignored"
)

// errCheckoutNotFound is returned for a report about a checkout we do not hold.
var errCheckoutNotFound = errors.New("payment: checkout not found")

type checkoutRow struct {
	id           uuid.UUID
	merchantID   uuid.UUID
	currency     string
	amount       int64
	status       string
	pspPaymentID *string
	version      int64
}

type orderRow struct {
	id       uuid.UUID
	sellerID uuid.UUID
	amount   int64
	fee      int64
	net      int64
	status   string
	version  int64
}

func statusFromPSP(s string) (string, bool) {
	switch s {
	case psp.StatusRequiresAction:
		return StatusRequiresAction, true
	case psp.StatusProcessing:
		return StatusProcessing, true
	case psp.StatusSucceeded:
		return StatusSucceeded, true
	case psp.StatusFailed:
		return StatusFailed, true
	}
	return "", false
}

// lockCheckout reads a checkout with a row lock. Every path that changes a
// checkout or its orders locks the checkout first, so concurrent reports
// and completions of one checkout serialise and never deadlock.
func lockCheckout(ctx context.Context, tx pgx.Tx, id uuid.UUID) (checkoutRow, error) {
	var c checkoutRow
	err := tx.QueryRow(ctx, `SELECT id, merchant_id, currency, amount_minor, status, psp_payment_id, version
FROM payment.checkouts WHERE id = $1 FOR UPDATE`, id).
		Scan(&c.id, &c.merchantID, &c.currency, &c.amount, &c.status, &c.pspPaymentID, &c.version)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, fmt.Errorf("%w: %s", errCheckoutNotFound, id)
	}
	if err != nil {
		return c, fmt.Errorf("payment: lock checkout %s: %w", id, err)
	}
	return c, nil
}

func ordersOf(ctx context.Context, tx pgx.Tx, checkoutID uuid.UUID) ([]orderRow, error) {
	rows, err := tx.Query(ctx, `SELECT id, seller_id, amount_minor, fee_minor, net_minor, status, version
FROM payment.payment_orders WHERE checkout_id = $1 ORDER BY id FOR UPDATE`, checkoutID)
	if err != nil {
		return nil, fmt.Errorf("payment: orders of %s: %w", checkoutID, err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderRow, error) {
		var o orderRow
		err := r.Scan(&o.id, &o.sellerID, &o.amount, &o.fee, &o.net, &o.status, &o.version)
		return o, err
	})
}

func recordTransition(ctx context.Context, tx pgx.Tx, objType string, id uuid.UUID, from, to, cause string) error {
	_, err := tx.Exec(ctx, `INSERT INTO payment.status_transitions (object_type, object_id, from_status, to_status, cause)
VALUES ($1, $2, $3, $4, $5)`, objType, id, from, to, cause)
	if err != nil {
		return fmt.Errorf("payment: record transition: %w", err)
	}
	return nil
}

func quarantine(ctx context.Context, tx pgx.Tx, source, eventID string, checkoutID *uuid.UUID, reason string, payload any) error {
	b, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("payment: quarantine payload: %w", err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO payment.quarantine (source, event_id, checkout_id, reason, payload) VALUES ($1, $2, $3, $4, $5)`,
		source, eventID, checkoutID, reason, b)
	if err != nil {
		return fmt.Errorf("payment: quarantine: %w", err)
	}
	return nil
}

// applyPSPReport moves a checkout and its orders forward according to a PSP
// report, in tx, writing payments.order.succeeded/failed for each order that
// reached a final status. It returns the outcome and, for quarantined
// reports, the reason. The caller commits.
func applyPSPReport(ctx context.Context, tx pgx.Tx, store outbox.Store, r pspReport, now time.Time) (outcome, reason string, err error) {
	c, err := lockCheckout(ctx, tx, r.CheckoutID)
	if err != nil {
		return "", "", err
	}
	// Trust nothing from the network: a report whose money does not match
	// what the buyer agreed to is evidence of a bug or an attack, never applied.
	switch {
	case r.Rejection:
		r.PSPStatus = psp.StatusFailed
	case r.AmountMinor != c.amount || r.Currency != c.currency:
		return outcomeQuarantined, fmt.Sprintf("amount or currency mismatch: PSP reports %d %s, checkout is %d %s",
			r.AmountMinor, r.Currency, c.amount, c.currency), nil
	case r.PSPPaymentID == "":
		return outcomeQuarantined, "report without a PSP payment id", nil
	case c.pspPaymentID != nil && *c.pspPaymentID != r.PSPPaymentID:
		return outcomeQuarantined, fmt.Sprintf("PSP payment %s reported for a checkout bound to %s", r.PSPPaymentID, *c.pspPaymentID), nil
	}
	to, ok := statusFromPSP(r.PSPStatus)
	if !ok {
		return outcomeIgnored, "", nil
	}
	// Two final answers that contradict each other mean money may have moved
	// while we think it did not (or the reverse): a person must look.
	if (c.status == StatusFailed && to == StatusSucceeded) ||
		((c.status == StatusSucceeded || c.status == StatusCompleted) && to == StatusFailed) {
		return outcomeQuarantined, fmt.Sprintf("PSP reports %s for a checkout that is %s", to, c.status), nil
	}
	bind := c.pspPaymentID == nil && r.PSPPaymentID != ""
	if !CanMove(c.status, to) {
		if bind {
			if _, err := tx.Exec(ctx, `UPDATE payment.checkouts SET psp_payment_id = $2, redirect_url = coalesce(redirect_url, nullif($3, '')), updated_at = $4 WHERE id = $1`,
				c.id, r.PSPPaymentID, r.RedirectURL, now); err != nil {
				return "", "", fmt.Errorf("payment: bind psp payment: %w", err)
			}
		}
		return outcomeNoChange, "", nil
	}
	var failure *string
	if to == StatusFailed {
		code := r.FailureCode
		if code == "" {
			code = "payment_failed"
		}
		failure = &code
	}
	if _, err := tx.Exec(ctx, `UPDATE payment.checkouts SET status = $2, psp_payment_id = coalesce(nullif($3, ''), psp_payment_id),
redirect_url = coalesce(nullif($4, ''), redirect_url), failure_code = $5, version = version + 1, updated_at = $6 WHERE id = $1`,
		c.id, to, r.PSPPaymentID, r.RedirectURL, failure, now); err != nil {
		return "", "", fmt.Errorf("payment: move checkout %s: %w", c.id, err)
	}
	if err := recordTransition(ctx, tx, "checkout", c.id, c.status, to, r.Cause); err != nil {
		return "", "", err
	}
	orders, err := ordersOf(ctx, tx, c.id)
	if err != nil {
		return "", "", err
	}
	var msgs []*outbox.Message
	for _, o := range orders {
		if !CanMove(o.status, to) {
			continue
		}
		if _, err := tx.Exec(ctx, `UPDATE payment.payment_orders SET status = $2, failure_code = $3, version = version + 1, updated_at = $4 WHERE id = $1`,
			o.id, to, failure, now); err != nil {
			return "", "", fmt.Errorf("payment: move order %s: %w", o.id, err)
		}
		if err := recordTransition(ctx, tx, "payment_order", o.id, o.status, to, r.Cause); err != nil {
			return "", "", err
		}
		var subject string
		var payload any
		switch to {
		case StatusSucceeded:
			subject = contracts.SubjectOrderSucceeded
			payload = contracts.OrderSucceeded{
				PaymentOrderID: o.id.String(), CheckoutID: c.id.String(), MerchantID: c.merchantID.String(),
				SellerID: o.sellerID.String(), Currency: c.currency, AmountMinor: o.amount, FeeMinor: o.fee,
				NetMinor: o.net, PSPPaymentID: r.PSPPaymentID, CheckoutAmountMinor: c.amount, SucceededAt: now.UTC(),
			}
		case StatusFailed:
			subject = contracts.SubjectOrderFailed
			payload = contracts.OrderFailed{
				PaymentOrderID: o.id.String(), CheckoutID: c.id.String(), MerchantID: c.merchantID.String(),
				SellerID: o.sellerID.String(), Currency: c.currency, AmountMinor: o.amount, FailureCode: *failure,
				FailedAt: now.UTC(),
			}
		default:
			continue // intermediate statuses are visible through the API, not events
		}
		m, err := newEvent(subject, contracts.SourcePayment, o.id, o.version+1, payload)
		if err != nil {
			return "", "", err
		}
		msgs = append(msgs, m)
	}
	if err := store.Write(ctx, tx, msgs...); err != nil {
		return "", "", err
	}
	return outcomeApplied, "", nil
}

func newEvent(subject, source string, aggregate uuid.UUID, version int64, payload any) (*outbox.Message, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("payment: encode %s: %w", subject, err)
	}
	return &outbox.Message{
		Subject: subject, Type: contracts.TypeOf(subject), Source: source,
		AggregateID: aggregate.String(), AggregateVersion: version, Payload: b,
	}, nil
}
