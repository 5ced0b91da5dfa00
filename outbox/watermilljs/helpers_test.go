package watermilljs

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/internal/natsserver"
)

// waitFor bounds every wait in these tests; generous because -race on a small
// machine is slow, and a passing test never waits for it.
const waitFor = 20 * time.Second

func startServer(t *testing.T) *natsserver.Server {
	t.Helper()
	srv, err := natsserver.New(natsserver.Config{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv
}

// connect returns a connection that keeps reconnecting, as production does, so
// that broker restarts are survivable.
func connect(t *testing.T, url string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// testLogger only shows errors: they are what a failing test needs, and the
// suite produces a lot of debug noise otherwise. It writes to stderr rather
// than t.Log because workers may log after a test returned.
func testLogger() watermill.LoggerAdapter {
	return watermill.NewSlogLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// sanitize maps a topic to a valid stream or consumer name.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

func streamConfig(topic string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       sanitize(topic),
		Subjects:   []string{topic},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
	}
}

func consumerConfig(durable string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       ackWait,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		MaxAckPending: 20_000,
	}
}

func newTopic(t *testing.T) string {
	return "test." + sanitize(t.Name()) + "." + watermill.NewShortUUID()
}

// provision declares the stream and a durable consumer, as a deployment would.
func provision(t *testing.T, js jetstream.JetStream, topic, durable string, ackWait time.Duration) jetstream.Consumer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := ProvisionConsumer(js, streamConfig, func(string) jetstream.ConsumerConfig {
		return consumerConfig(durable, ackWait)
	})(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newSubscriber(t *testing.T, cfg SubscriberConfig) *Subscriber {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	sub, err := NewSubscriber(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

func newPublisher(t *testing.T, js jetstream.JetStream) *Publisher {
	t.Helper()
	pub, err := NewPublisher(PublisherConfig{JetStream: js, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

func subscribe(t *testing.T, sub *Subscriber, topic string) <-chan *message.Message {
	t.Helper()
	ch, err := sub.Subscribe(context.Background(), topic)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

func receive(t *testing.T, ch <-chan *message.Message) *message.Message {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("messages channel closed")
		}
		return m
	case <-time.After(waitFor):
		t.Fatalf("no message within %s", waitFor)
	}
	return nil
}

func publish(t *testing.T, pub *Publisher, topic string, payloads ...string) []*message.Message {
	t.Helper()
	var msgs []*message.Message
	for _, p := range payloads {
		m := message.NewMessage(watermill.NewUUID(), []byte(p))
		if err := pub.Publish(topic, m); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

func consumerInfo(t *testing.T, js jetstream.JetStream, topic, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	c, err := js.Consumer(ctx, sanitize(topic), durable)
	if err != nil {
		t.Fatalf("consumer %q: %v", durable, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// probeLogger reports confirmed acks and iterator failures, so that tests can
// wait for them instead of sleeping.
type probeLogger struct {
	watermill.LoggerAdapter
	acked   chan string
	stopped chan error
}

func newProbeLogger() probeLogger {
	return probeLogger{LoggerAdapter: testLogger(), acked: make(chan string, 1024), stopped: make(chan error, 16)}
}

func (l probeLogger) Trace(msg string, fields watermill.LogFields) {
	if msg == logAcked {
		l.acked <- fields["message_uuid"].(string)
	}
	l.LoggerAdapter.Trace(msg, fields)
}

func (l probeLogger) Error(msg string, err error, fields watermill.LogFields) {
	if msg == logIteratorStopped {
		l.stopped <- err
	}
	l.LoggerAdapter.Error(msg, err, fields)
}

func (l probeLogger) With(fields watermill.LogFields) watermill.LoggerAdapter {
	return probeLogger{LoggerAdapter: l.LoggerAdapter.With(fields), acked: l.acked, stopped: l.stopped}
}

// awaitAck waits until the server confirmed the ack of uuid.
func (l probeLogger) awaitAck(t *testing.T, uuid string) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case got := <-l.acked:
			if got == uuid {
				return
			}
		case <-timeout:
			t.Fatalf("ack of %s not confirmed within %s", uuid, waitFor)
		}
	}
}

// awaitStopped waits until a message iterator failed and returns why.
func (l probeLogger) awaitStopped(t *testing.T) error {
	t.Helper()
	select {
	case err := <-l.stopped:
		return err
	case <-time.After(waitFor):
		t.Fatalf("iterator did not stop within %s", waitFor)
	}
	return nil
}
