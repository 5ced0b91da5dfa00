package pspsim

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/services/psp"
)

// claimedEvent is one webhook event claimed by a sender pass, with the
// faults decided for it.
type claimedEvent struct {
	seq       int64
	id        string
	paymentID string // the payment's or the payout's id: events of one object go in order
	payout    bool   // a payout event, for Config.PayoutWebhookURL
	body      string
	attempts  int // including this one
	drop      bool
	copies    int
}

// attemptResult is what one pass learnt about one event.
type attemptResult struct {
	outcome string // delivered, failed or dropped
	status  int    // the last HTTP status seen, 0 for none
	err     string
	copies  int // requests actually sent
}

// passTimeout bounds one sender pass; the claim's lease exceeds it, so no
// other sender picks up an event while this pass may still send it.
func (s *Server) passTimeout() time.Duration { return 10 * s.cfg.WebhookTimeout }
func (s *Server) lease() time.Duration       { return s.passTimeout() + 10*time.Second }

// runSender delivers due webhook events until ctx ends: a bounded batch per
// pass, at once again while batches come back full, otherwise after
// PollInterval or when a commit wakes it. A failed pass (database down) is
// retried after a backoff capped at 5s.
func (s *Server) runSender(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var errDelay time.Duration
	for {
		n, err := s.sendOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := s.cfg.PollInterval
		switch {
		case err != nil:
			errDelay = min(max(2*errDelay, 100*time.Millisecond), 5*time.Second)
			wait = errDelay
			s.log.Warn("webhook pass failed", "err", err, "retry_in", wait)
		case n >= s.cfg.WebhookBatchSize:
			errDelay = 0
			continue
		default:
			errDelay = 0
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}

// sendOnce claims up to WebhookBatchSize due events, sends them and records
// the outcomes. The claim pushes next_attempt_at out by a lease instead of
// holding a transaction open across HTTP calls: if this process dies, the
// events become due again when the lease ends, and are sent again (webhooks
// are at-least-once; receivers deduplicate by event id).
func (s *Server) sendOnce(ctx context.Context) (int, error) {
	rows, err := s.pool.Query(ctx, `UPDATE pspsim.webhook_events e
SET attempts = e.attempts + 1, next_attempt_at = clock_timestamp() + $2::interval
FROM (SELECT seq FROM pspsim.webhook_events
      WHERE state = 'pending' AND next_attempt_at <= clock_timestamp()
      ORDER BY next_attempt_at, seq LIMIT $1 FOR UPDATE SKIP LOCKED) c
WHERE e.seq = c.seq
RETURNING e.seq, e.id, coalesce(e.payment_id, e.payout_id), e.payout_id IS NOT NULL, e.body, e.attempts`, s.cfg.WebhookBatchSize, s.lease())
	if err != nil {
		return 0, fmt.Errorf("claim webhooks: %w", err)
	}
	evs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (claimedEvent, error) {
		var e claimedEvent
		err := r.Scan(&e.seq, &e.id, &e.paymentID, &e.payout, &e.body, &e.attempts)
		return e, err
	})
	if err != nil {
		return 0, fmt.Errorf("claim webhooks: %w", err)
	}
	if len(evs) == 0 {
		return 0, nil
	}
	// Faults are drawn in creation order, so a seed replays the same plan
	// for the same batches.
	slices.SortFunc(evs, func(a, b claimedEvent) int { return cmp.Compare(a.seq, b.seq) })
	for i := range evs {
		evs[i].drop, evs[i].copies = s.faults.webhookPlan(evs[i].attempts == 1)
	}
	if s.faults.reverseBatch(len(evs)) {
		slices.Reverse(evs)
	}
	results := s.deliverBatch(ctx, evs)
	// Record even when ctx has ended (shutdown): what was sent must not be
	// sent again needlessly.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.record(rctx, evs, results); err != nil {
		return len(evs), err
	}
	return len(evs), nil
}

// deliverBatch sends the events of each payment one after another, in the
// batch's order, and different payments concurrently (at most
// WebhookConcurrency at once).
func (s *Server) deliverBatch(ctx context.Context, evs []claimedEvent) []attemptResult {
	ctx, cancel := context.WithTimeout(ctx, s.passTimeout())
	defer cancel()
	results := make([]attemptResult, len(evs))
	var order []string
	groups := map[string][]int{}
	for i, e := range evs {
		if e.drop {
			results[i] = attemptResult{outcome: "dropped"}
			s.log.Info("fault: webhook dropped", "event_id", e.id, "payment_id", e.paymentID)
			continue
		}
		if _, ok := groups[e.paymentID]; !ok {
			order = append(order, e.paymentID)
		}
		groups[e.paymentID] = append(groups[e.paymentID], i)
	}
	sem := make(chan struct{}, s.cfg.WebhookConcurrency)
	var wg sync.WaitGroup
	for _, pid := range order {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			for _, i := range groups[pid] {
				results[i] = attemptResult{outcome: "failed", err: "not sent: " + ctx.Err().Error()}
			}
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, i := range groups[pid] {
				results[i] = s.deliver(ctx, evs[i])
			}
		})
	}
	wg.Wait()
	return results
}

