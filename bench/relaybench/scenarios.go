package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ---- drain ----

// drainRounds runs Reps drain repetitions of every relay in kinds,
// round-robin, and returns one figure per relay (median of its runs).
func (e *env) drainRounds(ctx context.Context, kinds []relayKind) []Figure {
	figs := make([]Figure, len(kinds))
	for i, k := range kinds {
		figs[i] = Figure{Sync: e.sync, Relay: k.Name, Scenario: "drain", Drain: &DrainFigure{Events: e.cfg.DrainEvents}}
	}
	for rep := 0; rep < e.cfg.Reps; rep++ {
		for i, k := range kinds {
			f := &figs[i]
			if f.Error != "" || ctx.Err() != nil {
				continue
			}
			before := e.snap(ctx)
			eps, secs, stats, err := e.drainOnce(ctx, k)
			f.Load = addLoad(f.Load, e.loadBetween(before, e.snap(ctx)))
			if err != nil {
				f.Error = fmt.Sprintf("run %d: %v", rep+1, err)
				continue
			}
			f.Drain.RunsEPS = append(f.Drain.RunsEPS, round(eps, 0))
			f.Drain.RunsSeconds = append(f.Drain.RunsSeconds, round(secs, 3))
			// Passes and batch sizes of the last run; exceptions of all runs.
			stats.Duplicates += f.Stats.Duplicates
			stats.FailedSends += f.Stats.FailedSends
			stats.Fallbacks += f.Stats.Fallbacks
			f.Stats = stats
		}
	}
	for i := range figs {
		f := &figs[i]
		if ctx.Err() != nil && f.Error == "" && len(f.Drain.RunsEPS) < e.cfg.Reps {
			f.Error = "interrupted"
		}
		if f.Error == "" {
			f.Drain.EPS = median(f.Drain.RunsEPS)
			f.Drain.Seconds = median(f.Drain.RunsSeconds)
			f.Verified = true
		}
	}
	return figs
}

func (e *env) drainOnce(ctx context.Context, k relayKind) (eps, secs float64, stats RelayStats, err error) {
	n := e.cfg.DrainEvents
	t, err := e.newTarget(ctx, k)
	if err != nil {
		return 0, 0, stats, err
	}
	defer t.cleanup()
	wctx, cancel := context.WithTimeout(ctx, e.cfg.DrainDeadline)
	defer cancel()
	// Pending rows as an application leaves them: one event per transaction.
	var next atomic.Int64
	if _, err := runWriters(wctx, e.cfg.Writers, func(ctx context.Context, _ int) (bool, error) {
		i := int(next.Add(1) - 1)
		if i >= n {
			return false, nil
		}
		return true, t.write(ctx, i)
	}); err != nil {
		return 0, 0, stats, fmt.Errorf("prefill: %w", err)
	}
	if err := t.analyze(wctx); err != nil {
		return 0, 0, stats, err
	}
	began := time.Now()
	if err := t.start(ctx); err != nil {
		return 0, 0, stats, err
	}
	at, err := e.waitCount(wctx, t.streamName(), n, began.Add(e.cfg.DrainDeadline))
	stats, serr := t.stop()
	if err != nil {
		return 0, 0, stats, err
	}
	if serr != nil {
		return 0, 0, stats, serr
	}
	if err := e.verify(ctx, t.streamName(), n); err != nil {
		return 0, 0, stats, err
	}
	secs = at.Sub(began).Seconds()
	return float64(n) / secs, secs, stats, nil
}

// ---- paced ----

func (e *env) paced(ctx context.Context, k relayKind, wake bool) Figure {
	name := "paced"
	if wake {
		name = "paced+wake"
	}
	f := Figure{Sync: e.sync, Relay: k.Name, Scenario: name}
	p, stats, err := e.pacedOnce(ctx, k, wake)
	f.Paced, f.Stats = p, stats
	if err != nil {
		f.Error = err.Error()
		return f
	}
	f.Verified = true
	return f
}

