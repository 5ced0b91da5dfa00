-- The wallet's own tables. Version 1 of the schema (outbox and inbox) is a Go
-- migration in internal/migrate.
--
-- A balance row is one seller's money in one currency, split by where it is
-- in its life: pending (captured, not yet releasable), available (releasable
-- for pay-out) and paid_out (sent to the seller). Every change to a row is
-- also a row in changes, keyed by the business effect (cause, ref), so one
-- effect changes a balance at most once whatever the messaging does, and the
-- balance can be rebuilt from its changes.
--
-- available has no lower bound on purpose: a refund after a pay-out can leave
-- a seller owing the platform. pending and paid_out cannot go negative.

-- +goose Up
CREATE TABLE wallet.balances (
    seller_id       text        NOT NULL CHECK (length(seller_id) BETWEEN 1 AND 255),
    currency        char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    merchant_id     text        NOT NULL CHECK (length(merchant_id) BETWEEN 1 AND 255),
    pending_minor   bigint      NOT NULL CHECK (pending_minor >= 0),
    available_minor bigint      NOT NULL,
    paid_out_minor  bigint      NOT NULL CHECK (paid_out_minor >= 0),
    -- +1 per change; 0 only inside the transaction that creates the row.
    version         bigint      NOT NULL CHECK (version >= 0),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (seller_id, currency)
);
CREATE INDEX balances_merchant_idx ON wallet.balances (merchant_id);

CREATE TABLE wallet.changes (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seller_id       text        NOT NULL,
    currency        char(3)     NOT NULL,
    cause           text        NOT NULL CHECK (length(cause) BETWEEN 1 AND 64),
    -- The business effect's id within its cause (a payment order id for
    -- order_succeeded).
    ref             text        NOT NULL CHECK (length(ref) BETWEEN 1 AND 255),
    delta_pending   bigint      NOT NULL,
    delta_available bigint      NOT NULL,
    delta_paid_out  bigint      NOT NULL,
    -- The balance's version after this change.
    version         bigint      NOT NULL CHECK (version >= 1),
    at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (cause, ref),
    UNIQUE (seller_id, currency, version),
    FOREIGN KEY (seller_id, currency) REFERENCES wallet.balances (seller_id, currency)
);

-- changes is the balance's history: append-only. (The owner role cannot
-- REVOKE from itself; the trigger is the guard.)
-- +goose StatementBegin
CREATE FUNCTION wallet.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'wallet: % on %.% is forbidden: the change history is append-only',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER changes_immutable BEFORE UPDATE OR DELETE ON wallet.changes
    FOR EACH ROW EXECUTE FUNCTION wallet.forbid_change();
CREATE TRIGGER changes_no_truncate BEFORE TRUNCATE ON wallet.changes
    FOR EACH STATEMENT EXECUTE FUNCTION wallet.forbid_change();

-- +goose Down
DROP TABLE wallet.changes, wallet.balances;
DROP FUNCTION wallet.forbid_change();
