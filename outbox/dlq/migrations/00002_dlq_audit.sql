-- The operators' record of what they did to dead letters (paypipe dlq replay
-- and purge). Version 1 of the ops schema (an outbox and inbox, unused) is the
-- Go migration every schema starts with (internal/migrate).
--
-- One append-only table is the single source of truth: an entry counts as
-- replayed when a 'replay' row exists for its DLQ sequence and message id,
-- so the mark and the audit can never disagree. The message id (ce-id) is
-- part of the key because DLQ sequence numbers restart if the stream is ever
-- recreated: a new message at an old sequence must not look replayed.
--
-- Dry runs write nothing, here or anywhere.

-- +goose Up
CREATE TABLE ops.dlq_audit (
    id                bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    action            text        NOT NULL CHECK (action IN ('replay', 'purge')),
    dlq_stream        text        NOT NULL,
    dlq_stream_seq    bigint      NOT NULL CHECK (dlq_stream_seq > 0),
    -- What the dead message's headers said. No length checks: the row is
    -- written after the replay was published, and must not fail then.
    consumer          text        NOT NULL,
    original_stream   text        NOT NULL,
    original_subject  text        NOT NULL,
    -- ce-id of the dead message: the inbox key the replay keeps. Text, not
    -- uuid: a message that died because its id was malformed is still audited.
    msg_id            text        NOT NULL,
    -- The replay's own Nats-Msg-Id and where JetStream stored it.
    new_nats_msg_id   uuid        UNIQUE,
    replay_stream     text,
    replay_stream_seq bigint,
    actor             text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 255),
    at                timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK ((action = 'replay') = (new_nats_msg_id IS NOT NULL AND replay_stream IS NOT NULL AND replay_stream_seq IS NOT NULL))
);
CREATE INDEX dlq_audit_entry_idx ON ops.dlq_audit (dlq_stream, dlq_stream_seq);
CREATE INDEX dlq_audit_at_idx ON ops.dlq_audit (at);

-- What has been replayed, derived from the audit.
CREATE VIEW ops.dlq_replayed AS
SELECT dlq_stream, dlq_stream_seq, msg_id,
       count(*)                                      AS replays,
       min(at)                                       AS first_replayed_at,
       max(at)                                       AS last_replayed_at,
       (array_agg(actor ORDER BY at DESC, id DESC))[1] AS last_actor
FROM ops.dlq_audit
WHERE action = 'replay'
GROUP BY dlq_stream, dlq_stream_seq, msg_id;

-- An audit trail that can be edited is not one: UPDATE, DELETE and TRUNCATE
-- raise for every role short of a superuser disabling triggers.
-- +goose StatementBegin
CREATE FUNCTION ops.dlq_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ops.dlq_audit is append-only (% refused)', TG_OP;
END
$$;
-- +goose StatementEnd

CREATE TRIGGER dlq_audit_immutable BEFORE UPDATE OR DELETE ON ops.dlq_audit
    FOR EACH ROW EXECUTE FUNCTION ops.dlq_audit_append_only();
CREATE TRIGGER dlq_audit_no_truncate BEFORE TRUNCATE ON ops.dlq_audit
    FOR EACH STATEMENT EXECUTE FUNCTION ops.dlq_audit_append_only();

-- +goose Down
DROP VIEW ops.dlq_replayed;
DROP TABLE ops.dlq_audit;
DROP FUNCTION ops.dlq_audit_append_only();