func (e *env) pacedOnce(ctx context.Context, k relayKind, wake bool) (*PacedFigure, RelayStats, error) {
	var stats RelayStats
	total := int(float64(e.cfg.PacedRate) * e.cfg.PacedFor.Seconds())
	p := &PacedFigure{Events: total, OfferedEPS: e.cfg.PacedRate, Seconds: e.cfg.PacedFor.Seconds(), Wake: wake}
	t, err := e.newTarget(ctx, k)
	if err != nil {
		return p, stats, err
	}
	defer t.cleanup()
	base := time.Now()
	w, err := e.watch(ctx, t.streamName(), total, base)
	if err != nil {
		return p, stats, err
	}
	defer w.stop()
	if err := t.start(ctx); err != nil {
		return p, stats, err
	}
	commit := make([]int64, total)
	interval := time.Second / time.Duration(e.cfg.PacedRate)
	wctx, cancel := context.WithTimeout(ctx, e.cfg.PacedFor+e.cfg.TailDeadline)
	defer cancel()
	start := time.Now()
	writers := e.cfg.Writers
	// Writer wi owns events wi, wi+W, wi+2W, …, each due at its slot of the
	// fixed schedule (open loop: a late writer does not shift later events).
	_, err = runWriters(wctx, writers, func(ctx context.Context, wi int) (bool, error) {
		for n := wi; n < total; n += writers {
			if d := time.Until(start.Add(time.Duration(n) * interval)); d > 0 {
				select {
				case <-ctx.Done():
					return false, ctx.Err()
				case <-time.After(d):
				}
			}
			if err := t.write(ctx, n); err != nil {
				return false, err
			}
			commit[n] = since(base)
			if wake {
				t.wake()
			}
		}
		return false, nil
	})
	writeSecs := time.Since(start).Seconds()
	p.WriterEPS = round(float64(total)/writeSecs, 0)
	if err != nil {
		_, _ = t.stop()
		return p, stats, fmt.Errorf("writers: %w", err)
	}
	err = w.waitDistinct(wctx, total)
	stats, serr := t.stop()
	if err != nil {
		return p, stats, err
	}
	if serr != nil {
		return p, stats, serr
	}
	if err := e.verify(ctx, t.streamName(), total); err != nil {
		return p, stats, err
	}
	arrival := w.arrivals()
	lat := make([]float64, total)
	for n := range total {
		lat[n] = float64(arrival[n]-commit[n]) / 1e6
	}
	slices.Sort(lat)
	var sum float64
	for _, l := range lat {
		sum += l
	}
	p.P50ms = round(pct(lat, 0.50), 2)
	p.P90ms = round(pct(lat, 0.90), 2)
	p.P99ms = round(pct(lat, 0.99), 2)
	p.P999ms = round(pct(lat, 0.999), 2)
	p.MaxMs = round(lat[len(lat)-1], 2)
	p.MeanMs = round(sum/float64(len(lat)), 2)
	return p, stats, nil
}

// ---- saturation ----

// writersOnly measures the writers with no relay running.
func (e *env) writersOnly(ctx context.Context, k relayKind) Figure {
	f := Figure{Sync: e.sync, Relay: k.writerKind() + " writers", Scenario: "writers-only"}
	t, err := e.newTarget(ctx, k)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	defer t.cleanup()
	n, secs, err := e.writeFor(ctx, t, e.cfg.SatFor)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	f.Saturation = &SatFigure{Events: n, WritersOnlyEPS: round(float64(n)/secs, 0)}
	f.Verified = true
	return f
}

func (e *env) saturation(ctx context.Context, k relayKind, only *SatFigure) Figure {
	f := Figure{Sync: e.sync, Relay: k.Name, Scenario: "saturation"}
	s := &SatFigure{WritersOnlyEPS: only.WritersOnlyEPS}
	f.Saturation = s
	t, err := e.newTarget(ctx, k)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	defer t.cleanup()
	if err := t.start(ctx); err != nil {
		f.Error = err.Error()
		return f
	}
	began := time.Now()
	n, secs, err := e.writeFor(ctx, t, e.cfg.SatFor)
	if err != nil {
		_, _ = t.stop()
		f.Error = err.Error()
		return f
	}
	writersDone := time.Now()
	s.Events = n
	s.WritersEPS = round(float64(n)/secs, 0)
	if bl, err := e.streamCount(ctx, t.streamName()); err == nil {
		s.BacklogAtWritersEnd = n - bl
	}
	at, err := e.waitCount(ctx, t.streamName(), n, writersDone.Add(e.cfg.TailDeadline))
	f.Stats, _ = t.stop()
	if err != nil {
		f.Error = err.Error()
		return f
	}
	if err := e.verify(ctx, t.streamName(), n); err != nil {
		f.Error = err.Error()
		return f
	}
	s.TailSeconds = round(at.Sub(writersDone).Seconds(), 2)
	s.EndToEndEPS = round(float64(n)/at.Sub(began).Seconds(), 0)
	s.Ratio = round(s.EndToEndEPS/s.WritersOnlyEPS, 3)
	f.Verified = true
	return f
}

