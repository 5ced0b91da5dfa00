package payout

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

	"github.com/paypipe/paypipe/internal/loop"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
)

// Store is the payout schema's outbox and inbox. Run the service's consumers
// on a Runner with this Store, and a relay on it.
var Store = outbox.MustStore("payout")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the payout service's migrations: the outbox and inbox tables,
// then migrations/*.sql.
func Schema() migrate.Schema {
	return migrate.Embedded(Store, migrations)
}

// namespace is the UUIDv5 namespace of payout ids:
// UUIDv5(URL namespace, "https://paypipe.dev/payouts"). Changing it would
// change every payout id, so a run repeated after the change would pay twice.
var namespace = uuid.MustParse("f7309c43-2c42-5352-aa8c-1a93636d2186")

// ID is the payout id of a seller's payout in currency for period: the same
// inputs give the same id on every replica, in every run.
func ID(sellerID, currency, period string) uuid.UUID {
	return uuid.NewSHA1(namespace, []byte(sellerID+"|"+currency+"|"+period))
}

// Config configures a Service. Zero values get the defaults documented on
// each field; negative durations and counts are errors.
type Config struct {
	// Schedule runs payouts automatically: "daily@HH:MM" (UTC; the period is
	// the day, YYYY-MM-DD), a Go duration of at least 1s such as "1h" (the
	// period is the interval's start, RFC 3339), or "off". Default
	// "daily@02:00".
	Schedule string
	// BatchSize bounds every batch: payouts requested per transaction of a
	// run, and payouts claimed per sender or resolver pass. Default 100, at
	// most 1000.
	BatchSize int
	// Concurrency bounds the PSP calls in flight, per loop: default 8.
	Concurrency int
	// PollInterval is how often an idle sender looks for payouts to send:
	// default 200ms. Polling is what correctness relies on; the consumer's
	// wake-up is a hint.
	PollInterval time.Duration
	// CallTimeout bounds each PSP call: default 10s. A call that hits it has
	// an unknown outcome.
	CallTimeout time.Duration
	// Lease protects a claimed payout from other replicas during its PSP
	// calls (a lookup and a create): default 1m, more than 2×CallTimeout.
	// After it, another sender retries with the same idempotency key.
	Lease time.Duration
	// Retry spaces the attempts after an unknown outcome: default
	// exponential from 1s, doubling, capped at 5m, jitter 0.5. It must not
	// give up itself: GiveUpAfter is the bound.
	Retry retry.Policy
	// GiveUpAfter bounds, from the reservation, how long unknown outcomes
	// are retried: default 24h. Then the payout is marked stuck for an
	// operator (stuck_at), never failed: the PSP may have paid it.
	GiveUpAfter time.Duration
	// ResolveAfter is how long a sent payout waits for its final webhook
	// before the resolver polls the PSP: default 10m.
	ResolveAfter time.Duration
	// ResolveMaxInterval caps the backoff between polls of one payout:
	// default 1h.
	ResolveMaxInterval time.Duration
	// ResolveHorizon is how long after sending polling goes on: default 7
	// days (then reconciliation covers it).
	ResolveHorizon time.Duration
	// ResolvePollInterval is how often an idle resolver looks for due polls:
	// default 1s.
	ResolvePollInterval time.Duration
	// WebhookSecrets verify the PSP's payout webhooks (PSP-Signature); two
	// during a rotation. Without one, every webhook is refused.
	WebhookSecrets []string
	// WebhookTolerance bounds a signature's distance from now: default 300s.
	WebhookTolerance time.Duration
	// MaxWebhookBytes bounds a webhook body: default 256 KiB.
	MaxWebhookBytes int64

	// WakeRelay, if set, is called after every commit that wrote events
	// (e.g. the payout relay's Relay.Wake): a hint, never required.
	WakeRelay func()
	// Registerer receives the service's metrics; nil leaves them unregistered.
	Registerer prometheus.Registerer

	// hooks are test signals; zero in production.
	hooks hooks
}

type hooks struct {
	afterSenderPass   func()
	afterResolverPass func()
	afterScheduledRun func(period string, res RunResult, err error)
	now               func() time.Time
}

const (
	maxBatchSize   = 1000
	maxConcurrency = 256
)

