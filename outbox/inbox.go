package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TxFunc is a message's effect: it runs inside the inbox transaction, may
// change the service's tables and write outgoing messages with Store.Write.
type TxFunc func(ctx context.Context, tx pgx.Tx) error

// inboxHooks let tests crash a handler at the two points that matter.
type inboxHooks struct {
	beforeCommit func(ctx context.Context, tx pgx.Tx) error
}

// Handle runs fn at most once for (consumer, msgID): in one transaction it
// claims the inbox row, runs fn and commits. If the row exists (the message
// was already applied), fn is not run and applied is false. Concurrent calls
// with the same key serialise on the inbox's primary key: the second waits
// for the first to commit, then skips; if the first rolls back, the second
// applies. An error from fn or from COMMIT rolls everything back and is
// returned; the caller must not acknowledge the message then.
func (s Store) Handle(ctx context.Context, pool *pgxpool.Pool, consumer string, msgID uuid.UUID, subject string, fn TxFunc) (applied bool, err error) {
	return s.handle(ctx, pool, consumer, msgID, subject, fn, inboxHooks{})
}

func (s Store) handle(ctx context.Context, pool *pgxpool.Pool, consumer string, msgID uuid.UUID, subject string, fn TxFunc, hooks inboxHooks) (bool, error) {
	if consumer == "" || msgID == uuid.Nil {
		return false, errors.New("outbox: inbox needs a consumer name and a message id")
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return false, fmt.Errorf("outbox: inbox begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	tag, err := tx.Exec(ctx, `INSERT INTO `+s.inbox()+` (consumer, msg_id, subject) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`,
		consumer, msgID, subject)
	if err != nil {
		return false, fmt.Errorf("outbox: inbox claim %s/%s: %w", consumer, msgID, err)
	}
	if tag.RowsAffected() == 0 {
		// Already applied. Nothing to commit; the caller acks.
		return false, nil
	}
	if err := fn(ctx, tx); err != nil {
		return false, err
	}
	if hooks.beforeCommit != nil {
		if err := hooks.beforeCommit(ctx, tx); err != nil {
			return false, err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("outbox: inbox commit %s/%s: %w", consumer, msgID, err)
	}
	return true, nil
}

// Processed reports whether consumer has applied msgID.
func (s Store) Processed(ctx context.Context, pool *pgxpool.Pool, consumer string, msgID uuid.UUID) (bool, error) {
	var ok bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+s.inbox()+` WHERE consumer = $1 AND msg_id = $2)`, consumer, msgID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("outbox: inbox lookup: %w", err)
	}
	return ok, nil
}
