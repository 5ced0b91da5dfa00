package contracts_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
)

// Declare is run by every replica at start-up: it must be idempotent, keep
// what streams hold, and set the explicit duplicate window on every stream.
func TestDeclareIdempotent(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	js, err := jetstream.New(testenv.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	so := contracts.StreamOptions{Duplicates: 10 * time.Minute}
	if err := contracts.Declare(ctx, js, so, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, contracts.SubjectCheckoutCreated, []byte(`{}`), jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	if err := contracts.Declare(ctx, js, so, contracts.ConsumerOptions{}); err != nil {
		t.Fatalf("second declare: %v", err)
	}
	for _, want := range contracts.Streams(so) {
		s, err := js.Stream(ctx, want.Name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// ADVISORIES is written by the server only: no atomic batches.
		atomic := want.Name != contracts.StreamAdvisories
		if info.Config.Duplicates != 10*time.Minute || info.Config.Storage != jetstream.FileStorage || info.Config.AllowAtomicPublish != atomic {
			t.Errorf("%s: duplicates=%s storage=%v atomic=%v", want.Name, info.Config.Duplicates, info.Config.Storage, info.Config.AllowAtomicPublish)
		}
		if want.Name == contracts.StreamAdvisories && info.Config.MaxAge != 30*24*time.Hour {
			t.Errorf("%s: max age %s, want 30 days", want.Name, info.Config.MaxAge)
		}
		if want.Name == contracts.StreamPayments && info.State.Msgs != 1 {
			t.Errorf("%s holds %d messages after re-declare, want 1", want.Name, info.State.Msgs)
		}
	}
	for _, c := range contracts.Consumers(contracts.ConsumerOptions{}) {
		ci, err := js.Consumer(ctx, c.Stream, c.Config.Durable)
		if err != nil {
			t.Fatalf("consumer %s: %v", c.Config.Durable, err)
		}
		cfg := ci.CachedInfo().Config
		// The mover never gives up on an advisory; every other consumer does.
		limited := cfg.MaxDeliver > 0
		if c.Config.Durable == contracts.DLQMoverConsumer {
			limited = cfg.MaxDeliver == -1
		}
		if cfg.AckPolicy != jetstream.AckExplicitPolicy || !limited || cfg.AckWait <= 0 {
			t.Errorf("consumer %s: ack=%v max_deliver=%d ack_wait=%s", c.Config.Durable, cfg.AckPolicy, cfg.MaxDeliver, cfg.AckWait)
		}
	}
}

// The server publishes advisories only to whoever is listening at that
// moment; ADVISORIES must be that listener, for both kinds and any stream,
// and must keep nothing else.
func TestAdvisoriesStreamCapturesAdvisories(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	js, err := jetstream.New(testenv.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, contracts.SubjectOrderSucceeded, []byte(`{}`), jetstream.WithMsgID("m1")); err != nil {
		t.Fatal(err)
	}
	// A throwaway consumer that terminates the message, and one that lets
	// it run out of deliveries (MaxDeliver 1, then one more pull).
	for _, name := range []string{"terminator", "exhauster"} {
		c, err := js.CreateOrUpdateConsumer(ctx, contracts.StreamPayments, jetstream.ConsumerConfig{
			Durable: name, AckPolicy: jetstream.AckExplicitPolicy, MaxDeliver: 1, AckWait: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if name == "terminator" {
				if err := m.TermWithReason("test"); err != nil {
					t.Fatal(err)
				}
			}
		}
		if name == "exhauster" {
			// The server emits MAX_DELIVERIES lazily, on the next pull after AckWait.
			testenv.Eventually(t, 10*time.Second, "MAX_DELIVERIES captured", func() (bool, error) {
				if _, err := c.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond)); err != nil {
					return false, err
				}
				return subjectCount(t, js, contracts.AdvisoryMaxDeliveries+"."+contracts.StreamPayments+".exhauster") == 1, nil
			})
		}
	}
	testenv.Eventually(t, 10*time.Second, "MSG_TERMINATED captured", func() (bool, error) {
		return subjectCount(t, js, contracts.AdvisoryTerminated+"."+contracts.StreamPayments+".terminator") == 1, nil
	})
	if n := subjectCount(t, js, ">"); n != 2 {
		t.Fatalf("ADVISORIES holds %d messages, want the 2 advisories", n)
	}
}

func subjectCount(t *testing.T, js jetstream.JetStream, filter string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, contracts.StreamAdvisories)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// asyncapi.yaml's x-paypipe-dead-letters says what the code declares.
// (The Paypipe-Dlq-* headers are checked against outbox/dlq's constants by
// that package's tests.)
func TestAsyncAPIDeadLetters(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		DeadLetters struct {
			Stream     string `yaml:"stream"`
			TermReason string `yaml:"termReason"`
			Advisories struct {
				Stream   string   `yaml:"stream"`
				Subjects []string `yaml:"subjects"`
				Consumer string   `yaml:"consumer"`
			} `yaml:"advisories"`
		} `yaml:"x-paypipe-dead-letters"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	dl := doc.DeadLetters
	if dl.Stream != contracts.StreamDLQ || dl.TermReason != outbox.DeadLetterTermReason {
		t.Errorf("dead letters: stream %q term reason %q, want %q and %q", dl.Stream, dl.TermReason, contracts.StreamDLQ, outbox.DeadLetterTermReason)
	}
	var adv jetstream.StreamConfig
	for _, s := range contracts.Streams(contracts.StreamOptions{}) {
		if s.Name == contracts.StreamAdvisories {
			adv = s
		}
	}
	if dl.Advisories.Stream != adv.Name || !slices.Equal(dl.Advisories.Subjects, adv.Subjects) {
		t.Errorf("advisories: %q %v, declared %q %v", dl.Advisories.Stream, dl.Advisories.Subjects, adv.Name, adv.Subjects)
	}
	mover := contracts.DLQMover(contracts.ConsumerOptions{})
	if dl.Advisories.Consumer != mover.Config.Durable || mover.Stream != adv.Name {
		t.Errorf("advisories consumer %q, declared %q on %s", dl.Advisories.Consumer, mover.Config.Durable, mover.Stream)
	}
	if !slices.ContainsFunc(contracts.Consumers(contracts.ConsumerOptions{}), func(c contracts.Consumer) bool {
		return c.Config.Durable == contracts.DLQMoverConsumer
	}) {
		t.Error("the mover's consumer is not among contracts.Consumers")
	}
	for _, subj := range adv.Subjects {
		if contracts.StreamOf(strings.TrimSuffix(subj, ">")+"X.c") != "" {
			t.Errorf("advisory subject %s is claimed by an event stream", subj)
		}
	}
}

func TestStreamOf(t *testing.T) {
	t.Parallel()
	for subject, want := range map[string]string{
		"payments.order.succeeded": contracts.StreamPayments,
		"ledger.entry.posted":      contracts.StreamLedger,
		"dlq.ledger.payments.x":    contracts.StreamDLQ,
		"paymentsx.order":          "",
		"unknown.thing":            "",
	} {
		if got := contracts.StreamOf(subject); got != want {
			t.Errorf("StreamOf(%q) = %q, want %q", subject, got, want)
		}
	}
}
