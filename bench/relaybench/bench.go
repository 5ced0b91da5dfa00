package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/internal/natsserver"
	"github.com/paypipe/paypipe/internal/pg"
	"github.com/paypipe/paypipe/outbox"
)

// Config is one bench run.
type Config struct {
	DatabaseURL string
	Scenarios   []string // drain, paced, saturation
	Syncs       []string // default, always
	Relays      []string // paypipe, forwarder
	Quick       bool

	Writers     int           // concurrent writers in every scenario
	DrainEvents int           // rows pending before the relay starts
	Reps        int           // drain runs per relay; the median is reported
	PacedRate   int           // total events/s of the paced writers
	PacedFor    time.Duration // how long the paced writers run
	SatFor      time.Duration // how long the saturation writers run
	Wake        bool          // also run paypipe paced with Relay.Wake after commit

	// ForwarderPoll is the watermill-sql subscriber's PollInterval. Its
	// default is 1s; the bench sets paypipe's 20ms so that the two relays
	// poll equally often and the comparison is about the relays.
	ForwarderPoll time.Duration
	// StoreDir is the parent of the JetStream stores ("": os.TempDir()).
	StoreDir string

	// Experiments adds variants of paypipe's relay to drain and paced (see
	// experiments); they are reported apart from the main figures.
	Experiments bool

	// Experiments on paypipe's relay (zero: outbox defaults, one relay).
	// Non-default values show in the relay's name, e.g.
	// paypipe/async[batch=1000,relays=2,poll=10ms].
	PaypipeBatch     int
	PaypipeInstances int
	PaypipePoll      time.Duration
	// PaypipeLoop drives paypipe's relay: "" or "run" is Relay.Run. The
	// experiments drive the real relay's exported RunOnce from a loop in the
	// bench, timing every pass: "copy" has Run's policy (wait PollInterval
	// after every pass that claimed less than BatchSize); "eager" polls again
	// at once after any pass that found rows and waits only after an empty
	// one.
	PaypipeLoop string

	// Deadlines: every wait is bounded.
	DrainDeadline time.Duration // relay start → all rows in the stream
	TailDeadline  time.Duration // writers done → all rows in the stream

	Log io.Writer
}

// DefaultConfig is the full bench.
func DefaultConfig() Config {
	return Config{
		Scenarios:     []string{"drain", "paced", "saturation"},
		Syncs:         []string{"default", "always"},
		Relays:        []string{"paypipe", "forwarder"},
		Writers:       8,
		DrainEvents:   20_000,
		Reps:          5,
		PacedRate:     1000,
		PacedFor:      20 * time.Second,
		SatFor:        15 * time.Second,
		Wake:          true,
		Experiments:   true,
		ForwarderPoll: 20 * time.Millisecond,
		DrainDeadline: 10 * time.Minute,
		TailDeadline:  10 * time.Minute,
		Log:           io.Discard,
	}
}

// Quick shrinks c to a smoke test: seconds, not minutes.
func (c Config) QuickSizes() Config {
	c.Quick = true
	c.Experiments = false
	c.DrainEvents = 400
	c.Reps = 1
	c.PacedRate = 200
	c.PacedFor = 1500 * time.Millisecond
	c.SatFor = 1 * time.Second
	c.DrainDeadline = 60 * time.Second
	c.TailDeadline = 60 * time.Second
	return c
}

// relayKind is one relay under test.
type relayKind struct {
	Name      string // paypipe/async, paypipe/atomic-batch, forwarder
	Forwarder bool
	Mode      outbox.PublishMode
	Batch     int           // paypipe BatchSize (0: default)
	Instances int           // paypipe relays on the store (0: 1)
	Poll      time.Duration // paypipe PollInterval (0: default)
	Loop      string        // see Config.PaypipeLoop
}

func (k relayKind) writerKind() string {
	if k.Forwarder {
		return "forwarder"
	}
	return "paypipe"
}

// variant returns k with paypipe's experiment knobs set, named after them,
// e.g. paypipe/async[batch=1000,relays=2,poll=10ms,eager-loop].
func (k relayKind) variant(batch, instances int, poll time.Duration, loop string) relayKind {
	k.Batch, k.Instances, k.Poll, k.Loop = batch, instances, poll, loop
	var tags []string
	if batch > 0 {
		tags = append(tags, fmt.Sprintf("batch=%d", batch))
	}
	if instances > 1 {
		tags = append(tags, fmt.Sprintf("relays=%d", instances))
	}
	if poll > 0 {
		tags = append(tags, "poll="+poll.String())
	}
	if loop != "" && loop != "run" {
		tags = append(tags, loop+"-loop")
	}
	k.Name = "paypipe/" + k.Mode.String()
	if len(tags) > 0 {
		k.Name += "[" + strings.Join(tags, ",") + "]"
	}
	return k
}

