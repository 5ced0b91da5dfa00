package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/internal/httpserver"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/natsserver"
	"github.com/paypipe/paypipe/internal/pg"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/dlq"
	"github.com/paypipe/paypipe/services/executor"
	"github.com/paypipe/paypipe/services/pspsim"
)

// appOptions configure an app.
type appOptions struct {
	cfg      config.Config
	services []service
	log      *slog.Logger
	// natsStoreDir is the embedded server's JetStream store; default
	// <data dir>/nats-embedded.
	natsStoreDir string
	// sweepEvery is the sweeper's interval; default one minute.
	sweepEvery time.Duration
	// executor tunes the executor's loops (zero: its defaults); tests
	// compress its timeouts and polling.
	executor executor.Config
}

// app is one paypipe process: the database pool, the broker connection (and
// the embedded broker, if any), and per service a relay, a consumer runner
// and a sweeper, plus the operational HTTP server. serve runs it until a
// signal; demo and the tests run the very same assembly in-process.
//
// Start brings dependencies up in the order that makes each step's failure
// clear (database, durability, migrations, broker, streams) and returns once
// every consumer is subscribed. Stop tears down in reverse: it stops taking
// HTTP requests, stops the loops, then closes the connection, the embedded
// broker and the pool.
type app struct {
	opts appOptions
	log  *slog.Logger

	pool    *pgxpool.Pool
	ns      *natsserver.Server
	unlock  func()
	nc      *nats.Conn
	js      jetstream.JetStream
	reg     *prometheus.Registry
	metrics *outbox.Metrics
	http    *httpserver.Server
	relays  map[string]*outbox.Relay
	// api serves the services' HTTP APIs; it answers 503 until every
	// service is built, since the listener must exist before the embedded
	// PSP (which needs paypipe's address for its webhooks) can start.
	api *lazyHandler
	// sim is the embedded PSP simulator (nil with PAYPIPE_PSP_URL).
	sim *embeddedPSP

	loops    context.Context // lifetime of the background loops
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	fatal    chan error // first error of a loop that cannot continue
	stopOnce sync.Once
	stopping atomic.Bool // silences the disconnect that Stop itself causes
	stopErr  error
}

