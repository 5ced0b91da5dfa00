// Package outbox is paypipe's exactly-once backbone: a transactional outbox
// in PostgreSQL, a relay to NATS JetStream, and an inbox that applies each
// message at most once. Services inside paypipe and services that subscribe
// to paypipe's events from outside use it the same way.
//
// # Guarantee
//
// Each event takes effect exactly once per consumer, because it is
//
//   - published at least once: Store.Write inserts the event in the same
//     transaction as the state change that caused it, so the two commit or
//     vanish together; the Relay publishes committed rows and marks them only
//     after JetStream's PubAck, and retries what it could not send, forever,
//     with a per-row backoff. No row is ever dropped.
//   - applied at most once: Store.Handle (and the Runner built on it) claims
//     the inbox row (consumer, message id) in the same transaction as the
//     consumer's effect and its outgoing events, commits, and only then acks.
//
// JetStream's Nats-Msg-Id deduplication (the relay sets it to the message id)
// removes most re-sends inside the stream's duplicate window. It is an
// optimisation; the inbox is the guarantee, and is what catches re-sends
// after the window, redeliveries after a lost ack, and DLQ replays.
//
// # Relay
//
// A relay pass claims up to BatchSize pending rows with SELECT … FOR UPDATE
// SKIP LOCKED in id order, publishes them, waits for every PubAck (a
// Duplicate ack is a success), marks the acknowledged rows published and
// records failures (attempts, next_attempt_at, last_error), all in the
// claiming transaction. Consequences:
//
//   - Any number of relays can run on one store; SKIP LOCKED hands each row
//     to one of them at a time.
//   - Nothing is skipped by out-of-order commits: there is no high-water mark
//     over ids, a row is pending until it is marked.
//   - A crash at any point leaves the row pending (the transaction rolls
//     back), and its re-send carries the same Nats-Msg-Id.
//   - Per aggregate, order is not guaranteed (relays in parallel, retries,
//     redeliveries): consumers compare AggregateVersion and ignore stale
//     events.
//
// Polling (PollInterval, 20 ms by default) is the path correctness relies on.
// Relay.Wake is an in-process hint for writers in the same process. The relay
// deliberately does not LISTEN for a NOTIFY from writers: NOTIFY takes a
// global lock at commit and cut writer throughput by about 40% here.
//
// With sync_interval "always" (paypipe's default: JetStream otherwise acks
// before fsync), PublishAtomicBatch sends each claimed batch as one atomic
// batch per stream: one fsync and one PubAck for up to 1000 messages instead
// of one per message. The server refuses a whole batch if any id in it is a
// duplicate (the normal case after a relay crash between PubAck and mark); the
// relay then re-sends that batch one message at a time, where duplicates are
// acknowledged individually.
//
// Published rows are kept for a re-drive window (Store.Sweep deletes them
// after it, in bounded batches) so that Store.Redrive can re-send a time range
// after an incident. Status reports the backlog, the oldest pending row's age
// and recent throughput; BacklogCollector exports them to Prometheus.
//
// # Consumers
//
// Runner runs ConsumerSpecs on a watermill Router (its handler lifecycle and
// middleware; the Recoverer turns a handler panic into a nack), fed by the
// watermilljs Subscriber over durable JetStream pull consumers. Consumers are declared up front (package
// contracts) and never created or deleted by the runner. A handler returns an
// error to roll back and have the message redelivered after a delay
// (NakWithDelay); it never acks itself.
//
// # Envelope
//
// Messages are CloudEvents in binary mode over NATS headers (ce-id, ce-type,
// ce-source, ce-time, ce-specversion) plus a correlation id, the W3C
// traceparent and the aggregate id and version. ce-id is the message id: the
// Nats-Msg-Id of the relay's sends, and the inbox key. A DLQ replay sends the
// message under a new Nats-Msg-Id with the same ce-id, so consumers that
// already applied it skip it.
package outbox
