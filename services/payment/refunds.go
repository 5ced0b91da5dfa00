package payment

// # Refunds
//
// POST /v1/payment_orders/{id}/refunds takes the order's row lock (after its
// checkout's, like every writer), checks that the refunds that have not
// failed plus this one stay within the captured amount, and in the same
// transaction inserts the refund (pending), adds it to the order's
// refunded_minor and writes payments.refund.created. Concurrent refunds of
// one order therefore serialise on the lock and can never together exceed
// the captured amount; a CHECK on the order is the last line of defence.
//
// The split between the platform and the seller is decided once, here, and
// travels in every refund event, so the ledger and the wallet never compute
// it themselves: the platform gives back its fee pro rata, half up, on the
// cumulative refunded amount,
//
//	fee_refunded_after = round_half_up(order.fee × refunded_after / order.amount)
//	refund.fee         = fee_refunded_after − fee_refunded_before
//	refund.net         = refund.amount − refund.fee   (taken from the seller)
//
// so a full refund in any number of parts gives back exactly order.fee.
// (A failed refund removes its amount and fee from both sums; the next
// refund's fee is clamped to [0, amount], which keeps the total at most
// order.fee in every case and exactly order.fee at the full refund.)
//
// Executor sends the refund to the PSP with the refund id as idempotency
// key and reports the answer (payments.refund.reported). The report moves
// the refund forward only (pending → succeeded | failed); duplicates and
// stale reports change nothing, and a report whose amount or currency
// disagrees with the refund is quarantined, never applied. A failed refund
// gives its amount back to the order's refundable amount.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox"
)

// Refund reasons, as Stripe names them.
const (
	RefundReasonDuplicate           = "duplicate"
	RefundReasonFraudulent          = "fraudulent"
	RefundReasonRequestedByCustomer = "requested_by_customer"
)

