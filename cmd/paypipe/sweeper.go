package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/outbox"
)

// Sweep bounds: each call deletes at most sweepLimit rows per table, and a
// pass makes at most sweepMaxCalls calls, so a sweeper that fell behind
// catches up at up to 100,000 rows a minute per table without ever holding
// a long transaction.
const (
	sweepLimit    = 10_000
	sweepMaxCalls = 10
)

type sweeperConfig struct {
	Store           outbox.Store
	Pool            *pgxpool.Pool
	Interval        time.Duration
	OutboxRetention time.Duration
	InboxRetention  time.Duration
	Logger          *slog.Logger

	// afterPass, if set, is called after every pass: tests wait on it
	// instead of sleeping.
	afterPass func(outboxRows, inboxRows int64)
}

// sweeper deletes published outbox rows and inbox rows past their retention
// (outbox.Store.Sweep). Several replicas may sweep the same store at once:
// each DELETE picks rows by age, and a row deleted by one is simply not
// found by the other.
type sweeper struct {
	cfg sweeperConfig
	log *slog.Logger
}

func newSweeper(cfg sweeperConfig) (*sweeper, error) {
	if cfg.Pool == nil || cfg.Store.Schema() == "" {
		return nil, errors.New("sweeper: needs Store and Pool")
	}
	if cfg.Interval <= 0 || cfg.OutboxRetention <= 0 || cfg.InboxRetention <= 0 {
		return nil, errors.New("sweeper: needs a positive interval and retentions")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &sweeper{cfg: cfg, log: cfg.Logger.With("component", "sweeper", "schema", cfg.Store.Schema())}, nil
}

// Run sweeps every Interval until ctx ends. The first pass waits one
// interval: replicas starting together should not all sweep at once, and
// nothing is urgent about it.
func (s *sweeper) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		o, i, err := s.pass(ctx)
		if err != nil && ctx.Err() == nil {
			// The next tick retries; a sweep that fails only lets tables grow.
			s.log.Warn("sweep failed", "err", err)
		}
		if o+i > 0 {
			s.log.Info("swept", "outbox_rows", o, "inbox_rows", i)
		}
		if s.cfg.afterPass != nil {
			s.cfg.afterPass(o, i)
		}
	}
}

func (s *sweeper) pass(ctx context.Context) (outboxRows, inboxRows int64, err error) {
	for range sweepMaxCalls {
		o, i, err := s.cfg.Store.Sweep(ctx, s.cfg.Pool, s.cfg.OutboxRetention, s.cfg.InboxRetention, sweepLimit)
		outboxRows, inboxRows = outboxRows+o, inboxRows+i
		if err != nil {
			return outboxRows, inboxRows, err
		}
		if o < sweepLimit && i < sweepLimit {
			break
		}
	}
	return outboxRows, inboxRows, nil
}
