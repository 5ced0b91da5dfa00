-- The reconciler's own tables (DESIGN.md §1 "reconcile", docs/reconciliation.md).
-- Version 1 of the schema (outbox and inbox) is a Go migration in
-- internal/migrate.
--
-- expected is a projection of ledger.entry.posted (the reconciler never reads
-- the ledger's tables): one row per money movement the PSP must settle, keyed
-- by the PSP's reference. A row with posted_at NULL holds only a parked
-- settlement line whose ledger entry has not arrived yet (missing_capture).
-- Money is bigint minor units with an ISO 4217 code, never numeric or float.

-- +goose Up
CREATE TABLE recon.expected (
    psp_reference   text        PRIMARY KEY CHECK (length(psp_reference) BETWEEN 1 AND 255),
    record_type     text        NOT NULL CHECK (record_type IN ('charge', 'refund', 'payout')),
    reference       text        NOT NULL DEFAULT '',
    currency        char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    -- Signed as the settlement file shows it: charge > 0, refund and payout < 0.
    gross_minor     bigint      NOT NULL,
    -- First ledger posting of the movement; NULL while only a parked line exists.
    posted_at       timestamptz,
    -- A settlement line that came before its ledger entry (missing_capture):
    -- the projection consumer settles it when the entry arrives.
    parked          jsonb
);

-- settlements records which file line settled a movement: insert-only, one
-- row per psp_reference (a second line is a duplicate_line). It is a table
-- of its own, not columns of expected, because marking 5,000 expected rows
-- settled per chunk was a non-HOT update (≈2× the cost of this insert) and
-- the run's bottleneck (docs/reconciliation.md, Benchmark). No foreign key:
-- only matched lines of existing expected rows are inserted, and the check
-- would cost an index probe per line.
CREATE TABLE recon.settlements (
    psp_reference   text        PRIMARY KEY,
    file_id         text        NOT NULL,
    line_no         bigint      NOT NULL,
    settlement_date date        NOT NULL
);

CREATE TABLE recon.runs (
    id              uuid        PRIMARY KEY,
    settlement_date date        NOT NULL,
    file_id         text        NOT NULL CHECK (file_id ~ '^[0-9a-f]{64}$'),
    status          text        NOT NULL CHECK (status IN ('running', 'completed')),
    -- Last file line whose effects are committed; a resumed run starts after it.
    cursor_line     bigint      NOT NULL DEFAULT 0 CHECK (cursor_line >= 0),
    -- 'file', then 'ledger' (the unsettled-row pass, cursor ledger_after), then 'done'.
    phase           text        NOT NULL DEFAULT 'file' CHECK (phase IN ('file', 'ledger', 'done')),
    ledger_after    text        NOT NULL DEFAULT '',
    -- The summary so far, committed with every chunk: a resumed run continues it.
    state           jsonb       NOT NULL,
    attempts        integer     NOT NULL DEFAULT 1,
    started_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    completed_at    timestamptz,
    last_error      text,
    UNIQUE (settlement_date, file_id)
);
CREATE INDEX runs_date_idx ON recon.runs (settlement_date, completed_at DESC);

CREATE TABLE recon.mismatches (
    id                  uuid        PRIMARY KEY,
    -- class|subject|settlement date, subject = psp_reference, seller|currency
    -- or file:line: one mismatch per fact however often a run resumes or reruns.
    key                 text        NOT NULL UNIQUE,
    run_id              uuid        NOT NULL,
    settlement_date     date        NOT NULL,
    class               text        NOT NULL,
    queue               text        NOT NULL CHECK (queue IN ('auto', 'finance', 'investigation')),
    status              text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    line_no             bigint,
    record_type         text        NOT NULL DEFAULT '',
    psp_reference       text        NOT NULL DEFAULT '',
    merchant_reference  text        NOT NULL DEFAULT '',
    seller_id           text        NOT NULL DEFAULT '',
    currency            text        NOT NULL DEFAULT '',
    file_amount_minor   bigint      NOT NULL DEFAULT 0,
    ledger_amount_minor bigint      NOT NULL DEFAULT 0,
    detail              text        NOT NULL,
    reaction            text        NOT NULL,
    evidence            jsonb       NOT NULL DEFAULT '{}',
    found_at            timestamptz NOT NULL DEFAULT clock_timestamp(),
    resolution          text,
    resolved_by         text,
    resolved_at         timestamptz,
    note                text,
    CHECK ((status = 'resolved') = (resolved_at IS NOT NULL))
);
CREATE INDEX mismatches_open_ref_idx ON recon.mismatches (psp_reference) WHERE status = 'open' AND psp_reference <> '';
CREATE INDEX mismatches_date_idx ON recon.mismatches (settlement_date, found_at);
CREATE INDEX mismatches_queue_idx ON recon.mismatches (queue, status, found_at);

-- +goose Down
DROP TABLE recon.mismatches;
DROP TABLE recon.runs;
DROP TABLE recon.settlements;
DROP TABLE recon.expected;
