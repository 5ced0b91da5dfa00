package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// MaxErrorBytes bounds the HeaderError value: a stack trace or a PSP's HTML
// error page must not bloat every dead letter.
const MaxErrorBytes = 1024

// MsgID is the Nats-Msg-Id of the dead letter of stream's message seq given
// up by consumer. Every publisher of that dead letter (the consumer, its
// retries after a crash or a lost Term, the Mover) uses the same id, so the
// DLQ stores one copy within its duplicate window.
func MsgID(stream string, seq uint64, consumer string) string {
	return stream + ":" + strconv.FormatUint(seq, 10) + ":" + consumer
}

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// JetStream is required.
	JetStream jetstream.JetStream
	// Stream is the DLQ stream: default contracts.StreamDLQ. Publishes
	// expect it (Nats-Expected-Stream), so a dead letter never lands in a
	// stream that happens to capture dlq.> instead.
	Stream string
	// Timeout bounds each publish, PubAck included: default 10s.
	Timeout time.Duration
	// Metrics may be nil.
	Metrics *Metrics
}

// Publisher stores dead letters in the DLQ stream and returns only once
// JetStream acknowledged them. It is the consumer runner's
// outbox.DeadLetterer and the Mover's way out; both build the same message
// for the same dead message.
type Publisher struct {
	js      jetstream.JetStream
	stream  string
	timeout time.Duration
	metrics *Metrics
}

// NewPublisher validates cfg and fills in defaults.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("dlq: publisher needs JetStream")
	}
	if cfg.Stream == "" {
		cfg.Stream = contracts.StreamDLQ
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Publisher{js: cfg.JetStream, stream: cfg.Stream, timeout: cfg.Timeout, metrics: cfg.Metrics}, nil
}

var _ outbox.DeadLetterer = (*Publisher)(nil)

// DeadLetter implements outbox.DeadLetterer: reason permanent or
// max_deliveries.
func (p *Publisher) DeadLetter(ctx context.Context, m outbox.DeadLetter) error {
	reason := ReasonMaxDeliveries
	if m.Permanent {
		reason = ReasonPermanent
	}
	_, err := p.publish(ctx, m, reason)
	return err
}

// publish stores m with reason and reports whether the DLQ already had it.
func (p *Publisher) publish(ctx context.Context, m outbox.DeadLetter, reason string) (duplicate bool, err error) {
	msg, err := Message(m, reason)
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	ack, err := p.js.PublishMsg(ctx, msg,
		jetstream.WithMsgID(msg.Header.Get(jetstream.MsgIDHeader)),
		jetstream.WithExpectStream(p.stream))
	if err != nil {
		return false, fmt.Errorf("dlq: publish %s/%d of consumer %s to %s: %w", m.Stream, m.Sequence, m.Consumer, p.stream, err)
	}
	if !ack.Duplicate {
		p.metrics.storedDeadLetter(m.Consumer, reason)
	}
	return ack.Duplicate, nil
}

// Message builds the DLQ message of m: subject Subject(consumer, original
// subject), the original payload and headers except the broker's (Nats-*,
// atomic-batch headers among them) and any earlier dead letter's
// (Paypipe-Dlq-*: a replayed message that dies again), the Header*
// values, and Nats-Msg-Id = MsgID.
func Message(m outbox.DeadLetter, reason string) (*nats.Msg, error) {
	switch {
	case !literalToken(m.Consumer) || !literalToken(m.Stream):
		return nil, fmt.Errorf("dlq: dead letter needs a consumer and a stream name, got %q and %q", m.Consumer, m.Stream)
	case m.Sequence == 0:
		return nil, fmt.Errorf("dlq: dead letter of %s/%s has no stream sequence", m.Stream, m.Consumer)
	case !literalSubject(m.Subject):
		return nil, fmt.Errorf("dlq: dead letter %s/%d has an unusable subject %q", m.Stream, m.Sequence, m.Subject)
	}
	switch reason {
	case ReasonPermanent, ReasonMaxDeliveries, ReasonTerminated:
	default:
		return nil, fmt.Errorf("dlq: unknown reason %q", reason)
	}
	msg := nats.NewMsg(Subject(m.Consumer, m.Subject))
	for k, vs := range m.Header {
		if prefixFold(k, "Nats-") || prefixFold(k, "Paypipe-Dlq-") {
			continue
		}
		msg.Header[k] = append([]string(nil), vs...)
	}
	last := m.LastFailure
	if last.IsZero() {
		last = time.Now()
	}
	first := m.FirstFailure
	if first.IsZero() {
		first = last
	}
	for k, v := range map[string]string{
		HeaderStream:       m.Stream,
		HeaderSequence:     strconv.FormatUint(m.Sequence, 10),
		HeaderSubject:      m.Subject,
		HeaderMsgID:        m.Header.Get(jetstream.MsgIDHeader),
		HeaderConsumer:     m.Consumer,
		HeaderAttempts:     strconv.FormatUint(m.Attempts, 10),
		HeaderFirstFailure: first.UTC().Format(time.RFC3339Nano),
		HeaderLastFailure:  last.UTC().Format(time.RFC3339Nano),
		HeaderError:        headerValue(m.Error, MaxErrorBytes),
		HeaderReason:       reason,
	} {
		if v != "" {
			msg.Header.Set(k, v)
		}
	}
	msg.Header.Set(jetstream.MsgIDHeader, MsgID(m.Stream, m.Sequence, m.Consumer))
	msg.Data = m.Payload
	return msg, nil
}

// headerValue makes s a header value NATS carries unchanged: no line
// breaks (they would end the header), no surrounding space (trimmed on the
// wire), at most limit bytes, cut at a rune boundary.
func headerValue(s string, limit int) string {
	s = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimSpace(s[:cut])
}

func prefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// literalToken accepts a stream or consumer name: one subject token.
func literalToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r)
	})
}

// literalSubject accepts a publishable subject.
func literalSubject(s string) bool {
	for _, t := range strings.Split(s, ".") {
		if !literalToken(t) {
			return false
		}
	}
	return true
}
