package payout

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/paypipe/paypipe/internal/loop"
)

// schedule is Config.Schedule parsed: off, daily at an offset into the UTC
// day, or every interval (aligned on the Unix epoch, so every replica
// computes the same ticks).
type schedule struct {
	off   bool
	daily bool
	at    time.Duration // daily: offset into the day
	every time.Duration // interval
}

func parseSchedule(s string) (schedule, error) {
	switch {
	case s == "off":
		return schedule{off: true}, nil
	case strings.HasPrefix(s, "daily@"):
		t, err := time.Parse("15:04", strings.TrimPrefix(s, "daily@"))
		if err != nil {
			return schedule{}, fmt.Errorf("Schedule %q: want daily@HH:MM (UTC): %w", s, err)
		}
		return schedule{daily: true, at: time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return schedule{}, fmt.Errorf("Schedule %q: want daily@HH:MM, an interval such as 1h, or off", s)
	}
	if d < time.Second || d > 7*24*time.Hour {
		return schedule{}, fmt.Errorf("Schedule %q: an interval must be between 1s and 168h", s)
	}
	return schedule{every: d}, nil
}

// last returns the latest tick at or before now.
func (s schedule) last(now time.Time) time.Time {
	now = now.UTC()
	if s.daily {
		t := now.Truncate(24 * time.Hour).Add(s.at)
		if t.After(now) {
			t = t.Add(-24 * time.Hour)
		}
		return t
	}
	return now.Truncate(s.every)
}

// next returns the first tick after now.
func (s schedule) next(now time.Time) time.Time {
	if s.daily {
		return s.last(now).Add(24 * time.Hour)
	}
	return s.last(now).Add(s.every)
}

// period names the run of a tick: its UTC day for a daily schedule, its
// start time for an interval.
func (s schedule) period(tick time.Time) string {
	if s.daily {
		return DayPeriod(tick)
	}
	return tick.UTC().Format(time.RFC3339)
}

// runSchedule runs the payouts of the latest tick at start (a tick missed
// while no replica ran is caught up) and then of every tick. Replicas all
// run it; they need no lock or leader: a run requests each payout with an
// INSERT … ON CONFLICT DO NOTHING on its deterministic id, so two replicas
// running the same period together request each payout once (the second
// waits on the first's row, then skips it). A failed run is retried with a
// bounded backoff until it succeeds or the next tick supersedes it.
func (s *Service) runSchedule(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var errDelay time.Duration
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		// Always the latest tick: ticks missed meanwhile are not replayed one
		// by one (the latest run pays out everything available anyway).
		period := s.schedule.period(s.schedule.last(s.now()))
		res, err := s.RunPayouts(ctx, RunRequest{Period: period})
		if ctx.Err() != nil {
			return
		}
		if s.cfg.hooks.afterScheduledRun != nil {
			s.cfg.hooks.afterScheduledRun(period, res, err)
		}
		if err != nil {
			errDelay = loop.ErrDelay(errDelay)
			s.log.Warn("scheduled payout run failed; retrying", "period", period, "err", err, "retry_in", errDelay)
			timer.Reset(errDelay)
			continue
		}
		errDelay = 0
		now := s.now()
		timer.Reset(s.schedule.next(now).Sub(now))
	}
}
