-- The PSP simulator's own tables (schema pspsim). Version 1 of the schema, the
-- outbox and inbox tables every paypipe schema gets, is unused here: webhooks
-- are a delivery queue with per-event state (attempts, dead, dropped) that the
-- outbox relay does not model.
--
-- Money is bigint minor units with an ISO 4217 code; the CHECKs repeat the Go
-- validation. No column holds a card number, a CVC or a cardholder name: the
-- simulator keeps at most the brand and the last four digits.

-- +goose Up
CREATE TABLE pspsim.payments (
    id                 text        PRIMARY KEY CHECK (id ~ '^pay_[a-z0-9]{26}$'),
    merchant_reference text        NOT NULL CHECK (length(merchant_reference) BETWEEN 1 AND 255),
    amount_minor       bigint      NOT NULL CHECK (amount_minor BETWEEN 1 AND 99999999999),
    currency           char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    description        text        NOT NULL DEFAULT '' CHECK (length(description) <= 1000),
    return_url         text        CHECK (length(return_url) <= 2048),
    status             text        NOT NULL CHECK (status IN ('requires_payment_method', 'processing', 'succeeded', 'failed')),
    failure_code       text,
    card_brand         text,
    card_last4         text        CHECK (card_last4 ~ '^[0-9]{4}$'),
    -- The hosted page's bearer secret (128-bit random), NULL in direct mode.
    page_token         text        UNIQUE,
    -- The key of the create request, recorded on the charge of a hosted payment.
    idempotency_key    text        NOT NULL,
    expires_at         timestamptz,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- One payment per merchant reference: a real PSP allows several, the
    -- simulator refuses them to expose callers that create twice (409).
    CONSTRAINT payments_merchant_reference_uq UNIQUE (merchant_reference),
    CHECK ((status = 'failed') = (failure_code IS NOT NULL)),
    CHECK (status <> 'succeeded' OR card_last4 IS NOT NULL)
);
-- Listing pages by (created_at, id); expiry scans only unpaid payments.
CREATE INDEX payments_created_idx ON pspsim.payments (created_at, id);
CREATE INDEX payments_expiry_idx ON pspsim.payments (expires_at) WHERE status = 'requires_payment_method';

-- Idempotency keys of POST /v1/payments and /v1/payments/{id}/confirm. The
-- key row is inserted first in the request's transaction: a concurrent
-- request with the same key waits on it and then replays the outcome. The
-- fingerprint covers the endpoint and the normalised body. Keys are kept (a
-- real PSP prunes after 24 h; the unique merchant reference would still stop
-- a second payment).
CREATE TABLE pspsim.idempotency_keys (
    key         text        PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    fingerprint bytea       NOT NULL,
    payment_id  text        NOT NULL REFERENCES pspsim.payments (id) DEFERRABLE INITIALLY DEFERRED,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- The charge log: one row per charge that moved money. UNIQUE (payment_id)
-- makes "charged at most once" a database fact, not only a code path.
CREATE TABLE pspsim.charges (
    id                 bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payment_id         text        NOT NULL REFERENCES pspsim.payments (id),
    idempotency_key    text        NOT NULL,
    merchant_reference text        NOT NULL,
    amount_minor       bigint      NOT NULL CHECK (amount_minor > 0),
    currency           char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    card_brand         text        NOT NULL,
    card_last4         text        NOT NULL CHECK (card_last4 ~ '^[0-9]{4}$'),
    charged_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    CONSTRAINT charges_payment_uq UNIQUE (payment_id)
);
CREATE INDEX charges_reference_idx ON pspsim.charges (merchant_reference);

-- Webhook delivery queue. body is the exact JSON signed and sent on every
-- attempt (text, not jsonb, so the bytes never change). A claimed row's
-- next_attempt_at is pushed out by a lease, so a sender that dies mid-send
-- leaves the row to be retried after the lease: delivery survives restarts.
CREATE TABLE pspsim.webhook_events (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id              text        NOT NULL UNIQUE CHECK (id ~ '^evt_[a-z0-9]{26}$'),
    payment_id      text        NOT NULL REFERENCES pspsim.payments (id),
    type            text        NOT NULL,
    body            text        NOT NULL,
    state           text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead', 'dropped')),
    attempts        integer     NOT NULL DEFAULT 0,
    copies_sent     integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_status     integer,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at     timestamptz
);
CREATE INDEX webhook_events_due_idx ON pspsim.webhook_events (next_attempt_at, seq) WHERE state = 'pending';
CREATE INDEX webhook_events_payment_idx ON pspsim.webhook_events (payment_id, seq);

-- +goose Down
DROP TABLE pspsim.webhook_events, pspsim.charges, pspsim.idempotency_keys, pspsim.payments;
