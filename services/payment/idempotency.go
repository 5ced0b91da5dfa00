package payment

// # Idempotency keys (DESIGN.md §6)
//
// Every POST carries an Idempotency-Key (1..255 printable ASCII characters),
// scoped to the merchant. The request's fingerprint is SHA-256 over its
// method, path and exact body bytes. One transaction does everything:
//
//  1. pg_try_advisory_xact_lock(hash(merchant, key)). If another request
//     with the key holds it, that request is in flight: answer 429 with
//     Retry-After: 1 at once (a deliberate choice; Stripe answers 409). Without
//     this the second request would block on the first one's uncommitted key
//     row until it commits.
//  2. Claim: INSERT … ON CONFLICT DO NOTHING (locked_at = now, expires_at =
//     now + IdempotencyTTL). An expired row not yet swept is claimed afresh
//     (ON CONFLICT … DO UPDATE … WHERE expires_at <= now()): after the TTL a
//     retry is a new request (F23); the PSP-level key, derived from the
//     payment order id, still prevents a double charge.
//  3. Not claimed: the key is finished (its response committed with it).
//     Same fingerprint → replay the stored status and body byte for byte
//     with Idempotent-Replayed: true; different fingerprint → 422.
//  4. Claimed: the work runs in a savepoint; the business rows, their
//     outbox rows and the stored response (locked_at = NULL) commit together
//     with the claim, or nothing does.
//
// What is stored: every response the work produced, 2xx and 4xx alike (a
// request refused for its content is refused again, identically, on retry,
// as Stripe does); a 4xx rolls the savepoint back first, so it stores only
// the key. What is not stored: 401 and everything answered before the claim
// (415, 413, a missing or malformed key), 429 and 422 (they are answers
// about the key, not the request), and 5xx. A 5xx rolls back everything
// including the claim, because nothing happened: inside one API request
// there is no foreign side effect to protect (the PSP is called later, by
// executor, with its own key), so a retry must be free to run afresh rather
// than be pinned to a failure. A COMMIT whose outcome is unknown is safe for
// the same reason: the retry finds either the finished key or nothing.
//
// Because the claim and the response commit together, a committed key is
// never locked: locked_at is non-NULL only inside the claiming transaction.
// A committed row without a response could only come from a future
// multi-phase request; it is answered 429 like one in flight.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const maxIdempotencyKeyLen = 255

// idempotencyKey reads and checks the Idempotency-Key header.
func idempotencyKey(r *http.Request) (string, *apiError) {
	vals := r.Header.Values("Idempotency-Key")
	if len(vals) == 0 {
		return "", errorf(CodeIdempotencyKeyMissing, "every POST needs an Idempotency-Key header (e.g. a UUID); retry with the same key")
	}
	if len(vals) > 1 {
		return "", errorf(CodeIdempotencyKeyInvalid, "send one Idempotency-Key header")
	}
	k := vals[0]
	if k == "" || len(k) > maxIdempotencyKeyLen {
		return "", errorf(CodeIdempotencyKeyInvalid, "the Idempotency-Key must be 1 to %d characters", maxIdempotencyKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return "", errorf(CodeIdempotencyKeyInvalid, "the Idempotency-Key must be printable ASCII")
		}
	}
	return k, nil
}

// fingerprint identifies a request: each part is length-prefixed so that no
// two different (method, path, body) triples hash alike.
func fingerprint(method, path string, body []byte) []byte {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(method), []byte(path), body} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(part)))
		h.Write(n[:])
		h.Write(part)
	}
	return h.Sum(nil)
}

// keyLockID is the advisory lock of (merchant, key). Advisory lock ids share
// one namespace per database, hence the prefix; a collision between two
// keys costs a spurious 429, with probability 2^-64.
func keyLockID(merchantID uuid.UUID, key string) int64 {
	h := sha256.New()
	h.Write([]byte("paypipe.payment.idempotency\x00"))
	h.Write(merchantID[:])
	h.Write([]byte(key))
	return int64(binary.BigEndian.Uint64(h.Sum(nil)[:8]))
}

// txWork is the body of an idempotent POST: it runs in the claiming
// transaction and returns the status and value of a successful response, or
// an error (an *apiError below 500 is stored as the response).
type txWork func(ctx context.Context, tx pgx.Tx, m merchantCtx, body []byte) (int, any, error)