func kindsFor(cfg Config, sync string) []relayKind {
	var out []relayKind
	for _, r := range cfg.Relays {
		switch r {
		case "paypipe":
			modes := []outbox.PublishMode{outbox.PublishAsync}
			if sync == "always" {
				modes = append(modes, outbox.PublishAtomicBatch)
			}
			for _, m := range modes {
				out = append(out, relayKind{Mode: m}.variant(cfg.PaypipeBatch, cfg.PaypipeInstances, cfg.PaypipePoll, cfg.PaypipeLoop))
			}
		case "forwarder":
			out = append(out, relayKind{Name: "forwarder", Forwarder: true})
		}
	}
	return out
}

// experiments are the variants of paypipe's relay that Config.Experiments
// adds to a scenario: they show what a change to the relay's defaults or
// Run loop would give, measured with the real outbox package. Under sync
// always only the atomic-batch relay gets them (async is bound there by
// the server's fsync per message).
func experiments(k relayKind, scenario, sync string) []relayKind {
	if k.Forwarder || (sync == "always" && k.Mode != outbox.PublishAtomicBatch) {
		return nil
	}
	switch scenario {
	case "drain":
		return []relayKind{
			k.variant(1000, 1, 0, ""), // largest batch the relay accepts
			k.variant(0, 2, 0, ""),    // two relays on the store: two passes in flight
		}
	case "paced":
		return []relayKind{
			k.variant(0, 1, 0, "copy"),               // Run's policy, pass times recorded
			k.variant(0, 1, 10*time.Millisecond, ""), // shorter poll
			k.variant(0, 1, 0, "eager"),              // poll again after any non-empty pass
		}
	}
	return nil
}

func (c Config) validate() error {
	if c.DatabaseURL == "" {
		return errors.New("DATABASE_URL is not set (export DATABASE_URL=$(bash scripts/pg.sh url))")
	}
	for _, s := range c.Scenarios {
		if !slices.Contains([]string{"drain", "paced", "saturation"}, s) {
			return fmt.Errorf("unknown scenario %q", s)
		}
	}
	for _, s := range c.Syncs {
		if s != "default" && s != "always" {
			return fmt.Errorf("unknown sync %q (default, always)", s)
		}
	}
	for _, r := range c.Relays {
		if r != "paypipe" && r != "forwarder" {
			return fmt.Errorf("unknown relay %q (paypipe, forwarder)", r)
		}
	}
	if !slices.Contains([]string{"", "run", "copy", "eager"}, c.PaypipeLoop) {
		return fmt.Errorf("unknown paypipe loop %q (run, copy, eager)", c.PaypipeLoop)
	}
	if len(c.Scenarios) == 0 || len(c.Syncs) == 0 || len(c.Relays) == 0 {
		return errors.New("nothing to run")
	}
	if c.Writers <= 0 || c.DrainEvents <= 0 || c.Reps <= 0 || c.PacedRate <= 0 || c.PacedFor <= 0 || c.SatFor <= 0 {
		return errors.New("sizes must be positive")
	}
	return nil
}

// env is what every scenario of one sync setting shares: the database pools
// and one embedded nats-server.
type env struct {
	cfg   Config
	sync  string
	dbURL string
	wpool *pgxpool.Pool // writers
	rpool *pgxpool.Pool // relays
	srv   *natsserver.Server
	nc    *nats.Conn // the bench's own connection: streams, watchers
	js    jetstream.JetStream
	seq   *atomic.Int64
	log   *slog.Logger
	errs  *errorCounter
}

