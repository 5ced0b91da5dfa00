package watermilljs

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/outbox/retry"
)

const (
	defaultWorkers    = 8
	maxWorkers        = 256
	defaultPullExpiry = 5 * time.Second

	// Bounds of the wait between attempts to bind a consumer again after the
	// message iterator died (consumer deleted, bad request, ...).
	rebindMinBackoff = 500 * time.Millisecond
	rebindMaxBackoff = 30 * time.Second
)

// Log messages tests wait for.
const (
	logAcked           = "message acked"      // traced once the server confirmed an ack
	logTerminated      = "message terminated" // traced once a Term was sent
	logIteratorStopped = "message iterator stopped; binding the consumer again"
)

// Verdict metadata: a reader sets these on a message before acking or
// nacking it to refine what the subscriber tells the server. Like the
// delivery keys they describe one delivery, so the subscriber removes any
// header of the same name that came over the wire: a publisher must not be
// able to decide how a consumer settles its message.
const (
	// MetaTerminate, set before Ack, makes the subscriber Term the message
	// (TermWithReason, the value being the reason) instead of acking it: the
	// server never redelivers it and emits a MSG_TERMINATED advisory. Set it
	// with Terminate.
	MetaTerminate = "js-terminate"
	// MetaNakDelay, set before Nack, replaces SubscriberConfig.NakDelay for
	// this one redelivery (time.Duration syntax). Set it with SetNakDelay.
	MetaNakDelay = "js-nak-delay"
)

// Terminate asks the subscriber to Term m with reason once m is acked,
// instead of acknowledging it. A Term, like an ack, is final: call it only
// once the message is safe elsewhere (paypipe's consumers: after the DLQ's
// PubAck). A Term lost on the way (it is not confirmed by the server) means
// a redelivery after AckWait, as for a lost ack.
func Terminate(m *message.Message, reason string) { m.Metadata.Set(MetaTerminate, reason) }

// SetNakDelay sets the redelivery delay of m's next Nack, overriding
// SubscriberConfig.NakDelay: for delays that depend on the error (a
// server's Retry-After), which NakDelay cannot see.
func SetNakDelay(m *message.Message, d time.Duration) { m.Metadata.Set(MetaNakDelay, d.String()) }

// OriginalHeaders returns the headers m was published with, as far as a
// consumed message keeps them: its metadata without the delivery and verdict
// keys, one value per header (a Subscriber keeps the first of each).
func OriginalHeaders(m *message.Message) nats.Header {
	h := make(nats.Header, len(m.Metadata))
	for k, v := range m.Metadata {
		if isDeliveryKey(k) || isVerdictKey(k) {
			continue
		}
		h.Set(k, v)
	}
	return h
}

func isVerdictKey(k string) bool { return k == MetaTerminate || k == MetaNakDelay }

// ErrSubscriberClosed is returned by Subscribe and SubscribeInitialize after Close.
var ErrSubscriberClosed = errors.New("watermilljs: subscriber closed")

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// ConsumerFor returns the JetStream pull consumer that feeds a topic.
	// Production binds to consumers declared up front (BindConsumer); tests
	// may provision them (ProvisionConsumer). The consumer must use
	// AckExplicit: with AckAll one worker's ack would also ack messages other
	// workers are still processing, and AckNone drops messages on a crash.
	ConsumerFor func(ctx context.Context, topic string) (jetstream.Consumer, error)

	// Workers is the number of messages in flight (handed to the reader and
	// not yet acked or nacked) per Subscribe call. Default 8, at most 256.
	Workers int

	// PullMaxMessages is how many messages nats.go keeps buffered per
	// Subscribe call (jetstream.PullMaxMessages). Default 2*Workers. Buffered
	// messages count towards the consumer's MaxAckPending.
	PullMaxMessages int

	// PullExpiry is the lifetime of one pull request (jetstream.PullExpiry);
	// idle heartbeats are half of it, so it also bounds how long a dead
	// consumer goes unnoticed. Default 5s.
	PullExpiry time.Duration

	// AckTimeout bounds how long a worker waits for the reader to Ack or Nack
	// a message it handed over. When it expires the worker gives up on the
	// message without acking or naking it (the server redelivers it after
	// the consumer's AckWait) and moves on; a later Ack of that message is
	// ignored. Zero waits until the subscription ends.
	AckTimeout time.Duration

	// NakDelay is the redelivery delay requested on Nack, given how many
	// times the message has been delivered so far (1 on the first
	// delivery). Default DefaultNakDelay.
	NakDelay func(numDelivered uint64) time.Duration

	// Logger defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// DefaultNakPolicy is DefaultNakDelay's policy: exponential from 1s,
// doubling, capped at one minute, so a poisoned message or a struggling
// dependency does not turn into a hot redelivery loop. It never gives up:
// the consumer's MaxDeliver does.
func DefaultNakPolicy() retry.Policy {
	return retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Max: time.Minute}
}

