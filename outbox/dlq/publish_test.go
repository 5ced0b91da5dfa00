package dlq_test

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/dlq"
)

func sampleDeadLetter() outbox.DeadLetter {
	return outbox.DeadLetter{
		Consumer: contracts.LedgerPaymentsConsumer, Stream: contracts.StreamPayments, Sequence: 42,
		Subject: contracts.SubjectOrderSucceeded,
		Header: nats.Header{
			outbox.HeaderID:            {"0190d3a8-0000-7000-8000-000000000001"},
			outbox.HeaderType:          {"payments.order.succeeded.v1"},
			jetstream.MsgIDHeader:      {"0190d3a8-0000-7000-8000-000000000001"},
			"Nats-Batch-Id":            {"b1"}, // the relay's atomic batch
			"nats-batch-sequence":      {"3"},
			dlq.HeaderReason:           {"permanent"}, // an earlier death, replayed
			dlq.HeaderError:            {"old"},
			"X-Custom":                 {"a", "b"},
			outbox.HeaderCorrelationID: {"c1"},
		},
		Payload:      []byte(`{"x":1}`),
		Attempts:     7,
		FirstFailure: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		LastFailure:  time.Date(2026, 1, 2, 3, 5, 0, 0, time.FixedZone("x", 3600)),
		Error:        "line one\r\nline two " + strings.Repeat("é", 600),
	}
}

// The DLQ message: the original minus the broker's and earlier dead
// letters' headers, plus this death's, under the id every publisher of it
// shares.
func TestMessage(t *testing.T) {
	t.Parallel()
	m, err := dlq.Message(sampleDeadLetter(), dlq.ReasonMaxDeliveries)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "dlq.ledger-payments.payments.order.succeeded" || string(m.Data) != `{"x":1}` {
		t.Fatalf("subject %s data %s", m.Subject, m.Data)
	}
	want := nats.Header{
		outbox.HeaderID:            {"0190d3a8-0000-7000-8000-000000000001"},
		outbox.HeaderType:          {"payments.order.succeeded.v1"},
		"X-Custom":                 {"a", "b"},
		outbox.HeaderCorrelationID: {"c1"},
		jetstream.MsgIDHeader:      {"PAYMENTS:42:ledger-payments"},
		dlq.HeaderStream:           {"PAYMENTS"},
		dlq.HeaderSequence:         {"42"},
		dlq.HeaderSubject:          {"payments.order.succeeded"},
		dlq.HeaderMsgID:            {"0190d3a8-0000-7000-8000-000000000001"},
		dlq.HeaderConsumer:         {"ledger-payments"},
		dlq.HeaderAttempts:         {"7"},
		dlq.HeaderFirstFailure:     {"2026-01-02T03:04:05.000000006Z"},
		dlq.HeaderLastFailure:      {"2026-01-02T02:05:00Z"},
		dlq.HeaderReason:           {"max_deliveries"},
	}
	got := m.Header
	e := got.Get(dlq.HeaderError)
	delete(got, dlq.HeaderError)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("headers\n got %v\nwant %v", got, want)
	}
	if len(e) > dlq.MaxErrorBytes || !utf8.ValidString(e) || strings.ContainsAny(e, "\r\n") || !strings.HasPrefix(e, "line one  line two é") {
		t.Errorf("error header (%d bytes) %q", len(e), e)
	}
	if len(e) < dlq.MaxErrorBytes-1 {
		t.Errorf("error header cut to %d bytes, want close to %d", len(e), dlq.MaxErrorBytes)
	}

	for name, f := range map[string]func(*outbox.DeadLetter){
		"no consumer":      func(d *outbox.DeadLetter) { d.Consumer = "" },
		"dotted consumer":  func(d *outbox.DeadLetter) { d.Consumer = "a.b" },
		"no stream":        func(d *outbox.DeadLetter) { d.Stream = "" },
		"no sequence":      func(d *outbox.DeadLetter) { d.Sequence = 0 },
		"wildcard subject": func(d *outbox.DeadLetter) { d.Subject = "payments.*" },
		"empty token":      func(d *outbox.DeadLetter) { d.Subject = "payments..x" },
	} {
		d := sampleDeadLetter()
		f(&d)
		if _, err := dlq.Message(d, dlq.ReasonPermanent); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := dlq.Message(sampleDeadLetter(), "bored"); err == nil {
		t.Error("unknown reason accepted")
	}
}

// Publishing the same dead letter twice stores it once and counts it once;
// a stream that is not the DLQ never receives one.
func TestPublisherDeduplicates(t *testing.T) {
	t.Parallel()
	e := newMvEnv(t)
	ctx := context.Background()
	pub, err := dlq.NewPublisher(dlq.PublisherConfig{JetStream: e.js, Metrics: e.m})
	if err != nil {
		t.Fatal(err)
	}
	d := sampleDeadLetter()
	for range 3 {
		if err := pub.DeadLetter(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(e.dead(t)); n != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", n)
	}
	if got := count(t, e.reg, "paypipe_dlq_dead_lettered_total", map[string]string{"consumer": d.Consumer, "reason": dlq.ReasonMaxDeliveries}); got != 1 {
		t.Fatalf("dead_lettered_total %v, want 1", got)
	}
	wrong, err := dlq.NewPublisher(dlq.PublisherConfig{JetStream: e.js, Stream: contracts.StreamLedger})
	if err != nil {
		t.Fatal(err)
	}
	d.Sequence = 43
	if err := wrong.DeadLetter(ctx, d); err == nil {
		t.Fatal("a dead letter was accepted by a stream that is not the one expected")
	}
	if n := len(e.dead(t)); n != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", n)
	}
}

// contracts/asyncapi.yaml lists exactly the headers and reasons this
// package sets.
func TestAsyncAPIListsDeadLetterHeaders(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../../contracts/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		DL struct {
			Subject string            `yaml:"subject"`
			Headers map[string]string `yaml:"headers"`
			Reasons map[string]string `yaml:"reasons"`
		} `yaml:"x-paypipe-dead-letters"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	m, err := dlq.Message(sampleDeadLetter(), dlq.ReasonPermanent)
	if err != nil {
		t.Fatal(err)
	}
	for k := range m.Header {
		if strings.HasPrefix(k, "Paypipe-Dlq-") {
			if _, ok := doc.DL.Headers[k]; !ok {
				t.Errorf("header %s is not in asyncapi.yaml", k)
			}
		}
	}
	for k := range doc.DL.Headers {
		if m.Header.Get(k) == "" {
			t.Errorf("asyncapi.yaml lists header %s, which a dead letter does not carry", k)
		}
	}
	for _, r := range []string{dlq.ReasonPermanent, dlq.ReasonMaxDeliveries, dlq.ReasonTerminated} {
		if _, ok := doc.DL.Reasons[r]; !ok {
			t.Errorf("reason %s is not in asyncapi.yaml", r)
		}
	}
	if len(doc.DL.Reasons) != 3 {
		t.Errorf("asyncapi.yaml lists reasons %v", doc.DL.Reasons)
	}
}
