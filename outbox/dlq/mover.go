package dlq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
)

// Advisory schema types the Mover handles (nats-server jetstream_events.go).
const (
	advisoryMaxDeliver = "io.nats.jetstream.advisory.v1.max_deliver"
	advisoryTerminated = "io.nats.jetstream.advisory.v1.terminated"
)

// Advisory kinds (paypipe_dlq_advisories_total{kind}).
const (
	kindMaxDeliveries = "max_deliveries"
	kindTerminated    = "terminated"
	kindUnknown       = "unknown"
)

// MoverConfig configures a Mover. Zero values get the defaults documented on
// each field.
type MoverConfig struct {
	// JetStream, or Conn to make one from; one is required.
	JetStream jetstream.JetStream
	Conn      *nats.Conn
	// Stream and Consumer are where advisories wait: default
	// contracts.StreamAdvisories and contracts.DLQMoverConsumer, declared
	// up front (contracts.Declare); Run fails if the consumer is missing.
	Stream   string
	Consumer string
	// DLQStream is where dead letters go: default contracts.StreamDLQ.
	DLQStream string
	// BatchSize is the most advisories pulled at once: default 32, at most
	// 1000. A batch is handled one by one within the consumer's AckWait.
	BatchSize int
	// PollInterval is how long one pull waits for advisories: default 5s.
	// The server answers as soon as one is stored, so this bounds only how
	// long an idle mover takes to notice ctx ending.
	PollInterval time.Duration
	// Timeout bounds each call to JetStream (get, publish, ack): default 10s.
	Timeout time.Duration
	// Retry gives the redelivery delay of an advisory whose handling failed
	// transiently (broker or stream unavailable): default exponential from
	// 1 s, doubling, capped at 1 min, ±20% jitter. Its MaxAttempts is
	// ignored: the mover never gives up on a dead message.
	Retry retry.Policy
	// Metrics may be shared with the runners' Publisher; nil disables them.
	Metrics *Metrics
	Logger  *slog.Logger
}

// Mover copies into the DLQ the messages that died without their consumer
// dead-lettering them. JetStream reports such deaths only as advisories
// (core NATS messages, lost when nobody listens), so the ADVISORIES stream
// keeps them and the Mover reads it through a durable pull consumer:
//
//   - MAX_DELIVERIES: the server stopped redelivering because MaxDeliver was
//     reached (typically the process died during the last delivery, so the
//     consumer never got to dead-letter it). The Mover reads the original
//     by sequence and publishes it to the DLQ exactly as the consumer would
//     have, with reason max_deliveries. It carries the same Nats-Msg-Id
//     (MsgID), so if the consumer did store it, the DLQ keeps one copy.
//   - MSG_TERMINATED with reason outbox.DeadLetterTermReason: the consumer
//     stored the dead letter before its Term; nothing to do. Any other
//     reason (another client's Term, or the server terminating a pending
//     message removed by stream limits): reason terminated.
//
// The advisory is acked only after the DLQ's PubAck. A transient failure
// naks it with a delay; an original that is gone (aged out, deleted) cannot
// be copied: that is logged as an error, counted in paypipe_dlq_lost_total
// and acked. Advisories about the DLQ and ADVISORIES streams themselves are
// skipped: dead letters of dead letters would loop.
//
// Several Movers (one per paypipe process) may share the consumer: each
// advisory goes to one of them at a time, and a repeat is deduplicated by
// the DLQ. The original stays in its stream (paypipe's streams are limits
// streams; a WorkQueue stream would need a delete after the copy).
type Mover struct {
	cfg MoverConfig
	js  jetstream.JetStream
	pub *Publisher
	log *slog.Logger
}

