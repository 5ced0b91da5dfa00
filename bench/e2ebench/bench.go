package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/internal/pg"
)

// Config is one bench run.
type Config struct {
	DatabaseURL string
	// Bin is a paypipe binary to run; empty builds ./cmd/paypipe of the
	// module the bench runs in.
	Bin string
	// Modes are the PAYPIPE_RELAY_MODE values to run saturation in, each
	// with its own child process and database. The first also runs the
	// paced scenario and the two-order variant.
	Modes []string

	Checkouts int // saturation: checkouts
	Clients   int // saturation: concurrent clients
	PacedRate int // paced: offered checkouts per second
	// ExtraRates are more paced runs (first mode), typically below the
	// saturation rate, where latency is the pipeline's rather than a queue's.
	ExtraRates []int
	PacedFor   time.Duration // paced: how long
	TwoOrders  bool          // also saturation with two orders per checkout
	// MaxInFlight bounds the paced scenario's outstanding requests; when it
	// is reached the schedule slips, and the slip is reported.
	MaxInFlight int
	// Sellers is how many sellers the orders are spread over (round robin):
	// each seller's wallet balance is a row every order of that seller
	// updates, so one seller would measure lock waits, not the pipeline.
	Sellers int
	// Warmup checkouts run (and complete) before any measurement: the
	// child's pools, JetStream consumers and Go runtime warm up.
	Warmup int
	// BaselineFor is how long the idle pipeline's commit rate is measured.
	BaselineFor time.Duration
	// Settle is the wait after the last completion before PostgreSQL's
	// statistics are read: a backend flushes its counters at most once a
	// second, and one that goes idle less than a second after its last
	// flush only after PGSTAT_IDLE_INTERVAL (10 s).
	Settle time.Duration
	// FinishTimeout bounds the wait, after the last request returned, until
	// every accepted checkout is completed or failed.
	FinishTimeout time.Duration
	// RequestTimeout bounds each API request.
	RequestTimeout time.Duration
	// ProbeFor is how long the PostgreSQL commit probe runs (0: skipped).
	ProbeFor     time.Duration
	ProbeClients int
	// PerfDir, if set, receives a `perf record` CPU profile of the child
	// during the first mode's saturation run.
	PerfDir string
	Quick   bool
	Log     io.Writer
}

// DefaultConfig is the measurement.
func DefaultConfig() Config {
	return Config{
		Modes:     []string{"atomic-batch", "async"},
		Checkouts: 5000, Clients: 32,
		PacedRate: 200, ExtraRates: []int{50}, PacedFor: 20 * time.Second, MaxInFlight: 2000,
		TwoOrders: true, Sellers: 50, Warmup: 100,
		BaselineFor: 10 * time.Second, Settle: 11 * time.Second,
		FinishTimeout: 3 * time.Minute, RequestTimeout: 30 * time.Second,
		ProbeFor: 5 * time.Second, ProbeClients: 32,
	}
}

// QuickSizes shrinks everything to a smoke test of the bench itself.
func (c Config) QuickSizes() Config {
	c.Quick = true
	c.Modes = []string{"atomic-batch"}
	c.Checkouts, c.Clients = 100, 8
	c.PacedRate, c.PacedFor, c.ExtraRates = 20, 3*time.Second, nil
	c.TwoOrders = false
	c.Sellers, c.Warmup = 5, 5
	// Too short for exact counters (see Settle): the quick run's costs are
	// a smoke test of the arithmetic, not figures.
	c.BaselineFor, c.Settle = time.Second, 1500*time.Millisecond
	c.FinishTimeout = 30 * time.Second
	c.ProbeFor, c.ProbeClients = 500*time.Millisecond, 4
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is not set: export DATABASE_URL=$(bash scripts/pg.sh url)"))
	}
	if len(c.Modes) == 0 {
		errs = append(errs, errors.New("no relay mode"))
	}
	for _, m := range c.Modes {
		if m != "atomic-batch" && m != "async" {
			errs = append(errs, fmt.Errorf("relay mode %q: want atomic-batch or async", m))
		}
	}
	if c.Checkouts < 1 || c.Checkouts > 1_000_000 {
		errs = append(errs, fmt.Errorf("checkouts %d: want 1 to 1,000,000", c.Checkouts))
	}
	if c.Clients < 1 || c.Clients > 1024 {
		errs = append(errs, fmt.Errorf("clients %d: want 1 to 1024", c.Clients))
	}
	if c.PacedRate < 1 || c.PacedRate > 100_000 {
		errs = append(errs, fmt.Errorf("paced rate %d: want 1 to 100,000 per second", c.PacedRate))
	}
	if c.PacedFor <= 0 || c.PacedFor > 10*time.Minute {
		errs = append(errs, fmt.Errorf("paced duration %s: want up to 10m", c.PacedFor))
	}
	if n := int(c.PacedFor.Seconds() * float64(c.PacedRate)); n < 1 || n > 1_000_000 {
		errs = append(errs, fmt.Errorf("paced: %d checkouts: want 1 to 1,000,000", n))
	}
	if c.MaxInFlight < 1 || c.Sellers < 2 || c.Warmup < 0 || c.BaselineFor <= 0 || c.Settle < 0 ||
		c.FinishTimeout <= 0 || c.RequestTimeout <= 0 || c.ProbeFor < 0 || (c.ProbeFor > 0 && c.ProbeClients < 1) {
		errs = append(errs, errors.New("MaxInFlight, BaselineFor, FinishTimeout, RequestTimeout must be positive, Sellers ≥ 2, the rest ≥ 0"))
	}
	return errors.Join(errs...)
}