// idempotent turns work into a handler that enforces the Idempotency-Key
// contract and the POST preconditions.
func (s *Service) idempotent(work txWork) handlerFunc {
	return s.idempotentWith(func(*http.Request) txWork { return work }, false)
}

// idempotentAction is idempotent for actions on the object named by the
// path's {id} (fulfil, refund): work is built from the request, and a
// request without a body (no Content-Type, no bytes) is accepted as well as
// a JSON one, since every field of an action is optional. The path is part
// of the fingerprint, so one key cannot act on two objects.
func (s *Service) idempotentAction(work func(id string) txWork) handlerFunc {
	return s.idempotentWith(func(r *http.Request) txWork { return work(r.PathValue("id")) }, true)
}

func (s *Service) idempotentWith(workFor func(*http.Request) txWork, bodyOptional bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.RawQuery != "" {
			return errorf(CodeInvalidParameter, "POST requests take no query parameters")
		}
		noBody := r.ContentLength == 0 && len(r.Header.Values("Content-Type")) == 0
		if err := requireJSON(r); err != nil && !(bodyOptional && noBody) {
			return err
		}
		work := workFor(r)
		key, kerr := idempotencyKey(r)
		if kerr != nil {
			return kerr
		}
		body, err := readBody(w, r)
		if err != nil {
			return err
		}
		m := merchantFrom(r.Context())
		res, err := s.runIdempotent(r.Context(), m, key, r.Method, r.URL.Path, body, work)
		if err != nil {
			return err
		}
		if res.replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		writeBody(w, res.status, res.body)
		return nil
	}
}

type idemResult struct {
	status   int
	body     []byte
	replayed bool
}

func (s *Service) runIdempotent(ctx context.Context, m merchantCtx, key, method, path string, body []byte, work txWork) (idemResult, error) {
	fp := fingerprint(method, path, body)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return idemResult{}, dbError(fmt.Errorf("begin: %w", err))
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	var locked bool
	if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, keyLockID(m.ID, key)).Scan(&locked); err != nil {
		return idemResult{}, dbError(fmt.Errorf("idempotency lock: %w", err))
	}
	if !locked {
		return idemResult{}, inUse()
	}
	var claimed bool
	err = tx.QueryRow(ctx, `INSERT INTO payment.idempotency_keys AS k
    (merchant_id, key, method, path, fingerprint, locked_at, expires_at)
VALUES ($1, $2, $3, $4, $5, now(), now() + $6 * interval '1 microsecond')
ON CONFLICT (merchant_id, key) DO UPDATE SET
    method = EXCLUDED.method, path = EXCLUDED.path, fingerprint = EXCLUDED.fingerprint,
    locked_at = now(), response_status = NULL, response_body = NULL,
    created_at = now(), expires_at = EXCLUDED.expires_at
WHERE k.expires_at <= now()
RETURNING true`, m.ID, key, method, path, fp, s.cfg.IdempotencyTTL.Microseconds()).Scan(&claimed)
	if errors.Is(err, pgx.ErrNoRows) {
		return s.finished(ctx, tx, m, key, fp)
	}
	if err != nil {
		return idemResult{}, dbError(fmt.Errorf("claim idempotency key: %w", err))
	}

	status, respBody, err := s.work(ctx, tx, m, body, work)
	if err != nil {
		return idemResult{}, err
	}
	if _, err := tx.Exec(ctx, `UPDATE payment.idempotency_keys
SET locked_at = NULL, response_status = $3, response_body = $4
WHERE merchant_id = $1 AND key = $2`, m.ID, key, status, respBody); err != nil {
		return idemResult{}, dbError(fmt.Errorf("store idempotent response: %w", err))
	}
	if err := tx.Commit(ctx); err != nil {
		// The outcome may be unknown (connection lost during COMMIT); a
		// retry with the same key finds the finished key or nothing.
		return idemResult{}, dbError(fmt.Errorf("commit: %w", err))
	}
	return idemResult{status: status, body: respBody}, nil
}