// DefaultNakDelay is DefaultNakPolicy's delay after the numDelivered-th
// delivery: 1s, 2s, 4s, … 1m.
func DefaultNakDelay(numDelivered uint64) time.Duration {
	return DefaultNakPolicy().Delay(Attempt(numDelivered), nil)
}

// Attempt converts a JetStream delivery count to a retry.Policy attempt
// number, saturating instead of wrapping to a negative int.
func Attempt(numDelivered uint64) int {
	return int(min(numDelivered, math.MaxInt))
}

// Subscriber is a watermill message.Subscriber that reads durable JetStream
// pull consumers. It never creates consumers on its own (unless ConsumerFor
// does) and never deletes them.
type Subscriber struct {
	cfg    SubscriberConfig
	logger watermill.LoggerAdapter

	// life is the parent of every subscription's context; Close cancels it.
	// Kept in the struct because it models the subscriber's lifetime, not a
	// request.
	life     context.Context
	shutdown context.CancelFunc

	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup // one per live Subscribe call
}

// NewSubscriber validates cfg, fills in defaults and returns a Subscriber.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if cfg.ConsumerFor == nil {
		return nil, errors.New("watermilljs: SubscriberConfig.ConsumerFor is required")
	}
	switch {
	case cfg.Workers == 0:
		cfg.Workers = defaultWorkers
	case cfg.Workers < 0 || cfg.Workers > maxWorkers:
		return nil, fmt.Errorf("watermilljs: Workers must be between 1 and %d, got %d", maxWorkers, cfg.Workers)
	}
	switch {
	case cfg.PullMaxMessages == 0:
		cfg.PullMaxMessages = 2 * cfg.Workers
	case cfg.PullMaxMessages < 0:
		return nil, fmt.Errorf("watermilljs: PullMaxMessages must not be negative, got %d", cfg.PullMaxMessages)
	}
	switch {
	case cfg.PullExpiry == 0:
		cfg.PullExpiry = defaultPullExpiry
	case cfg.PullExpiry < 0:
		return nil, fmt.Errorf("watermilljs: PullExpiry must not be negative, got %s", cfg.PullExpiry)
	}
	if cfg.AckTimeout < 0 {
		return nil, fmt.Errorf("watermilljs: AckTimeout must not be negative, got %s", cfg.AckTimeout)
	}
	if cfg.NakDelay == nil {
		cfg.NakDelay = DefaultNakDelay
	}
	if cfg.Logger == nil {
		cfg.Logger = watermill.NopLogger{}
	}
	life, shutdown := context.WithCancel(context.Background())
	return &Subscriber{cfg: cfg, logger: cfg.Logger, life: life, shutdown: shutdown}, nil
}

// SubscribeInitialize resolves the topic's consumer without consuming:
// ProvisionConsumer creates it, BindConsumer checks that it exists. It
// implements message.SubscribeInitializer.
func (s *Subscriber) SubscribeInitialize(topic string) error {
	if s.isClosed() {
		return ErrSubscriberClosed
	}
	_, err := s.consumer(s.life, topic)
	return err
}

// Subscribe starts consuming topic's consumer and returns the messages. The
// channel is closed when ctx is cancelled or Close is called, once every
// worker has stopped. Each message must be acked or nacked; acks are
// confirmed with the server (DoubleAck), nacks ask for redelivery after
// NakDelay.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSubscriberClosed
	}
	s.running.Add(1)
	s.mu.Unlock()

	subCtx, cancel := context.WithCancel(ctx)
	stopOnClose := context.AfterFunc(s.life, cancel)
	release := func() {
		stopOnClose()
		cancel()
		s.running.Done()
	}

	b, err := s.open(subCtx, topic)
	if err != nil {
		release()
		return nil, err
	}

	out := make(chan *message.Message)
	go func() {
		defer release()
		// Closing out last: no worker may still be sending on it.
		defer close(out)
		s.consume(subCtx, topic, b, out)
	}()
	return out, nil
}

// Close stops every subscription, waits for their workers and closes their
// channels. Messages handed out but neither acked nor nacked are left alone:
// the server redelivers them after AckWait. Acks already given are still
// confirmed before Close returns (each bounded by the JetStream client's
// default timeout). Consumers are never deleted. Close is
// idempotent and safe to call concurrently.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.shutdown()
	s.running.Wait()
	return nil
}

