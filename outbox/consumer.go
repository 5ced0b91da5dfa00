package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/outbox/retry"
	"github.com/paypipe/paypipe/outbox/watermilljs"
)

// Delivery is one message as a handler sees it.
type Delivery struct {
	MsgID            uuid.UUID
	Subject          string
	Type             string
	Source           string
	Time             time.Time
	CorrelationID    string
	AggregateID      string
	AggregateVersion int64
	Headers          map[string]string
	Payload          []byte
	// NumDelivered counts deliveries of this message to this consumer (1 first).
	NumDelivered uint64
	StreamSeq    uint64
}

// HandlerFunc applies one message inside the inbox transaction tx. Returning
// an error rolls back; the runner then redelivers the message after the
// consumer's retry delay, or dead-letters it if the error is permanent
// (retry.Permanent) or the attempts are used up.
type HandlerFunc func(ctx context.Context, tx pgx.Tx, d Delivery) error

// ConsumerSpec binds a handler to a durable consumer. The consumer must be
// declared on the server up front (see contracts); the runner never creates
// or deletes consumers. Name is also the inbox key's consumer name.
type ConsumerSpec struct {
	Name    string
	Stream  string
	Handler HandlerFunc
	// AfterCommit, if set, runs after the handler's transaction committed
	// and before the ack (not for duplicates): the place for in-process
	// wake-up hints to loops that will read what the handler wrote.
	AfterCommit func(Delivery)
	// Retry is the redelivery policy after a transient handler error
	// (NakWithDelay(Retry.Delay(NumDelivered, err))); zero means
	// RunnerConfig.Retry. The attempt limit is the consumer's MaxDeliver,
	// or Retry.MaxAttempts if smaller.
	Retry retry.Policy
}

// DeadLetter is a message a consumer gives up on, as the Runner hands it to
// its DeadLetterer.
type DeadLetter struct {
	Consumer string
	Stream   string
	Sequence uint64 // stream sequence
	Subject  string
	// Header and Payload are the original message's (for a message read
	// from a consumer: one value per header).
	Header  nats.Header
	Payload []byte
	// Attempts is how many times the message was delivered to Consumer.
	Attempts uint64
	// FirstFailure is the first failed delivery's time if known, else
	// LastFailure.
	FirstFailure, LastFailure time.Time
	// Error is the last error.
	Error string
	// Permanent: the handler said retrying cannot help; otherwise the
	// attempts are used up.
	Permanent bool
}

// DeadLetterer stores dead messages durably (package dlq publishes them to
// the DLQ stream). DeadLetter returns nil only once the message is stored;
// the Runner then Terms the original with DeadLetterTermReason. Storing the
// same (Consumer, Stream, Sequence) twice must keep one copy: a crash or a
// lost Term makes the Runner hand a message over again.
type DeadLetterer interface {
	DeadLetter(ctx context.Context, m DeadLetter) error
}

// DeadLetterTermReason is the reason of the Runner's Term after a dead
// letter was stored. Whoever watches MSG_TERMINATED advisories (dlq.Mover)
// skips this reason: the message is already in the DLQ.
const DeadLetterTermReason = "dead-lettered"

// DefaultRetry is the Runner's redelivery policy unless configured:
// exponential from 1 s, doubling, capped at 5 min, ±20% jitter.
func DefaultRetry() retry.Policy {
	return retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Multiplier: 2, Max: 5 * time.Minute, Jitter: 0.2}
}

