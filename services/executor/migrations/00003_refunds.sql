-- +goose Up
-- executor sends refunds to the PSP (issue 5): one row per refund, the
-- request, the idempotency key (the refund id, forever) and what the PSP
-- answered. The same atomic phases as attempts (record in the inbox
-- transaction, claim under a lease, call outside any transaction, write
-- back under the lease guard).
--
-- Lifecycle of a row (status):
--   pending    waiting for next_attempt_at; the refunder will create it at
--              the PSP (looking it up first on every retry)
--   in_flight  a refunder holds it until lease_until and is calling the PSP
--   awaiting   the PSP has it (psp_refund_id) but reported it pending; polled
--              with GetRefund from next_attempt_at
--   reported   the PSP's final answer (succeeded or failed) was reported
--   stuck      no answer within the give-up window; an operator must look
--              (the buyer may have been refunded: never "failed")
CREATE TABLE executor.refunds (
    refund_id       uuid        PRIMARY KEY,
    merchant_id     uuid        NOT NULL,
    idempotency_key text        NOT NULL UNIQUE CHECK (idempotency_key = refund_id::text),
    request         jsonb       NOT NULL,
    status          text        NOT NULL CHECK (status IN ('pending', 'in_flight', 'awaiting', 'reported', 'stuck')),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    lease_until     timestamptz,
    psp_refund_id   text,
    psp_status      text        CHECK (psp_status IN ('pending', 'succeeded', 'failed')),
    failure_code    text,
    last_error      text,
    -- Counts the payments.refund.reported events of this refund: their
    -- aggregate version.
    version         bigint      NOT NULL DEFAULT 0,
    window_start    timestamptz NOT NULL DEFAULT now(),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'in_flight' OR lease_until IS NOT NULL),
    CHECK (status <> 'awaiting' OR psp_refund_id IS NOT NULL),
    CHECK (status <> 'reported' OR psp_status IN ('succeeded', 'failed'))
);

CREATE INDEX refunds_due_idx   ON executor.refunds (next_attempt_at) WHERE status IN ('pending', 'awaiting');
CREATE INDEX refunds_lease_idx ON executor.refunds (lease_until) WHERE status = 'in_flight';

-- +goose Down
DROP TABLE executor.refunds;
