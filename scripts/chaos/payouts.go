package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/services/payout"
)

// payoutRun is one `paypipe payout run` child command, retried with the
// same period (the run's idempotency key: one payout per seller, currency
// and period) until it answers or its deadline passes.
type payoutRun struct {
	N        int
	Period   string
	Seller   string
	Racing   bool // one of two processes started at once with the period
	Outcome  string
	Attempts int
	Err      string
	Result   payout.RunResult
}

// payouts fires the payout runs: periodically during the workload, and
// for F19 and F20. Each run has a period of its own, derived from the
// run's start day and a counter, so every run requests afresh.
type payouts struct {
	cfg  Config
	c    *cluster
	pool *pgxpool.Pool
	log  *slog.Logger
	hist *history
	day  time.Time // UTC midnight of the run's first day
	// lock is held by a workload payout run until its payouts are final, so
	// workload runs do not overlap each other (F19 and F20 fire their own).
	// Webhook-dropping episodes (F6–F8) may hit payout webhooks: process A's
	// resolver asks the PSP after 3 s (PAYPIPE_PAYOUT_RESOLVE_AFTER).
	lock sync.Mutex

	mu   sync.Mutex
	next int
	runs []*payoutRun
}

func (p *payouts) nextPeriod() (int, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.next++
	return p.next, p.day.Add(time.Duration(p.next) * time.Second).UTC().Format(time.RFC3339)
}

func (p *payouts) all() []*payoutRun {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]*payoutRun{}, p.runs...)
}

// loop runs payouts every PayoutEvery until done closes; 30% of the runs
// are two processes racing on one period (two replicas' schedules firing
// at once).
func (p *payouts) loop(ctx context.Context, done <-chan struct{}) {
	r := rand.New(rand.NewPCG(p.cfg.Seed, 0x7061796f))
	t := time.NewTicker(p.cfg.PayoutEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-t.C:
		}
		racing := r.Float64() < 0.3
		p.lock.Lock()
		p.fire(ctx, "", racing)
		p.awaitSettled(ctx, 90*time.Second)
		p.lock.Unlock()
	}
}

// fire starts one payout run (two with racing) for a new period and waits
// for its answer(s). The caller holds p.lock or the simulator's lock.
func (p *payouts) fire(ctx context.Context, seller string, racing bool) []*payoutRun {
	n, period := p.nextPeriod()
	k := 1
	if racing {
		k = 2
	}
	var wg sync.WaitGroup
	var out []*payoutRun
	for range k {
		run := &payoutRun{N: n, Period: period, Seller: seller, Racing: racing}
		out = append(out, run)
		p.mu.Lock()
		p.runs = append(p.runs, run)
		p.mu.Unlock()
		wg.Go(func() { p.exec(ctx, run) })
	}
	wg.Wait()
	return out
}

func (p *payouts) exec(ctx context.Context, run *payoutRun) {
	args := []string{"payout", "run", "--period", run.Period, "-o", "json"}
	if run.Seller != "" {
		args = append(args, "--seller", run.Seller)
	}
	rec := func(event string, extra map[string]any) {
		m := map[string]any{"t": time.Now().UTC().Format(time.RFC3339Nano), "op": run.N, "kind": "payout_run",
			"event": event, "period": run.Period, "racing": run.Racing}
		if run.Seller != "" {
			m["seller"] = run.Seller
		}
		for k, v := range extra {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		p.hist.mu.Lock()
		p.hist.w.Write(append(b, '\n'))
		p.hist.mu.Unlock()
	}
	rec("invoke", nil)
	deadline := time.Now().Add(p.cfg.OpTimeout)
	r := rand.New(rand.NewPCG(p.cfg.Seed, keySeed(run.Period)+uint64(len(run.Seller))))
	for attempt := 1; ; attempt++ {
		run.Attempts++
		out, err := p.c.paypipeCmd(ctx, 30*time.Second, false, args...)
		if err == nil {
			if jerr := json.Unmarshal(out, &run.Result); jerr != nil {
				err = fmt.Errorf("payout run output: %w: %s", jerr, truncate(out, 200))
			}
		}
		if err == nil {
			run.Outcome, run.Err = outcomeOK, ""
			rec(outcomeOK, map[string]any{"attempts": run.Attempts, "requested": run.Result.Requested,
				"already_requested": run.Result.AlreadyRequested, "candidates": run.Result.Candidates})
			return
		}
		run.Err = truncate([]byte(err.Error()), 300)
		wait := backoff(r, attempt, response{})
		if ctx.Err() != nil || time.Now().Add(wait).After(deadline) {
			run.Outcome = outcomeInfo
			rec(outcomeInfo, map[string]any{"attempts": run.Attempts, "err": run.Err})
			return
		}
		sleepCtx(ctx, wait)
	}
}

// awaitSettled waits (up to max) until no payout is requested, created or
// sent: each has been paid, failed or canceled.
func (p *payouts) awaitSettled(ctx context.Context, max time.Duration) {
	err := awaitCond(ctx, max, func(ctx context.Context) error {
		var open int64
		if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM payout.payouts WHERE status IN ('requested', 'created', 'sent')`).Scan(&open); err != nil {
			return err
		}
		if open > 0 {
			return fmt.Errorf("%d payouts in flight", open)
		}
		return nil
	})
	if err != nil {
		p.log.Info("payouts still in flight; the simulator's lock is released anyway", "err", err)
	}
}

// resolve retries every run left without an answer, with its period.
func (p *payouts) resolve(ctx context.Context) {
	for _, run := range p.all() {
		if run.Outcome == outcomeInfo {
			p.exec(ctx, run)
		}
	}
}
