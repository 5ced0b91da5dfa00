package watermilljs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const defaultPublishTimeout = 10 * time.Second

// ErrPublisherClosed is returned by Publish after Close.
var ErrPublisherClosed = errors.New("watermilljs: publisher closed")

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// JetStream publishes the messages. The Publisher does not own its
	// connection and never closes it.
	JetStream jetstream.JetStream
	// PublishTimeout bounds the wait for each PubAck when the message's
	// context has no deadline of its own. Default 10s.
	PublishTimeout time.Duration
	// Logger defaults to watermill.NopLogger.
	Logger watermill.LoggerAdapter
}

// Publisher is a watermill message.Publisher that publishes to JetStream and
// waits for each message to be stored.
type Publisher struct {
	js      jetstream.JetStream
	timeout time.Duration
	logger  watermill.LoggerAdapter

	// Publish holds the read lock while it talks to the server, so Close
	// waits for in-flight publishes instead of racing them.
	mu     sync.RWMutex
	closed bool
}

// NewPublisher validates cfg, fills in defaults and returns a Publisher.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.JetStream == nil {
		return nil, errors.New("watermilljs: PublisherConfig.JetStream is required")
	}
	switch {
	case cfg.PublishTimeout == 0:
		cfg.PublishTimeout = defaultPublishTimeout
	case cfg.PublishTimeout < 0:
		return nil, fmt.Errorf("watermilljs: PublishTimeout must not be negative, got %s", cfg.PublishTimeout)
	}
	if cfg.Logger == nil {
		cfg.Logger = watermill.NopLogger{}
	}
	return &Publisher{js: cfg.JetStream, timeout: cfg.PublishTimeout, logger: cfg.Logger}, nil
}

// Publish publishes msgs to the subject topic, one at a time, and returns once
// JetStream has stored each of them (or on the first error; earlier messages
// stay published). Every message carries Nats-Msg-Id = UUID, so a retry within
// the stream's Duplicates window is stored once and still reported as success.
// Metadata becomes headers, except the delivery keys (MetaStream, ...) a
// consumed message carries, which describe a past delivery.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrPublisherClosed
	}
	for _, msg := range msgs {
		if err := p.publish(topic, msg); err != nil {
			return err
		}
	}
	return nil
}

func (p *Publisher) publish(topic string, msg *message.Message) error {
	nm := nats.NewMsg(topic)
	nm.Data = msg.Payload
	for k, v := range msg.Metadata {
		if isDeliveryKey(k) {
			continue
		}
		if err := checkHeaderValue(k, v); err != nil {
			return fmt.Errorf("watermilljs: publish %s to %q: %w", msg.UUID, topic, err)
		}
		nm.Header.Set(k, v)
	}
	nm.Header.Set(jetstream.MsgIDHeader, msg.UUID)

	ctx := msg.Context()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, p.timeout)
		defer cancel()
	}
	ack, err := p.js.PublishMsg(ctx, nm)
	if err != nil {
		return fmt.Errorf("watermilljs: publish %s to %q: %w", msg.UUID, topic, err)
	}
	fields := watermill.LogFields{"topic": topic, "message_uuid": msg.UUID, "stream": ack.Stream, "stream_seq": ack.Sequence}
	if ack.Duplicate {
		// Already stored by an earlier attempt: that is what the id is for.
		p.logger.Debug("duplicate publish ignored by JetStream", fields)
		return nil
	}
	p.logger.Trace("message published", fields)
	return nil
}

// Close makes further Publish calls fail and waits for in-flight ones. It does
// not close the NATS connection. Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}
