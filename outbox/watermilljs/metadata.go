package watermilljs

import (
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
)

// Delivery metadata added to every consumed message. The values describe one
// delivery, not the message, so the Publisher does not turn them back into
// headers when a consumed message is forwarded.
const (
	MetaStream       = "js-stream"
	MetaStreamSeq    = "js-stream-seq"
	MetaConsumer     = "js-consumer"
	MetaNumDelivered = "js-num-delivered"
	MetaSubject      = "js-subject"
	MetaTimestamp    = "js-timestamp" // RFC 3339 with nanoseconds
)

// HeaderCloudEventID is the CloudEvents id header. When present it wins over
// Nats-Msg-Id as the watermill UUID, so events keep their identity end to end.
const HeaderCloudEventID = "ce-id"

func isDeliveryKey(k string) bool {
	switch k {
	case MetaStream, MetaStreamSeq, MetaConsumer, MetaNumDelivered, MetaSubject, MetaTimestamp:
		return true
	}
	return false
}

// NumDelivered reports how many times JetStream has delivered m (1 on the
// first delivery), or 0 if m did not come from a Subscriber.
func NumDelivered(m *message.Message) uint64 {
	n, err := strconv.ParseUint(m.Metadata.Get(MetaNumDelivered), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// toMessage converts a JetStream delivery into a watermill message. It fails
// only if the delivery carries no JetStream metadata, which means it has no
// ack subject either and cannot be acknowledged.
func toMessage(jm jetstream.Msg) (*message.Message, *jetstream.MsgMetadata, error) {
	meta, err := jm.Metadata()
	if err != nil {
		return nil, nil, fmt.Errorf("watermilljs: delivery metadata of %q: %w", jm.Subject(), err)
	}
	hdr := jm.Headers()

	id := hdr.Get(HeaderCloudEventID)
	if id == "" {
		id = hdr.Get(jetstream.MsgIDHeader)
	}
	if id == "" {
		id = watermill.NewUUID()
	}

	msg := message.NewMessage(id, jm.Data())
	for k, vs := range hdr {
		if len(vs) > 0 {
			msg.Metadata.Set(k, vs[0])
		}
	}
	msg.Metadata.Set(MetaStream, meta.Stream)
	msg.Metadata.Set(MetaStreamSeq, strconv.FormatUint(meta.Sequence.Stream, 10))
	msg.Metadata.Set(MetaConsumer, meta.Consumer)
	msg.Metadata.Set(MetaNumDelivered, strconv.FormatUint(meta.NumDelivered, 10))
	msg.Metadata.Set(MetaSubject, jm.Subject())
	msg.Metadata.Set(MetaTimestamp, meta.Timestamp.Format(time.RFC3339Nano))
	return msg, meta, nil
}

// checkHeaderValue rejects metadata values that NATS would silently alter:
// nats.go trims surrounding whitespace and turns CR/LF into spaces, so such a
// value would arrive different from what was published.
func checkHeaderValue(k, v string) error {
	if strings.ContainsAny(v, "\r\n") || textproto.TrimString(v) != v {
		return fmt.Errorf("watermilljs: metadata %q: value has line breaks or surrounding whitespace that NATS headers cannot carry unchanged", k)
	}
	return nil
}
