package watermilljs

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// BindConsumer returns a SubscriberConfig.ConsumerFor for production: it looks up the durable
// consumer durableFor(topic) on stream and never creates anything. Streams and
// consumers are declared up front by the deployment, so that their
// configuration (AckWait, MaxDeliver, MaxAckPending, ...) is reviewed in one
// place and a typo in a topic fails loudly instead of creating a consumer
// nobody watches.
func BindConsumer(js jetstream.JetStream, stream string, durableFor func(topic string) string) func(ctx context.Context, topic string) (jetstream.Consumer, error) {
	return func(ctx context.Context, topic string) (jetstream.Consumer, error) {
		name := durableFor(topic)
		c, err := js.Consumer(ctx, stream, name)
		if err != nil {
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("watermilljs: consumer %q on stream %q for topic %q does not exist; "+
					"consumers are declared up front, the subscriber never creates them: %w", name, stream, topic, err)
			}
			return nil, fmt.Errorf("watermilljs: look up consumer %q on stream %q for topic %q: %w", name, stream, topic, err)
		}
		return c, nil
	}
}

// ProvisionConsumer returns a SubscriberConfig.ConsumerFor that creates or updates the stream
// and the durable consumer for a topic. It is meant for tests and dev tooling;
// production binds to declared consumers with BindConsumer.
func ProvisionConsumer(
	js jetstream.JetStream,
	stream func(topic string) jetstream.StreamConfig,
	consumer func(topic string) jetstream.ConsumerConfig,
) func(ctx context.Context, topic string) (jetstream.Consumer, error) {
	return func(ctx context.Context, topic string) (jetstream.Consumer, error) {
		scfg := stream(topic)
		ccfg := consumer(topic)
		// Without a name the server would create an ephemeral consumer, which
		// loses its position when the subscriber goes away.
		if ccfg.Durable == "" {
			return nil, fmt.Errorf("watermilljs: consumer config for topic %q has no Durable name", topic)
		}
		if _, err := js.CreateOrUpdateStream(ctx, scfg); err != nil {
			return nil, fmt.Errorf("watermilljs: provision stream %q for topic %q: %w", scfg.Name, topic, err)
		}
		c, err := js.CreateOrUpdateConsumer(ctx, scfg.Name, ccfg)
		if err != nil {
			return nil, fmt.Errorf("watermilljs: provision consumer %q on stream %q for topic %q: %w", ccfg.Durable, scfg.Name, topic, err)
		}
		return c, nil
	}
}
