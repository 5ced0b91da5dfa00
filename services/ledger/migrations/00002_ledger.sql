-- The ledger's own tables (DESIGN.md §7). Version 1 of the schema (outbox and
-- inbox) is a Go migration in internal/migrate.
--
-- The rules that make this a ledger are enforced here, not only in Go, so a
-- bug in a caller, a hand-written fix or a future service cannot break them:
--
--   * journal entries, postings and accounts are append-only: triggers raise on
--     UPDATE, DELETE and TRUNCATE (the owner role cannot be denied privileges
--     on its own tables with REVOKE, so a trigger is the guard that holds for
--     every role short of a superuser disabling triggers);
--   * postings join an entry only in the transaction that created it, so a
--     posted entry cannot be extended later;
--   * a posting's currency is its entry's (composite foreign key);
--   * at COMMIT, every entry touched in the transaction has at least two
--     postings and, per currency, Σ debits = Σ credits (deferred constraint
--     triggers; sums are numeric, so they cannot overflow while checking).
--
-- Money is bigint minor units with an ISO 4217 code, never numeric or float.
-- account_balances is a running total maintained by Go in the posting
-- transaction; CheckBalanced compares it with Σ postings.

-- +goose Up
CREATE TABLE ledger.accounts (
    name           text        PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 255),
    type           text        NOT NULL CHECK (type IN ('asset', 'liability', 'revenue', 'expense')),
    normal_balance text        NOT NULL CHECK (normal_balance IN ('debit', 'credit')),
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- Assets and expenses grow with debits; liabilities and revenue with credits.
    CHECK ((type IN ('asset', 'expense')) = (normal_balance = 'debit'))
);

CREATE TABLE ledger.journal_entries (
    id               uuid        PRIMARY KEY,
    -- The business effect's id (e.g. order_captured:<payment order id>): at
    -- most one entry per effect, whoever posts it and however often.
    external_id      text        NOT NULL UNIQUE CHECK (length(external_id) BETWEEN 1 AND 255),
    kind             text        NOT NULL CHECK (length(kind) BETWEEN 1 AND 64),
    merchant_id      text        NOT NULL CHECK (length(merchant_id) BETWEEN 1 AND 255),
    payment_order_id text        CHECK (length(payment_order_id) BETWEEN 1 AND 255),
    currency         char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    posted_at        timestamptz NOT NULL,
    -- ce-id of the message that caused the entry (NULL when posted by hand).
    source_msg_id    uuid,
    -- The top-level transaction that inserted the entry; set by a trigger,
    -- whatever the INSERT says. Postings may join only from that transaction.
    created_xid      xid8        NOT NULL,
    -- Target of the postings' (entry_id, currency) foreign key.
    UNIQUE (id, currency)
);
CREATE INDEX journal_entries_posted_idx ON ledger.journal_entries (posted_at);
CREATE INDEX journal_entries_order_idx ON ledger.journal_entries (payment_order_id) WHERE payment_order_id IS NOT NULL;

CREATE TABLE ledger.postings (
    entry_id     uuid    NOT NULL,
    line         integer NOT NULL CHECK (line BETWEEN 1 AND 1000),
    account      text    NOT NULL REFERENCES ledger.accounts (name),
    direction    text    NOT NULL CHECK (direction IN ('debit', 'credit')),
    amount_minor bigint  NOT NULL CHECK (amount_minor > 0),
    currency     char(3) NOT NULL,
    PRIMARY KEY (entry_id, line),
    FOREIGN KEY (entry_id, currency) REFERENCES ledger.journal_entries (id, currency)
);
CREATE INDEX postings_account_idx ON ledger.postings (account, currency);

CREATE TABLE ledger.account_balances (
    account       text        NOT NULL REFERENCES ledger.accounts (name),
    currency      char(3)     NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    debits_minor  bigint      NOT NULL CHECK (debits_minor >= 0),
    credits_minor bigint      NOT NULL CHECK (credits_minor >= 0),
    -- +1 per entry that touches the account in this currency.
    version       bigint      NOT NULL CHECK (version >= 1),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (account, currency)
);