// work runs fn in a savepoint of the claiming transaction and returns the
// response to store. A 4xx from fn undoes fn's writes and becomes the
// response; a 5xx is returned as an error, and the caller rolls back.
func (s *Service) work(ctx context.Context, tx pgx.Tx, m merchantCtx, body []byte, fn txWork) (int, []byte, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return 0, nil, dbError(fmt.Errorf("savepoint: %w", err))
	}
	status, v, werr := fn(ctx, sp, m, body)
	if werr != nil {
		ae := asAPIError(werr)
		if ae.status() >= 500 {
			return 0, nil, ae
		}
		if err := sp.Rollback(ctx); err != nil {
			return 0, nil, dbError(fmt.Errorf("rollback to savepoint: %w", err))
		}
		return ae.status(), ae.problemBody(), nil
	}
	if err := sp.Commit(ctx); err != nil {
		return 0, nil, dbError(fmt.Errorf("release savepoint: %w", err))
	}
	b, err := json.Marshal(v)
	if err != nil {
		return 0, nil, internal(fmt.Errorf("encode response: %w", err))
	}
	return status, b, nil
}

// finished answers a request whose key is already used.
func (s *Service) finished(ctx context.Context, tx pgx.Tx, m merchantCtx, key string, fp []byte) (idemResult, error) {
	var storedFP, respBody []byte
	var status *int
	err := tx.QueryRow(ctx, `SELECT fingerprint, response_status, response_body FROM payment.idempotency_keys
WHERE merchant_id = $1 AND key = $2`, m.ID, key).Scan(&storedFP, &status, &respBody)
	if err != nil {
		// We hold the key's lock and the claim found a live row: it cannot
		// have gone, except to a sweeper racing its expiry.
		return idemResult{}, dbError(fmt.Errorf("read idempotency key: %w", err))
	}
	if !bytes.Equal(storedFP, fp) {
		return idemResult{}, errorf(CodeIdempotencyKeyReused,
			"this Idempotency-Key was used for a different request (method, path or body differ); use a new key for a new request")
	}
	if status == nil {
		return idemResult{}, inUse()
	}
	return idemResult{status: *status, body: respBody, replayed: true}, nil
}

func inUse() *apiError {
	return &apiError{code: CodeIdempotencyKeyInUse, retryAfter: 1,
		detail: "a request with this Idempotency-Key is still in progress; retry with the same key"}
}

// Sweep bounds: a pass deletes at most sweepMaxBatches × SweepBatch keys, in
// short transactions, so a sweeper that fell behind catches up over a few
// passes without holding locks for long.
const sweepMaxBatches = 10

// SweepIdempotencyKeys deletes expired idempotency keys, at most
// sweepMaxBatches batches of Config.SweepBatch, and returns how many it
// deleted. Several replicas may sweep at once: SKIP LOCKED hands each row to
// one of them, and a key being re-claimed is locked and skipped.
func (s *Service) SweepIdempotencyKeys(ctx context.Context) (int64, error) {
	var total int64
	for range sweepMaxBatches {
		tag, err := s.pool.Exec(ctx, `DELETE FROM payment.idempotency_keys
WHERE (merchant_id, key) IN (
    SELECT merchant_id, key FROM payment.idempotency_keys
    WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`, s.cfg.SweepBatch)
		if err != nil {
			return total, fmt.Errorf("payment: sweep idempotency keys: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < int64(s.cfg.SweepBatch) {
			break
		}
	}
	return total, nil
}

// keySweeper runs SweepIdempotencyKeys every SweepInterval, like paypipe's
// other sweepers: a ticker, bounded passes, a clean stop on ctx.
type keySweeper struct {
	s   *Service
	log *slog.Logger
}

func newKeySweeper(s *Service) *keySweeper {
	return &keySweeper{s: s, log: s.log.With("component", "idempotency-sweeper")}
}

// Run sweeps until ctx ends. The first pass waits one interval: replicas
// starting together should not all sweep at once, and nothing is urgent.
// A failed pass is logged and the next tick retries it.
func (k *keySweeper) Run(ctx context.Context) error {
	t := time.NewTicker(k.s.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := k.s.SweepIdempotencyKeys(ctx)
		if err != nil && ctx.Err() == nil {
			k.log.Warn("sweep failed", "err", err)
		}
		if n > 0 {
			k.log.Info("swept expired idempotency keys", "keys", n)
		}
	}
}
