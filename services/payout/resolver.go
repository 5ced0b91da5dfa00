package payout

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/loop"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
)

// Results of one resolver poll (label of paypipe_payout_polls_total).
const (
	pollFinal       = "final"       // the payout became paid or failed; event written
	pollPending     = "pending"     // not final yet; polled again later
	pollError       = "error"       // the PSP or the database failed; polled again later
	pollHorizon     = "horizon"     // polling stopped at ResolveHorizon
	pollQuarantined = "quarantined" // the PSP's answer disagrees with the payout
	pollLeaseLost   = "lease_lost"  // the payout moved on (a webhook) meanwhile
)

// polled is a sent payout a resolver holds for one poll.
type polled struct {
	id          uuid.UUID
	pspPayoutID string
	polls       int
}

// runResolver polls the PSP for sent payouts whose final webhook did not
// come within ResolveAfter: webhooks can be lost.
func (s *Service) runResolver(ctx context.Context) {
	loop.Passes(ctx, loop.Options{Name: "resolver", Interval: s.cfg.ResolvePollInterval, Batch: s.cfg.BatchSize,
		AfterPass: s.cfg.hooks.afterResolverPass, Log: s.log}, s.resolveOnce)
}

// resolveOnce claims one batch of due polls and polls each, at most
// Concurrency at a time.
func (s *Service) resolveOnce(ctx context.Context) (int, error) {
	due, err := s.claimPolls(ctx, s.cfg.BatchSize)
	if err != nil {
		return 0, err
	}
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, pl := range due {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s.poll(ctx, pl)
		})
	}
	wg.Wait()
	return len(due), nil
}

// claimPolls takes up to n sent payouts due for a poll. Pushing
// next_poll_at one Lease ahead is the claim: other resolvers skip the row,
// and if this one dies it comes due again by itself.
func (s *Service) claimPolls(ctx context.Context, n int) ([]polled, error) {
	rows, err := s.pool.Query(ctx, `
UPDATE payout.payouts p
SET next_poll_at = now() + $2::interval, polls = p.polls + 1, updated_at = now()
WHERE p.id IN (
    SELECT id FROM payout.payouts
    WHERE next_poll_at IS NOT NULL AND next_poll_at <= now() AND status = 'sent'
    ORDER BY next_poll_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED)
RETURNING p.id, p.psp_payout_id, p.polls`, n, s.cfg.Lease)
	if err != nil {
		return nil, fmt.Errorf("payout: claim polls: %w", err)
	}
	defer rows.Close()
	out := make([]polled, 0, n)
	for rows.Next() {
		var pl polled
		if err := rows.Scan(&pl.id, &pl.pspPayoutID, &pl.polls); err != nil {
			return nil, fmt.Errorf("payout: claim polls: %w", err)
		}
		out = append(out, pl)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("payout: claim polls: %w", err)
	}
	return out, nil
}

// poll asks the PSP for one payout and records the answer. If ctx ends
// meanwhile nothing is recorded; the claim makes the payout due again.
func (s *Service) poll(ctx context.Context, pl polled) {
	log := s.log.With("payout_id", pl.id, "psp_payout_id", pl.pspPayoutID, "poll", pl.polls)
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	pp, err := s.psp.GetPayout(cctx, pl.pspPayoutID)
	cancel()
	s.metrics.calls.WithLabelValues("get", callOutcome(err)).Inc()
	if ctx.Err() != nil {
		return
	}
	result, rerr := s.recordPoll(ctx, pl, pp, err)
	if rerr != nil {
		result = pollError
		log.Error("recording a poll failed; the payout will be polled again", "err", rerr)
	}
	s.metrics.polls.WithLabelValues(result).Inc()
	switch result {
	case pollFinal:
		log.Info("payout resolved by polling the PSP (its webhook was lost or late)", "psp_status", pp.Status)
	case pollHorizon:
		log.Warn("payout still not final at the resolve horizon; polling stops (reconciliation covers it)", "err", err)
	case pollError:
		if err != nil {
			log.Warn("polling the PSP failed; will poll again", "err", err)
		}
	}
}

// recordPoll records what a poll found in one transaction guarded by the
// claim (status sent, polls as claimed).
func (s *Service) recordPoll(ctx context.Context, pl polled, pp psp.Payout, pollErr error) (string, error) {
	result := pollPending
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		p, err := scanPayout(tx.QueryRow(ctx, `SELECT `+payoutCols+` FROM payout.payouts
WHERE id = $1 AND status = 'sent' AND polls = $2 FOR UPDATE`, pl.id, pl.polls))
		if errors.Is(err, pgx.ErrNoRows) {
			result = pollLeaseLost
			return nil
		}
		if err != nil {
			return fmt.Errorf("payout: read poll of %s: %w", pl.id, err)
		}
		lastErr := ""
		if pollErr != nil {
			result, lastErr = pollError, pollErr.Error()
		} else {
			outcome, reason, err := s.applyReport(ctx, tx, &p, pp, "poll")
			if err != nil {
				return err
			}
			switch outcome {
			case outcomeQuarantined:
				result = pollQuarantined
				s.log.Error("PSP poll answer quarantined", "payout_id", p.ID, "reason", reason)
				if err := quarantine(ctx, tx, "poll", pp.ID, p.ID, reason, nil); err != nil {
					return err
				}
			case outcomeApplied:
				if p.Status != contracts.PayoutStatusSent {
					result = pollFinal
					return nil // advance cleared next_poll_at
				}
			}
		}
		var stopped bool
		err = tx.QueryRow(ctx, `UPDATE payout.payouts
SET last_error = coalesce(nullif(left($2, 1000), ''), last_error), updated_at = now(),
    next_poll_at = CASE WHEN now() >= sent_at + $3::interval THEN NULL
                        ELSE LEAST(now() + $4::interval, sent_at + $3::interval) END
WHERE id = $1 RETURNING next_poll_at IS NULL`,
			p.ID, lastErr, s.cfg.ResolveHorizon, s.pollDelay(pl.polls)).Scan(&stopped)
		if err != nil {
			return fmt.Errorf("payout: schedule poll of %s: %w", p.ID, err)
		}
		if stopped {
			result = pollHorizon
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	if result == pollFinal {
		s.wakeRelay()
	}
	return result, nil
}

// pollDelay is the wait before the next poll of a payout polled polls
// times: ResolveAfter doubling, capped at ResolveMaxInterval, with jitter.
func (s *Service) pollDelay(polls int) time.Duration {
	p := retry.Policy{Strategy: retry.Exponential, Initial: s.cfg.ResolveAfter, Max: s.cfg.ResolveMaxInterval, Jitter: 0.5}
	return p.Delay(polls+1, nil)
}
