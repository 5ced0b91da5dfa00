// Package dlq is paypipe's dead-letter handling: what a consumer that gives
// up publishes, where (stream DLQ, subject dlq.<consumer>.<original
// subject>), with which headers, and how operators list, inspect, replay and
// purge dead messages. Nothing leaves the pipeline without landing here.
package dlq

// Headers of a dead-lettered message, in addition to every header of the
// original (ce-id among them, so a replay keeps the message's identity).
const (
	HeaderStream       = "Paypipe-Dlq-Stream"        // original stream
	HeaderSequence     = "Paypipe-Dlq-Sequence"      // original stream sequence
	HeaderSubject      = "Paypipe-Dlq-Subject"       // original subject
	HeaderMsgID        = "Paypipe-Dlq-Msg-Id"        // original Nats-Msg-Id
	HeaderConsumer     = "Paypipe-Dlq-Consumer"      // durable consumer that gave up
	HeaderAttempts     = "Paypipe-Dlq-Attempts"      // deliveries made
	HeaderFirstFailure = "Paypipe-Dlq-First-Failure" // RFC 3339
	HeaderLastFailure  = "Paypipe-Dlq-Last-Failure"  // RFC 3339
	HeaderError        = "Paypipe-Dlq-Error"         // last error, truncated
	HeaderReason       = "Paypipe-Dlq-Reason"        // permanent | max_deliveries | terminated
)

// Reasons.
const (
	ReasonPermanent     = "permanent"      // the handler said retrying cannot help
	ReasonMaxDeliveries = "max_deliveries" // attempts used up
	ReasonTerminated    = "terminated"     // found through a MSG_TERMINATED advisory
)

// SubjectPrefix starts every DLQ subject: dlq.<consumer>.<original subject>.
const SubjectPrefix = "dlq."

// Subject is the DLQ subject of a message consumer gave up on.
func Subject(consumer, original string) string { return SubjectPrefix + consumer + "." + original }