func (c Config) logf(format string, args ...any) {
	if c.Log != nil {
		fmt.Fprintf(c.Log, "e2ebench: "+format+"\n", args...)
	}
}

// Run runs every scenario and returns the report, also when a scenario
// failed (with the error): what was measured is worth keeping.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	tmp, err := os.MkdirTemp("", "e2ebench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	bin := cfg.Bin
	if bin == "" {
		cfg.logf("building ./cmd/paypipe")
		if bin, err = buildPaypipe(ctx, filepath.Join(tmp, "paypipe")); err != nil {
			return nil, err
		}
	}
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	admin, err := pg.Open(actx, cfg.DatabaseURL, pg.Options{MaxConns: 2, AppName: "e2ebench-admin"})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	defer admin.Close()

	rep := &Report{Machine: machineInfo(ctx, admin, bin), Settings: settingsOf(cfg)}
	var runErr error
	for i, mode := range cfg.Modes {
		m, err := runMode(ctx, cfg, admin, bin, filepath.Join(tmp, mode), mode, i == 0)
		rep.Figures = append(rep.Figures, m.figures...)
		if m.probe != nil {
			rep.CommitProbe = m.probe
		}
		if m.baseline != nil {
			rep.IdleCommits = append(rep.IdleCommits, *m.baseline)
		}
		if m.child.Database != "" {
			rep.Children = append(rep.Children, m.child)
		}
		if err != nil {
			runErr = fmt.Errorf("relay mode %s: %w", mode, err)
			break
		}
	}
	rep.DurationSeconds = round(time.Since(began).Seconds(), 1)
	rep.finish()
	if runErr == nil {
		runErr = rep.problems()
	}
	return rep, runErr
}

// modeResult is what one relay mode's run produced.
type modeResult struct {
	figures  []Figure
	probe    *CommitProbe
	baseline *IdleCommits
	child    ChildRun
}

