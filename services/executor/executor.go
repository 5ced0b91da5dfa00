package executor

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/loop"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
)

// Store is the executor schema's outbox and inbox. Run the executor's
// consumers on a Runner with this Store, and a relay on it.
var Store = outbox.MustStore("executor")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the executor's migrations: the outbox and inbox tables, then
// migrations/*.sql (executor.attempts).
func Schema() migrate.Schema {
	return migrate.Embedded(Store, migrations)
}

// Config configures an Executor. Zero values get the defaults documented on
// each field; negative durations and counts are errors.
type Config struct {
	// BatchSize is the most rows one registrar or resolver claim takes:
	// default 50, at most 1000.
	BatchSize int
	// Concurrency bounds the PSP calls in flight, per loop: default 8.
	Concurrency int
	// PollInterval is how often an idle registrar looks for due attempts:
	// default 100ms. Polling is what correctness relies on; the consumer's
	// wake-up is a hint.
	PollInterval time.Duration
	// CallTimeout bounds each PSP call (create, lookup, get): default 10s.
	// A call that hits it has an unknown outcome.
	CallTimeout time.Duration
	// Lease is how long a claimed attempt is protected from other registrars
	// (and a claimed poll from other resolvers): default 1m. It must exceed
	// two calls (lookup then create) plus the result's commit, so it must be
	// more than 2×CallTimeout. After it, another registrar may retry the
	// checkout with the same idempotency key.
	Lease time.Duration
	// Retry spaces the attempts after an unknown outcome. Zero: the
	// default, exponential from 1s doubling, capped at 5m, jitter 0.5 (so
	// replicas retrying together spread out). A 429's Retry-After is
	// honoured when longer, up to Retry.MaxRetryAfter (default 1h). It must
	// not give up (MaxAttempts, MaxElapsed): GiveUpAfter is the cancel, on
	// the database's clock.
	Retry retry.Policy
	// LookupAfter is the number of attempts after which each further
	// attempt first asks the PSP (FindByReference) whether the payment
	// exists: default 3.
	LookupAfter int
	// GiveUpAfter bounds, from the checkout's arrival (or an operator's
	// RetryStuck), how long unknown outcomes are retried: default 24h. After
	// it the attempt is marked stuck for an operator, never failed: the
	// buyer may have been charged.
	GiveUpAfter time.Duration

	// ResolveAfter is the delay from registration to the resolver's first
	// poll of a payment whose status is not final: default 60s.
	ResolveAfter time.Duration
	// ResolveMaxInterval caps the resolver's exponential backoff between
	// polls of one payment: default 10m.
	ResolveMaxInterval time.Duration
	// ResolveHorizon is how long after registration the resolver keeps
	// polling a payment that never becomes final: default 48h.
	ResolveHorizon time.Duration
	// ResolvePollInterval is how often an idle resolver looks for due polls:
	// default 1s.
	ResolvePollInterval time.Duration

	// WakeRelay, if set, is called after every commit that wrote events
	// (e.g. the executor relay's Relay.Wake): a hint, never required.
	WakeRelay func()
	// Registerer receives the executor's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	// hooks are test signals; zero in production.
	hooks hooks
}

type hooks struct {
	afterRegistrarPass func()
	afterResolverPass  func()
	afterRefunderPass  func()
}

const (
	maxBatchSize   = 1000
	maxConcurrency = 256
)

func (c Config) withDefaults() (Config, error) {
	var errs []error
	for name, d := range map[string]time.Duration{
		"PollInterval": c.PollInterval, "CallTimeout": c.CallTimeout, "Lease": c.Lease,
		"GiveUpAfter":  c.GiveUpAfter,
		"ResolveAfter": c.ResolveAfter, "ResolveMaxInterval": c.ResolveMaxInterval,
		"ResolveHorizon": c.ResolveHorizon, "ResolvePollInterval": c.ResolvePollInterval,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, d))
		}
	}
	if c.BatchSize < 0 || c.Concurrency < 0 || c.LookupAfter < 0 {
		errs = append(errs, errors.New("BatchSize, Concurrency and LookupAfter must not be negative"))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("executor: config: %w", errors.Join(errs...))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = 50
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.LookupAfter == 0 {
		c.LookupAfter = 3
	}
	def(&c.PollInterval, 100*time.Millisecond)
	def(&c.CallTimeout, 10*time.Second)
	def(&c.Lease, time.Minute)
	if c.Retry == (retry.Policy{}) {
		c.Retry = retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.5}
	}
	def(&c.GiveUpAfter, 24*time.Hour)
	def(&c.ResolveAfter, 60*time.Second)
	def(&c.ResolveMaxInterval, 10*time.Minute)
	def(&c.ResolveHorizon, 48*time.Hour)
	def(&c.ResolvePollInterval, time.Second)
	errs = append(errs, loop.CheckCaller(loop.Caller{
		BatchSize: c.BatchSize, MaxBatchSize: maxBatchSize, Concurrency: c.Concurrency, MaxConcurrency: maxConcurrency,
		CallTimeout: c.CallTimeout, Lease: c.Lease, Retry: c.Retry,
		ResolveAfter: c.ResolveAfter, ResolveHorizon: c.ResolveHorizon, Item: "checkout",
	})...)
	if len(errs) > 0 {
		return c, fmt.Errorf("executor: config: %w", errors.Join(errs...))
	}
	return c, nil
}

