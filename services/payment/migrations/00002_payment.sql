-- +goose Up
-- payment owns merchants, API keys, sellers, checkouts, payment orders,
-- idempotency keys and PSP webhook receipts (DESIGN.md §2).

CREATE TABLE payment.merchants (
    id         uuid PRIMARY KEY,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    fee_bps    integer     NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    created_at timestamptz NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of the secret: keys are 256-bit random, so
-- a fast hash is enough (no dictionary to guess from), and lookup by hash is
-- an index probe.
CREATE TABLE payment.api_keys (
    id          uuid PRIMARY KEY,
    merchant_id uuid        NOT NULL REFERENCES payment.merchants(id),
    key_hash    bytea       NOT NULL UNIQUE,
    prefix      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

CREATE TABLE payment.sellers (
    id          uuid PRIMARY KEY,
    merchant_id uuid        NOT NULL REFERENCES payment.merchants(id),
    name        text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sellers_merchant_idx ON payment.sellers (merchant_id, created_at);

-- Idempotency keys (DESIGN.md §6): scoped per merchant; the fingerprint is
-- SHA-256 over method, path and body; in-flight requests hold locked_at.
CREATE TABLE payment.idempotency_keys (
    merchant_id     uuid        NOT NULL REFERENCES payment.merchants(id),
    key             text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    method          text        NOT NULL,
    path            text        NOT NULL,
    fingerprint     bytea       NOT NULL,
    locked_at       timestamptz,
    response_status integer,
    response_body   bytea,
    created_at      timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz NOT NULL,
    PRIMARY KEY (merchant_id, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON payment.idempotency_keys (expires_at);

-- Status ranks make every transition forward-only: created 0,
-- requires_action 1, processing 2, succeeded/failed 3, completed 4.
CREATE TABLE payment.checkouts (
    id              uuid PRIMARY KEY,
    merchant_id     uuid        NOT NULL REFERENCES payment.merchants(id),
    buyer_id        text        NOT NULL,
    currency        char(3)     NOT NULL,
    amount_minor    bigint      NOT NULL CHECK (amount_minor > 0),
    mode            text        NOT NULL CHECK (mode IN ('hosted', 'direct')),
    payment_method  text,
    return_url      text,
    status          text        NOT NULL CHECK (status IN ('created', 'requires_action', 'processing', 'succeeded', 'failed', 'completed')),
    psp_payment_id  text UNIQUE,
    redirect_url    text,
    failure_code    text,
    version         bigint      NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX checkouts_merchant_idx ON payment.checkouts (merchant_id, created_at);
CREATE INDEX checkouts_open_idx ON payment.checkouts (created_at) WHERE status NOT IN ('failed', 'completed');

CREATE TABLE payment.payment_orders (
    id                 uuid PRIMARY KEY,
    checkout_id        uuid        NOT NULL REFERENCES payment.checkouts(id),
    merchant_id        uuid        NOT NULL REFERENCES payment.merchants(id),
    seller_id          uuid        NOT NULL REFERENCES payment.sellers(id),
    currency           char(3)     NOT NULL,
    amount_minor       bigint      NOT NULL CHECK (amount_minor > 0),
    fee_minor          bigint      NOT NULL CHECK (fee_minor >= 0),
    net_minor          bigint      NOT NULL CHECK (net_minor >= 0),
    status             text        NOT NULL CHECK (status IN ('created', 'requires_action', 'processing', 'succeeded', 'failed', 'completed')),
    failure_code       text,
    ledger_recorded_at timestamptz,
    wallet_recorded_at timestamptz,
    version            bigint      NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CHECK (fee_minor + net_minor = amount_minor)
);
CREATE INDEX payment_orders_checkout_idx ON payment.payment_orders (checkout_id);
CREATE INDEX payment_orders_merchant_idx ON payment.payment_orders (merchant_id, created_at);

-- Every status change, for audit and the monotonic-state invariant.
CREATE TABLE payment.status_transitions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    object_type text        NOT NULL CHECK (object_type IN ('checkout', 'payment_order')),
    object_id   uuid        NOT NULL,
    from_status text        NOT NULL,
    to_status   text        NOT NULL,
    cause       text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_transitions_object_idx ON payment.status_transitions (object_id, id);

-- PSP webhooks, deduplicated by the PSP's event id.
CREATE TABLE payment.webhook_receipts (
    event_id       text PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
    event_type     text        NOT NULL,
    psp_payment_id text,
    outcome        text        NOT NULL CHECK (outcome IN ('applied', 'no_change', 'ignored', 'quarantined')),
    received_at    timestamptz NOT NULL DEFAULT now()
);

-- Events that passed authentication but disagree with what we hold (amount,
-- currency, unknown payment): kept with the evidence, never applied.
CREATE TABLE payment.quarantine (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text        NOT NULL,
    event_id    text        NOT NULL,
    checkout_id uuid,
    reason      text        NOT NULL,
    payload     jsonb       NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);

-- Sellers' wallet balances as reported by wallet.balance.changed (a
-- projection: wallet owns the balances; this copy serves GET /v1/sellers).
CREATE TABLE payment.seller_balances (
    seller_id       uuid        NOT NULL,
    currency        char(3)     NOT NULL,
    merchant_id     uuid        NOT NULL,
    pending_minor   bigint      NOT NULL,
    available_minor bigint      NOT NULL,
    paid_out_minor  bigint      NOT NULL,
    version         bigint      NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, currency)
);

-- +goose Down
DROP TABLE payment.seller_balances, payment.quarantine, payment.webhook_receipts,
    payment.status_transitions, payment.payment_orders, payment.checkouts,
    payment.idempotency_keys, payment.sellers, payment.api_keys, payment.merchants;
