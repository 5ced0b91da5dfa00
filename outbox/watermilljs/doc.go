// Package watermilljs connects watermill routers to NATS JetStream: a
// message.Subscriber that reads durable pull consumers and a
// message.Publisher that waits for every message to be stored. It is the
// broker leg of the outbox → JetStream → inbox backbone and is built on the
// jetstream package of nats.go only.
//
// # Why not watermill-nats
//
// watermill-nats' core subscriber deletes the durable consumers it created
// when it is closed, so a rolling deploy or a crash loop throws away the
// consumer's position and its pending acks. Its JetStream variant creates
// ephemeral consumers and panics when a message cannot be unmarshalled. For
// payments both are unacceptable, hence this small package.
//
// # Consumers are declared up front and never deleted
//
// Streams and durable consumers (AckExplicit, AckWait, MaxDeliver,
// MaxAckPending) are part of the deployment, not of the code that reads them.
// In production SubscriberConfig.ConsumerFor is BindConsumer, which only looks
// the consumer up and fails with jetstream.ErrConsumerNotFound if it was not
// declared; ProvisionConsumer, which creates streams and consumers, is for
// tests and dev tooling. Neither Close nor a cancelled context ever deletes a
// consumer: its position survives restarts of the service and of the broker.
// If the iterator dies while the subscriber runs (for example because an
// operator deleted and re-declared the consumer), the subscriber logs it and
// binds the consumer again with backoff; only a closed NATS connection ends
// a subscription early. Consumers should allow at least
// instances × (Workers + PullMaxMessages) pending acks, or workers idle.
//
// # Acknowledgements
//
// Each Subscribe call runs Workers goroutines over one jetstream
// MessagesContext. A worker hands a message to the router and waits for the
// handler's verdict. Handlers ack only after their database transaction (the
// inbox insert) committed, and only then does the worker ack the message
// with DoubleAck, which waits for the server's confirmation. A message is
// therefore never acknowledged before its effects are durable; if the
// confirmation is lost the message is redelivered and the inbox deduplicates
// it. Delivery is at least once, never at most once.
//
// On Nack the worker asks for redelivery with NakWithDelay, using
// SubscriberConfig.NakDelay (by default 1s doubling per delivery, capped at
// one minute) so that a failing handler does not spin; the consumer's
// MaxDeliver decides when to give up. The delivery count is exposed as
// metadata (MetaNumDelivered, NumDelivered) together with the stream, stream
// sequence, consumer, subject and timestamp of the delivery.
//
// # Close and un-acked messages
//
// Close (or cancelling the Subscribe context) stops pulling, cancels the
// contexts of messages in flight, waits for the workers and closes the output
// channels. Acks the handlers already gave are still confirmed before Close
// returns. Messages that were neither acked nor nacked are left alone: they
// are not acked (that would lose them) and get no nak either; the server redelivers
// them once the consumer's AckWait expires, as it does for messages nats.go
// had buffered but not yet handed out. The same applies to a message whose
// handler exceeds SubscriberConfig.AckTimeout.
//
// # Publishing
//
// Publish sends each message to the subject named by the topic with its
// metadata as headers and Nats-Msg-Id set to the message UUID, and waits for
// the PubAck. Retrying a publish within the stream's Duplicates window is
// therefore safe: JetStream stores the message once and reports the retry as
// a duplicate, which Publish treats as success. On the consuming side the
// UUID is taken from the ce-id header, else Nats-Msg-Id, else generated.
package watermilljs
