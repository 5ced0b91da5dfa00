package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

// realMain runs one chaos run per seed and prints each run's JSON summary.
// Exit status: 0 all runs passed, 1 a run found a violation, 2 the harness
// could not run (usage, set-up).
func realMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tierName := fs.String("tier", "small", "preset: ci (the Go test's), small (go tool task chaos), soak (10,000 checkouts)")
	seeds := fs.String("seeds", "", "comma-separated seeds, one run each (decimal or 0x hex); default: one random seed")
	checkouts := fs.Int("checkouts", 0, "override the tier's checkout count")
	rate := fs.Float64("rate", 0, "override the tier's checkouts started per second")
	concurrency := fs.Int("concurrency", 0, "override the tier's client operations in flight")
	rounds := fs.Int("rounds", 0, "override how many times each scenario fires")
	scenarios := fs.String("scenarios", "", "comma-separated scenarios to run (default: the tier's): "+strings.Join(allScenarios, ","))
	keep := fs.Bool("keep", false, "keep the run directory (data, logs, history) even when the run passes")
	workDir := fs.String("workdir", "", "parent of the run directory (default: the system temp dir)")
	repo := fs.String("repo", "", "paypipe's module root (default: found from the working directory)")
	verbose := fs.Bool("v", false, "log debug detail")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := tier(*tierName)
	if err != nil {
		fmt.Fprintln(stderr, "chaos:", err)
		return 2
	}
	for _, o := range []struct {
		set bool
		fn  func()
	}{
		{*checkouts > 0, func() { cfg.Checkouts = *checkouts }},
		{*rate > 0, func() { cfg.Rate = *rate }},
		{*concurrency > 0, func() { cfg.Concurrency = *concurrency }},
		{*rounds > 0, func() { cfg.Rounds = *rounds }},
		{*scenarios != "", func() { cfg.Scenarios = strings.Split(*scenarios, ",") }},
	} {
		if o.set {
			o.fn()
		}
	}
	cfg.Keep, cfg.WorkDir = *keep, *workDir
	if cfg.Repo = *repo; cfg.Repo == "" {
		if cfg.Repo, err = moduleRoot(); err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 2
		}
	}
	var list []uint64
	if *seeds == "" {
		list = []uint64{uint64(time.Now().UnixNano())}
	}
	for _, s := range strings.Split(*seeds, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil {
			fmt.Fprintf(stderr, "chaos: seed %q: %v\n", s, err)
			return 2
		}
		list = append(list, v)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	code := 0
	for _, seed := range list {
		cfg.Seed = seed
		if err := cfg.validate(); err != nil {
			fmt.Fprintln(stderr, "chaos:", err)
			return 2
		}
		s, err := run(ctx, cfg, log.With("seed", fmt.Sprintf("%#x", seed)))
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(s); eerr != nil {
			fmt.Fprintln(stderr, "chaos:", eerr)
		}
		switch {
		case err != nil:
			fmt.Fprintf(stderr, "chaos: seed %#x: the harness could not run: %v\n", seed, err)
			return 2
		case !s.OK:
			fmt.Fprintf(stderr, "chaos: seed %#x: FAILED: %s\n", seed, strings.Join(first(s.Failures, 5), "; "))
			code = 1
		default:
			fmt.Fprintf(stderr, "chaos: seed %#x: ok: %d checkouts, faults %v, all safety figures 0\n", seed, s.Checkouts, s.FaultsInjected)
		}
		if ctx.Err() != nil {
			return 2
		}
	}
	return code
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// moduleRoot walks up from the working directory to paypipe's go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 64 {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/paypipe/paypipe\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("paypipe's go.mod not found above the working directory (pass -repo)")
}

// harness ties a run together: the cluster it breaks, the clients, the
// nemesis, and its own connections for the checks.
type harness struct {
	cfg  Config
	log  *slog.Logger
	c    *cluster
	w    *workload
	n    *nemesis
	pool *pgxpool.Pool
	nc   *nats.Conn
	js   jetstream.JetStream
	pay  *payouts
	// quietAt is the database time at which the pipeline was found quiet.
	quietAt time.Time
}

func (h *harness) sameKeyOps() []*op {
	if h.n == nil {
		return nil
	}
	h.n.mu.Lock()
	defer h.n.mu.Unlock()
	out := make([]*op, 0, len(h.n.bursts))
	for _, b := range h.n.bursts {
		out = append(out, b.op)
	}
	return out
}

