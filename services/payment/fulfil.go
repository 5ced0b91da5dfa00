package payment

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// lockedOrder is a payment order read under its row lock.
type lockedOrder struct {
	id          uuid.UUID
	checkoutID  uuid.UUID
	sellerID    uuid.UUID
	currency    string
	amount      int64
	fee         int64
	net         int64
	status      string
	version     int64
	fulfilledAt *time.Time
	refunded    int64
	feeRefunded int64
}

// lockMerchantOrder locks one of the merchant's payment orders: its checkout
// first, then the order (the lock order of every path that changes either,
// so none of them can deadlock). Another merchant's order is notFound.
func lockMerchantOrder(ctx context.Context, tx pgx.Tx, merchantID, orderID uuid.UUID) (checkoutRow, lockedOrder, error) {
	var checkoutID uuid.UUID
	err := tx.QueryRow(ctx, `SELECT checkout_id FROM payment.payment_orders WHERE id = $1 AND merchant_id = $2`,
		orderID, merchantID).Scan(&checkoutID)
	if errors.Is(err, pgx.ErrNoRows) {
		return checkoutRow{}, lockedOrder{}, notFound()
	}
	if err != nil {
		return checkoutRow{}, lockedOrder{}, dbError(fmt.Errorf("find payment order: %w", err))
	}
	c, err := lockCheckout(ctx, tx, checkoutID)
	if err != nil {
		return checkoutRow{}, lockedOrder{}, dbError(err)
	}
	o, err := lockOrderRow(ctx, tx, orderID)
	if err != nil {
		return checkoutRow{}, lockedOrder{}, dbError(err)
	}
	return c, o, nil
}

// lockOrderRow locks an order whose checkout the caller has locked.
func lockOrderRow(ctx context.Context, tx pgx.Tx, orderID uuid.UUID) (lockedOrder, error) {
	var o lockedOrder
	err := tx.QueryRow(ctx, `SELECT id, checkout_id, seller_id, currency, amount_minor, fee_minor, net_minor, status, version,
    fulfilled_at, refunded_minor, fee_refunded_minor
FROM payment.payment_orders WHERE id = $1 FOR UPDATE`, orderID).Scan(&o.id, &o.checkoutID, &o.sellerID, &o.currency,
		&o.amount, &o.fee, &o.net, &o.status, &o.version, &o.fulfilledAt, &o.refunded, &o.feeRefunded)
	if err != nil {
		return o, fmt.Errorf("payment: lock order %s: %w", orderID, err)
	}
	return o, nil
}

// decodeOptionalBody decodes an action's body, which may be absent.
func decodeOptionalBody(body []byte, dst any) *apiError {
	if len(body) == 0 {
		return nil
	}
	return decodeStrict(body, dst)
}

// fulfil is POST /v1/payment_orders/{id}/fulfil: the merchant reports the
// order delivered, and the seller's funds for it become available for
// payout. Only completed orders (captured, and recorded by the ledger and
// the wallet) can be fulfilled: before that the wallet may not hold the
// funds yet. Fulfilment is idempotent by state as well as by key: a second
// fulfilment, with any key, answers 200 with the order unchanged and writes
// nothing, so exactly one payments.order.fulfilled exists per order (the
// fulfilments table's primary key guarantees it).
func (s *Service) fulfil(rawID string) txWork {
	return func(ctx context.Context, tx pgx.Tx, m merchantCtx, body []byte) (int, any, error) {
		var req struct{}
		if err := decodeOptionalBody(body, &req); err != nil {
			return 0, nil, err
		}
		id, ok := parseUUID(rawID)
		if !ok {
			return 0, nil, notFound()
		}
		c, o, err := lockMerchantOrder(ctx, tx, m.ID, id)
		if err != nil {
			return 0, nil, err
		}
		if o.fulfilledAt == nil {
			if o.status != StatusCompleted {
				return 0, nil, errorf(CodeOrderNotFulfillable,
					"the payment order is %s; only completed orders (captured, recorded by the ledger and the wallet) can be fulfilled", o.status)
			}
			if err := s.recordFulfilment(ctx, tx, m, c, o); err != nil {
				return 0, nil, err
			}
		}
		out, err := loadPaymentOrder(ctx, tx, m.ID, id)
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, out, nil
	}
}

func (s *Service) recordFulfilment(ctx context.Context, tx pgx.Tx, m merchantCtx, c checkoutRow, o lockedOrder) error {
	// PostgreSQL keeps microseconds: the event and the row say the same time.
	now := s.events.now().UTC().Truncate(time.Microsecond)
	if _, err := tx.Exec(ctx, `INSERT INTO payment.fulfilments (payment_order_id, merchant_id, request_id, net_minor, fulfilled_at)
VALUES ($1, $2, $3, $4, $5)`, o.id, m.ID, outbox.CorrelationID(ctx), o.net, now); err != nil {
		return dbError(fmt.Errorf("insert fulfilment: %w", err))
	}
	if _, err := tx.Exec(ctx, `UPDATE payment.payment_orders SET fulfilled_at = $2, version = version + 1, updated_at = $2 WHERE id = $1`,
		o.id, now); err != nil {
		return dbError(fmt.Errorf("fulfil order: %w", err))
	}
	msg, err := newEvent(contracts.SubjectOrderFulfilled, contracts.SourcePayment, o.id, o.version+1, contracts.OrderFulfilled{
		PaymentOrderID: o.id.String(), CheckoutID: c.id.String(), MerchantID: c.merchantID.String(),
		SellerID: o.sellerID.String(), Currency: o.currency, NetMinor: o.net, FulfilledAt: now,
	})
	if err != nil {
		return internal(err)
	}
	if err := s.store.Write(ctx, tx, msg); err != nil {
		return dbError(fmt.Errorf("write event: %w", err))
	}
	return nil
}