// deliver sends one event (its copies concurrently when duplicated); it is
// delivered when any copy gets a 2xx.
func (s *Server) deliver(ctx context.Context, e claimedEvent) attemptResult {
	if e.copies <= 1 {
		status, err := s.post(ctx, e)
		return resultOf(status, err, 1)
	}
	type res struct {
		status int
		err    error
	}
	out := make([]res, e.copies)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i].status, out[i].err = s.post(ctx, e) })
	}
	wg.Wait()
	s.log.Info("fault: webhook duplicated", "event_id", e.id, "copies", e.copies)
	var last attemptResult
	for _, r := range out {
		last = resultOf(r.status, r.err, e.copies)
		if last.outcome == "delivered" {
			return last
		}
	}
	return last
}

func resultOf(status int, err error, copies int) attemptResult {
	switch {
	case err != nil:
		return attemptResult{outcome: "failed", status: status, err: err.Error(), copies: copies}
	case status >= 200 && status < 300:
		return attemptResult{outcome: "delivered", status: status, copies: copies}
	}
	return attemptResult{outcome: "failed", status: status, err: fmt.Sprintf("HTTP %d", status), copies: copies}
}

// post sends one signed copy of e. The signature is made at send time (its
// timestamp must be fresh), with every configured secret.
func (s *Server) post(ctx context.Context, e claimedEvent) (int, error) {
	target := s.cfg.WebhookURL
	if e.payout {
		target = s.cfg.PayoutWebhookURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(e.body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", webhookUA)
	req.Header.Set(psp.SignatureHeader, psp.Sign([]byte(e.body), time.Now(), s.cfg.WebhookSecrets...))
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, err
	}
	// Read a bounded part of the answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxWebhookReply))
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}

// record stores a pass's outcomes in one statement. A failed event is due
// again after the backoff, or dead once older than WebhookMaxAge. The
// attempts guard ignores a result whose claim has meanwhile been taken over.
func (s *Server) record(ctx context.Context, evs []claimedEvent, results []attemptResult) error {
	n := len(evs)
	seqs, attempts := make([]int64, n), make([]int32, n)
	outcomes, errs := make([]string, n), make([]string, n)
	delays := make([]time.Duration, n)
	statuses, copies := make([]int32, n), make([]int32, n)
	for i, e := range evs {
		r := results[i]
		seqs[i], attempts[i], outcomes[i], errs[i] = e.seq, int32(e.attempts), r.outcome, r.err
		statuses[i], copies[i] = int32(r.status), int32(r.copies)
		if r.outcome == "failed" {
			delays[i] = s.cfg.WebhookBackoff.Delay(e.attempts, nil)
			s.log.Warn("webhook not delivered", "event_id", e.id, "attempt", e.attempts, "status", r.status, "err", r.err, "retry_in", delays[i])
		}
	}
	rows, err := s.pool.Query(ctx, `UPDATE pspsim.webhook_events e SET
  state = CASE WHEN f.outcome <> 'failed' THEN f.outcome
               WHEN e.created_at + $8::interval <= clock_timestamp() THEN 'dead'
               ELSE 'pending' END,
  finished_at = CASE WHEN f.outcome <> 'failed' OR e.created_at + $8::interval <= clock_timestamp() THEN clock_timestamp() END,
  next_attempt_at = CASE WHEN f.outcome = 'failed' THEN clock_timestamp() + f.delay ELSE e.next_attempt_at END,
  last_status = nullif(f.status, 0),
  last_error = nullif(left(f.err, 1000), ''),
  copies_sent = e.copies_sent + f.copies
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::interval[], $5::int[], $6::text[], $7::int[])
     AS f(seq, attempts, outcome, delay, status, err, copies)
WHERE e.seq = f.seq AND e.attempts = f.attempts AND e.state = 'pending'
RETURNING e.id, e.state`, seqs, attempts, outcomes, delays, statuses, errs, copies, s.cfg.WebhookMaxAge)
	if err != nil {
		return fmt.Errorf("record webhook attempts: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, state string
		if err := rows.Scan(&id, &state); err != nil {
			return fmt.Errorf("record webhook attempts: %w", err)
		}
		if state == "dead" {
			s.log.Error("webhook dead: retried for WebhookMaxAge without a 2xx", "event_id", id, "max_age", s.cfg.WebhookMaxAge)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("record webhook attempts: %w", err)
	}
	return nil
}
