package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
// an error rolls back and nacks the message for a delayed redelivery.
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
}

// RunnerConfig configures a Runner.
type RunnerConfig struct {
	Store   Store
	Pool    *pgxpool.Pool
	Conn    *nats.Conn
	Metrics *Metrics
	Logger  *slog.Logger
	// Workers is the number of messages in flight per consumer: default 8.
	Workers int
	// NakDelay is the redelivery delay after a failed attempt; default
	// watermilljs's exponential backoff.
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
	return &Runner{cfg: cfg, log: cfg.Logger.With("component", "consumer"), ready: make(chan struct{})}, nil
}

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
	for _, spec := range r.specs {
		spec := spec
		if _, err := js.Consumer(ctx, spec.Stream, spec.Name); err != nil {
			return fmt.Errorf("outbox: consumer %s on stream %s (consumers are declared up front): %w", spec.Name, spec.Stream, err)
		}
		sub, err := watermilljs.NewSubscriber(watermilljs.SubscriberConfig{
			ConsumerFor: watermilljs.BindConsumer(js, spec.Stream, func(topic string) string { return topic }),
			Workers:     r.cfg.Workers,
			NakDelay:    r.cfg.NakDelay,
			Logger:      wlog,
		})
		if err != nil {
			return fmt.Errorf("outbox: subscriber %s: %w", spec.Name, err)
		}
		router.AddConsumerHandler(spec.Name, spec.Name, sub, r.handlerFor(spec))
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

func (r *Runner) handlerFor(spec ConsumerSpec) message.NoPublishHandlerFunc {
	return func(msg *message.Message) error {
		start := time.Now()
		d, err := delivery(msg)
		if err != nil {
			r.count(spec.Name, "error")
			r.log.Error("undecodable message", "consumer", spec.Name, "uuid", msg.UUID, "err", err)
			return err
		}
		ctx := WithCorrelationID(msg.Context(), d.CorrelationID)
		if tp := d.Headers[HeaderTraceparent]; tp != "" {
			ctx = WithTraceparent(ctx, tp)
		}
		applied, err := r.cfg.Store.handle(ctx, r.cfg.Pool, spec.Name, d.MsgID, d.Subject,
			func(ctx context.Context, tx pgx.Tx) error { return spec.Handler(ctx, tx, d) },
			r.cfg.hooks.inbox)
		if err != nil {
			r.count(spec.Name, "error")
			r.log.Warn("handler failed; message will be redelivered", "consumer", spec.Name, "msg_id", d.MsgID,
				"subject", d.Subject, "delivery", d.NumDelivered, "correlation_id", d.CorrelationID, "err", err)
			return err
		}
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

func (r *Runner) count(consumer, result string) {
	if r.cfg.Metrics != nil {
		r.cfg.Metrics.consumerMsgs.WithLabelValues(consumer, result).Inc()
	}
}

// delivery decodes the envelope. The inbox key is ce-id, which the
// subscriber also uses as the watermill UUID.
func delivery(msg *message.Message) (Delivery, error) {
	id, err := uuid.Parse(msg.UUID)
	if err != nil {
		return Delivery{}, fmt.Errorf("message id %q is not a UUID: %w", msg.UUID, err)
	}
	md := msg.Metadata
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
