package dlq

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
)

//go:embed migrations/*.sql
var migrations embed.FS

// OpsSchema is the PostgreSQL schema of operator records (ops.dlq_audit).
const OpsSchema = "ops"

// Schema is the ops schema's migrations: the outbox and inbox every schema
// starts with (unused here), then the DLQ audit table (migrations/*.sql).
func Schema() migrate.Schema {
	return migrate.Embedded(outbox.MustStore(OpsSchema), migrations)
}

// Audit actions.
const (
	ActionReplay = "replay"
	ActionPurge  = "purge"
)

// AuditRecord is one row of ops.dlq_audit: who did what to which dead
// message, and when.
type AuditRecord struct {
	ID              int64     `json:"id"`
	Action          string    `json:"action"`
	DLQStream       string    `json:"dlq_stream"`
	DLQSeq          uint64    `json:"dlq_seq"`
	Consumer        string    `json:"consumer"`
	OriginalStream  string    `json:"original_stream"`
	OriginalSubject string    `json:"original_subject"`
	MsgID           string    `json:"msg_id"`
	NewNatsMsgID    string    `json:"new_nats_msg_id,omitempty"`
	ReplayStream    string    `json:"replay_stream,omitempty"`
	ReplayStreamSeq uint64    `json:"replay_stream_seq,omitempty"`
	Actor           string    `json:"actor"`
	At              time.Time `json:"at"`
}

// Replayed says that, when and by whom an entry was replayed (from the audit).
type Replayed struct {
	Count     int       `json:"count"`
	FirstAt   time.Time `json:"first_at"`
	LastAt    time.Time `json:"last_at"`
	LastActor string    `json:"last_actor"`
}

// dbTimeout bounds every statement of the audit: a hung database must not
// hang an operator's command.
const dbTimeout = 10 * time.Second

// MaxAuditRows bounds what AuditLog returns.
const MaxAuditRows = 10_000

// AuditLog returns the audit rows of the DLQ message seq (0: of every
// message), newest first, at most limit (default 100, at most MaxAuditRows).
func (a *Admin) AuditLog(ctx context.Context, seq uint64, limit int) ([]AuditRecord, error) {
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, MaxAuditRows)
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	rows, err := a.pool.Query(ctx, `
SELECT id, action, dlq_stream, dlq_stream_seq, consumer, original_stream, original_subject, msg_id,
       coalesce(new_nats_msg_id::text, ''), coalesce(replay_stream, ''), coalesce(replay_stream_seq, 0), actor, at
FROM ops.dlq_audit
WHERE dlq_stream = $1 AND ($2::bigint = 0 OR dlq_stream_seq = $2)
ORDER BY id DESC
LIMIT $3`, a.stream, int64(seq), limit)
	if err != nil {
		return nil, fmt.Errorf("dlq: read audit: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AuditRecord, error) {
		var rec AuditRecord
		var dseq, rseq int64
		err := r.Scan(&rec.ID, &rec.Action, &rec.DLQStream, &dseq, &rec.Consumer, &rec.OriginalStream,
			&rec.OriginalSubject, &rec.MsgID, &rec.NewNatsMsgID, &rec.ReplayStream, &rseq, &rec.Actor, &rec.At)
		rec.DLQSeq, rec.ReplayStreamSeq = uint64(dseq), uint64(rseq)
		return rec, err
	})
	if err != nil {
		return nil, fmt.Errorf("dlq: read audit: %w", err)
	}
	return out, nil
}