// fallbackAttempts bounds the attempts of a consumer that has neither a
// MaxDeliver nor a MaxAttempts: retries must end somewhere.
const fallbackAttempts = 10

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Store   Store
	Pool    *pgxpool.Pool
	Conn    *nats.Conn
	Metrics *Metrics
	Logger  *slog.Logger
	// Workers is the number of messages in flight per consumer: default 8.
	Workers int
	// Retry is the redelivery policy of consumers whose spec has none:
	// default DefaultRetry().
	Retry retry.Policy
	// DeadLetters takes the messages consumers give up on (dlq.Publisher).
	// Without it nothing is dead-lettered by the runner: failed messages are
	// redelivered until the server's MaxDeliver stops them, and only a
	// MAX_DELIVERIES watcher (dlq.Mover) gets them to the DLQ.
	DeadLetters DeadLetterer
	// DeadLetterTimeout bounds one hand-over to DeadLetters: default 10s.
	DeadLetterTimeout time.Duration
	// NakDelay, if set, replaces the delays of RunnerConfig.Retry (not of a
	// ConsumerSpec.Retry) and ignores the error.
	//
	// Deprecated: set Retry (e.g. retry.Policy{Strategy: retry.Fixed,
	// Initial: 10 * time.Millisecond} for fast tests).
	NakDelay func(numDelivered uint64) time.Duration

	hooks runnerHooks
}

type runnerHooks struct {
	inbox       inboxHooks
	afterCommit func(d Delivery)
}

// Runner runs consumers on a watermill Router, fed by paypipe's JetStream pull
// subscriber. Per message: claim the inbox row, apply the handler, write any
// outgoing outbox rows, commit, then ack (DoubleAck: wait for the server's
// confirmation). A duplicate skips the handler and acks. Crash before commit:
// nothing applied, the message is redelivered. Crash after commit before ack:
// the redelivery finds the inbox row and is acked without effect.
//
// A failed attempt (handler error or panic, failed commit) rolls everything
// back, so the inbox has no row for the message. Then:
//
//   - transient error, attempts left: NakWithDelay(policy.Delay(NumDelivered,
//     err)), so a server's Retry-After carried by err is honoured;
//   - permanent error (retry.Permanent, an undecodable envelope) or the last
//     allowed delivery (MaxDeliver, or the policy's MaxAttempts if smaller):
//     the message is handed to RunnerConfig.DeadLetters, which returns only
//     once it is stored (the DLQ's PubAck), and only then is the original
//     Term'd with DeadLetterTermReason. If storing fails the message is
//     nacked and comes back; it is never Term'd without a stored copy.
//
// A crash or a lost Term between the two hands the message over again; the
// DLQ keeps one copy (dlq.MsgID). A message whose last delivery crashes the
// process is never handed over by the runner: the server stops at
// MaxDeliver and emits a MAX_DELIVERIES advisory, which dlq.Mover turns into
// the same dead letter. A replay from the DLQ keeps ce-id, so the one
// consumer that gave up applies it and the others skip it.
type Runner struct {
	cfg    RunnerConfig
	specs  []ConsumerSpec
	log    *slog.Logger
	ready  chan struct{}
	router *message.Router
}

