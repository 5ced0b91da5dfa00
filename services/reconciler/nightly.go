package reconciler

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
)

// Nightly reconciles yesterday (UTC) from the PSP's settlement report once
// a day at Config.RunAt, until ctx ends; with RunAt "off" it only waits for
// ctx. It looks every CheckInterval whether a run is due, so a process that
// was down at RunAt catches up when it starts. A failed run is retried per
// Config.NightlyRetry (it resumes where it stopped); when the policy gives
// up, the day waits for an operator (`paypipe recon run --date D`).
func (r *Reconciler) Nightly(ctx context.Context) error {
	hour, minute, _ := parseRunAt(r.cfg.RunAt)
	if hour < 0 {
		<-ctx.Done()
		return nil
	}
	t := time.NewTicker(r.cfg.CheckInterval)
	defer t.Stop()
	var (
		day      string // the settlement date being worked on
		attempts int
		first    time.Time
		next     time.Time
		gaveUp   bool
	)
	for {
		now := r.cfg.Now().UTC()
		due := time.Date(now.Year(), now.Month(), now.Day(), hour, minute, 0, 0, time.UTC)
		target := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, -1)
		if d := target.Format(time.DateOnly); d != day {
			day, attempts, gaveUp, next = d, 0, false, time.Time{}
		}
		if !now.Before(due) && !gaveUp && !now.Before(next) {
			done, err := r.completedDate(ctx, day)
			if err != nil {
				r.log.WarnContext(ctx, "nightly: cannot tell whether the date is reconciled", "date", day, "err", err)
			} else if !done {
				if attempts == 0 {
					first = now
				}
				attempts++
				_, err := r.Run(ctx, RunRequest{Date: target})
				switch {
				case err == nil:
				case ctx.Err() != nil:
					return nil
				default:
					delay, ok := r.cfg.NightlyRetry.Next(attempts, err, now.Sub(first))
					if !ok {
						gaveUp = true
						r.log.ErrorContext(ctx, "nightly reconciliation gave up for the day: run `paypipe recon run --date` by hand",
							"date", day, "attempts", attempts, "err", err)
					} else {
						next = now.Add(delay)
						r.log.WarnContext(ctx, "nightly reconciliation failed; retrying", "date", day, "attempt", attempts,
							"retry_in", delay.String(), "err", err)
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// completedDate reports whether date has a completed run (any file).
func (r *Reconciler) completedDate(ctx context.Context, date string) (bool, error) {
	var one int
	err := r.pool.QueryRow(ctx, `SELECT 1 FROM recon.runs WHERE settlement_date = $1 AND status = 'completed' LIMIT 1`, date).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}