func (e *env) logf(format string, args ...any) {
	fmt.Fprintf(e.cfg.Log, "%s relaybench: "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Run runs the bench. The report is returned even when a scenario failed;
// err then says which ones.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	began := time.Now()
	dbURL, dropDB, err := freshDatabase(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, err
	}
	defer dropDB()

	openCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	wpool, err := pg.Open(openCtx, dbURL, pg.Options{MaxConns: int32(cfg.Writers + 4), AppName: "relaybench-writers"})
	if err != nil {
		return nil, err
	}
	defer wpool.Close()
	rpool, err := pg.Open(openCtx, dbURL, pg.Options{MaxConns: 8, AppName: "relaybench-relay"})
	if err != nil {
		return nil, err
	}
	defer rpool.Close()
	if err := wpool.Ping(openCtx); err != nil {
		return nil, fmt.Errorf("ping PostgreSQL: %w", err)
	}

	rep := &Report{Machine: machineInfo(openCtx, wpool), Settings: settingsOf(cfg)}
	errs := &errorCounter{w: cfg.Log}
	seq := &atomic.Int64{}
	var failures []string

	for _, sync := range cfg.Syncs {
		if ctx.Err() != nil {
			break
		}
		e := &env{cfg: cfg, sync: sync, dbURL: dbURL, wpool: wpool, rpool: rpool, seq: seq, errs: errs,
			log: slog.New(errs)}
		stopNATS, err := e.startNATS()
		if err != nil {
			return rep, err
		}
		e.logf("sync=%s: nats-server %s, store %s", sync, server.VERSION, e.storeNote())
		figs := e.runAll(ctx)
		stopNATS()
		for _, f := range figs {
			if f.Error != "" {
				failures = append(failures, fmt.Sprintf("%s %s %s: %s", f.Sync, f.Relay, f.Scenario, f.Error))
			}
		}
		rep.Figures = append(rep.Figures, figs...)
	}
	rep.DurationSeconds = round(time.Since(began).Seconds(), 1)
	rep.RelayLogErrors = errs.n.Load()
	rep.RelayShutdownLogErrors = errs.shutdown.Load()
	rep.finish()
	if ctx.Err() != nil {
		failures = append(failures, "interrupted: "+ctx.Err().Error())
	}
	if len(failures) > 0 {
		return rep, fmt.Errorf("%d failure(s):\n  %s", len(failures), strings.Join(failures, "\n  "))
	}
	return rep, nil
}

func (e *env) storeNote() string {
	if e.sync == "always" {
		return "file, sync_interval always"
	}
	return "file, default sync interval (2 min)"
}

func (e *env) startNATS() (func(), error) {
	parent := e.cfg.StoreDir
	if parent == "" {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "relaybench-js-")
	if err != nil {
		return nil, err
	}
	srv, err := natsserver.New(natsserver.Config{StoreDir: dir, DefaultSync: e.sync == "default"})
	if err != nil {
		return nil, err
	}
	if err := srv.Start(); err != nil {
		return nil, err
	}
	nc, err := nats.Connect(srv.URL(), nats.Timeout(5*time.Second))
	if err != nil {
		srv.Stop()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		srv.Stop()
		return nil, err
	}
	e.srv, e.nc, e.js = srv, nc, js
	return func() {
		nc.Close()
		srv.Stop()
		_ = os.RemoveAll(dir)
	}, nil
}

// runAll runs every configured scenario for every relay of this sync setting.
func (e *env) runAll(ctx context.Context) []Figure {
	kinds := kindsFor(e.cfg, e.sync)
	var figs []Figure
	add := func(f Figure) {
		if f.Error != "" {
			e.logf("FAIL %s %s %s: %s", f.Sync, f.Relay, f.Scenario, f.Error)
		} else {
			e.logf("%s", f.oneLine())
		}
		figs = append(figs, f)
	}
	// measure runs one scenario and records where the CPU went meanwhile.
	measure := func(run func() Figure) Figure {
		before := e.snap(ctx)
		f := run()
		if f.Load == nil {
			f.Load = e.loadBetween(before, e.snap(ctx))
		}
		return f
	}
	for _, sc := range e.cfg.Scenarios {
		switch sc {
		case "drain":
			// Repetitions go round-robin over the relays (experiments
			// included), so a burst of load elsewhere on the machine hits
			// one repetition of each rather than all of one relay's.
			var all []relayKind
			var isExp []bool
			for _, k := range kinds {
				all, isExp = append(all, k), append(isExp, false)
			}
			for _, k := range kinds {
				for _, x := range e.experimentsFor(k, sc) {
					all, isExp = append(all, x), append(isExp, true)
				}
			}
			for i, f := range e.drainRounds(ctx, all) {
				if isExp[i] {
					f = experiment(f)
				}
				add(f)
			}
			if ctx.Err() != nil {
				return figs
			}
		case "paced":
			for _, k := range kinds {
				if ctx.Err() != nil {
					return figs
				}
				add(measure(func() Figure { return e.paced(ctx, k, false) }))
				if e.cfg.Wake && !k.Forwarder {
					add(measure(func() Figure { return e.paced(ctx, k, true) }))
				}
			}
			for _, k := range kinds {
				for _, x := range e.experimentsFor(k, sc) {
					if ctx.Err() != nil {
						return figs
					}
					add(measure(func() Figure { return experiment(e.paced(ctx, x, false)) }))
				}
			}
		case "saturation":
			writersOnly := map[string]*SatFigure{}
			for _, k := range kinds {
				if ctx.Err() != nil {
					return figs
				}
				wk := k.writerKind()
				if writersOnly[wk] == nil {
					f := measure(func() Figure { return e.writersOnly(ctx, k) })
					add(f)
					if f.Error != "" {
						continue
					}
					writersOnly[wk] = f.Saturation
				}
				add(measure(func() Figure { return e.saturation(ctx, k, writersOnly[wk]) }))
			}
		}
	}
	return figs
}

func (e *env) experimentsFor(k relayKind, scenario string) []relayKind {
	if !e.cfg.Experiments {
		return nil
	}
	return experiments(k, scenario, e.sync)
}

func experiment(f Figure) Figure {
	f.Experiment = true
	return f
}

// freshDatabase creates an empty database next to the one url names and
// returns its URL and a function that drops it.
func freshDatabase(ctx context.Context, base string) (string, func(), error) {
	u, _, drop, err := pg.ScratchDatabase(ctx, base, "relaybench_", func(f string, a ...any) {
		fmt.Fprintf(os.Stderr, "relaybench: "+f+"\n", a...)
	})
	return u, drop, err
}

// errorCounter is the relays' log: it counts warnings and errors and prints
// the first few, so a relay that silently retries shows up in the report.
// Records logged while a relay is being stopped (the forwarder logs its
// cancelled query as an error) are counted apart.
type errorCounter struct {
	w         io.Writer
	n         atomic.Int64
	shutdown  atomic.Int64
	stopping  atomic.Bool
	fallbacks atomic.Int64
}

func (h *errorCounter) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *errorCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Level < slog.LevelWarn {
		// Only the relay's atomic-batch fallback is of interest at Info:
		// print why the server refused the batch.
		if strings.HasPrefix(r.Message, "atomic batch refused") && h.fallbacks.Add(1) <= 20 {
			fmt.Fprintf(h.w, "relaybench: relay log %s: %s%s\n", r.Level, r.Message, attrs(r))
		}
		return nil
	}
	if h.stopping.Load() {
		h.shutdown.Add(1)
		return nil
	}
	if h.n.Add(1) <= 20 {
		fmt.Fprintf(h.w, "relaybench: relay log %s: %s%s\n", r.Level, r.Message, attrs(r))
	}
	return nil
}