// Refund is the API's refund object.
type Refund struct {
	ID             uuid.UUID `json:"id"`
	Object         string    `json:"object"`
	PaymentOrderID uuid.UUID `json:"payment_order_id"`
	AmountMinor    int64     `json:"amount_minor"`
	Currency       string    `json:"currency"`
	// FeeMinor is the platform fee given back with this refund, NetMinor
	// (amount − fee) what is taken from the seller.
	FeeMinor    int64     `json:"fee_minor"`
	NetMinor    int64     `json:"net_minor"`
	Status      string    `json:"status"`
	Reason      *string   `json:"reason"`
	FailureCode *string   `json:"failure_code"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// RefundList is a page of an order's refunds, newest first.
type RefundList struct {
	Object  string   `json:"object"`
	Data    []Refund `json:"data"`
	HasMore bool     `json:"has_more"`
}

type createRefundRequest struct {
	AmountMinor amountField `json:"amount_minor"`
	Reason      *string     `json:"reason"`
}

// RefundFee returns the platform fee given back by a refund of amount, for
// an order of orderAmount with fee orderFee of which refundedBefore was
// already refunded (and feeRefundedBefore of the fee given back), by
// refunds that have not failed. See the top of this file. It needs
// 0 < amount, refundedBefore + amount ≤ orderAmount, 0 ≤ orderFee ≤
// orderAmount ≤ money.MaxAmount; the product orderFee × refunded is
// computed in 128 bits, so no input in range overflows.
func RefundFee(orderAmount, orderFee, refundedBefore, feeRefundedBefore, amount int64) (int64, error) {
	if orderAmount <= 0 || orderAmount > money.MaxAmount || orderFee < 0 || orderFee > orderAmount ||
		refundedBefore < 0 || amount <= 0 || amount > orderAmount-refundedBefore ||
		feeRefundedBefore < 0 || feeRefundedBefore > orderFee {
		return 0, fmt.Errorf("payment: refund fee: inputs out of range (order %d fee %d, refunded %d fee %d, refund %d)",
			orderAmount, orderFee, refundedBefore, feeRefundedBefore, amount)
	}
	after := mulDivHalfUp(uint64(orderFee), uint64(refundedBefore+amount), uint64(orderAmount))
	fee := int64(after) - feeRefundedBefore
	return min(max(fee, 0), amount), nil
}

// mulDivHalfUp is round_half_up(a × b / d) = ⌊(2ab + d) / 2d⌋ in 128-bit
// arithmetic. The caller guarantees a ≤ d and b ≤ d ≤ MaxAmount, so 2ab + d
// fits easily and the quotient (≤ b) fits 64 bits.
func mulDivHalfUp(a, b, d uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	hi, lo = hi<<1|lo>>63, lo<<1
	var carry uint64
	lo, carry = bits.Add64(lo, d, 0)
	hi += carry
	q, _ := bits.Div64(hi, lo, 2*d)
	return q
}

// validReason reports whether r is a refund reason the API accepts.
func validReason(r string) bool {
	switch r {
	case RefundReasonDuplicate, RefundReasonFraudulent, RefundReasonRequestedByCustomer:
		return true
	}
	return false
}

// createRefund is POST /v1/payment_orders/{id}/refunds.
func (s *Service) createRefund(rawID string) txWork {
	return func(ctx context.Context, tx pgx.Tx, m merchantCtx, body []byte) (int, any, error) {
		var req createRefundRequest
		if err := decodeOptionalBody(body, &req); err != nil {
			return 0, nil, err
		}
		var errs []FieldError
		a := req.AmountMinor
		switch {
		case !a.set:
		case a.code != "":
			errs = append(errs, FieldError{Field: "amount_minor", Code: a.code, Detail: a.detail})
		case a.v <= 0:
			errs = append(errs, FieldError{Field: "amount_minor", Code: FieldAmountNotPositive, Detail: "a refund's amount is at least 1 minor unit"})
		case a.v > money.MaxAmount:
			errs = append(errs, FieldError{Field: "amount_minor", Code: FieldAmountTooLarge, Detail: fmt.Sprintf("amounts are at most %d minor units", money.MaxAmount)})
		}
		if req.Reason != nil && !validReason(*req.Reason) {
			errs = append(errs, FieldError{Field: "reason", Code: FieldInvalidEnum,
				Detail: "reason is duplicate, fraudulent or requested_by_customer"})
		}
		if len(errs) > 0 {
			return 0, nil, fieldErrors(errs...)
		}
		id, ok := parseUUID(rawID)
		if !ok {
			return 0, nil, notFound()
		}
		c, o, err := lockMerchantOrder(ctx, tx, m.ID, id)
		if err != nil {
			return 0, nil, err
		}
		if o.status != StatusSucceeded && o.status != StatusCompleted {
			return 0, nil, errorf(CodeOrderNotRefundable, "the payment order is %s; only succeeded or completed orders can be refunded", o.status)
		}
		if c.pspPaymentID == nil {
			// A succeeded checkout is always bound to its PSP payment.
			return 0, nil, internal(fmt.Errorf("succeeded checkout %s has no PSP payment id", c.id))
		}
		refundable := o.amount - o.refunded
		amount := a.v
		if !a.set {
			amount = refundable
		}
		if refundable == 0 || amount > refundable {
			return 0, nil, errorf(CodeRefundExceedsCaptured,
				"at most %d %s can be refunded: the order captured %d and refunds of %d are pending or succeeded",
				refundable, o.currency, o.amount, o.refunded)
		}
		fee, err := RefundFee(o.amount, o.fee, o.refunded, o.feeRefunded, amount)
		if err != nil {
			return 0, nil, internal(err)
		}
		refundID, err := uuid.NewV7()
		if err != nil {
			return 0, nil, internal(err)
		}
		now := s.events.now().UTC()
		rf := Refund{ID: refundID, Object: "refund", PaymentOrderID: o.id, AmountMinor: amount, Currency: o.currency,
			FeeMinor: fee, NetMinor: amount - fee, Status: contracts.RefundStatusPending, Reason: req.Reason}
		if err := tx.QueryRow(ctx, `INSERT INTO payment.refunds
    (id, payment_order_id, checkout_id, merchant_id, seller_id, currency, amount_minor, fee_minor, net_minor, status, reason, created_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12) RETURNING created_at, updated_at`,
			rf.ID, o.id, c.id, m.ID, o.sellerID, o.currency, amount, fee, rf.NetMinor, rf.Status, req.Reason, now).
			Scan(&rf.CreatedAt, &rf.UpdatedAt); err != nil {
			return 0, nil, dbError(fmt.Errorf("insert refund: %w", err))
		}
		rf.CreatedAt, rf.UpdatedAt = rf.CreatedAt.UTC(), rf.UpdatedAt.UTC()
		if _, err := tx.Exec(ctx, `UPDATE payment.payment_orders SET refunded_minor = refunded_minor + $2,
fee_refunded_minor = fee_refunded_minor + $3, updated_at = $4 WHERE id = $1`, o.id, amount, fee, now); err != nil {
			return 0, nil, dbError(fmt.Errorf("reserve refund on order: %w", err))
		}
		if err := recordTransition(ctx, tx, "refund", rf.ID, "", rf.Status, "created"); err != nil {
			return 0, nil, dbError(err)
		}
		reason := ""
		if req.Reason != nil {
			reason = *req.Reason
		}
		msg, err := newEvent(contracts.SubjectRefundCreated, contracts.SourcePayment, rf.ID, 1, contracts.RefundCreated{
			RefundID: rf.ID.String(), PaymentOrderID: o.id.String(), CheckoutID: c.id.String(), MerchantID: m.ID.String(),
			SellerID: o.sellerID.String(), PSPPaymentID: *c.pspPaymentID, Currency: o.currency, AmountMinor: amount,
			FeeMinor: fee, NetMinor: rf.NetMinor, Reason: reason, CreatedAt: rf.CreatedAt,
		})
		if err != nil {
			return 0, nil, internal(err)
		}
		if err := s.store.Write(ctx, tx, msg); err != nil {
			return 0, nil, dbError(fmt.Errorf("write event: %w", err))
		}
		return http.StatusCreated, rf, nil
	}
}

const refundSelect = `SELECT id, payment_order_id, amount_minor, currency, fee_minor, net_minor, status, reason, failure_code,
    created_at, updated_at FROM payment.refunds`

func scanRefund(row pgx.CollectableRow) (Refund, error) {
	r := Refund{Object: "refund"}
	err := row.Scan(&r.ID, &r.PaymentOrderID, &r.AmountMinor, &r.Currency, &r.FeeMinor, &r.NetMinor, &r.Status,
		&r.Reason, &r.FailureCode, &r.CreatedAt, &r.UpdatedAt)
	r.CreatedAt, r.UpdatedAt = r.CreatedAt.UTC(), r.UpdatedAt.UTC()
	return r, err
}

func (s *Service) getRefund(w http.ResponseWriter, r *http.Request) error {
	return getOwned(s, w, r, "refund", refundSelect, scanRefund)
}

// listRefunds is GET /v1/payment_orders/{id}/refunds: the order's refunds,
// newest first, in pages of at most maxListLimit.
func (s *Service) listRefunds(w http.ResponseWriter, r *http.Request) error {
	q, qerr := strictQuery(r, "limit", "starting_after")
	if qerr != nil {
		return qerr
	}
	limit, lerr := parseLimit(q)
	if lerr != nil {
		return lerr
	}
	id, ok := parseUUID(r.PathValue("id"))
	if !ok {
		return notFound()
	}
	ctx, m := r.Context(), merchantFrom(r.Context())
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM payment.payment_orders WHERE id = $1 AND merchant_id = $2)`,
		id, m.ID).Scan(&exists); err != nil {
		return dbError(fmt.Errorf("read payment order: %w", err))
	}
	if !exists {
		return notFound()
	}
	where, args := `payment_order_id = $1 AND merchant_id = $2`, []any{id, m.ID}
	at, after, ok, err := s.cursor(ctx, q, "refund",
		`SELECT created_at FROM payment.refunds WHERE id = $1 AND payment_order_id = $2 AND merchant_id = $3`, id, m.ID)
	if err != nil {
		return err
	}
	if ok {
		where, args = where+` AND (created_at, id) < ($3, $4)`, append(args, at, after)
	}
	args = append(args, limit+1)
	rows, err := s.pool.Query(ctx, refundSelect+` WHERE `+where+` ORDER BY created_at DESC, id DESC LIMIT $`+strconv.Itoa(len(args)), args...)
	if err != nil {
		return dbError(fmt.Errorf("read refunds: %w", err))
	}
	list, err := pgx.CollectRows(rows, scanRefund)
	if err != nil {
		return dbError(fmt.Errorf("read refunds: %w", err))
	}
	out := RefundList{Object: "list"}
	out.Data, out.HasMore = page(list, limit)
	return writeJSON(w, http.StatusOK, out)
}

