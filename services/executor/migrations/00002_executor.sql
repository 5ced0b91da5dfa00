-- +goose Up
-- executor owns its PSP attempts (DESIGN.md §2): one row per checkout, the
-- request sent to the PSP, the idempotency key, and what the PSP answered.
--
-- Lifecycle of a row (status):
--   pending    waiting for next_attempt_at; the registrar will call the PSP
--   in_flight  a registrar holds it until lease_until and is calling the PSP
--   registered the PSP knows the payment (psp_payment_id); the resolver polls
--              it while psp_status is not final (next_poll_at not null)
--   rejected   the PSP refused to create it (permanent 4xx); nothing charged
--   stuck      no answer from the PSP within the give-up window; an operator
--              must look (the buyer may have been charged: never "failed")
CREATE TABLE executor.attempts (
    checkout_id     uuid        PRIMARY KEY,
    merchant_id     uuid        NOT NULL,
    -- The PSP idempotency key is the checkout id, forever: stored rather than
    -- derived at call time so the key sent is auditable, and checked so no
    -- code path can ever send a different one for this checkout.
    idempotency_key text        NOT NULL UNIQUE CHECK (idempotency_key = checkout_id::text),
    request         jsonb       NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'in_flight', 'registered', 'rejected', 'stuck')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    psp_payment_id  text,
    psp_status      text        CHECK (psp_status IN ('requires_action', 'processing', 'succeeded', 'failed')),
    last_error      text,
    registered_at   timestamptz,
    next_poll_at    timestamptz,
    polls           integer     NOT NULL DEFAULT 0 CHECK (polls >= 0),
    -- Counts the events emitted for this checkout: their aggregate version.
    version         bigint      NOT NULL DEFAULT 0,
    -- Start of the give-up window (GiveUpAfter): arrival, or an operator's
    -- RetryStuck.
    window_start    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'in_flight' OR lease_until IS NOT NULL),
    CHECK (status <> 'registered' OR (psp_payment_id IS NOT NULL AND psp_status IS NOT NULL AND registered_at IS NOT NULL)),
    CHECK (next_poll_at IS NULL OR status = 'registered')
);

-- The registrar's two claim paths and the resolver's, each a small partial
-- index so claims never scan finished history.
CREATE INDEX attempts_due_idx   ON executor.attempts (next_attempt_at) WHERE status = 'pending';
CREATE INDEX attempts_lease_idx ON executor.attempts (lease_until) WHERE status = 'in_flight';
CREATE INDEX attempts_poll_idx  ON executor.attempts (next_poll_at) WHERE next_poll_at IS NOT NULL;
CREATE INDEX attempts_stuck_idx ON executor.attempts (updated_at) WHERE status = 'stuck';

-- +goose Down
DROP TABLE executor.attempts;
