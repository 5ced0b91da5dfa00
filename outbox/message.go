package outbox

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
)

// Header names of the envelope. Messages travel as CloudEvents in binary mode
// over NATS headers: the ce-* attributes plus paypipe's own. ce-id is the
// message's identity for its whole life: the relay sends it as Nats-Msg-Id, a
// DLQ replay keeps it while giving the NATS message a new Nats-Msg-Id, and
// every inbox is keyed by it.
const (
	HeaderID               = "ce-id"
	HeaderType             = "ce-type"
	HeaderSource           = "ce-source"
	HeaderTime             = "ce-time"
	HeaderSpecVersion      = "ce-specversion"
	HeaderSubject          = "ce-subject"
	HeaderContentType      = "content-type"
	HeaderCorrelationID    = "paypipe-correlation-id"
	HeaderTraceparent      = "traceparent"
	HeaderAggregateID      = "paypipe-aggregate-id"
	HeaderAggregateVersion = "paypipe-aggregate-version"
	// HeaderOriginalMsgID is set by a DLQ replay: the ce-id of the message
	// being replayed (equal to ce-id; kept for operators reading headers).
	HeaderOriginalMsgID = "paypipe-original-msg-id"
)

// Message is one event to publish. Write stores it in the caller's
// transaction; the relay publishes it after that transaction commits.
type Message struct {
	// ID identifies the message forever (ce-id, Nats-Msg-Id, inbox key).
	// Zero means Write assigns a new UUIDv7.
	ID uuid.UUID
	// Subject is the NATS subject, <domain>.<entity>.<event>.
	Subject string
	// Type is the versioned event type (ce-type), e.g. payments.order.succeeded.v1.
	Type string
	// Source is the producing service (ce-source), e.g. paypipe/payment.
	Source string
	// AggregateID and AggregateVersion let consumers ignore stale events:
	// per aggregate, delivery order is not guaranteed.
	AggregateID      string
	AggregateVersion int64
	// CorrelationID and Traceparent default to those carried by ctx
	// (WithCorrelationID, WithTraceparent).
	CorrelationID string
	Traceparent   string
	// Time is ce-time; zero means now.
	Time time.Time
	// Headers are extra headers; they must not collide with the envelope's.
	Headers map[string]string
	// Payload is the event body, JSON.
	Payload []byte
}

// Limits on what Write accepts. They protect the relay and the broker from a
// runaway producer: one oversized row would fail every publish attempt.
const (
	MaxPayloadBytes   = 1 << 20
	MaxSubjectLen     = 255
	MaxMessagesPerTx  = 10_000
	maxExtraHeaders   = 32
	maxHeaderValueLen = 4096
)

// ErrInvalidMessage is wrapped by every validation error of Write.
var ErrInvalidMessage = errors.New("outbox: invalid message")

type ctxKey int

const (
	ctxCorrelation ctxKey = iota
	ctxTraceparent
)

// WithCorrelationID returns a context whose messages carry id as correlation id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxCorrelation, id)
}

// CorrelationID returns the correlation id carried by ctx, or "".
func CorrelationID(ctx context.Context) string {
	s, _ := ctx.Value(ctxCorrelation).(string)
	return s
}

// WithTraceparent returns a context whose messages carry the W3C traceparent tp.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, ctxTraceparent, tp)
}

// Traceparent returns the traceparent carried by ctx, or "".
func Traceparent(ctx context.Context) string {
	s, _ := ctx.Value(ctxTraceparent).(string)
	return s
}

// envelope validates m, fills defaults and returns the headers stored with the row.
func (m *Message) envelope(ctx context.Context, now time.Time) (map[string]string, error) {
	if m.Subject == "" || len(m.Subject) > MaxSubjectLen || !validSubject(m.Subject) {
		return nil, fmt.Errorf("%w: subject %q", ErrInvalidMessage, m.Subject)
	}
	if m.Type == "" {
		return nil, fmt.Errorf("%w: %s: type is required", ErrInvalidMessage, m.Subject)
	}
	if m.Source == "" {
		return nil, fmt.Errorf("%w: %s: source is required", ErrInvalidMessage, m.Subject)
	}
	if len(m.Payload) > MaxPayloadBytes {
		return nil, fmt.Errorf("%w: %s: payload %d bytes > %d", ErrInvalidMessage, m.Subject, len(m.Payload), MaxPayloadBytes)
	}
	if len(m.Headers) > maxExtraHeaders {
		return nil, fmt.Errorf("%w: %s: %d extra headers > %d", ErrInvalidMessage, m.Subject, len(m.Headers), maxExtraHeaders)
	}
	if m.ID == uuid.Nil {
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("outbox: new message id: %w", err)
		}
		m.ID = id
	}
	if m.Time.IsZero() {
		m.Time = now
	}
	if m.CorrelationID == "" {
		m.CorrelationID = CorrelationID(ctx)
	}
	if m.CorrelationID == "" {
		m.CorrelationID = m.ID.String()
	}
	if m.Traceparent == "" {
		m.Traceparent = Traceparent(ctx)
	}
	h := make(map[string]string, len(m.Headers)+10)
	for k, v := range m.Headers {
		if len(v) > maxHeaderValueLen || k == "" {
			return nil, fmt.Errorf("%w: %s: header %q", ErrInvalidMessage, m.Subject, k)
		}
		h[k] = v
	}
	set := func(k, v string) error {
		if _, dup := h[k]; dup {
			return fmt.Errorf("%w: %s: header %q is reserved", ErrInvalidMessage, m.Subject, k)
		}
		if v != "" {
			h[k] = v
		}
		return nil
	}
	for _, kv := range [][2]string{
		{HeaderID, m.ID.String()},
		{HeaderType, m.Type},
		{HeaderSource, m.Source},
		{HeaderTime, m.Time.UTC().Format(time.RFC3339Nano)},
		{HeaderSpecVersion, "1.0"},
		{HeaderContentType, "application/json"},
		{HeaderCorrelationID, m.CorrelationID},
		{HeaderTraceparent, m.Traceparent},
		{HeaderAggregateID, m.AggregateID},
	} {
		if err := set(kv[0], kv[1]); err != nil {
			return nil, err
		}
	}
	if m.AggregateID != "" {
		if err := set(HeaderAggregateVersion, strconv.FormatInt(m.AggregateVersion, 10)); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// validSubject accepts publishable NATS subjects: dot-separated, non-empty
// tokens, no wildcards or whitespace.
func validSubject(s string) bool {
	tok := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if tok == 0 {
				return false
			}
			tok = 0
		case c == '*' || c == '>' || c <= ' ' || c == 0x7f:
			return false
		default:
			tok++
		}
	}
	return tok > 0
}