// writeFor runs the writers unthrottled for d and returns the events committed.
func (e *env) writeFor(ctx context.Context, t target, d time.Duration) (int, float64, error) {
	wctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	var next atomic.Int64
	start := time.Now()
	end := start.Add(d)
	_, err := runWriters(wctx, e.cfg.Writers, func(ctx context.Context, _ int) (bool, error) {
		if time.Now().After(end) {
			return false, nil
		}
		return true, t.write(ctx, int(next.Add(1)-1))
	})
	return int(next.Load()), time.Since(start).Seconds(), err
}

// runWriters runs step on w goroutines until each returns false or one fails.
func runWriters(ctx context.Context, w int, step func(ctx context.Context, writer int) (bool, error)) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	var steps atomic.Int64
	for i := range w {
		wg.Go(func() {
			for {
				more, err := step(ctx, i)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
					return
				}
				if !more {
					return
				}
				steps.Add(1)
			}
		})
	}
	wg.Wait()
	return int(steps.Load()), first
}

// ---- the stream side ----

func (e *env) streamCount(ctx context.Context, stream string) (int, error) {
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	return int(info.State.Msgs), nil
}

// waitCount polls the stream every 5ms until it holds want messages and
// returns when that was first seen.
func (e *env) waitCount(ctx context.Context, stream string, want int, deadline time.Time) (time.Time, error) {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		return time.Time{}, err
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	got := 0
	for {
		info, err := s.Info(ctx)
		now := time.Now()
		if err == nil {
			got = int(info.State.Msgs)
			if got >= want {
				return now, nil
			}
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("stream %s holds %d of %d events at the deadline: relay too slow or events lost", stream, got, want)
		case <-tick.C:
		}
	}
}

// verify reads the whole stream and fails unless it holds events 0…written-1
// exactly once each.
func (e *env) verify(ctx context.Context, stream string, written int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	total, err := e.streamCount(ctx, stream)
	if err != nil {
		return err
	}
	w, err := e.watch(ctx, stream, written, time.Now())
	if err != nil {
		return err
	}
	defer w.stop()
	if err := w.waitTotal(ctx, total); err != nil {
		return err
	}
	return w.check(written)
}

// watcher reads a stream with an ordered consumer and records, per event
// number, when it first arrived.
type watcher struct {
	cc   jetstream.ConsumeContext
	base time.Time

	mu       sync.Mutex
	arrival  []int64
	total    int
	distinct int
	dups     int
	foreign  int
	changed  chan struct{}
}

func (e *env) watch(ctx context.Context, stream string, n int, base time.Time) (*watcher, error) {
	w := &watcher{base: base, arrival: make([]int64, n), changed: make(chan struct{}, 1)}
	for i := range w.arrival {
		w.arrival[i] = -1
	}
	cons, err := e.js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("ordered consumer on %s: %w", stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		now := since(base)
		i, ok := parseN(m.Data())
		w.mu.Lock()
		w.total++
		switch {
		case !ok || i >= len(w.arrival):
			w.foreign++
		case w.arrival[i] >= 0:
			w.dups++
		default:
			w.arrival[i] = now
			w.distinct++
		}
		w.mu.Unlock()
		select {
		case w.changed <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	w.cc = cc
	return w, nil
}

func (w *watcher) stop() { w.cc.Stop() }

func (w *watcher) counts() (total, distinct int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total, w.distinct
}

func (w *watcher) wait(ctx context.Context, done func(total, distinct int) bool, what string) error {
	for {
		t, d := w.counts()
		if done(t, d) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("watcher: %s: have %d messages (%d distinct events) at the deadline", what, t, d)
		case <-w.changed:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (w *watcher) waitDistinct(ctx context.Context, n int) error {
	return w.wait(ctx, func(_, d int) bool { return d >= n }, fmt.Sprintf("waiting for %d distinct events", n))
}

func (w *watcher) waitTotal(ctx context.Context, n int) error {
	return w.wait(ctx, func(t, _ int) bool { return t >= n }, fmt.Sprintf("reading %d messages", n))
}

// check fails loudly on lost, duplicated or unknown events.
func (w *watcher) check(written int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	if lost := written - w.distinct; lost > 0 {
		errs = append(errs, fmt.Errorf("LOST %d of %d events", lost, written))
	}
	if w.dups > 0 {
		errs = append(errs, fmt.Errorf("DUPLICATED %d events", w.dups))
	}
	if w.foreign > 0 {
		errs = append(errs, fmt.Errorf("%d messages with an unknown payload", w.foreign))
	}
	return errors.Join(errs...)
}

func (w *watcher) arrivals() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.arrival)
}

// ---- numbers ----

func pct(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