// runMode runs one child process on its own database and data directory
// and the scenarios of that relay mode.
func runMode(ctx context.Context, cfg Config, admin *pgxpool.Pool, bin, dir, mode string, first bool) (res modeResult, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	dbURL, dbName, drop, err := freshDatabase(ctx, cfg.DatabaseURL, "e2ebench_")
	if err != nil {
		return res, err
	}
	res.child = ChildRun{RelayMode: mode, Database: dbName}
	defer drop()

	if first && cfg.ProbeFor > 0 {
		cfg.logf("probe: small write transactions from %d connections for %s", cfg.ProbeClients, cfg.ProbeFor)
		p, err := commitProbe(ctx, dbURL, cfg.ProbeClients, cfg.ProbeFor)
		if err != nil {
			return res, fmt.Errorf("commit probe: %w", err)
		}
		res.probe = &p
	}

	cfg.logf("%s: starting paypipe serve (database %s)", mode, dbName)
	ch, err := startChild(ctx, childConfig{
		Bin: bin, DatabaseURL: dbURL, DataDir: dir, RelayMode: mode,
		LogPath: filepath.Join(dir, "paypipe.log"), Log: cfg.Log,
	})
	if err != nil {
		return res, err
	}
	res.child.PID = ch.pid()
	defer func() {
		res.child.Stop = "exited cleanly after SIGTERM"
		if serr := ch.stop(); serr != nil {
			res.child.Stop = serr.Error()
			err = errors.Join(err, serr)
		}
	}()

	db, err := openBenchDB(ctx, dbURL)
	if err != nil {
		return res, err
	}
	defer db.close()

	key, err := createMerchant(ctx, bin, ch.env)
	if err != nil {
		return res, err
	}
	api := newAPIClient(ch.apiBase, key, cfg.RequestTimeout, max(cfg.Clients, 64))
	defer api.close()
	sellers, err := api.createSellers(ctx, cfg.Sellers)
	if err != nil {
		return res, err
	}
	e := &modeEnv{cfg: cfg, mode: mode, admin: admin, db: db, dbName: dbName, api: api, sellers: sellers, child: ch}
	if e.outboxSchemas, err = e.db.outboxSchemas(ctx); err != nil {
		return res, err
	}

	if cfg.Warmup > 0 {
		cfg.logf("%s: warm-up, %d checkouts", mode, cfg.Warmup)
		results, ds := e.saturate(ctx, cfg.Warmup, min(cfg.Clients, 8), 1)
		var f Figure
		f.tallyRequests(results, ds)
		err := e.waitFinal(ctx, cfg.FinishTimeout)
		if err == nil {
			err = e.finals(ctx, &f, results)
		}
		if err != nil || f.Completed != cfg.Warmup {
			return res, fmt.Errorf("warm-up: %d of %d completed (%s): %v", f.Completed, cfg.Warmup, f.APIErrorSample, err)
		}
	}
	b, err := e.measureBaseline(ctx)
	if err != nil {
		return res, err
	}
	res.baseline = &b
	e.idle = b.PerSecond

	run := func(name string, orders int, drive func(ctx context.Context) ([]reqResult, driveStats)) error {
		cfg.logf("%s: %s", mode, name)
		f := e.scenario(ctx, name, orders, drive)
		res.figures = append(res.figures, f)
		cfg.logf("%s: %s", mode, f.oneLine())
		if f.Error != "" {
			return fmt.Errorf("%s: %s", name, f.Error)
		}
		return ctx.Err()
	}
	e.perf = first && cfg.PerfDir != ""
	if err := run(ScenarioSaturation, 1, func(ctx context.Context) ([]reqResult, driveStats) {
		return e.saturate(ctx, cfg.Checkouts, cfg.Clients, 1)
	}); err != nil {
		return res, err
	}
	e.perf = false
	if !first {
		return res, nil
	}
	for _, rate := range append([]int{cfg.PacedRate}, cfg.ExtraRates...) {
		if err := run(ScenarioPaced, 1, func(ctx context.Context) ([]reqResult, driveStats) {
			return e.pace(ctx, rate, cfg.PacedFor, 1)
		}); err != nil {
			return res, err
		}
	}
	if cfg.TwoOrders {
		if err := run(ScenarioSaturation2, 2, func(ctx context.Context) ([]reqResult, driveStats) {
			return e.saturate(ctx, cfg.Checkouts, cfg.Clients, 2)
		}); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Scenario names, as in the report.
const (
	ScenarioSaturation  = "saturation"
	ScenarioPaced       = "paced"
	ScenarioSaturation2 = "saturation-2-orders"
)

// modeEnv is what the scenarios of one relay mode share.
type modeEnv struct {
	cfg           Config
	mode          string
	admin         *pgxpool.Pool
	db            *benchDB
	dbName        string
	api           *apiClient
	sellers       []string
	child         *child
	outboxSchemas []string
	idle          float64 // the idle pipeline's commits per second
	perf          bool
	next          int // buyer sequence, for distinct buyer ids across scenarios
}

// scenario drives one load, waits until every accepted checkout is final,
// and measures it.
func (e *modeEnv) scenario(ctx context.Context, name string, orders int, drive func(ctx context.Context) ([]reqResult, driveStats)) Figure {
	f := Figure{RelayMode: e.mode, Scenario: name, OrdersPerCheckout: orders, LoadAvg: []float64{loadAvg()}}
	before, err := e.snapshot(ctx)
	if err != nil {
		f.Error = err.Error()
		return f
	}
	var prof *perfRecording
	if e.perf {
		if prof, err = startPerf(e.cfg.PerfDir, e.child.pid()); err != nil {
			e.cfg.logf("perf: %v (no profile)", err)
		}
	}
	act := e.sampleActivity(ctx, 200*time.Millisecond)
	results, ds := drive(ctx)
	f.tallyRequests(results, ds)

	if err := e.waitFinal(ctx, e.cfg.FinishTimeout); err != nil {
		f.Error = err.Error()
	}
	f.PGActivity = act.finish()
	cpuEnd := sampleCPU(e.child.pid())
	if prof != nil {
		f.Profile = prof.stop(ctx)
	}
	f.CPU = cpuFigures(before.cpu, cpuEnd)
	f.LoadAvg = append(f.LoadAvg, loadAvg())

	if err := e.finals(ctx, &f, results); err != nil && f.Error == "" {
		f.Error = err.Error()
	}
	f.Hops, f.HopErrors = e.db.hops(ctx, e.outboxSchemas, before.at)
	if e.cfg.Settle > 0 {
		t := time.NewTimer(e.cfg.Settle)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	after, err := e.snapshot(ctx)
	if err != nil {
		if f.Error == "" {
			f.Error = err.Error()
		}
		return f
	}
	f.costs(before, after, e.idle)
	f.ChildLogLines = after.logLines - before.logLines
	if f.ChildLogLines > 0 {
		f.ChildLogSample = e.child.logTail(5)
	}
	return f
}

// finals reads when each accepted checkout became completed or failed, and
// how long it spent between statuses.
func (e *modeEnv) finals(ctx context.Context, f *Figure, results []reqResult) error {
	ids := make([]string, 0, len(results))
	for _, r := range results {
		if r.id != "" {
			ids = append(ids, r.id)
		}
	}
	hist, err := e.db.checkoutTransitions(ctx, ids)
	if err != nil {
		return err
	}
	var lat []float64
	stages := map[string][]float64{}
	var first, last time.Time
	for _, r := range results {
		if first.IsZero() || r.start.Before(first) {
			first = r.start
		}
		if r.id == "" {
			continue
		}
		t := hist[r.id]
		done, completed := t[statusCompleted]
		_, failed := t[statusFailed]
		switch {
		case failed:
			f.Failed++
			continue
		case !completed:
			f.Unfinished++
			continue
		}
		f.Completed++
		lat = append(lat, ms(done.Sub(r.start)))
		if done.After(last) {
			last = done
		}
		// Each stage: from entering one status to entering the next one
		// the checkout reached (statuses skipped by a checkout are not
		// stages of it).
		prev, prevAt := "request", r.start
		for _, st := range checkoutStatuses {
			at, ok := t[st]
			if !ok {
				continue
			}
			stages[prev+"→"+st] = append(stages[prev+"→"+st], ms(at.Sub(prevAt)))
			prev, prevAt = st, at
		}
	}
	if f.Completed > 0 {
		f.Seconds = round(last.Sub(first).Seconds(), 3)
		if f.Seconds > 0 {
			f.E2EPPS = round(float64(f.Completed)/f.Seconds, 1)
		}
	}
	slices.Sort(lat)
	f.Latency = latencyOf(lat)
	f.Stages = map[string]Latency{}
	for k, v := range stages {
		slices.Sort(v)
		f.Stages[k] = latencyOf(v)
	}
	return nil
}

// A checkout's statuses in the order it moves through them (payment's
// status.go ranks them the same way).
const (
	statusCompleted = "completed"
	statusFailed    = "failed"
)

var checkoutStatuses = []string{"created", "requires_action", "processing", "succeeded", statusCompleted}

// waitFinal waits until no checkout is open (not completed or failed).
func (e *modeEnv) waitFinal(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		open, err := e.db.openCheckouts(ctx)
		if err == nil && open == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = fmt.Errorf("%d checkouts still open", open)
			}
			return fmt.Errorf("waiting %s for every checkout to be completed or failed: %w", timeout, err)
		case <-tick.C:
		}
	}
}

