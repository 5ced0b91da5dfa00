-- +goose Up
-- The pay-out half (issue 5): fulfilment, refunds, the payouts projection.

-- refunded_minor and fee_refunded_minor are the sums over the order's
-- refunds that have not failed (pending or succeeded): what is no longer
-- refundable and the platform fee already given back. They change only
-- under the order's row lock, so concurrent refunds can never exceed the
-- captured amount (the CHECK is the last line of defence).
ALTER TABLE payment.payment_orders
    ADD COLUMN fulfilled_at       timestamptz,
    ADD COLUMN refunded_minor     bigint NOT NULL DEFAULT 0,
    ADD COLUMN fee_refunded_minor bigint NOT NULL DEFAULT 0,
    ADD CONSTRAINT payment_orders_refunded_check
        CHECK (refunded_minor BETWEEN 0 AND amount_minor AND fee_refunded_minor BETWEEN 0 AND fee_minor);

-- One row per fulfilled order (the primary key makes a second fulfilment
-- impossible), with the request that did it, for audit.
CREATE TABLE payment.fulfilments (
    payment_order_id uuid PRIMARY KEY REFERENCES payment.payment_orders(id),
    merchant_id      uuid        NOT NULL REFERENCES payment.merchants(id),
    request_id       text        NOT NULL,
    net_minor        bigint      NOT NULL,
    fulfilled_at     timestamptz NOT NULL
);

CREATE TABLE payment.refunds (
    id               uuid PRIMARY KEY,
    payment_order_id uuid        NOT NULL REFERENCES payment.payment_orders(id),
    checkout_id      uuid        NOT NULL REFERENCES payment.checkouts(id),
    merchant_id      uuid        NOT NULL REFERENCES payment.merchants(id),
    seller_id        uuid        NOT NULL REFERENCES payment.sellers(id),
    currency         char(3)     NOT NULL,
    amount_minor     bigint      NOT NULL CHECK (amount_minor > 0),
    fee_minor        bigint      NOT NULL CHECK (fee_minor >= 0),
    net_minor        bigint      NOT NULL CHECK (net_minor >= 0),
    status           text        NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed')),
    reason           text CHECK (reason IN ('duplicate', 'fraudulent', 'requested_by_customer')),
    failure_code     text,
    psp_refund_id    text,
    version          bigint      NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CHECK (fee_minor + net_minor = amount_minor)
);
CREATE INDEX refunds_order_idx ON payment.refunds (payment_order_id, created_at, id);

ALTER TABLE payment.status_transitions DROP CONSTRAINT status_transitions_object_type_check;
ALTER TABLE payment.status_transitions ADD CONSTRAINT status_transitions_object_type_check
    CHECK (object_type IN ('checkout', 'payment_order', 'refund'));

-- Payouts as reported by payouts.payout.* (a projection: the payout service
-- owns them; this copy serves GET /v1/payouts). Each row keeps the highest
-- version seen, so out-of-order events never regress it.
CREATE TABLE payment.payouts (
    id            uuid PRIMARY KEY,
    merchant_id   uuid        NOT NULL,
    seller_id     uuid        NOT NULL,
    currency      char(3)     NOT NULL,
    amount_minor  bigint      NOT NULL,
    status        text        NOT NULL,
    period        text        NOT NULL,
    psp_payout_id text,
    failure_code  text,
    version       bigint      NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX payouts_merchant_idx ON payment.payouts (merchant_id, created_at DESC, id DESC);

-- +goose Down
DROP TABLE payment.payouts, payment.refunds, payment.fulfilments;
DELETE FROM payment.status_transitions WHERE object_type = 'refund';
ALTER TABLE payment.status_transitions DROP CONSTRAINT status_transitions_object_type_check;
ALTER TABLE payment.status_transitions ADD CONSTRAINT status_transitions_object_type_check
    CHECK (object_type IN ('checkout', 'payment_order'));
ALTER TABLE payment.payment_orders DROP CONSTRAINT payment_orders_refunded_check,
    DROP COLUMN fee_refunded_minor, DROP COLUMN refunded_minor, DROP COLUMN fulfilled_at;