// NewRunner validates cfg.
func NewRunner(cfg RunnerConfig) (*Runner, error) {
	if cfg.Store.schema == "" || cfg.Pool == nil || cfg.Conn == nil {
		return nil, errors.New("outbox: runner needs Store, Pool and Conn")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 8
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if isZeroPolicy(cfg.Retry) {
		cfg.Retry = DefaultRetry()
	}
	if cfg.DeadLetterTimeout <= 0 {
		cfg.DeadLetterTimeout = 10 * time.Second
	}
	return &Runner{cfg: cfg, log: cfg.Logger.With("component", "consumer"), ready: make(chan struct{})}, nil
}

// isZeroPolicy reports an unset policy; reflect keeps it right whatever
// fields retry.Policy gains.
func isZeroPolicy(p retry.Policy) bool { return reflect.ValueOf(p).IsZero() }

// Add registers a consumer; call before Run.
func (r *Runner) Add(spec ConsumerSpec) error {
	if spec.Name == "" || spec.Stream == "" || spec.Handler == nil {
		return errors.New("outbox: consumer spec needs Name, Stream and Handler")
	}
	for _, s := range r.specs {
		if s.Name == spec.Name {
			return fmt.Errorf("outbox: consumer %q added twice", spec.Name)
		}
	}
	r.specs = append(r.specs, spec)
	return nil
}

// Running is closed once every consumer is subscribed.
func (r *Runner) Running() <-chan struct{} { return r.ready }

// Run consumes until ctx ends. It fails fast if a declared consumer is missing.
func (r *Runner) Run(ctx context.Context) error {
	if len(r.specs) == 0 {
		return errors.New("outbox: runner has no consumers")
	}
	js, err := jetstream.New(r.cfg.Conn)
	if err != nil {
		return fmt.Errorf("outbox: jetstream: %w", err)
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(r.cfg.Logger, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 15 * time.Second}, wlog)
	if err != nil {
		return fmt.Errorf("outbox: router: %w", err)
	}
	// Recoverer turns a handler panic into an error (nack), so one bad
	// message cannot take the process down.
	router.AddMiddleware(middleware.Recoverer)
	if r.cfg.DeadLetters == nil {
		r.log.Warn("no dead-letter sink: failed messages are retried until the server's MaxDeliver, and reach the DLQ only through its MAX_DELIVERIES advisory")
	}
	for _, spec := range r.specs {
		jc, err := js.Consumer(ctx, spec.Stream, spec.Name)
		if err != nil {
			return fmt.Errorf("outbox: consumer %s on stream %s (consumers are declared up front): %w", spec.Name, spec.Stream, err)
		}
		c := r.newConsumerRun(spec, jc.CachedInfo().Config.MaxDeliver)
		sub, err := watermilljs.NewSubscriber(watermilljs.SubscriberConfig{
			ConsumerFor: watermilljs.BindConsumer(js, spec.Stream, func(topic string) string { return topic }),
			Workers:     r.cfg.Workers,
			// Used only when a nack carries no delay of its own (a panic
			// the Recoverer caught outside the handler).
			NakDelay: func(n uint64) time.Duration { return c.delay(n, nil) },
			Logger:   wlog,
		})
		if err != nil {
			return fmt.Errorf("outbox: subscriber %s: %w", spec.Name, err)
		}
		router.AddConsumerHandler(spec.Name, spec.Name, sub, r.handlerFor(c))
	}
	r.router = router
	go func() {
		select {
		case <-router.Running():
			close(r.ready)
		case <-ctx.Done():
		}
	}()
	if err := router.Run(ctx); err != nil {
		return fmt.Errorf("outbox: router: %w", err)
	}
	return nil
}

// consumerRun is one consumer's settings while the runner runs.
type consumerRun struct {
	spec   ConsumerSpec
	policy retry.Policy
	// legacy is RunnerConfig.NakDelay when it applies (deprecated).
	legacy func(uint64) time.Duration
	// limit is the delivery after which a transient failure is dead-lettered.
	limit  uint64
	firsts firstFailures
}

func (r *Runner) newConsumerRun(spec ConsumerSpec, maxDeliver int) *consumerRun {
	c := &consumerRun{spec: spec, policy: spec.Retry}
	if isZeroPolicy(spec.Retry) {
		c.policy, c.legacy = r.cfg.Retry, r.cfg.NakDelay
	}
	limit := 0
	if maxDeliver > 0 {
		limit = maxDeliver
	}
	if m := c.policy.MaxAttempts; m > 0 && (limit == 0 || m < limit) {
		limit = m
	}
	if limit == 0 {
		r.log.Warn("consumer has no MaxDeliver and its retry policy no MaxAttempts: dead-lettering after a fallback limit; "+
			"a message that crashes the process is redelivered forever", "consumer", spec.Name, "limit", fallbackAttempts)
		limit = fallbackAttempts
	}
	c.limit = uint64(limit)
	return c
}

// delay is the wait before redelivering after delivery n failed with err.
func (c *consumerRun) delay(n uint64, err error) time.Duration {
	if c.legacy != nil {
		return c.legacy(n)
	}
	return c.policy.Delay(int(min(n, math.MaxInt32)), err)
}

func (r *Runner) handlerFor(c *consumerRun) message.NoPublishHandlerFunc {
	spec := c.spec
	return func(msg *message.Message) error {
		start := time.Now()
		d, err := delivery(msg)
		if err != nil {
			// Retrying cannot fix an envelope.
			return r.failed(msg, c, start, retry.Permanent(fmt.Errorf("undecodable envelope: %w", err)))
		}
		ctx := WithCorrelationID(msg.Context(), d.CorrelationID)
		if tp := d.Headers[HeaderTraceparent]; tp != "" {
			ctx = WithTraceparent(ctx, tp)
		}
		applied, err := r.cfg.Store.handle(ctx, r.cfg.Pool, spec.Name, d.MsgID, d.Subject,
			func(ctx context.Context, tx pgx.Tx) (err error) {
				// A panic is a failed attempt like any other (transient: it
				// is retried and dead-lettered when attempts run out);
				// recovered here so that the transaction rolls back and the
				// failure goes through the same policy.
				defer func() {
					if p := recover(); p != nil {
						r.log.Error("handler panicked", "consumer", spec.Name, "msg_id", d.MsgID, "panic", p, "stack", string(debug.Stack()))
						err = fmt.Errorf("handler panicked: %v", p)
					}
				}()
				return spec.Handler(ctx, tx, d)
			},
			r.cfg.hooks.inbox)
		if err != nil {
			return r.failed(msg, c, start, err)
		}
		c.firsts.forget(d.StreamSeq)
		if r.cfg.Metrics != nil {
			r.cfg.Metrics.consumerTime.WithLabelValues(spec.Name).Observe(time.Since(start).Seconds())
		}
		if applied {
			r.count(spec.Name, "applied")
			if spec.AfterCommit != nil {
				spec.AfterCommit(d)
			}
		} else {
			r.count(spec.Name, "duplicate")
		}
		if r.cfg.hooks.afterCommit != nil {
			r.cfg.hooks.afterCommit(d)
		}
		return nil
	}
}

// failed settles a failed attempt (started at start): a nack with the
// policy's delay, or, for a permanent error or the last allowed attempt, a
// dead letter followed by a Term. Returning nil means "dead-lettered" (the
// subscriber then Terms instead of acking); an error means nack.
func (r *Runner) failed(msg *message.Message, c *consumerRun, start time.Time, err error) error {
	name := c.spec.Name
	n := watermilljs.NumDelivered(msg)
	seq, _ := strconv.ParseUint(msg.Metadata.Get(watermilljs.MetaStreamSeq), 10, 64)
	log := r.log.With("consumer", name, "stream_seq", seq, "msg_id", msg.Metadata.Get(HeaderID),
		"subject", msg.Metadata.Get(watermilljs.MetaSubject), "delivery", n, "limit", c.limit,
		"correlation_id", msg.Metadata.Get(HeaderCorrelationID))
	if msg.Context().Err() != nil {
		r.count(name, "error")
		// The subscription is ending and the error is most likely its
		// cancellation: no verdict at all. The server redelivers after
		// AckWait; a shutdown must never dead-letter.
		log.Info("handler stopped by shutdown; message left for redelivery", "err", err)
		return err
	}
	first, known := c.firsts.note(seq, n, start)
	// Classify calls a cancellation permanent ("the caller gave up"); here
	// the caller is the runner, which did not (checked above), so a
	// cancellation inside the handler is just a failed attempt.
	permanent := retry.Classify(err) == retry.ClassPermanent && !errors.Is(err, context.Canceled)
	if !permanent && n < c.limit {
		r.count(name, "error")
		delay := c.delay(n, err)
		watermilljs.SetNakDelay(msg, delay)
		log.Warn("handler failed; message will be redelivered", "redeliver_in", delay, "err", err)
		return err
	}
	if r.cfg.DeadLetters == nil {
		r.count(name, "error")
		delay := c.delay(n, err)
		watermilljs.SetNakDelay(msg, delay)
		log.Error("handler gave up but no dead-letter sink is configured; message will be redelivered",
			"permanent", permanent, "redeliver_in", delay, "err", err)
		return err
	}
	now := time.Now()
	if !known {
		first = now
	}
	dl := DeadLetter{
		Consumer:     name,
		Stream:       msg.Metadata.Get(watermilljs.MetaStream),
		Sequence:     seq,
		Subject:      msg.Metadata.Get(watermilljs.MetaSubject),
		Header:       watermilljs.OriginalHeaders(msg),
		Payload:      msg.Payload,
		Attempts:     n,
		FirstFailure: first,
		LastFailure:  now,
		Error:        err.Error(),
		Permanent:    permanent,
	}
	dctx, cancel := context.WithTimeout(msg.Context(), r.cfg.DeadLetterTimeout)
	derr := r.cfg.DeadLetters.DeadLetter(dctx, dl)
	cancel()
	if derr != nil {
		// Never Term what is not stored. Once the server's MaxDeliver is
		// reached it stops redelivering and emits MAX_DELIVERIES, which
		// dlq.Mover turns into the same dead letter.
		r.count(name, "error")
		delay := c.delay(n, derr)
		watermilljs.SetNakDelay(msg, delay)
		log.Error("dead-lettering failed; message will be redelivered", "redeliver_in", delay, "err", err, "dlq_err", derr)
		return fmt.Errorf("%w (dead-lettering failed: %w)", err, derr)
	}
	c.firsts.forget(seq)
	watermilljs.Terminate(msg, DeadLetterTermReason)
	r.count(name, "dead_lettered")
	log.Warn("message dead-lettered", "permanent", permanent, "err", err)
	return nil
}

// firstFailures remembers when this process first saw a message fail, for
// the dead letter's first-failure time. Only first deliveries are noted (a
// later one failed first elsewhere or before a restart: unknown), entries
// go when the message succeeds or is dead-lettered, and the map is bounded:
// a message redelivered to another process leaves an entry behind.
type firstFailures struct {
	mu sync.Mutex
	m  map[uint64]time.Time
}

const (
	maxFirstFailures   = 10_000
	firstFailureMaxAge = 24 * time.Hour
)

// note records at for seq's first delivery and returns the first failure's
// time, if known.
func (f *firstFailures) note(seq, numDelivered uint64, at time.Time) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if t, ok := f.m[seq]; ok {
		return t, true
	}
	if numDelivered != 1 {
		return time.Time{}, false
	}
	if seq == 0 {
		return at, true
	}
	if f.m == nil {
		f.m = make(map[uint64]time.Time)
	}
	if len(f.m) >= maxFirstFailures {
		for s, t := range f.m {
			if at.Sub(t) > firstFailureMaxAge {
				delete(f.m, s)
			}
		}
		if len(f.m) >= maxFirstFailures {
			return at, true // known now, not kept
		}
	}
	f.m[seq] = at
	return at, true
}

