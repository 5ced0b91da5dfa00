package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Status is an outbox's health at a glance.
type Status struct {
	Schema             string        `json:"schema"`
	Backlog            int64         `json:"backlog"`
	OldestPendingAge   time.Duration `json:"oldest_pending_age_ns"`
	PublishedLastMin   int64         `json:"published_last_minute"`
	RetryingRows       int64         `json:"retrying_rows"`
	RetainedPublished  int64         `json:"retained_published"`
	OldestPendingError string        `json:"oldest_pending_error,omitempty"`
}

// Status reads the backlog (rows not yet published), the oldest pending row's
// age, how many rows were published in the last minute, and how many pending
// rows have failed at least once.
func (s Store) Status(ctx context.Context, pool *pgxpool.Pool) (Status, error) {
	st := Status{Schema: s.schema}
	var oldest *time.Duration
	var lastErr *string
	err := pool.QueryRow(ctx, `
SELECT
  (SELECT count(*) FROM `+s.outbox()+` WHERE published_at IS NULL),
  (SELECT now() - min(created_at) FROM `+s.outbox()+` WHERE published_at IS NULL),
  (SELECT count(*) FROM `+s.outbox()+` WHERE published_at > now() - interval '1 minute'),
  (SELECT count(*) FROM `+s.outbox()+` WHERE published_at IS NULL AND attempts > 0),
  (SELECT count(*) FROM `+s.outbox()+` WHERE published_at IS NOT NULL),
  (SELECT last_error FROM `+s.outbox()+` WHERE published_at IS NULL ORDER BY id LIMIT 1)`).
		Scan(&st.Backlog, &oldest, &st.PublishedLastMin, &st.RetryingRows, &st.RetainedPublished, &lastErr)
	if err != nil {
		return st, fmt.Errorf("outbox: status of %s: %w", s.schema, err)
	}
	if oldest != nil && *oldest > 0 {
		st.OldestPendingAge = *oldest
	}
	if lastErr != nil {
		st.OldestPendingError = *lastErr
	}
	return st, nil
}

// redriveBatch bounds each redrive transaction so a long window does not
// hold a huge lock set.
const redriveBatch = 5000

// Redrive marks every published row created at or after since as pending
// again, so the relays re-send it with its original Nats-Msg-Id. Use it after
// an incident that may have lost acknowledged messages (a broker that lost
// unsynced writes, a stream purged by mistake). Inside the stream's duplicate
// window JetStream drops the copies; after it, consumers' inboxes do. It
// returns how many rows were re-queued. Rows older than the retention window
// are already swept and cannot be re-driven.
func (s Store) Redrive(ctx context.Context, pool *pgxpool.Pool, since time.Time) (int64, error) {
	if since.After(time.Now()) {
		return 0, errors.New("outbox: redrive: since is in the future")
	}
	var total int64
	for {
		tag, err := pool.Exec(ctx, `UPDATE `+s.outbox()+` SET published_at = NULL, attempts = 0, next_attempt_at = '-infinity'
WHERE id IN (SELECT id FROM `+s.outbox()+` WHERE published_at IS NOT NULL AND created_at >= $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED)`,
			since, redriveBatch)
		if err != nil {
			return total, fmt.Errorf("outbox: redrive %s: %w", s.schema, err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < redriveBatch {
			return total, nil
		}
	}
}

// Sweep deletes published outbox rows older than outboxRetention and inbox
// rows older than inboxRetention, at most limit rows of each per call; it
// returns the number deleted. Inbox rows must outlive every way a message can
// come back: the stream's MaxAge plus the DLQ replay horizon.
func (s Store) Sweep(ctx context.Context, pool *pgxpool.Pool, outboxRetention, inboxRetention time.Duration, limit int) (outboxRows, inboxRows int64, err error) {
	if outboxRetention <= 0 || inboxRetention <= 0 || limit <= 0 {
		return 0, 0, errors.New("outbox: sweep needs positive retentions and limit")
	}
	tag, err := pool.Exec(ctx, `DELETE FROM `+s.outbox()+` WHERE id IN (
SELECT id FROM `+s.outbox()+` WHERE published_at IS NOT NULL AND published_at < now() - $1::interval ORDER BY published_at LIMIT $2)`,
		outboxRetention, limit)
	if err != nil {
		return 0, 0, fmt.Errorf("outbox: sweep %s outbox: %w", s.schema, err)
	}
	outboxRows = tag.RowsAffected()
	tag, err = pool.Exec(ctx, `DELETE FROM `+s.inbox()+` WHERE (consumer, msg_id) IN (
SELECT consumer, msg_id FROM `+s.inbox()+` WHERE processed_at < now() - $1::interval ORDER BY processed_at LIMIT $2)`,
		inboxRetention, limit)
	if err != nil {
		return outboxRows, 0, fmt.Errorf("outbox: sweep %s inbox: %w", s.schema, err)
	}
	return outboxRows, tag.RowsAffected(), nil
}