// NewMover validates cfg and returns a Mover; Run starts it.
func NewMover(cfg MoverConfig) (*Mover, error) {
	if cfg.JetStream == nil {
		if cfg.Conn == nil {
			return nil, errors.New("dlq: mover needs JetStream or Conn")
		}
		js, err := jetstream.New(cfg.Conn)
		if err != nil {
			return nil, fmt.Errorf("dlq: jetstream: %w", err)
		}
		cfg.JetStream = js
	}
	if cfg.Stream == "" {
		cfg.Stream = contracts.StreamAdvisories
	}
	if cfg.Consumer == "" {
		cfg.Consumer = contracts.DLQMoverConsumer
	}
	if cfg.DLQStream == "" {
		cfg.DLQStream = contracts.StreamDLQ
	}
	switch {
	case cfg.BatchSize == 0:
		cfg.BatchSize = 32
	case cfg.BatchSize < 0 || cfg.BatchSize > 1000:
		return nil, fmt.Errorf("dlq: mover BatchSize %d: want 1 to 1000", cfg.BatchSize)
	}
	switch {
	case cfg.PollInterval == 0:
		cfg.PollInterval = 5 * time.Second
	case cfg.PollInterval < 100*time.Millisecond:
		return nil, fmt.Errorf("dlq: mover PollInterval %s: want at least 100ms", cfg.PollInterval)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if reflect.ValueOf(cfg.Retry).IsZero() { // robust to fields retry.Policy may gain
		cfg.Retry = retry.Policy{Strategy: retry.Exponential, Initial: time.Second, Multiplier: 2, Max: time.Minute, Jitter: 0.2}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pub, err := NewPublisher(PublisherConfig{JetStream: cfg.JetStream, Stream: cfg.DLQStream, Timeout: cfg.Timeout, Metrics: cfg.Metrics})
	if err != nil {
		return nil, err
	}
	return &Mover{cfg: cfg, js: cfg.JetStream, pub: pub, log: cfg.Logger.With("component", "dlq-mover")}, nil
}

// Run moves dead messages until ctx ends. It fails fast if the advisories
// consumer does not exist; afterwards errors of one pass (broker away) are
// logged and retried with a bounded backoff, and Run returns nil when ctx
// ends.
func (m *Mover) Run(ctx context.Context) error {
	lctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	c, err := m.js.Consumer(lctx, m.cfg.Stream, m.cfg.Consumer)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("dlq: mover consumer %s on stream %s (declared up front by contracts.Declare): %w", m.cfg.Consumer, m.cfg.Stream, err)
	}
	errDelay := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		start := time.Now()
		n, err := m.pass(ctx, c)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			errDelay = min(max(2*errDelay, 100*time.Millisecond), 5*time.Second)
			wait = errDelay
			m.log.Warn("dlq mover pass failed", "err", err, "retry_in", wait)
		case n == 0 && time.Since(start) < m.cfg.PollInterval/2:
			// An empty pull that did not wait (the server refused it
			// without an error we recognise): do not spin.
			errDelay = 0
			wait = m.cfg.PollInterval / 2
		default:
			// The pull itself waited for advisories, so a busy or idle
			// mover goes straight on.
			errDelay = 0
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
	}
}

// pass pulls up to BatchSize advisories from c, waiting up to PollInterval
// for them, handles them and returns how many it pulled. Handling failures
// are per advisory (nak) and not returned; the error is the pull's.
func (m *Mover) pass(ctx context.Context, c jetstream.Consumer) (int, error) {
	// FetchContext expires the server-side pull a little before fctx, so
	// what the server sent is in the batch when fctx ends.
	fctx, cancel := context.WithTimeout(ctx, m.cfg.PollInterval)
	defer cancel()
	batch, err := c.Fetch(m.cfg.BatchSize, jetstream.FetchContext(fctx))
	if err != nil {
		return 0, fmt.Errorf("dlq: pull advisories: %w", err)
	}
	n := 0
	for msg := range batch.Messages() {
		n++
		if ctx.Err() != nil {
			continue // left for redelivery after AckWait
		}
		m.handle(ctx, msg)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) &&
		!errors.Is(err, context.Canceled) && !errors.Is(err, jetstream.ErrNoMessages) {
		return n, fmt.Errorf("dlq: pull advisories: %w", err)
	}
	return n, nil
}

// advisory is the union of the two advisory schemas the Mover reads.
type advisory struct {
	Type       string    `json:"type"`
	ID         string    `json:"id"`
	Time       time.Time `json:"timestamp"`
	Stream     string    `json:"stream"`
	Consumer   string    `json:"consumer"`
	StreamSeq  uint64    `json:"stream_seq"`
	Deliveries uint64    `json:"deliveries"`
	Reason     string    `json:"reason"` // terminated only
}

