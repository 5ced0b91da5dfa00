// Package contracts is what paypipe's services agree on: the JetStream
// streams and durable consumers (declared here, in one place, and created or
// updated idempotently at start-up), the subjects, and the event envelope
// (CloudEvents binary mode over NATS headers; see outbox's Header*
// constants). Event payload types and their JSON Schemas join it as the
// services that emit them are built.
package contracts