func (s *Subscriber) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Subscriber) consumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	c, err := s.cfg.ConsumerFor(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("watermilljs: consumer for topic %q: %w", topic, err)
	}
	if info := c.CachedInfo(); info != nil {
		if info.Config.AckPolicy != jetstream.AckExplicitPolicy {
			return nil, fmt.Errorf("watermilljs: consumer %q for topic %q has ack policy %s; only explicit acks are safe with concurrent workers",
				info.Name, topic, info.Config.AckPolicy)
		}
		if info.Config.MaxAckPending > 0 && info.Config.MaxAckPending < s.cfg.Workers {
			s.logger.Info("consumer MaxAckPending is below Workers; some workers will idle", watermill.LogFields{
				"topic": topic, "consumer": info.Name, "max_ack_pending": info.Config.MaxAckPending, "workers": s.cfg.Workers,
			})
		}
	}
	return c, nil
}

// binding is one consumer and the message iterator pulling from it.
type binding struct {
	consumer jetstream.Consumer
	iter     jetstream.MessagesContext
}

func (s *Subscriber) open(ctx context.Context, topic string) (binding, error) {
	c, err := s.consumer(ctx, topic)
	if err != nil {
		return binding{}, err
	}
	iter, err := c.Messages(
		jetstream.PullMaxMessages(s.cfg.PullMaxMessages),
		jetstream.PullExpiry(s.cfg.PullExpiry),
	)
	if err != nil {
		return binding{}, fmt.Errorf("watermilljs: start consuming topic %q: %w", topic, err)
	}
	return binding{consumer: c, iter: iter}, nil
}

// consume runs workers over b until ctx ends. If the iterator dies on its
// own (the consumer was deleted, the server rejected the pull), it binds the
// consumer again with backoff: consumers are declared by the deployment, which
// may re-declare one, and a subscription that silently stops is worse than one
// that logs and retries. Only a closed NATS connection ends the subscription,
// because nothing can recover from it.
func (s *Subscriber) consume(ctx context.Context, topic string, b binding, out chan<- *message.Message) {
	logger := s.logger.With(watermill.LogFields{"topic": topic})
	backoff := rebindMinBackoff
	for {
		delivered, err := s.runWorkers(ctx, b, out, logger)
		if ctx.Err() != nil {
			return
		}
		if connClosed(err) {
			logger.Error("NATS connection closed; subscription ends", err, nil)
			return
		}
		if delivered > 0 {
			backoff = rebindMinBackoff
		}
		logger.Error(logIteratorStopped, err, watermill.LogFields{"retry_in": backoff})
		for {
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, rebindMaxBackoff)
			b, err = s.open(ctx, topic)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			if connClosed(err) {
				logger.Error("NATS connection closed; subscription ends", err, nil)
				return
			}
			logger.Error("cannot bind consumer", err, watermill.LogFields{"retry_in": backoff})
		}
		logger.Info("consumer bound again", nil)
	}
}

