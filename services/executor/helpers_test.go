package executor

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/services/psp"
)

// upstream stands in for the payment service's outbox: the tests emit
// payments.checkout.created through it and a real relay, as payment will.
var upstream = outbox.MustStore("upstream")

// env is one test's world: a fresh database, an embedded JetStream with every
// stream and consumer declared, a relay for each outbox, and the fake PSP.
type env struct {
	t       *testing.T
	pool    *pgxpool.Pool
	nc      *nats.Conn
	js      jetstream.JetStream
	psp     *fakePSP
	upRelay *outbox.Relay
	exRelay *outbox.Relay
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, Schema(), migrate.Schema{Store: upstream})
	nc := testenv.Connect(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, pool: pool, nc: nc, js: js, psp: newFakePSP()}
	e.upRelay = e.relay(upstream)
	e.exRelay = e.relay(Store)
	return e
}

func (e *env) relay(store outbox.Store) *outbox.Relay {
	e.t.Helper()
	r, err := outbox.NewRelay(outbox.RelayConfig{Store: store, Pool: e.pool, Conn: e.nc,
		Mode: outbox.PublishAtomicBatch, StreamOf: contracts.StreamOf, PollInterval: 10 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = r.Run(ctx) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return r
}

// testConfig is a Config with every wait scaled down to milliseconds.
func testConfig() Config {
	return Config{
		PollInterval:        10 * time.Millisecond,
		CallTimeout:         100 * time.Millisecond,
		Lease:               time.Second,
		Retry:               retry.Policy{Strategy: retry.Exponential, Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond, Jitter: 0.5},
		LookupAfter:         100, // tests of the lookup lower it
		GiveUpAfter:         time.Hour,
		ResolveAfter:        20 * time.Millisecond,
		ResolveMaxInterval:  40 * time.Millisecond,
		ResolveHorizon:      time.Hour,
		ResolvePollInterval: 10 * time.Millisecond,
	}
}

// running is an executor started by env.start, with its consumer runner.
type running struct {
	ex              *Executor
	reg             *prometheus.Registry
	cancel          context.CancelFunc
	done            chan struct{}
	registrarPasses atomic.Int64
	resolverPasses  atomic.Int64
}

// start builds an executor from cfg and runs it, and its consumer on a real
// Runner, until stop or the end of the test.
func (e *env) start(cfg Config) *running {
	e.t.Helper()
	r := &running{reg: prometheus.NewRegistry(), done: make(chan struct{})}
	cfg.Registerer = r.reg
	cfg.WakeRelay = e.exRelay.Wake
	cfg.hooks.afterRegistrarPass = func() { r.registrarPasses.Add(1) }
	cfg.hooks.afterResolverPass = func() { r.resolverPasses.Add(1) }
	ex, err := New(cfg, e.pool, e.psp, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	r.ex = ex
	runner, err := outbox.NewRunner(outbox.RunnerConfig{Store: Store, Pool: e.pool, Conn: e.nc,
		NakDelay: func(uint64) time.Duration { return 20 * time.Millisecond }})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, spec := range ex.Consumers() {
		if err := runner.Add(spec); err != nil {
			e.t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := runner.Run(ctx); err != nil {
			e.t.Errorf("runner: %v", err)
		}
	})
	wg.Go(func() {
		if err := ex.Run(ctx); err != nil {
			e.t.Errorf("executor: %v", err)
		}
	})
	go func() { wg.Wait(); close(r.done) }()
	e.t.Cleanup(r.stop)
	return r
}

// stop cancels the executor and waits until it has returned.
func (r *running) stop() {
	r.cancel()
	<-r.done
}

// awaitPasses waits until both loops have completed n more passes than
// now: what the test has seen so far cannot be an artefact of a pass still
// running.
func (r *running) awaitPasses(t *testing.T, n int64) {
	t.Helper()
	reg, res := r.registrarPasses.Load(), r.resolverPasses.Load()
	testenv.Eventually(t, 10*time.Second, "more executor passes", func() (bool, error) {
		return r.registrarPasses.Load() >= reg+n && r.resolverPasses.Load() >= res+n, nil
	})
}

func (r *running) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

var checkoutSeq atomic.Int64

// newCheckout returns a checkout.created event: direct mode charges
// pm_card_visa unless method says otherwise, hosted mode returns to a URL.
func newCheckout(mode, method string) contracts.CheckoutCreated {
	amount := 4200 + checkoutSeq.Add(1)
	ev := contracts.CheckoutCreated{
		CheckoutID: uuid.NewString(), MerchantID: uuid.NewString(), BuyerID: "buyer-1",
		Currency: "EUR", AmountMinor: amount, Mode: mode, CreatedAt: time.Now().UTC(),
		Orders: []contracts.OrderSummary{{PaymentOrderID: uuid.NewString(), SellerID: uuid.NewString(),
			AmountMinor: amount, FeeMinor: 126, NetMinor: amount - 126}},
	}
	switch mode {
	case contracts.ModeDirect:
		ev.PaymentMethod = method
		if method == "" {
			ev.PaymentMethod = psp.MethodCardSucceeds
		}
	case contracts.ModeHosted:
		ev.ReturnURL = "https://shop.test/return"
	}
	return ev
}

// publish emits ev through the upstream outbox and relay, as a new message.
func (e *env) publish(ev contracts.CheckoutCreated) uuid.UUID {
	e.t.Helper()
	ctx := context.Background()
	body, err := json.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	m := &outbox.Message{Subject: contracts.SubjectCheckoutCreated, Type: contracts.TypeOf(contracts.SubjectCheckoutCreated),
		Source: contracts.SourcePayment, AggregateID: ev.CheckoutID, AggregateVersion: 1, Payload: body}
	if err := upstream.Write(ctx, tx, m); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.upRelay.Wake()
	return m.ID
}

// event is one executor event read back from the PAYMENTS stream.
type event struct {
	header  nats.Header
	payload []byte
}

// streamEvents returns the messages of subject about checkoutID stored in
// the PAYMENTS stream, in stream order.
func (e *env) streamEvents(subject, checkoutID string) []event {
	e.t.Helper()
	ctx := context.Background()
	s, err := e.js.Stream(ctx, contracts.StreamPayments)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []event
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			e.t.Fatal(err)
		}
		if m.Subject != subject || m.Header.Get(outbox.HeaderAggregateID) != checkoutID {
			continue
		}
		out = append(out, event{header: m.Header, payload: m.Data})
	}
	return out
}

// awaitEvent waits for the first stream event of subject about checkoutID.
func (e *env) awaitEvent(subject, checkoutID string) event {
	e.t.Helper()
	var got []event
	testenv.Eventually(e.t, 15*time.Second, subject+" for "+checkoutID, func() (bool, error) {
		got = e.streamEvents(subject, checkoutID)
		return len(got) > 0, nil
	})
	return got[0]
}

// outboxRows counts the executor's outbox rows of subject about checkoutID:
// what was emitted, before any broker deduplication.
func (e *env) outboxRows(subject, checkoutID string) int {
	e.t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM executor.outbox WHERE subject = $1 AND aggregate_id = $2`,
		subject, checkoutID).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// exactlyOne asserts that exactly one event of subject about checkoutID was
// emitted and stored, and returns it decoded into v.
func (e *env) exactlyOne(subject, checkoutID string, v any) event {
	e.t.Helper()
	if n := e.outboxRows(subject, checkoutID); n != 1 {
		e.t.Fatalf("%s for %s: %d outbox rows, want 1", subject, checkoutID, n)
	}
	evs := e.streamEvents(subject, checkoutID)
	if len(evs) != 1 {
		e.t.Fatalf("%s for %s: %d stream messages, want 1", subject, checkoutID, len(evs))
	}
	ev := evs[0]
	if got, want := ev.header.Get(outbox.HeaderType), contracts.TypeOf(subject); got != want {
		e.t.Errorf("%s: ce-type %q, want %q", subject, got, want)
	}
	if got := ev.header.Get(outbox.HeaderSource); got != contracts.SourceExecutor {
		e.t.Errorf("%s: ce-source %q, want %q", subject, got, contracts.SourceExecutor)
	}
	if err := contracts.ValidateEvent(contracts.TypeOf(subject), ev.payload); err != nil {
		e.t.Errorf("%s does not match its schema: %v\n%s", subject, err, ev.payload)
	}
	if v != nil {
		if err := json.Unmarshal(ev.payload, v); err != nil {
			e.t.Fatalf("%s: decode: %v", subject, err)
		}
	}
	return ev
}

// attemptRow is executor.attempts as the tests read it.
type attemptRow struct {
	status       string
	key          string
	attempts     int
	pspPaymentID *string
	pspStatus    *string
	lastError    *string
	nextPollAt   *time.Time
	polls        int
	leaseUntil   *time.Time
	request      request
}

func (e *env) attempt(checkoutID string) (attemptRow, bool) {
	e.t.Helper()
	var a attemptRow
	var body []byte
	err := e.pool.QueryRow(context.Background(), `SELECT status, idempotency_key, attempts, psp_payment_id, psp_status,
last_error, next_poll_at, polls, lease_until, request FROM executor.attempts WHERE checkout_id = $1`, checkoutID).
		Scan(&a.status, &a.key, &a.attempts, &a.pspPaymentID, &a.pspStatus, &a.lastError, &a.nextPollAt, &a.polls, &a.leaseUntil, &body)
	if err != nil {
		return a, false
	}
	if err := json.Unmarshal(body, &a.request); err != nil {
		e.t.Fatal(err)
	}
	return a, true
}

func (e *env) awaitStatus(checkoutID, status string) attemptRow {
	e.t.Helper()
	var a attemptRow
	testenv.Eventually(e.t, 15*time.Second, "attempt of "+checkoutID+" "+status, func() (bool, error) {
		var ok bool
		a, ok = e.attempt(checkoutID)
		return ok && a.status == status, nil
	})
	return a
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
