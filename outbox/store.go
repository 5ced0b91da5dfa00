package outbox

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Store names one service's outbox and inbox tables. They live in the
// service's own PostgreSQL schema: services share no tables.
type Store struct {
	schema string
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// NewStore returns the Store of the given schema. The name is validated as a
// plain lower-case identifier because it is spliced into SQL.
func NewStore(schema string) (Store, error) {
	if !identRE.MatchString(schema) {
		return Store{}, fmt.Errorf("outbox: schema name %q: want [a-z_][a-z0-9_]*", schema)
	}
	return Store{schema: schema}, nil
}

// MustStore is NewStore for schema names fixed in code.
func MustStore(schema string) Store {
	s, err := NewStore(schema)
	if err != nil {
		panic(err)
	}
	return s
}

// Schema is the PostgreSQL schema holding the tables.
func (s Store) Schema() string { return s.schema }

func (s Store) outbox() string { return s.schema + ".outbox" }
func (s Store) inbox() string  { return s.schema + ".inbox" }

// DDL returns the statements that create the outbox and inbox tables in the
// store's schema. paypipe runs them as a goose migration; outside services
// can put them in their own migrations.
//
// outbox rows are claimed by (published_at IS NULL, next_attempt_at) through
// a small partial index, so the hot path never scans published history.
// Published rows stay for the re-drive window and are then swept in bounded
// batches.
func (s Store) DDL() string {
	return fmt.Sprintf(`
CREATE SCHEMA IF NOT EXISTS %[1]s;

CREATE TABLE %[1]s.outbox (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    msg_id            uuid        NOT NULL UNIQUE,
    subject           text        NOT NULL CHECK (length(subject) BETWEEN 1 AND 255),
    headers           jsonb       NOT NULL,
    payload           bytea       NOT NULL,
    aggregate_id      text,
    created_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at      timestamptz,
    attempts          integer     NOT NULL DEFAULT 0,
    next_attempt_at   timestamptz NOT NULL DEFAULT '-infinity',
    last_error        text
);
CREATE INDEX outbox_pending_idx   ON %[1]s.outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_idx ON %[1]s.outbox (published_at) WHERE published_at IS NOT NULL;
ALTER TABLE %[1]s.outbox SET (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02);

CREATE TABLE %[1]s.inbox (
    consumer     text        NOT NULL,
    msg_id       uuid        NOT NULL,
    subject      text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (consumer, msg_id)
);
CREATE INDEX inbox_processed_idx ON %[1]s.inbox (processed_at);
`, s.schema)
}

// DropDDL reverses DDL.
func (s Store) DropDDL() string {
	return fmt.Sprintf(`DROP TABLE IF EXISTS %[1]s.inbox; DROP TABLE IF EXISTS %[1]s.outbox;`, s.schema)
}

// Write inserts msgs into the outbox in the caller's transaction: the
// messages are published if and only if tx commits. It fills each message's
// ID (UUIDv7) and envelope defaults in place, so the caller can return or log
// the ids.
func (s Store) Write(ctx context.Context, tx pgx.Tx, msgs ...*Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if len(msgs) > MaxMessagesPerTx {
		return fmt.Errorf("%w: %d messages in one write > %d", ErrInvalidMessage, len(msgs), MaxMessagesPerTx)
	}
	now := time.Now()
	ids := make([]uuid.UUID, len(msgs))
	subjects := make([]string, len(msgs))
	headers := make([]string, len(msgs))
	payloads := make([][]byte, len(msgs))
	aggs := make([]*string, len(msgs))
	for i, m := range msgs {
		h, err := m.envelope(ctx, now)
		if err != nil {
			return err
		}
		hj, err := json.Marshal(h)
		if err != nil {
			return fmt.Errorf("outbox: encode headers: %w", err)
		}
		ids[i], subjects[i], headers[i], payloads[i] = m.ID, m.Subject, string(hj), m.Payload
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
		if m.AggregateID != "" {
			a := m.AggregateID
			aggs[i] = &a
		}
	}
	// One round trip for any number of messages.
	tag, err := tx.Exec(ctx, `INSERT INTO `+s.outbox()+` (msg_id, subject, headers, payload, aggregate_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::bytea[], $5::text[])`,
		ids, subjects, headers, payloads, aggs)
	if err != nil {
		return fmt.Errorf("outbox: write %d messages to %s: %w", len(msgs), s.outbox(), err)
	}
	if int(tag.RowsAffected()) != len(msgs) {
		return fmt.Errorf("outbox: wrote %d of %d messages", tag.RowsAffected(), len(msgs))
	}
	return nil
}