-- +goose StatementBegin
CREATE FUNCTION ledger.forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger: % on %.% is forbidden: the ledger is append-only (post a correcting entry instead)',
        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE ON ledger.journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger.forbid_change();
CREATE TRIGGER journal_entries_no_truncate BEFORE TRUNCATE ON ledger.journal_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.forbid_change();
CREATE TRIGGER postings_immutable BEFORE UPDATE OR DELETE ON ledger.postings
    FOR EACH ROW EXECUTE FUNCTION ledger.forbid_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON ledger.postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.forbid_change();
-- An account's type decides the sign of its balance: changing it would
-- rewrite history.
CREATE TRIGGER accounts_immutable BEFORE UPDATE OR DELETE ON ledger.accounts
    FOR EACH ROW EXECUTE FUNCTION ledger.forbid_change();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON ledger.accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.forbid_change();

-- +goose StatementBegin
CREATE FUNCTION ledger.stamp_entry_xid() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.created_xid := pg_current_xact_id();
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER journal_entries_stamp_xid BEFORE INSERT ON ledger.journal_entries
    FOR EACH ROW EXECUTE FUNCTION ledger.stamp_entry_xid();

-- +goose StatementBegin
CREATE FUNCTION ledger.posting_joins_new_entry() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ledger.journal_entries
                   WHERE id = NEW.entry_id AND created_xid = pg_current_xact_id()) THEN
        RAISE EXCEPTION 'ledger: posting % of entry %: postings may only be added in the transaction that creates their entry',
            NEW.line, NEW.entry_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER postings_join_new_entry BEFORE INSERT ON ledger.postings
    FOR EACH ROW EXECUTE FUNCTION ledger.posting_joins_new_entry();

-- check_entry raises unless the entry has ≥ 2 postings and balances in every
-- currency. Sums of bigint are numeric in PostgreSQL: no overflow here.
-- +goose StatementBegin
CREATE FUNCTION ledger.check_entry(entry uuid) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    n   bigint;
    bad record;
BEGIN
    SELECT count(*) INTO n FROM ledger.postings WHERE entry_id = entry;
    IF n < 2 THEN
        RAISE EXCEPTION 'ledger: journal entry % has % posting(s), want at least 2', entry, n
            USING ERRCODE = 'check_violation';
    END IF;
    FOR bad IN
        SELECT currency,
               sum(amount_minor) FILTER (WHERE direction = 'debit')  AS debits,
               sum(amount_minor) FILTER (WHERE direction = 'credit') AS credits
        FROM ledger.postings WHERE entry_id = entry
        GROUP BY currency
        HAVING coalesce(sum(amount_minor) FILTER (WHERE direction = 'debit'), 0)
            <> coalesce(sum(amount_minor) FILTER (WHERE direction = 'credit'), 0)
    LOOP
        RAISE EXCEPTION 'ledger: journal entry % does not balance in %: debits % <> credits %',
            entry, bad.currency, coalesce(bad.debits, 0), coalesce(bad.credits, 0)
            USING ERRCODE = 'check_violation';
    END LOOP;
END;
$$;
-- +goose StatementEnd

-- +goose StatementBegin
CREATE FUNCTION ledger.check_entry_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'postings' THEN
        PERFORM ledger.check_entry(NEW.entry_id);
    ELSE
        PERFORM ledger.check_entry(NEW.id);
    END IF;
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

-- Deferred to COMMIT: an entry and its postings are inserted by separate
-- statements, and only the whole must balance. The trigger on postings is
-- the balance check the design names; the one on journal_entries catches an
-- entry committed with no postings at all.
CREATE CONSTRAINT TRIGGER postings_balanced AFTER INSERT ON ledger.postings
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger.check_entry_trigger();
CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON ledger.journal_entries
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger.check_entry_trigger();

-- +goose Down
DROP TABLE ledger.account_balances, ledger.postings, ledger.journal_entries, ledger.accounts;
DROP FUNCTION ledger.check_entry_trigger(), ledger.check_entry(uuid), ledger.posting_joins_new_entry(),
    ledger.stamp_entry_xid(), ledger.forbid_change();
