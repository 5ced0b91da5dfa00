-- The pay-out side of the simulator: charge fees, refunds, payouts, payout
-- webhooks and seeded settlement discrepancies.

-- +goose Up

-- The PSP's processing fee is fixed on the charge when it happens, with the
-- rate in force then: a settlement file never recomputes history.
-- refunded_minor is the running total of succeeded refunds; its CHECK makes
-- "never refund more than was charged" a database fact (refunds update it
-- under the charge's row lock).
ALTER TABLE pspsim.charges
    ADD COLUMN fee_minor      bigint  NOT NULL DEFAULT 0 CHECK (fee_minor >= 0 AND fee_minor <= amount_minor),
    ADD COLUMN fee_bps        integer NOT NULL DEFAULT 0 CHECK (fee_bps BETWEEN 0 AND 10000),
    ADD COLUMN refunded_minor bigint  NOT NULL DEFAULT 0 CHECK (refunded_minor BETWEEN 0 AND amount_minor);
CREATE INDEX charges_charged_at_idx ON pspsim.charges (charged_at, payment_id);

-- Idempotency keys of POST /v1/refunds and /v1/payouts (the payment keys'
-- table points at payments). kind says which table object_id is in.
CREATE TABLE pspsim.request_keys (
    key         text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    kind        text        NOT NULL CHECK (kind IN ('refund', 'payout')),
    fingerprint bytea       NOT NULL,
    object_id   text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The refund log: one row per refund, all succeeded (the simulator refunds
-- synchronously). UNIQUE (merchant_reference): one refund per paypipe refund id.
CREATE TABLE pspsim.refunds (
    seq                bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                 text        PRIMARY KEY CHECK (id ~ '^re_[a-z0-9]{26}$'),
    payment_id         text        NOT NULL REFERENCES pspsim.charges (payment_id),
    merchant_reference text        NOT NULL CHECK (length(merchant_reference) BETWEEN 1 AND 255),
    amount_minor       bigint      NOT NULL CHECK (amount_minor BETWEEN 1 AND 99999999999),
    currency           char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    reason             text        NOT NULL DEFAULT '' CHECK (length(reason) <= 1000),
    status             text        NOT NULL CHECK (status IN ('succeeded')),
    idempotency_key    text        NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT refunds_merchant_reference_uq UNIQUE (merchant_reference)
);
CREATE INDEX refunds_payment_idx ON pspsim.refunds (payment_id);
CREATE INDEX refunds_created_idx ON pspsim.refunds (created_at, id);

-- The payout log: one row per payout, UNIQUE (merchant_reference) so a
-- paypipe payout id can never be paid out twice. pending until due_at, then
-- paid (paid_at) or failed. planned_failure is the failure decided by the
-- faults at creation (NULL: it will be paid); it is not shown by the API.
CREATE TABLE pspsim.payouts (
    seq                bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                 text        PRIMARY KEY CHECK (id ~ '^po_[a-z0-9]{26}$'),
    merchant_reference text        NOT NULL CHECK (length(merchant_reference) BETWEEN 1 AND 255),
    amount_minor       bigint      NOT NULL CHECK (amount_minor BETWEEN 1 AND 99999999999),
    currency           char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    destination        text        NOT NULL CHECK (length(destination) BETWEEN 1 AND 255),
    description        text        NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    status             text        NOT NULL CHECK (status IN ('pending', 'paid', 'failed')),
    failure_code       text,
    planned_failure    text,
    idempotency_key    text        NOT NULL,
    due_at             timestamptz NOT NULL,
    paid_at            timestamptz,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT payouts_merchant_reference_uq UNIQUE (merchant_reference),
    CHECK ((status = 'failed') = (failure_code IS NOT NULL)),
    CHECK ((status = 'paid') = (paid_at IS NOT NULL))
);
CREATE INDEX payouts_due_idx ON pspsim.payouts (due_at) WHERE status = 'pending';
CREATE INDEX payouts_paid_idx ON pspsim.payouts (paid_at, id) WHERE status = 'paid';
CREATE INDEX payouts_created_idx ON pspsim.payouts (created_at, id);

-- Payout webhooks share the delivery queue: an event belongs to a payment
-- or to a payout, and goes to the matching endpoint.
ALTER TABLE pspsim.webhook_events
    ALTER COLUMN payment_id DROP NOT NULL,
    ADD COLUMN payout_id text REFERENCES pspsim.payouts (id),
    ADD CONSTRAINT webhook_events_owner_ck CHECK ((payment_id IS NULL) <> (payout_id IS NULL));
CREATE INDEX webhook_events_payout_idx ON pspsim.webhook_events (payout_id, seq) WHERE payout_id IS NOT NULL;

-- Seeded settlement discrepancies: stored, so every download of a day is
-- the same file. psp_reference is resolved at insertion (picked by the seed
-- when not given). currency: the replacement (currency_mismatch) or the
-- fabricated line's (unknown_reference); amount_minor, fee_minor and
-- created_at: the fabricated line's.
CREATE TABLE pspsim.settlement_discrepancies (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    date               date        NOT NULL,
    kind               text        NOT NULL CHECK (kind IN ('missing_line', 'altered_amount', 'duplicated_line',
                                       'unknown_reference', 'wrong_fee', 'currency_mismatch', 'settles_late')),
    psp_reference      text        NOT NULL,
    merchant_reference text,
    currency           char(3)     CHECK (currency ~ '^[A-Z]{3}$'),
    amount_minor       bigint,
    fee_minor          bigint,
    line_created_at    timestamptz,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT settlement_discrepancies_uq UNIQUE (date, kind, psp_reference)
);
CREATE INDEX settlement_discrepancies_ref_idx ON pspsim.settlement_discrepancies (psp_reference, date);

-- +goose Down
DROP TABLE pspsim.settlement_discrepancies;
DELETE FROM pspsim.webhook_events WHERE payout_id IS NOT NULL;
ALTER TABLE pspsim.webhook_events DROP CONSTRAINT webhook_events_owner_ck, DROP COLUMN payout_id,
    ALTER COLUMN payment_id SET NOT NULL;
DROP TABLE pspsim.payouts, pspsim.refunds, pspsim.request_keys;
DROP INDEX pspsim.charges_charged_at_idx;
ALTER TABLE pspsim.charges DROP COLUMN refunded_minor, DROP COLUMN fee_bps, DROP COLUMN fee_minor;
