package watermilljs

import (
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/nats-io/nats.go/jetstream"
)

// TestPubSub runs watermill's universal Pub/Sub suite against one embedded
// server. Every constructor call opens its own connection, like separate
// service instances would.
func TestPubSub(t *testing.T) {
	srv := startServer(t)

	newPubSub := func(t *testing.T, durableFor func(topic string) string) (message.Publisher, message.Subscriber) {
		_, js := connect(t, srv.URL())
		pub := newPublisher(t, js)
		sub := newSubscriber(t, SubscriberConfig{
			ConsumerFor: ProvisionConsumer(js, streamConfig, func(topic string) jetstream.ConsumerConfig {
				// AckWait is what the suite waits for after a subscriber closes
				// with messages in flight; keep it short.
				return consumerConfig(durableFor(topic), 2*time.Second)
			}),
			// TestContinueAfterErrors nacks each message ~6 times in a row and
			// waits at most 15s for each redelivery; the production backoff
			// (1s, 2s, ... 32s) is exercised in TestNackRedeliversWithDelay.
			NakDelay: func(uint64) time.Duration { return 50 * time.Millisecond },
		})
		return pub, sub
	}

	features := tests.Features{
		// One durable consumer per (group, topic): members of a group share
		// the work, groups each get everything.
		ConsumerGroups: true,
		// At-least-once: redeliveries after AckWait or a failed ack are
		// possible; the inbox deduplicates.
		ExactlyOnceDelivery: false,
		// Workers process concurrently and nacks redeliver later.
		GuaranteedOrder:                     false,
		GuaranteedOrderWithSingleSubscriber: false,
		Persistent:                          true,
		// The suite's test subscribes NEW SUBSCRIBERS of the default
		// (non-group) constructor and expects each to see every message ever
		// published, Kafka-style. Here every subscriber of a topic without a
		// group shares one durable consumer, so a new subscriber only gets what
		// the group has not acked yet. (A new consumer *group* does start at the
		// beginning of the stream - DeliverAll - see TestNewGroupReceivesOldMessages.)
		NewSubscriberReceivesOldMessages: false,
		RestartServiceCommand:            nil, // broker restarts: TestBrokerRestart
	}

	tests.TestPubSub(t, features,
		func(t *testing.T) (message.Publisher, message.Subscriber) {
			return newPubSub(t, sanitize)
		},
		func(t *testing.T, group string) (message.Publisher, message.Subscriber) {
			return newPubSub(t, func(topic string) string { return sanitize(group + "_" + topic) })
		},
	)
}