// measureBaseline measures the commits per second and the CPU of the idle
// pipeline (relays, the simulator's webhook sender and executor's loops
// poll even when there is nothing to do): the fixed cost under every load.
func (e *modeEnv) measureBaseline(ctx context.Context) (IdleCommits, error) {
	settle := time.NewTimer(e.cfg.Settle)
	select {
	case <-settle.C:
	case <-ctx.Done():
		settle.Stop()
		return IdleCommits{}, ctx.Err()
	}
	c0, t0, err := e.commits(ctx)
	if err != nil {
		return IdleCommits{}, err
	}
	cpu0 := sampleCPU(e.child.pid())
	wait := time.NewTimer(e.cfg.BaselineFor)
	select {
	case <-wait.C:
	case <-ctx.Done():
		wait.Stop()
		return IdleCommits{}, ctx.Err()
	}
	cpu1 := sampleCPU(e.child.pid())
	c1, t1, err := e.commits(ctx)
	if err != nil {
		return IdleCommits{}, err
	}
	secs := t1.Sub(t0).Seconds()
	return IdleCommits{RelayMode: e.mode, Seconds: round(secs, 2), Commits: c1.commit - c0.commit,
		PerSecond: round(float64(c1.commit-c0.commit)/secs, 1), CPU: cpuFigures(cpu0, cpu1)}, nil
}