func (c Config) withDefaults() (Config, error) {
	var errs []error
	for name, d := range map[string]time.Duration{
		"PollInterval": c.PollInterval, "CallTimeout": c.CallTimeout, "Lease": c.Lease,
		"GiveUpAfter": c.GiveUpAfter, "ResolveAfter": c.ResolveAfter, "ResolveMaxInterval": c.ResolveMaxInterval,
		"ResolveHorizon": c.ResolveHorizon, "ResolvePollInterval": c.ResolvePollInterval,
		"WebhookTolerance": c.WebhookTolerance,
	} {
		if d < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, d))
		}
	}
	if c.BatchSize < 0 || c.Concurrency < 0 || c.MaxWebhookBytes < 0 {
		errs = append(errs, errors.New("BatchSize, Concurrency and MaxWebhookBytes must not be negative"))
	}
	if len(errs) > 0 {
		return c, fmt.Errorf("payout: config: %w", errors.Join(errs...))
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	if c.Schedule == "" {
		c.Schedule = "daily@02:00"
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.MaxWebhookBytes == 0 {
		c.MaxWebhookBytes = 256 << 10
	}
	def(&c.PollInterval, 200*time.Millisecond)
	def(&c.CallTimeout, 10*time.Second)
	def(&c.Lease, time.Minute)
	if c.Retry == (retry.Policy{}) {
		c.Retry = retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Max: 5 * time.Minute, Jitter: 0.5}
	}
	def(&c.GiveUpAfter, 24*time.Hour)
	def(&c.ResolveAfter, 10*time.Minute)
	def(&c.ResolveMaxInterval, time.Hour)
	def(&c.ResolveHorizon, 7*24*time.Hour)
	def(&c.ResolvePollInterval, time.Second)
	def(&c.WebhookTolerance, psp.DefaultTolerance)
	if _, err := parseSchedule(c.Schedule); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, loop.CheckCaller(loop.Caller{
		BatchSize: c.BatchSize, MaxBatchSize: maxBatchSize, Concurrency: c.Concurrency, MaxConcurrency: maxConcurrency,
		CallTimeout: c.CallTimeout, Lease: c.Lease, Retry: c.Retry,
		ResolveAfter: c.ResolveAfter, ResolveHorizon: c.ResolveHorizon, Item: "payout",
	})...)
	if len(errs) > 0 {
		return c, fmt.Errorf("payout: config: %w", errors.Join(errs...))
	}
	return c, nil
}

// Service is the payout service. Build it with New, run its Consumers on an
// outbox.Runner over Store, mount Handler, and call Run.
type Service struct {
	cfg      Config
	schedule schedule
	pool     *pgxpool.Pool
	psp      psp.PayoutClient
	log      *slog.Logger
	metrics  *metrics
	// wake is the reservation consumer's in-process hint to the sender.
	wake chan struct{}
}

// New validates cfg and returns a service; it starts nothing. client may be
// nil for a Service used only to run and list payouts (the CLI); Run then
// refuses to start.
func New(cfg Config, pool *pgxpool.Pool, client psp.PayoutClient, log *slog.Logger) (*Service, error) {
	if pool == nil {
		return nil, errors.New("payout: New needs a pool")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sched, _ := parseSchedule(cfg.Schedule) // validated by withDefaults
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Service{
		cfg:      cfg,
		schedule: sched,
		pool:     pool,
		psp:      client,
		log:      log.With("component", "payout"),
		metrics:  m,
		wake:     make(chan struct{}, 1),
	}, nil
}

// Run runs the sender, the resolver and the schedule until ctx ends, then
// waits for their PSP calls to return (each bounded by CallTimeout and ctx).
// Failed passes are logged and retried with a bounded backoff; Run returns
// nil when ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if s.psp == nil {
		return errors.New("payout: Run needs a PSP client")
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.runSender(ctx) })
	wg.Go(func() { s.runResolver(ctx) })
	if !s.schedule.off {
		wg.Go(func() { s.runSchedule(ctx) })
	}
	wg.Wait()
	return nil
}

func (s *Service) now() time.Time {
	if s.cfg.hooks.now != nil {
		return s.cfg.hooks.now()
	}
	return time.Now()
}

func (s *Service) wakeSender() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Service) wakeRelay() {
	if s.cfg.WakeRelay != nil {
		s.cfg.WakeRelay()
	}
}