func (f *firstFailures) forget(seq uint64) {
	f.mu.Lock()
	delete(f.m, seq)
	f.mu.Unlock()
}

func (r *Runner) count(consumer, result string) {
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.consumerMsgs.WithLabelValues(consumer, result).Inc()
	}
}

// delivery decodes the envelope. The inbox key is ce-id; without one (the
// subscriber would make up a watermill UUID) the inbox could not recognise a
// redelivery.
func delivery(msg *message.Message) (Delivery, error) {
	md := msg.Metadata
	ceID, ok := md[HeaderID]
	if !ok {
		return Delivery{}, fmt.Errorf("no %s header", HeaderID)
	}
	id, err := uuid.Parse(ceID)
	if err != nil {
		return Delivery{}, fmt.Errorf("%s %q is not a UUID: %w", HeaderID, ceID, err)
	}
	d := Delivery{
		MsgID:         id,
		Subject:       md.Get(watermilljs.MetaSubject),
		Type:          md.Get(HeaderType),
		Source:        md.Get(HeaderSource),
		CorrelationID: md.Get(HeaderCorrelationID),
		AggregateID:   md.Get(HeaderAggregateID),
		Headers:       map[string]string(md),
		Payload:       msg.Payload,
		NumDelivered:  watermilljs.NumDelivered(msg),
	}
	if t, err := time.Parse(time.RFC3339Nano, md.Get(HeaderTime)); err == nil {
		d.Time = t
	}
	if v := md.Get(HeaderAggregateVersion); v != "" {
		d.AggregateVersion, _ = strconv.ParseInt(v, 10, 64)
	}
	if v := md.Get(watermilljs.MetaStreamSeq); v != "" {
		d.StreamSeq, _ = strconv.ParseUint(v, 10, 64)
	}
	return d, nil
}