func (m *Mover) handle(ctx context.Context, msg jetstream.Msg) {
	var adv advisory
	kind := kindUnknown
	err := json.Unmarshal(msg.Data(), &adv)
	if err == nil {
		switch adv.Type {
		case advisoryMaxDeliver:
			kind = kindMaxDeliveries
		case advisoryTerminated:
			kind = kindTerminated
		}
	}
	log := m.log.With("advisory", msg.Subject(), "kind", kind, "stream", adv.Stream, "consumer", adv.Consumer,
		"stream_seq", adv.StreamSeq, "deliveries", adv.Deliveries)
	if err != nil || kind == kindUnknown || adv.Stream == "" || adv.Consumer == "" || adv.StreamSeq == 0 {
		// Retrying cannot make sense of it; keeping it would block nothing
		// but would be redelivered forever.
		log.Error("ignoring an advisory the mover does not understand", "type", adv.Type, "err", err)
		m.settle(ctx, msg, kind, resultInvalid, log)
		return
	}
	switch {
	case adv.Stream == m.cfg.DLQStream || adv.Stream == m.cfg.Stream:
		m.settle(ctx, msg, kind, resultSkipped, log)
		return
	case kind == kindTerminated && adv.Reason == outbox.DeadLetterTermReason:
		m.settle(ctx, msg, kind, resultSkipped, log) // stored before the Term
		return
	}

	raw, err := m.original(ctx, adv.Stream, adv.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		log.Error("dead message is gone from its stream and cannot be dead-lettered: lost", "reason", adv.Reason, "err", err)
		m.cfg.Metrics.lostDeadLetter(adv.Consumer)
		m.settle(ctx, msg, kind, resultLost, log)
		return
	}
	if err != nil {
		m.retryLater(msg, kind, err, log)
		return
	}
	at := adv.Time
	if at.IsZero() {
		at = time.Now()
	}
	dl := outbox.DeadLetter{
		Consumer: adv.Consumer,
		Stream:   adv.Stream,
		Sequence: adv.StreamSeq,
		Subject:  raw.Subject,
		Header:   raw.Header,
		Payload:  raw.Data,
		Attempts: adv.Deliveries,
		// When the earlier deliveries failed is not known here.
		FirstFailure: at,
		LastFailure:  at,
	}
	reason := ReasonMaxDeliveries
	if kind == kindMaxDeliveries {
		dl.Error = fmt.Sprintf("delivered %d times without an ack (handler crashed, hung past AckWait, or gave no answer); found by the DLQ mover", adv.Deliveries)
	} else {
		reason = ReasonTerminated
		dl.Error = fmt.Sprintf("terminated by a client other than paypipe's consumer runner, reason %q; found by the DLQ mover", adv.Reason)
	}
	dup, err := m.pub.publish(ctx, dl, reason)
	if err != nil {
		m.retryLater(msg, kind, err, log)
		return
	}
	result := resultMoved
	if dup {
		result = resultDuplicate
	} else {
		log.Warn("dead message moved to the DLQ", "reason", reason, "term_reason", adv.Reason)
	}
	m.settle(ctx, msg, kind, result, log)
}

// original reads the dead message by sequence. Direct gets (AllowDirect)
// may be answered by a lagging replica; a dead message was stored long
// before its advisory, so that is fine here.
func (m *Mover) original(ctx context.Context, stream string, seq uint64) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	defer cancel()
	s, err := m.js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("dlq: stream %s: %w", stream, err)
	}
	raw, err := s.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("dlq: get %s/%d: %w", stream, seq, err)
	}
	if raw.Header != nil {
		// A direct get reports where the message is stored as headers;
		// they are not the original's (Message drops Nats-* anyway).
		for k := range raw.Header {
			if prefixFold(k, "Nats-") && !strings.EqualFold(k, jetstream.MsgIDHeader) {
				delete(raw.Header, k)
			}
		}
	}
	return raw, nil
}

// settle acks the advisory once the server confirms: an unconfirmed ack
// means the advisory comes back, and handling it again is harmless.
func (m *Mover) settle(ctx context.Context, msg jetstream.Msg, kind, result string, log *slog.Logger) {
	m.cfg.Metrics.advisory(kind, result)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.Timeout)
	defer cancel()
	if err := msg.DoubleAck(ctx); err != nil {
		log.Warn("advisory ack not confirmed; it will be handled again", "result", result, "err", err)
	}
}

func (m *Mover) retryLater(msg jetstream.Msg, kind string, err error, log *slog.Logger) {
	m.cfg.Metrics.advisory(kind, resultFailed)
	n := 1
	if md, mdErr := msg.Metadata(); mdErr == nil {
		n = int(min(md.NumDelivered, math.MaxInt32))
	}
	delay := m.cfg.Retry.Delay(n, err)
	log.Error("dead message not moved yet; retrying", "retry_in", delay, "attempt", n, "err", err)
	if nerr := msg.NakWithDelay(delay); nerr != nil {
		log.Warn("advisory nak not sent; it comes back after AckWait", "err", nerr)
	}
}
