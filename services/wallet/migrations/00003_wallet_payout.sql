-- Pay-out (issue 5): fulfilment, refunds and payouts.
--
-- changes.payment_order_id ties an order's changes together: a refund finds
-- whether its order was fulfilled, a fulfilment finds what the order's
-- refunds already took from pending. NULL for changes about no order
-- (payouts).
--
-- payout_rejections keeps the wallet's refusals of payout requests (nothing
-- available). A refusal changes no balance, so it is not a change; it is
-- kept so the decision about a payout is final: a request re-sent later,
-- when money has become available, must not reserve for a payout the payout
-- service has already canceled.

-- +goose Up
ALTER TABLE wallet.changes
    ADD COLUMN payment_order_id text CHECK (length(payment_order_id) BETWEEN 1 AND 255);
-- The order_succeeded changes made before the column existed: their ref is
-- the order. The history is append-only for the application; this one-off
-- backfill of a new column lifts the guard for its own statement only.
ALTER TABLE wallet.changes DISABLE TRIGGER changes_immutable;
UPDATE wallet.changes SET payment_order_id = ref WHERE cause = 'order_succeeded' AND payment_order_id IS NULL;
ALTER TABLE wallet.changes ENABLE TRIGGER changes_immutable;
CREATE INDEX changes_payment_order_idx ON wallet.changes (payment_order_id) WHERE payment_order_id IS NOT NULL;

CREATE TABLE wallet.payout_rejections (
    payout_id       text        PRIMARY KEY CHECK (length(payout_id) BETWEEN 1 AND 255),
    seller_id       text        NOT NULL,
    currency        char(3)     NOT NULL,
    reason          text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 64),
    available_minor bigint      NOT NULL,
    rejected_at     timestamptz NOT NULL
);

CREATE TRIGGER payout_rejections_immutable BEFORE UPDATE OR DELETE ON wallet.payout_rejections
    FOR EACH ROW EXECUTE FUNCTION wallet.forbid_change();
CREATE TRIGGER payout_rejections_no_truncate BEFORE TRUNCATE ON wallet.payout_rejections
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.forbid_change();

-- +goose Down
DROP TABLE wallet.payout_rejections;
DROP INDEX wallet.changes_payment_order_idx;
ALTER TABLE wallet.changes DROP COLUMN payment_order_id;