// audit appends one record. The caller has already acted (published the
// replay, deleted the message): see Admin for why that order.
func (a *Admin) audit(ctx context.Context, rec AuditRecord) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	var newID *uuid.UUID
	var rstream *string
	var rseq *int64
	if rec.Action == ActionReplay {
		id, err := uuid.Parse(rec.NewNatsMsgID)
		if err != nil {
			return fmt.Errorf("dlq: audit: replay id %q: %w", rec.NewNatsMsgID, err)
		}
		s, q := rec.ReplayStream, int64(rec.ReplayStreamSeq)
		newID, rstream, rseq = &id, &s, &q
	}
	_, err := a.pool.Exec(ctx, `
INSERT INTO ops.dlq_audit (action, dlq_stream, dlq_stream_seq, consumer, original_stream, original_subject,
                           msg_id, new_nats_msg_id, replay_stream, replay_stream_seq, actor)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		rec.Action, a.stream, int64(rec.DLQSeq), rec.Consumer, rec.OriginalStream, rec.OriginalSubject,
		rec.MsgID, newID, rstream, rseq, rec.Actor)
	if err != nil {
		return fmt.Errorf("dlq: audit %s of DLQ message %d: %w", rec.Action, rec.DLQSeq, err)
	}
	return nil
}

// markReplayed fills Entry.Replayed from the audit.
func (a *Admin) markReplayed(ctx context.Context, entries []Entry) error {
	if len(entries) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	seqs := make([]int64, len(entries))
	for i, e := range entries {
		seqs[i] = int64(e.Seq)
	}
	rows, err := a.pool.Query(ctx, `
SELECT dlq_stream_seq, msg_id, replays, first_replayed_at, last_replayed_at, last_actor
FROM ops.dlq_replayed
WHERE dlq_stream = $1 AND dlq_stream_seq = ANY($2)`, a.stream, seqs)
	if err != nil {
		return fmt.Errorf("dlq: read replay marks: %w", err)
	}
	type key struct {
		seq   uint64
		msgID string
	}
	marks := map[key]Replayed{}
	var seq int64
	var msgID string
	var r Replayed
	_, err = pgx.ForEachRow(rows, []any{&seq, &msgID, &r.Count, &r.FirstAt, &r.LastAt, &r.LastActor}, func() error {
		marks[key{uint64(seq), msgID}] = r
		return nil
	})
	if err != nil {
		return fmt.Errorf("dlq: read replay marks: %w", err)
	}
	for i := range entries {
		entries[i].Replayed = nil
		if m, ok := marks[key{entries[i].Seq, entries[i].MsgID}]; ok {
			entries[i].Replayed = &m
		}
	}
	return nil
}

// ErrBusy is returned when another replay or purge holds the admin lock.
var ErrBusy = errors.New("dlq: another replay or purge is running")

// lockKey is the advisory lock that serialises replays and purges, so two
// operators cannot both find an entry "not yet replayed" and replay it twice
// (harmless for the inboxes, but it would break the audit's promise).
var lockKey = func() int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("paypipe-dlq-admin"))
	return int64(h.Sum64() >> 1)
}()

// lock takes the admin lock on a dedicated session. It is a session lock,
// not a transaction lock, so no transaction stays open across the publishes
// (no external calls inside a transaction); if the process dies the
// session ends and PostgreSQL releases the lock.
func (a *Admin) lock(ctx context.Context) (unlock func(), err error) {
	lctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	conn, err := a.pool.Acquire(lctx)
	if err != nil {
		return nil, fmt.Errorf("dlq: lock: %w", err)
	}
	var ok bool
	if err := conn.QueryRow(lctx, `SELECT pg_try_advisory_lock($1)`, lockKey).Scan(&ok); err != nil {
		conn.Release()
		return nil, fmt.Errorf("dlq: lock: %w", err)
	}
	if !ok {
		conn.Release()
		return nil, ErrBusy
	}
	return func() { a.unlock(ctx, conn) }, nil
}

func (a *Admin) unlock(ctx context.Context, conn *pgxpool.Conn) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dbTimeout)
	defer cancel()
	var released bool
	if err := conn.QueryRow(uctx, `SELECT pg_advisory_unlock($1)`, lockKey).Scan(&released); err != nil || !released {
		// Never hand a session that may still hold the lock back to the
		// pool: closing it releases the lock for certain.
		_ = conn.Hijack().Close(uctx)
		return
	}
	conn.Release()
}