// runWorkers consumes b with Workers goroutines until ctx ends or the
// iterator fails. It returns how many messages were handed out and the error
// that stopped the iterator (nil if ctx ended).
func (s *Subscriber) runWorkers(ctx context.Context, b binding, out chan<- *message.Message, logger watermill.LoggerAdapter) (int64, error) {
	iter := b.iter
	// Stop unblocks every Next and discards what nats.go buffered; those
	// messages were never handed out and come back after AckWait.
	stop := context.AfterFunc(ctx, iter.Stop)
	defer stop()
	defer iter.Stop()

	var (
		wg        sync.WaitGroup
		delivered atomic.Int64
		errMu     sync.Mutex
		stopErr   error
	)
	for range s.cfg.Workers {
		wg.Go(func() {
			for {
				jm, err := iter.Next(jetstream.NextContext(ctx))
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					// Missing heartbeats are not fatal: nats.go re-issues the
					// pull and the iterator stays usable. But nats.go swallows
					// the errors of pulls for a consumer that no longer exists
					// (e.g. the broker came back without its store), so the
					// iterator would wait forever; find out and bind again.
					if errors.Is(err, jetstream.ErrNoHeartbeat) {
						if _, infoErr := b.consumer.Info(ctx); errors.Is(infoErr, jetstream.ErrConsumerNotFound) ||
							errors.Is(infoErr, jetstream.ErrStreamNotFound) {
							err = fmt.Errorf("%w (%w)", infoErr, err)
						} else {
							logger.Info("no heartbeat from JetStream, still pulling", nil)
							continue
						}
					}
					errMu.Lock()
					// Keep the root cause, not the "iterator closed" the other
					// workers see once the first one stopped it.
					if stopErr == nil || errors.Is(stopErr, jetstream.ErrMsgIteratorClosed) {
						stopErr = err
					}
					errMu.Unlock()
					iter.Stop()
					return
				}
				if s.handle(ctx, jm, out, logger) {
					delivered.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return delivered.Load(), stopErr
}

// handle hands one delivery to the reader and settles it with the server
// according to the reader's verdict. It reports whether the message was
// handed out.
func (s *Subscriber) handle(ctx context.Context, jm jetstream.Msg, out chan<- *message.Message, logger watermill.LoggerAdapter) bool {
	msg, meta, err := toMessage(jm)
	if err != nil {
		// Without metadata there is no ack subject either: nothing to settle.
		logger.Error("dropping delivery that is not a JetStream message", err, nil)
		return false
	}
	// Verdicts are the reader's, never the publisher's.
	delete(msg.Metadata, MetaTerminate)
	delete(msg.Metadata, MetaNakDelay)
	fields := watermill.LogFields{
		"message_uuid":  msg.UUID,
		"stream_seq":    meta.Sequence.Stream,
		"num_delivered": meta.NumDelivered,
	}

	// Watermill cancels a message's context once it is acked or nacked, or
	// when the subscription ends.
	msgCtx, cancelMsg := context.WithCancel(ctx)
	defer cancelMsg()
	msg.SetContext(msgCtx)

	// A select between a ready send and a done ctx picks at random; do not
	// hand out messages after the subscription was told to stop.
	if ctx.Err() != nil {
		return false
	}
	select {
	case out <- msg:
	case <-ctx.Done():
		return false // never handed out; redelivered after AckWait
	}
	logger.Trace("message handed out", fields)

	var timeout <-chan time.Time
	if s.cfg.AckTimeout > 0 {
		t := time.NewTimer(s.cfg.AckTimeout)
		defer t.Stop()
		timeout = t.C
	}

	select {
	case <-msg.Acked():
		cancelMsg()
		s.ack(ctx, msg, jm, logger, fields)
	case <-msg.Nacked():
		cancelMsg()
		s.nak(msg, jm, meta.NumDelivered, logger, fields)
	case <-timeout:
		if !s.settleIfDecided(ctx, msg, jm, meta, logger, fields) {
			logger.Info("no ack or nack within AckTimeout; leaving the message for redelivery after AckWait", fields)
		}
	case <-ctx.Done():
		// Close and an Ack may race; an ack that already happened is still
		// worth confirming. Otherwise leave the message alone: acking on
		// close would lose it, naking would only hurry a redelivery.
		s.settleIfDecided(ctx, msg, jm, meta, logger, fields)
	}
	return true
}

func (s *Subscriber) settleIfDecided(ctx context.Context, msg *message.Message, jm jetstream.Msg, meta *jetstream.MsgMetadata, logger watermill.LoggerAdapter, fields watermill.LogFields) bool {
	select {
	case <-msg.Acked():
		s.ack(ctx, msg, jm, logger, fields)
		return true
	case <-msg.Nacked():
		s.nak(msg, jm, meta.NumDelivered, logger, fields)
		return true
	default:
		return false
	}
}

// ack confirms the reader's Ack with the server, or sends the Term the
// reader asked for (MetaTerminate). The reader acks after its transaction
// committed, so the ack is detached from ctx: a Close racing with it must not
// throw away work already paid for. Without a deadline jetstream bounds the
// wait with its DefaultTimeout.
func (s *Subscriber) ack(ctx context.Context, msg *message.Message, jm jetstream.Msg, logger watermill.LoggerAdapter, fields watermill.LogFields) {
	if reason, ok := msg.Metadata[MetaTerminate]; ok {
		// jetstream has no confirmed Term; a lost one is a redelivery
		// after AckWait, which the reader settles again the same way.
		if err := jm.TermWithReason(reason); err != nil {
			logger.Error("term not sent; the message will be redelivered after AckWait", err, fields)
			return
		}
		logger.Trace(logTerminated, fields.Add(watermill.LogFields{"reason": reason}))
		return
	}
	if err := jm.DoubleAck(context.WithoutCancel(ctx)); err != nil {
		// At-least-once: the consumer redelivers and the inbox deduplicates.
		logger.Error("ack not confirmed by JetStream; the message will be redelivered after AckWait", err, fields)
		return
	}
	logger.Trace(logAcked, fields)
}

func (s *Subscriber) nak(msg *message.Message, jm jetstream.Msg, numDelivered uint64, logger watermill.LoggerAdapter, fields watermill.LogFields) {
	delay := s.cfg.NakDelay(numDelivered)
	if v, ok := msg.Metadata[MetaNakDelay]; ok {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			delay = d
		} else {
			logger.Error("ignoring malformed nak delay", fmt.Errorf("%s=%q", MetaNakDelay, v), fields)
		}
	}
	if err := jm.NakWithDelay(delay); err != nil {
		// The message then comes back after AckWait instead of after delay.
		logger.Error("nak not sent; the message will be redelivered after AckWait", err, fields)
		return
	}
	logger.Debug("message nacked", fields.Add(watermill.LogFields{"redeliver_in": delay}))
}

func connClosed(err error) bool {
	return errors.Is(err, jetstream.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionClosed)
}

// sleep waits d or until ctx ends; it reports whether d elapsed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