func (h *harness) unexpectedExits() (map[string]int, []exitRecord) {
	out := map[string]int{}
	var recs []exitRecord
	for _, p := range h.c.procs {
		n, r := p.unexpectedExits()
		out[p.name] = n
		recs = append(recs, r...)
	}
	return out, recs
}

// run is one chaos run: start the cluster, run the workload with the
// nemesis, heal, settle, measure. An error means the harness itself could
// not do its job; violations are in the summary (OK false).
func run(ctx context.Context, cfg Config, log *slog.Logger) (s Summary, err error) {
	t0 := time.Now()
	s = Summary{Seed: cfg.Seed, SeedHex: fmt.Sprintf("%#x", cfg.Seed), Tier: cfg.Tier, CheckoutsPlanned: cfg.Checkouts,
		FaultsInjected: map[string]int64{}, Skipped: map[string]string{},
		Liveness: Liveness{UnexpectedExits: map[string]int{}}}
	c, err := newCluster(ctx, cfg, log)
	if c != nil && c.base != "" {
		s.RunDir = c.base
	}
	if err != nil {
		return s, err
	}
	h := &harness{cfg: cfg, log: log, c: c}
	defer func() {
		if h.nc != nil {
			h.nc.Close()
		}
		if h.pool != nil {
			h.pool.Close()
		}
		c.close()
		if h.w != nil && h.w.hist != nil {
			if herr := h.w.hist.close(); herr != nil {
				log.Warn("history.jsonl incomplete", "err", herr)
			}
		}
		s.Liveness.TotalSeconds = round2(time.Since(t0).Seconds())
		if err == nil && s.OK && !cfg.Keep {
			if rerr := os.RemoveAll(c.base); rerr == nil {
				s.RunDir = ""
			}
		}
	}()
	if err := c.start(ctx); err != nil {
		return s, err
	}
	if h.pool, err = openPool(ctx, c.pg.url()); err != nil {
		return s, err
	}
	if h.nc, err = nats.Connect(c.natsURL, nats.Name("paypipe-chaos"), nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond), nats.Timeout(5*time.Second)); err != nil {
		return s, err
	}
	if h.js, err = jetstream.New(h.nc); err != nil {
		return s, err
	}
	h.w = &workload{cfg: cfg, log: log, api: &apiClient{base: c.apiURL, http: &http.Client{Timeout: 20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2 * cfg.Concurrency, IdleConnTimeout: 30 * time.Second}}}}
	if h.w.hist, err = newHistory(filepath.Join(c.base, "history.jsonl")); err != nil {
		return s, err
	}
	if err := h.w.setup(ctx, c, 6); err != nil {
		return s, fmt.Errorf("setup: %w", err)
	}
	if cfg.has(scPoison) {
		if why := h.dlqUnavailable(ctx); why != "" {
			s.Skipped[scPoison] = why
			cfg.Scenarios = slices.DeleteFunc(slices.Clone(cfg.Scenarios), func(x string) bool { return x == scPoison })
		}
	}
	h.n = newNemesis(cfg, c, h.w, log)
	h.n.poisonFn, h.n.pool = h.poison, h.pool
	day := time.Now().UTC().Truncate(24 * time.Hour)
	h.pay = &payouts{cfg: cfg, c: c, pool: h.pool, log: log, hist: h.w.hist, day: day}
	h.n.pay = h.pay

	log.Info("workload", "checkouts", cfg.Checkouts, "rate", cfg.Rate, "scenarios", cfg.Scenarios, "rounds", cfg.Rounds, "dir", c.base)
	wstart := time.Now()
	nemesisDone := make(chan struct{})
	go func() { defer close(nemesisDone); h.n.run(ctx) }()
	workloadDone, payoutsDone := make(chan struct{}), make(chan struct{})
	go func() { defer close(payoutsDone); h.pay.loop(ctx, workloadDone) }()
	h.w.run(ctx)
	close(workloadDone)
	<-nemesisDone
	<-payoutsDone
	s.Liveness.WorkloadSeconds = round2(time.Since(wstart).Seconds())
	if ctx.Err() != nil {
		return s, ctx.Err()
	}

	// Heal: every fault is undone by its episode; make sure, then settle.
	log.Info("healing")
	healed := time.Now()
	var heal []string
	for _, p := range c.procs {
		if err := p.cont(); err != nil {
			heal = append(heal, err.Error())
		}
		if err := p.resume(); err != nil {
			heal = append(heal, err.Error())
		}
	}
	if err := c.setFaults(ctx, zeroFaults(cfg.Seed)); err != nil {
		heal = append(heal, "clear PSP faults: "+err.Error())
	}
	if err := c.awaitAllReady(ctx, 2*time.Minute); err != nil {
		heal = append(heal, err.Error())
	}
	h.w.resolve(ctx, cfg.QuiesceTimeout/2, h.sameKeyOps())
	h.w.resolveSales(ctx, cfg.QuiesceTimeout/2)
	h.pay.resolve(ctx)
	budget := max(30*time.Second, cfg.QuiesceTimeout-time.Since(healed))
	rep, quiet, err := h.quiesce(ctx, budget)
	if err != nil {
		return s, fmt.Errorf("settle: %w", err)
	}
	s.Liveness.Quiescent = quiet
	s.Liveness.SettleSeconds = round2(time.Since(healed).Seconds())

	// I8 and F21: reconcile every day of the run on the quiet pipeline
	// (the killed run resumed, then rerun), then wait again until the
	// settlement batches are posted and verify passes, and compare the
	// ledger with the PSP's closing balances.
	var closing map[string]int64
	if quiet {
		rctx := time.Now()
		if closing, err = h.reconcile(ctx, &s, t0); err != nil {
			return s, fmt.Errorf("reconcile: %w", err)
		}
		rep, quiet, err = h.quiesce(ctx, max(30*time.Second, cfg.QuiesceTimeout/2))
		if err != nil {
			return s, fmt.Errorf("settle after reconciliation: %w", err)
		}
		s.Liveness.Quiescent = quiet
		s.Liveness.ReconSeconds = round2(time.Since(rctx).Seconds())
		if err := h.reconCheckLedger(ctx, &s, closing); err != nil {
			return s, fmt.Errorf("I8: %w", err)
		}
	}

	probes, bad := h.w.replayProbe(ctx)
	s.Client.ReplayProbes = probes
	s.Safety.IdempotencyViolations += int64(len(bad))
	s.Failures = append(s.Failures, first(bad, 10)...)
	if err := h.checkBursts(ctx, &s); err != nil {
		return s, err
	}
	if err := h.measure(ctx, &s, rep); err != nil {
		return s, fmt.Errorf("measure: %w", err)
	}
	h.n.mu.Lock()
	for k, v := range h.n.counts {
		s.FaultsInjected[k] = v
	}
	s.Episodes = slices.Clone(h.n.episodes)
	s.Expected.PoisonInjected = h.n.poisonInjected
	h.n.mu.Unlock()
	slices.SortFunc(s.Episodes, func(a, b episodeLog) int {
		switch {
		case a.StartS < b.StartS:
			return -1
		case a.StartS > b.StartS:
			return 1
		}
		return 0
	})
	for _, e := range s.Episodes {
		if e.Error != "" {
			heal = append(heal, fmt.Sprintf("episode %s round %d: %s", e.Scenario, e.Round, e.Error))
		}
	}
	s.judge(cfg.has, heal)
	return s, nil
}

