package watermilljs

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestMessageMapping(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "mapping"
	provision(t, js, topic, durable, time.Minute)
	pub := newPublisher(t, js)
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: BindConsumer(js, sanitize(topic), func(string) string { return durable }),
		Workers:     1, // deliveries in stream order
	})
	ch := subscribe(t, sub, topic)
	ctx := context.Background()

	// 1: through the Publisher: UUID travels as Nats-Msg-Id, metadata as headers.
	// Delivery metadata of an earlier consumption is not republished.
	viaPub := message.NewMessage("uuid-1", []byte("payload-1"))
	viaPub.Metadata.Set("tenant", "acme")
	viaPub.Metadata.Set(MetaStreamSeq, "999")
	if err := pub.Publish(topic, viaPub); err != nil {
		t.Fatal(err)
	}
	// 2: a CloudEvent id wins over Nats-Msg-Id.
	ce := nats.NewMsg(topic)
	ce.Header.Set(HeaderCloudEventID, "ce-2")
	ce.Header.Set(jetstream.MsgIDHeader, "msgid-2")
	ce.Data = []byte("payload-2")
	if _, err := js.PublishMsg(ctx, ce); err != nil {
		t.Fatal(err)
	}
	// 3: no id at all: a fresh UUID.
	if _, err := js.Publish(ctx, topic, []byte("payload-3")); err != nil {
		t.Fatal(err)
	}

	m1 := receive(t, ch)
	m1.Ack()
	if m1.UUID != "uuid-1" || string(m1.Payload) != "payload-1" || m1.Metadata.Get("tenant") != "acme" {
		t.Fatalf("message 1: uuid %q payload %q metadata %v", m1.UUID, m1.Payload, m1.Metadata)
	}
	if m1.Metadata.Get(jetstream.MsgIDHeader) != "uuid-1" {
		t.Errorf("Nats-Msg-Id metadata = %q", m1.Metadata.Get(jetstream.MsgIDHeader))
	}
	if got := m1.Metadata.Get(MetaStreamSeq); got != "1" {
		t.Errorf("%s = %q, want 1 (the stale value must not be republished)", MetaStreamSeq, got)
	}
	if m1.Metadata.Get(MetaStream) != sanitize(topic) || m1.Metadata.Get(MetaConsumer) != durable ||
		m1.Metadata.Get(MetaSubject) != topic || NumDelivered(m1) != 1 {
		t.Errorf("delivery metadata: %v", m1.Metadata)
	}
	ts, err := time.Parse(time.RFC3339Nano, m1.Metadata.Get(MetaTimestamp))
	if err != nil || time.Since(ts) > time.Minute || time.Since(ts) < 0 {
		t.Errorf("%s = %q (%v)", MetaTimestamp, m1.Metadata.Get(MetaTimestamp), err)
	}

	m2 := receive(t, ch)
	m2.Ack()
	if m2.UUID != "ce-2" || m2.Metadata.Get(HeaderCloudEventID) != "ce-2" {
		t.Errorf("message 2: uuid %q, metadata %v", m2.UUID, m2.Metadata)
	}
	m3 := receive(t, ch)
	m3.Ack()
	if m3.UUID == "" || string(m3.Payload) != "payload-3" || m3.Metadata.Get(MetaStreamSeq) != strconv.Itoa(3) {
		t.Errorf("message 3: uuid %q payload %q metadata %v", m3.UUID, m3.Payload, m3.Metadata)
	}

	if NumDelivered(message.NewMessage("x", nil)) != 0 {
		t.Error("NumDelivered of a message without delivery metadata must be 0")
	}
}

func TestPublishRejectsHeadersNATSWouldAlter(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	provision(t, js, topic, "headers", time.Minute)
	pub := newPublisher(t, js)

	for name, kv := range map[string][2]string{
		"newline in value":    {"k", "a\nb"},
		"surrounding space":   {"k", " a"},
		"colon in key":        {"a:b", "v"},
		"whitespace in key":   {"a b", "v"},
		"empty key":           {"", "v"},
		"slash in key (nats)": {"a/b", "v"},
	} {
		m := message.NewMessage("id-"+name, nil)
		m.Metadata.Set(kv[0], kv[1])
		if err := pub.Publish(topic, m); err == nil {
			t.Errorf("%s: published", name)
		}
	}
}

func TestPublishNoStream(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	pub := newPublisher(t, js)
	m := message.NewMessage("id", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	m.SetContext(ctx)
	err := pub.Publish("no.stream.here", m)
	if !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Fatalf("got %v, want ErrNoStreamResponse", err)
	}
}

func TestPublishAfterClose(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	pub := newPublisher(t, js)
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish("any", message.NewMessage("id", nil)); !errors.Is(err, ErrPublisherClosed) {
		t.Fatalf("got %v, want ErrPublisherClosed", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A new consumer group starts at the beginning of the stream (DeliverAll), so
// it sees messages published before it existed. This is the group-level
// counterpart of the suite's NewSubscriberReceivesOldMessages, which is about
// new subscribers of an existing group.
func TestNewGroupReceivesOldMessages(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	provision(t, js, topic, "first", time.Minute)
	sent := publish(t, newPublisher(t, js), topic, "old")

	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: ProvisionConsumer(js, streamConfig, func(string) jetstream.ConsumerConfig {
			return consumerConfig("second", time.Minute)
		}),
	})
	m := receive(t, subscribe(t, sub, topic))
	if m.UUID != sent[0].UUID {
		t.Fatalf("got %s, want %s", m.UUID, sent[0].UUID)
	}
	m.Ack()
}
