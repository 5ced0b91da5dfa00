-- The payout service's own tables. Version 1 of the schema (outbox and inbox)
-- is a Go migration in internal/migrate.
--
-- Lifecycle of a payout (status), forward-only (contracts.PayoutStatus*):
--   requested  a payout run asked the wallet to reserve the seller's
--              available balance (payouts.payout.requested)
--   created    the wallet reserved amount_minor; the sender will call the PSP
--   sent       the PSP accepted it (psp_payout_id); the resolver polls it
--              until a final webhook or poll
--   paid       final: the money reached the seller's bank
--   failed     final: the PSP refused or returned it; the wallet gives the
--              money back to available
--   canceled   final: nothing was available when the wallet took its lock

-- +goose Up
CREATE TABLE payout.balances (
    seller_id       text        NOT NULL CHECK (length(seller_id) BETWEEN 1 AND 255),
    currency        char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    merchant_id     text        NOT NULL CHECK (length(merchant_id) BETWEEN 1 AND 255),
    available_minor bigint      NOT NULL,
    -- The wallet's balance version: a projection keeps the highest it saw.
    version         bigint      NOT NULL CHECK (version >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (seller_id, currency)
);
-- Payout runs read only the candidates.
CREATE INDEX balances_candidates_idx ON payout.balances (seller_id, currency) WHERE available_minor > 0;

CREATE TABLE payout.payouts (
    -- UUIDv5 of seller|currency|period: a run repeated for a period computes
    -- the same id, and the primary key (or the unique key below) refuses it.
    id              uuid        PRIMARY KEY,
    merchant_id     text        NOT NULL CHECK (length(merchant_id) BETWEEN 1 AND 255),
    seller_id       text        NOT NULL CHECK (length(seller_id) BETWEEN 1 AND 255),
    currency        char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    period          text        NOT NULL CHECK (length(period) BETWEEN 1 AND 64),
    status          text        NOT NULL CHECK (status IN ('requested', 'created', 'sent', 'paid', 'failed', 'canceled')),
    -- Set once, by the wallet's reservation; 0 before it (and when canceled).
    amount_minor    bigint      NOT NULL DEFAULT 0 CHECK (amount_minor >= 0),
    psp_payout_id   text,
    psp_status      text,
    failure_code    text,
    reason          text,
    -- Aggregate version of the payouts.payout.* events: 1 = requested, +1
    -- per change.
    version         bigint      NOT NULL DEFAULT 1 CHECK (version >= 1),
    -- Sender: attempts counts claims (and guards write-backs), the lease
    -- protects a claimed payout during its PSP call, stuck_at ends retries
    -- of an unknown outcome after the give-up window (an operator looks).
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz,
    lease_until     timestamptz,
    last_error      text,
    stuck_at        timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    reserved_at     timestamptz,
    sent_at         timestamptz,
    -- Resolver: polls of a sent payout whose final webhook did not come.
    next_poll_at    timestamptz,
    polls           integer     NOT NULL DEFAULT 0 CHECK (polls >= 0),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (seller_id, currency, period),
    CHECK (status IN ('requested', 'canceled') OR amount_minor > 0),
    CHECK (status NOT IN ('sent', 'paid') OR psp_payout_id IS NOT NULL),
    CHECK (next_poll_at IS NULL OR status = 'sent')
);
CREATE INDEX payouts_send_idx   ON payout.payouts (next_attempt_at) WHERE status = 'created' AND stuck_at IS NULL;
CREATE INDEX payouts_poll_idx   ON payout.payouts (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX payouts_status_idx ON payout.payouts (status, created_at);
CREATE UNIQUE INDEX payouts_psp_idx ON payout.payouts (psp_payout_id) WHERE psp_payout_id IS NOT NULL;

-- Every status change, with what caused it: the audit trail.
CREATE TABLE payout.transitions (
    payout_id   uuid        NOT NULL REFERENCES payout.payouts (id),
    version     bigint      NOT NULL,
    from_status text,
    to_status   text        NOT NULL,
    cause       text        NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (payout_id, version)
);

-- PSP payout webhooks, one row per PSP event id: a re-sent event is
-- recognised and changes nothing.
CREATE TABLE payout.webhook_receipts (
    event_id      text        PRIMARY KEY CHECK (length(event_id) BETWEEN 1 AND 255),
    event_type    text        NOT NULL,
    psp_payout_id text,
    outcome       text        NOT NULL CHECK (outcome IN ('applied', 'no_change', 'ignored', 'quarantined')),
    received_at   timestamptz NOT NULL DEFAULT now()
);

-- Reports from the PSP (webhooks, polls) that disagree with the payout
-- (amount, currency, PSP id, a final status contradicting another): kept
-- with the evidence, never applied.
CREATE TABLE payout.quarantine (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source    text        NOT NULL,
    ref       text        NOT NULL,
    payout_id uuid,
    reason    text        NOT NULL,
    body      jsonb,
    at        timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE payout.quarantine;
DROP TABLE payout.webhook_receipts;
DROP TABLE payout.transitions;
DROP TABLE payout.payouts;
DROP TABLE payout.balances;