// checkBursts checks F18: each burst of requests with one key made at most
// one checkout (in the database and in the answers), and answered only 201,
// 429 (in flight) or 5xx/no answer (the API was down).
func (h *harness) checkBursts(ctx context.Context, s *Summary) error {
	h.n.mu.Lock()
	bursts := slices.Clone(h.n.bursts)
	h.n.mu.Unlock()
	for _, b := range bursts {
		var n int64
		if err := h.pool.QueryRow(ctx, `SELECT count(*) FROM payment.checkouts WHERE buyer_id = $1`, b.op.BuyerID).Scan(&n); err != nil {
			return err
		}
		var why []string
		if n > 1 {
			why = append(why, fmt.Sprintf("%d checkouts", n))
		}
		if len(b.ids) > 1 {
			why = append(why, fmt.Sprintf("%d different checkouts answered", len(b.ids)))
		}
		if len(b.ids) == 1 && b.op.CheckoutID != "" && !b.ids[b.op.CheckoutID] {
			why = append(why, "the retry answered another checkout than the burst")
		}
		for st, k := range b.statuses {
			if st != 201 && st != 429 && st < 500 {
				why = append(why, fmt.Sprintf("%d× HTTP %d", k, st))
			}
		}
		if len(why) > 0 {
			s.Safety.IdempotencyViolations++
			s.Failures = append(s.Failures, fmt.Sprintf("F18 burst %s: %s", b.op.Key, strings.Join(why, ", ")))
		}
	}
	return nil
}