func newApp(o appOptions) (*app, error) {
	if len(o.services) == 0 {
		return nil, errors.New("app: no services selected")
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.natsStoreDir == "" {
		// Not <data dir>/nats: scripts/nats.sh's standalone server keeps its
		// store there, and two servers on one store corrupt it.
		o.natsStoreDir = filepath.Join(o.cfg.DataDir, "nats-embedded")
	}
	if o.sweepEvery <= 0 {
		o.sweepEvery = time.Minute
	}
	return &app{opts: o, log: o.log, relays: map[string]*outbox.Relay{}, fatal: make(chan error, 1)}, nil
}

// Start brings the app up. On error everything started so far is stopped.
func (a *app) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			_ = a.Stop(sctx)
		}
	}()
	cfg := a.opts.cfg
	if a.pool, err = openDB(ctx, cfg, "paypipe"); err != nil {
		return err
	}
	if err := pg.CheckDurability(ctx, a.pool); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	// ops holds the DLQ's audit trail (paypipe dlq replay / purge).
	schemas := append(schemasOf(a.opts.services), dlq.Schema())
	if a.wantsEmbeddedPSP() {
		schemas = append(schemas, pspsim.Schema())
	}
	if err := migrate.Up(ctx, a.pool, a.log, schemas...); err != nil {
		return err
	}
	if err := a.connectNATS(ctx); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := contracts.Declare(dctx, a.js,
		contracts.StreamOptions{Duplicates: cfg.DuplicateWindow}, contracts.ConsumerOptions{}); err != nil {
		return fmt.Errorf("declare streams and consumers: %w", err)
	}

	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = outbox.NewMetrics(a.reg)
	stores := make([]outbox.Store, 0, len(a.opts.services))
	for _, s := range a.opts.services {
		stores = append(stores, s.store())
	}
	a.reg.MustRegister(outbox.NewBacklogCollector(a.pool, a.log, stores...))

	// Dead letters: the runners publish what they give up on; the mover
	// catches what died any other way (MAX_DELIVERIES, foreign Terms).
	dm := dlq.NewMetrics(a.reg)
	deadLetters, err := dlq.NewPublisher(dlq.PublisherConfig{JetStream: a.js, Metrics: dm})
	if err != nil {
		return err
	}
	var consumerNames []string
	for _, c := range contracts.Consumers(contracts.ConsumerOptions{}) {
		if c.Stream != contracts.StreamAdvisories {
			consumerNames = append(consumerNames, c.Config.Durable)
		}
	}
	depth, err := dlq.NewDepthCollector(dlq.DepthConfig{JetStream: a.js, Consumers: consumerNames, Logger: a.log})
	if err != nil {
		return err
	}
	a.reg.MustRegister(depth, dlq.NewReplayedCollector(a.pool, a.log))

	// Loops outlive Start's context: Stop ends them.
	a.loops, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	mover, err := dlq.NewMover(dlq.MoverConfig{JetStream: a.js, Metrics: dm, Logger: a.log})
	if err != nil {
		return err
	}
	a.goLoop("dlq mover", mover.Run)

	a.api = &lazyHandler{}
	a.http, err = httpserver.New(httpserver.Config{
		Addr: cfg.HTTPAddr, Registry: a.reg, Logger: a.log, App: a.api,
		Checks: []httpserver.Check{httpserver.PostgresCheck(a.pool), httpserver.NATSCheck(a.nc)},
	})
	if err != nil {
		return err
	}
	if err := a.http.Start(); err != nil {
		return err
	}
	a.wg.Go(func() {
		select {
		case <-a.http.Done():
			if err := a.http.Err(); err != nil {
				a.fail(fmt.Errorf("http server: %w", err))
			}
		case <-a.loops.Done():
		}
	})

	d := deps{pool: a.pool, log: a.log, cfg: cfg, reg: a.reg, webhookSecrets: cfg.PSPWebhookSecrets, executorCfg: a.opts.executor}
	if a.wantsEmbeddedPSP() {
		if a.sim, err = startEmbeddedPSP(a.pool, a.log, cfg, "http://"+a.http.Addr()+"/v1/psp/webhooks"); err != nil {
			return err
		}
		a.goLoop("pspsim", a.sim.sim.Run)
		d.webhookSecrets = []string{a.sim.webhookSecret}
	}
	if d.psp, err = a.pspClient(); err != nil {
		return err
	}

	var runners []*outbox.Runner
	var handler http.Handler
	routes := map[string]http.Handler{}
	for _, s := range a.opts.services {
		relay, err := outbox.NewRelay(outbox.RelayConfig{
			Store: s.store(), Pool: a.pool, Conn: a.nc,
			Mode: cfg.RelayMode, StreamOf: contracts.StreamOf,
			Metrics: a.metrics, Logger: a.log,
		})
		if err != nil {
			return err
		}
		a.relays[s.name] = relay
		a.goLoop("relay "+s.name, relay.Run)

		sw, err := newSweeper(sweeperConfig{
			Store: s.store(), Pool: a.pool, Interval: a.opts.sweepEvery,
			OutboxRetention: cfg.OutboxRetention, InboxRetention: cfg.InboxRetention, Logger: a.log,
		})
		if err != nil {
			return err
		}
		a.goLoop("sweeper "+s.name, sw.Run)

		sd := d
		sd.log = a.log.With("service", s.name)
		sd.wakeRelay = relay.Wake
		inst, err := s.build(sd)
		if err != nil {
			return fmt.Errorf("service %s: %w", s.name, err)
		}
		if inst.run != nil {
			a.goLoop(s.name, inst.run)
		}
		if inst.handler != nil {
			if handler != nil {
				return fmt.Errorf("service %s: a second HTTP API (one per process)", s.name)
			}
			handler = inst.handler
		}
		for pattern, h := range inst.routes {
			if _, dup := routes[pattern]; dup {
				return fmt.Errorf("service %s: route %q is served twice", s.name, pattern)
			}
			routes[pattern] = h
		}
		if len(inst.consumers) == 0 {
			continue
		}
		runner, err := outbox.NewRunner(outbox.RunnerConfig{Store: s.store(), Pool: a.pool, Conn: a.nc, Metrics: a.metrics, Logger: a.log,
			DeadLetters: deadLetters})
		if err != nil {
			return err
		}
		for _, c := range inst.consumers {
			if err := runner.Add(c); err != nil {
				return err
			}
		}
		runners = append(runners, runner)
		a.goLoop("consumers "+s.name, runner.Run)
	}
	for _, r := range runners {
		if err := a.await(ctx, r.Running(), 30*time.Second, "consumers to subscribe"); err != nil {
			return err
		}
	}
	var demo http.Handler
	if handler != nil && a.sim != nil {
		// The demo shop, in test mode only (embedded PSP simulator), on a
		// process that serves the payment API it calls.
		if demo, err = a.demoShop(ctx); err != nil {
			return err
		}
	}
	a.api.set(a.routes(handler, routes, demo))
	a.log.Info("paypipe started", "services", serviceNames(a.opts.services), "nats", a.natsURL(),
		"embedded_nats", a.ns != nil, "relay_mode", cfg.RelayMode.String(), "http", a.http.Addr())
	return nil
}