// Executor turns payments.checkout.created into PSP payments. Build it with
// New, run its Consumers on an outbox.Runner over Store, and call Run.
type Executor struct {
	cfg     Config
	pool    *pgxpool.Pool
	psp     PSP
	log     *slog.Logger
	metrics *metrics
	// wake is the consumer's in-process hint to the registrar.
	wake chan struct{}

	refundMetrics *refundMetrics
	// refundWake is the refunds consumer's hint to the refunder.
	refundWake chan struct{}
}

// New validates cfg and returns an executor; it starts nothing. client is
// the PSP's payments and refunds (a psp.Full satisfies PSP).
func New(cfg Config, pool *pgxpool.Pool, client PSP, log *slog.Logger) (*Executor, error) {
	if pool == nil || client == nil {
		return nil, errors.New("executor: New needs a pool and a PSP client")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	rm, err := newRefundMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Executor{
		cfg:           cfg,
		pool:          pool,
		psp:           client,
		log:           log.With("component", "executor"),
		metrics:       m,
		wake:          make(chan struct{}, 1),
		refundMetrics: rm,
		refundWake:    make(chan struct{}, 1),
	}, nil
}

// Consumers returns the executor's consumers: the inbox transaction
// records each new checkout as a pending attempt, and each new refund as a
// pending refund. Run them on a Runner whose Store is Store, so the inbox
// row commits with the row it protects.
func (e *Executor) Consumers() []outbox.ConsumerSpec {
	return []outbox.ConsumerSpec{{
		Name:    contracts.ExecutorCheckoutsConsumer,
		Stream:  contracts.StreamPayments,
		Handler: e.handleCheckoutCreated,
		// Woken only once the attempt row is visible; the poll is the
		// path correctness relies on.
		AfterCommit: func(outbox.Delivery) { e.wakeRegistrar() },
	}, {
		Name:        contracts.ExecutorRefundsConsumer,
		Stream:      contracts.StreamPayments,
		Handler:     e.handleRefundCreated,
		AfterCommit: func(outbox.Delivery) { e.wakeRefunder() },
	}}
}

// Run runs the registrar, the resolver and the refunder until ctx ends,
// then waits for their PSP calls to return (each is bounded by CallTimeout
// and by ctx).
// Errors of one pass (database down) are logged and retried with a bounded
// backoff; Run returns nil when ctx ends.
func (e *Executor) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { e.runRegistrar(ctx) })
	wg.Go(func() { e.runResolver(ctx) })
	wg.Go(func() { e.runRefunder(ctx) })
	wg.Wait()
	return nil
}

// wakeRegistrar asks the registrar to look for due attempts now; it never
// blocks.
func (e *Executor) wakeRegistrar() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

func (e *Executor) wakeRelay() {
	if e.cfg.WakeRelay != nil {
		e.cfg.WakeRelay()
	}
}

// StatusCounts returns the number of attempts in each status (pending,
// in_flight, registered, rejected, stuck). Operators watch "stuck": each is
// a checkout whose PSP outcome is unknown after GiveUpAfter.
func (e *Executor) StatusCounts(ctx context.Context) (map[string]int64, error) {
	rows, err := e.pool.Query(ctx, `SELECT status, count(*) FROM executor.attempts GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("executor: status counts: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, fmt.Errorf("executor: status counts: %w", err)
		}
		out[s] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("executor: status counts: %w", err)
	}
	return out, nil
}

// ErrNotStuck is returned by RetryStuck for a checkout that is not stuck.
var ErrNotStuck = errors.New("executor: checkout is not stuck")

// RetryStuck puts a stuck checkout back in the registrar's queue with a new
// give-up window, for an operator who has checked the PSP (or fixed what
// kept it from answering). The retry uses the same idempotency key as every
// earlier attempt, so a payment the PSP did create is found, not repeated.
func (e *Executor) RetryStuck(ctx context.Context, checkoutID string) error {
	id, err := uuid.Parse(checkoutID)
	if err != nil {
		return fmt.Errorf("executor: retry %q: not a checkout id: %w", checkoutID, err)
	}
	tag, err := e.pool.Exec(ctx, `UPDATE executor.attempts
SET status = 'pending', next_attempt_at = now(), window_start = now(), updated_at = now()
WHERE checkout_id = $1 AND status = 'stuck'`, id)
	if err != nil {
		return fmt.Errorf("executor: retry %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %s", ErrNotStuck, id)
	}
	e.log.Warn("stuck checkout put back in the queue by an operator", "checkout_id", id)
	e.wakeRegistrar()
	return nil
}