// refundRow is a refund read under its row lock by the report consumer.
type refundRow struct {
	id          uuid.UUID
	orderID     uuid.UUID
	checkoutID  uuid.UUID
	merchantID  uuid.UUID
	sellerID    uuid.UUID
	currency    string
	amount      int64
	fee         int64
	net         int64
	status      string
	pspRefundID *string
	version     int64
}

// handleRefundReport applies executor's report of the PSP's answer to a
// refund, forward only. Unknown refunds and reports that disagree with the
// refund (merchant, amount, currency, a contradicting final status, a
// success without the PSP's refund id) are quarantined and acked: retrying
// cannot make them agree, and a person must look at the evidence.
func (e *eventSide) handleRefundReport(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if d.Type != contracts.TypeOf(d.Subject) {
		return fmt.Errorf("%w: %s has type %q, this consumer reads %q", ErrInvalidEvent, d.Subject, d.Type, contracts.TypeOf(d.Subject))
	}
	var ev contracts.RefundReported
	if err := decode(d, &ev); err != nil {
		return err
	}
	id, err := parseID(d, "refund_id", ev.RefundID)
	if err != nil {
		return err
	}
	hold := func(reason string) error {
		e.log.Error("refund report quarantined", "refund_id", id, "reason", reason, "msg_id", d.MsgID)
		return quarantine(ctx, tx, "executor", d.MsgID.String(), nil, reason, json.RawMessage(d.Payload))
	}
	// Lock order: checkout, order, refund, as everywhere else.
	var orderID uuid.UUID
	err = tx.QueryRow(ctx, `SELECT payment_order_id FROM payment.refunds WHERE id = $1`, id).Scan(&orderID)
	if errors.Is(err, pgx.ErrNoRows) {
		return hold("no such refund: " + id.String())
	}
	if err != nil {
		return fmt.Errorf("payment: find refund %s: %w", id, err)
	}
	c, err := lockOrder(ctx, tx, orderID)
	if err != nil {
		return err
	}
	o, err := lockOrderRow(ctx, tx, orderID)
	if err != nil {
		return err
	}
	var rf refundRow
	if err := tx.QueryRow(ctx, `SELECT id, payment_order_id, checkout_id, merchant_id, seller_id, currency, amount_minor, fee_minor,
    net_minor, status, psp_refund_id, version FROM payment.refunds WHERE id = $1 FOR UPDATE`, id).Scan(&rf.id, &rf.orderID,
		&rf.checkoutID, &rf.merchantID, &rf.sellerID, &rf.currency, &rf.amount, &rf.fee, &rf.net, &rf.status, &rf.pspRefundID, &rf.version); err != nil {
		return fmt.Errorf("payment: lock refund %s: %w", id, err)
	}
	switch {
	case ev.MerchantID != rf.merchantID.String():
		return hold(fmt.Sprintf("report for merchant %q, the refund belongs to %s", ev.MerchantID, rf.merchantID))
	case ev.AmountMinor != rf.amount || ev.Currency != rf.currency:
		return hold(fmt.Sprintf("amount or currency mismatch: PSP reports %d %s, refund is %d %s",
			ev.AmountMinor, ev.Currency, rf.amount, rf.currency))
	}
	switch ev.Status {
	case contracts.RefundStatusSucceeded, contracts.RefundStatusFailed:
	default:
		return nil // pending or unknown: nothing to move
	}
	if rf.status != contracts.RefundStatusPending {
		if rf.status != ev.Status {
			// Money may have moved while we think it did not, or the reverse.
			return hold(fmt.Sprintf("PSP reports %s for a refund that is %s", ev.Status, rf.status))
		}
		return nil // a duplicate or late report of what we know
	}
	now := e.now().UTC()
	var msg *outbox.Message
	if ev.Status == contracts.RefundStatusSucceeded {
		if ev.PSPRefundID == "" {
			return hold("succeeded report without a PSP refund id")
		}
		if _, err := tx.Exec(ctx, `UPDATE payment.refunds SET status = $2, psp_refund_id = $3, version = version + 1, updated_at = $4 WHERE id = $1`,
			rf.id, ev.Status, ev.PSPRefundID, now); err != nil {
			return fmt.Errorf("payment: refund %s succeeded: %w", rf.id, err)
		}
		msg, err = newEvent(contracts.SubjectRefundSucceeded, contracts.SourcePayment, rf.id, rf.version+1, contracts.RefundSucceeded{
			RefundID: rf.id.String(), PaymentOrderID: rf.orderID.String(), CheckoutID: rf.checkoutID.String(),
			MerchantID: rf.merchantID.String(), SellerID: rf.sellerID.String(), PSPPaymentID: deref(c.pspPaymentID),
			PSPRefundID: ev.PSPRefundID, Currency: rf.currency, AmountMinor: rf.amount, FeeMinor: rf.fee, NetMinor: rf.net,
			SucceededAt: now,
		})
	} else {
		code := ev.FailureCode
		if code == "" {
			code = "refund_failed"
		}
		if _, err := tx.Exec(ctx, `UPDATE payment.refunds SET status = $2, failure_code = $3, psp_refund_id = coalesce(nullif($4, ''), psp_refund_id),
version = version + 1, updated_at = $5 WHERE id = $1`, rf.id, ev.Status, code, ev.PSPRefundID, now); err != nil {
			return fmt.Errorf("payment: refund %s failed: %w", rf.id, err)
		}
		// No money moved: the amount is refundable again.
		if _, err := tx.Exec(ctx, `UPDATE payment.payment_orders SET refunded_minor = refunded_minor - $2,
fee_refunded_minor = fee_refunded_minor - $3, updated_at = $4 WHERE id = $1`, o.id, rf.amount, rf.fee, now); err != nil {
			return fmt.Errorf("payment: release refund %s: %w", rf.id, err)
		}
		msg, err = newEvent(contracts.SubjectRefundFailed, contracts.SourcePayment, rf.id, rf.version+1, contracts.RefundFailed{
			RefundID: rf.id.String(), PaymentOrderID: rf.orderID.String(), CheckoutID: rf.checkoutID.String(),
			MerchantID: rf.merchantID.String(), SellerID: rf.sellerID.String(), Currency: rf.currency,
			AmountMinor: rf.amount, FailureCode: code, FailedAt: now,
		})
	}
	if err != nil {
		return err
	}
	if err := recordTransition(ctx, tx, "refund", rf.id, rf.status, ev.Status, "executor:"+d.Subject); err != nil {
		return err
	}
	return e.store.Write(ctx, tx, msg)
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