func (a *app) connectNATS(ctx context.Context) error {
	url := a.opts.cfg.NATSURL
	if url == "" {
		unlock, err := lockDir(a.opts.natsStoreDir)
		if err != nil {
			return err
		}
		a.unlock = unlock
		ns, err := natsserver.New(natsserver.Config{StoreDir: a.opts.natsStoreDir})
		if err != nil {
			return err
		}
		if err := ns.Start(); err != nil {
			return err
		}
		a.ns = ns
		url = ns.URL()
		a.log.Info("embedded nats-server started", "url", url, "store", a.opts.natsStoreDir, "sync_always", ns.SyncAlways())
	}
	log := a.log.With("component", "nats")
	nc, err := nats.Connect(url,
		nats.Name("paypipe"),
		// Once connected, never give up: relays and consumers pause while
		// the broker is away and resume when it is back.
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.Timeout(5*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !a.stopping.Load() {
				log.Warn("disconnected from NATS", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("reconnected to NATS", "url", c.ConnectedUrlRedacted()) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { log.Warn("NATS async error", "err", err) }),
	)
	if err != nil {
		return fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	a.nc = nc
	if a.js, err = jetstream.New(nc); err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.js.AccountInfo(actx); err != nil {
		return fmt.Errorf("NATS at %s has no usable JetStream: %w", url, err)
	}
	return nil
}

func (a *app) natsURL() string {
	if a.ns != nil {
		return a.ns.URL()
	}
	if a.nc != nil {
		return a.nc.ConnectedUrlRedacted()
	}
	return ""
}

// goLoop runs a background loop. A loop that returns an error before Stop
// is fatal for the app: Run returns it.
func (a *app) goLoop(name string, fn func(context.Context) error) {
	ctx := a.loops
	a.wg.Go(func() {
		err := fn(ctx)
		if ctx.Err() == nil {
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			a.fail(fmt.Errorf("%s: %w", name, err))
		}
	})
}

func (a *app) fail(err error) {
	select {
	case a.fatal <- err:
	default:
	}
}

// await waits for ch to close, a fatal loop error, ctx or the timeout.
func (a *app) await(ctx context.Context, ch <-chan struct{}, timeout time.Duration, what string) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
		return nil
	case err := <-a.fatal:
		a.fail(err)
		return err
	case <-ctx.Done():
		return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
	case <-t.C:
		return fmt.Errorf("waiting for %s: no progress after %s", what, timeout)
	}
}

// Run starts the app, waits for ctx to end or a loop to fail, and stops it.
func (a *app) Run(ctx context.Context, ready func(*app)) error {
	if err := a.Start(ctx); err != nil {
		return err
	}
	if ready != nil {
		ready(a)
	}
	var runErr error
	select {
	case <-ctx.Done():
		a.log.Info("stopping", "reason", context.Cause(ctx))
	case runErr = <-a.fatal:
		a.log.Error("stopping after a fatal error", "err", runErr)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return errors.Join(runErr, a.Stop(sctx))
}

// Stop shuts the app down within ctx; it is safe to call more than once.
func (a *app) Stop(ctx context.Context) error {
	a.stopOnce.Do(func() {
		a.stopping.Store(true)
		var errs []error
		if a.http != nil {
			if err := a.http.Shutdown(ctx); err != nil {
				errs = append(errs, fmt.Errorf("http shutdown: %w", err))
			}
		}
		if a.cancel != nil {
			a.cancel()
		}
		done := make(chan struct{})
		go func() { a.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("background loops did not stop in time: %w", ctx.Err()))
		}
		if a.sim != nil {
			if err := a.sim.stop(ctx); err != nil {
				errs = append(errs, err)
			}
		}
		if a.nc != nil {
			a.nc.Close()
		}
		if a.ns != nil {
			a.ns.Stop()
		}
		if a.unlock != nil {
			a.unlock()
		}
		if a.pool != nil {
			a.pool.Close()
		}
		a.stopErr = errors.Join(errs...)
		if a.stopErr == nil && a.loops != nil {
			a.log.Info("paypipe stopped")
		}
	})
	return a.stopErr
}