func attrs(r slog.Record) string {
	var b strings.Builder
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	return b.String()
}
func (h *errorCounter) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *errorCounter) WithGroup(string) slog.Handler      { return h }

func machineInfo(ctx context.Context, pool *pgxpool.Pool) Machine {
	m := Machine{
		NumCPU:      runtime.NumCPU(),
		GoVersion:   runtime.Version(),
		GOOS:        runtime.GOOS + "/" + runtime.GOARCH,
		NATSServer:  server.VERSION,
		NATSClient:  nats.Version,
		Date:        time.Now().UTC().Format(time.RFC3339),
		MemoryBytes: memTotal(),
		CPUModel:    cpuModel(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	var sc, fs, wsm, sb string
	if err := pool.QueryRow(ctx, `SELECT version(), current_setting('synchronous_commit'), current_setting('fsync'),
current_setting('wal_sync_method'), current_setting('shared_buffers')`).Scan(&m.PostgreSQL, &sc, &fs, &wsm, &sb); err == nil {
		m.PGSettings = map[string]string{"synchronous_commit": sc, "fsync": fs, "wal_sync_method": wsm, "shared_buffers": sb}
	}
	return m
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			var kb int64
			_, _ = fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			if _, v, ok := strings.Cut(l, ":"); ok {
				return strings.TrimSpace(v)
			}
		}
	}
	return ""
}
