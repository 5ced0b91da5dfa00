package dlq_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/dlq"
	"github.com/paypipe/paypipe/outbox/retry"
)

// mvWait bounds every wait; a passing test never reaches it.
const mvWait = 20 * time.Second

// mvEnv is an embedded JetStream with paypipe's streams and consumers
// declared (contracts.Declare), as a deployment has them.
type mvEnv struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	reg *prometheus.Registry
	m   *dlq.Metrics
}

func newMvEnv(t *testing.T) *mvEnv {
	t.Helper()
	srv := testenv.NATS(t)
	nc := testenv.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mvWait)
	defer cancel()
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	return &mvEnv{nc: nc, js: js, reg: reg, m: dlq.NewMetrics(reg)}
}

// startMover runs a Mover until the test ends.
func (e *mvEnv) startMover(t *testing.T) {
	t.Helper()
	mv, err := dlq.NewMover(dlq.MoverConfig{
		Conn: e.nc, Metrics: e.m, PollInterval: time.Second,
		Retry:  retry.Policy{Strategy: retry.Fixed, Initial: 100 * time.Millisecond},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("mover: %v", err)
			}
		case <-time.After(mvWait):
			t.Error("mover did not stop")
		}
	})
}

// publish stores one event on the PAYMENTS stream as the relay would and
// returns its stream sequence and ce-id.
func (e *mvEnv) publish(t *testing.T) (uint64, string) {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	m := nats.NewMsg(contracts.SubjectOrderSucceeded)
	m.Header.Set(outbox.HeaderID, id)
	m.Header.Set(outbox.HeaderType, contracts.TypeOf(contracts.SubjectOrderSucceeded))
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Data = []byte(`{"n":` + strconv.Quote(id) + `}`)
	ack, err := e.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence, id
}

// consumer declares a throwaway consumer on PAYMENTS, standing in for a
// service that misbehaves in a way the runner cannot see.
func (e *mvEnv) consumer(t *testing.T, name string, maxDeliver int) jetstream.Consumer {
	t.Helper()
	c, err := e.js.CreateOrUpdateConsumer(context.Background(), contracts.StreamPayments, jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 300 * time.Millisecond,
		MaxDeliver: maxDeliver, FilterSubject: contracts.SubjectOrderSucceeded,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fetchOne(t *testing.T, c jetstream.Consumer) jetstream.Msg {
	t.Helper()
	batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		return m
	}
	t.Fatalf("no message: %v", batch.Error())
	return nil
}

// dead returns every message in the DLQ stream.
func (e *mvEnv) dead(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), mvWait)
	defer cancel()
	s, err := e.js.Stream(ctx, contracts.StreamDLQ)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// count reads a counter (0 if it has no such series yet).
func count(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func (e *mvEnv) awaitAdvisory(t *testing.T, kind, result string, want float64) {
	t.Helper()
	testenv.Eventually(t, mvWait, fmt.Sprintf("%s advisory %s", kind, result), func() (bool, error) {
		return count(t, e.reg, "paypipe_dlq_advisories_total", map[string]string{"kind": kind, "result": result}) >= want, nil
	})
}

// moverIdle reports whether the mover acked every advisory it was given.
func (e *mvEnv) moverIdle(t *testing.T) bool {
	t.Helper()
	c, err := e.js.Consumer(context.Background(), contracts.StreamAdvisories, contracts.DLQMoverConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.NumAckPending == 0 && info.NumPending == 0
}

// A handler process that dies during every delivery never dead-letters its
// message: MaxDeliver stops it, the server says so in a MAX_DELIVERIES
// advisory, and the mover copies the original into the DLQ with every
// header a consumer would have set.
func TestMoverMaxDeliveries(t *testing.T) {
	t.Parallel()
	e := newMvEnv(t)
	e.startMover(t)
	seq, id := e.publish(t)
	c := e.consumer(t, "crasher", 2)
	_ = fetchOne(t, c) // never acked: the process "dies"
	second := fetchOne(t, c)
	if md, _ := second.Metadata(); md.NumDelivered != 2 {
		t.Fatalf("second delivery has NumDelivered %d", md.NumDelivered)
	}
	// The server emits MAX_DELIVERIES lazily, when it next tries to
	// deliver: keep pulling, as a restarted process would.
	testenv.Eventually(t, mvWait, "the dead message in the DLQ", func() (bool, error) {
		if _, err := c.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond)); err != nil {
			return false, err
		}
		return len(e.dead(t)) == 1, nil
	})
	d := e.dead(t)[0]
	h := d.Header
	for k, want := range map[string]string{
		dlq.HeaderStream:      contracts.StreamPayments,
		dlq.HeaderSequence:    strconv.FormatUint(seq, 10),
		dlq.HeaderSubject:     contracts.SubjectOrderSucceeded,
		dlq.HeaderMsgID:       id,
		dlq.HeaderConsumer:    "crasher",
		dlq.HeaderAttempts:    "2",
		dlq.HeaderReason:      dlq.ReasonMaxDeliveries,
		outbox.HeaderID:       id,
		jetstream.MsgIDHeader: dlq.MsgID(contracts.StreamPayments, seq, "crasher"),
		outbox.HeaderType:     contracts.TypeOf(contracts.SubjectOrderSucceeded),
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if d.Subject != dlq.Subject("crasher", contracts.SubjectOrderSucceeded) {
		t.Errorf("DLQ subject %s", d.Subject)
	}
	if !strings.Contains(h.Get(dlq.HeaderError), "2 times") {
		t.Errorf("error %q", h.Get(dlq.HeaderError))
	}
	for _, k := range []string{dlq.HeaderFirstFailure, dlq.HeaderLastFailure} {
		if ts, err := time.Parse(time.RFC3339Nano, h.Get(k)); err != nil || time.Since(ts) > time.Minute {
			t.Errorf("%s = %q (%v)", k, h.Get(k), err)
		}
	}
	if want := `{"n":` + strconv.Quote(id) + `}`; string(d.Data) != want {
		t.Errorf("payload %s, want %s", d.Data, want)
	}
	// The mover read the original with a direct get, which reports where it
	// is stored (Nats-Stream: PAYMENTS...); that must not be copied. (The
	// DLQ's own direct get adds Nats-Stream: DLQ.)
	if v := h.Values(jetstream.StreamHeader); len(v) != 1 || v[0] != contracts.StreamDLQ {
		t.Errorf("%s = %v, want only the DLQ's own", jetstream.StreamHeader, v)
	}
	testenv.Eventually(t, mvWait, "advisory acked", func() (bool, error) { return e.moverIdle(t), nil })
	if got := count(t, e.reg, "paypipe_dlq_dead_lettered_total", map[string]string{"consumer": "crasher", "reason": dlq.ReasonMaxDeliveries}); got != 1 {
		t.Errorf("dead_lettered_total %v, want 1", got)
	}
}

// A Term by someone else than paypipe's runner (another client, an
// operator's tool) takes a message out of the pipeline without a dead
// letter: the MSG_TERMINATED advisory brings it to the DLQ, reason
// terminated.
func TestMoverForeignTerm(t *testing.T) {
	t.Parallel()
	e := newMvEnv(t)
	e.startMover(t)
	seq, id := e.publish(t)
	c := e.consumer(t, "picky", 5)
	if err := fetchOne(t, c).TermWithReason("does not like it"); err != nil {
		t.Fatal(err)
	}
	e.awaitAdvisory(t, "terminated", "moved", 1)
	d := e.dead(t)
	if len(d) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(d))
	}
	h := d[0].Header
	if h.Get(dlq.HeaderReason) != dlq.ReasonTerminated || h.Get(dlq.HeaderConsumer) != "picky" ||
		h.Get(dlq.HeaderSequence) != strconv.FormatUint(seq, 10) || h.Get(outbox.HeaderID) != id || h.Get(dlq.HeaderAttempts) != "1" {
		t.Errorf("headers %v", h)
	}
	if !strings.Contains(h.Get(dlq.HeaderError), "does not like it") {
		t.Errorf("error %q does not carry the term reason", h.Get(dlq.HeaderError))
	}
}

// The runner's own Term comes after the dead letter is stored: the mover
// skips it. A MAX_DELIVERIES for a message the consumer already
// dead-lettered (the runner crashed between PubAck and Term, then the
// server gave up) is re-published under the same Nats-Msg-Id: the DLQ keeps
// one copy. Advisories about the DLQ stream itself are skipped.
func TestMoverNoDuplicateOfOwnDeadLetter(t *testing.T) {
	t.Parallel()
	e := newMvEnv(t)
	e.startMover(t)
	seq, _ := e.publish(t)
	c := e.consumer(t, "runner", 5)
	msg := fetchOne(t, c)
	pub, err := dlq.NewPublisher(dlq.PublisherConfig{JetStream: e.js, Metrics: e.m})
	if err != nil {
		t.Fatal(err)
	}
	md, _ := msg.Metadata()
	if err := pub.DeadLetter(context.Background(), outbox.DeadLetter{
		Consumer: "runner", Stream: md.Stream, Sequence: md.Sequence.Stream, Subject: msg.Subject(),
		Header: msg.Headers(), Payload: msg.Data(), Attempts: md.NumDelivered, Error: "boom", Permanent: true,
	}); err != nil {
		t.Fatal(err)
	}
	if err := msg.TermWithReason(outbox.DeadLetterTermReason); err != nil {
		t.Fatal(err)
	}
	e.awaitAdvisory(t, "terminated", "skipped", 1)

	// The same message reported by MAX_DELIVERIES (the shape the server
	// sends, published by the test into the stream that captures it).
	adv, _ := json.Marshal(map[string]any{
		"type": "io.nats.jetstream.advisory.v1.max_deliver", "id": "t1", "timestamp": time.Now().UTC(),
		"stream": contracts.StreamPayments, "consumer": "runner", "stream_seq": seq, "deliveries": 5,
	})
	if _, err := e.js.Publish(context.Background(), contracts.AdvisoryMaxDeliveries+"."+contracts.StreamPayments+".runner", adv); err != nil {
		t.Fatal(err)
	}
	e.awaitAdvisory(t, "max_deliveries", "duplicate", 1)

	// A consumer of the DLQ itself terminating a dead letter.
	dc, err := e.js.CreateOrUpdateConsumer(context.Background(), contracts.StreamDLQ, jetstream.ConsumerConfig{
		Durable: "dlq-reader", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := fetchOne(t, dc).TermWithReason("whatever"); err != nil {
		t.Fatal(err)
	}
	e.awaitAdvisory(t, "terminated", "skipped", 2)

	if d := e.dead(t); len(d) != 1 || d[0].Header.Get(dlq.HeaderReason) != dlq.ReasonPermanent {
		t.Fatalf("DLQ holds %d messages (want the runner's one, reason permanent)", len(d))
	}
	if got := count(t, e.reg, "paypipe_dlq_dead_lettered_total", nil); got != 1 {
		t.Errorf("dead_lettered_total %v, want 1", got)
	}
	testenv.Eventually(t, mvWait, "advisories acked", func() (bool, error) { return e.moverIdle(t), nil })
}

// A dead message already gone from its stream cannot be copied: the mover
// says so (paypipe_dlq_lost_total) and moves on. The server itself reports
// a pending message deleted under a consumer as terminated.
func TestMoverLost(t *testing.T) {
	t.Parallel()
	e := newMvEnv(t)
	e.startMover(t)
	seq, _ := e.publish(t)
	c := e.consumer(t, "slow", 5)
	_ = fetchOne(t, c) // pending
	s, err := e.js.Stream(context.Background(), contracts.StreamPayments)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteMsg(context.Background(), seq); err != nil {
		t.Fatal(err)
	}
	// The server notices the deletion on its next look at the pending message.
	testenv.Eventually(t, mvWait, "lost counted", func() (bool, error) {
		if _, err := c.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond)); err != nil {
			return false, err
		}
		return count(t, e.reg, "paypipe_dlq_lost_total", map[string]string{"consumer": "slow"}) == 1, nil
	})
	if d := e.dead(t); len(d) != 0 {
		t.Fatalf("DLQ holds %d messages, want 0", len(d))
	}
	testenv.Eventually(t, mvWait, "advisory acked", func() (bool, error) { return e.moverIdle(t), nil })
}

// While the DLQ cannot take the dead letter, the advisory is nacked and
// retried; once the DLQ is back the message lands, once.
func TestMoverRetriesUntilDLQAvailable(t *testing.T) {
	t.Parallel()
	e := newMvEnv(t)
	ctx := context.Background()
	var dlqCfg jetstream.StreamConfig
	for _, s := range contracts.Streams(contracts.StreamOptions{}) {
		if s.Name == contracts.StreamDLQ {
			dlqCfg = s
		}
	}
	if err := e.js.DeleteStream(ctx, contracts.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	e.startMover(t)
	e.publish(t)
	c := e.consumer(t, "picky", 5)
	if err := fetchOne(t, c).TermWithReason("no"); err != nil {
		t.Fatal(err)
	}
	e.awaitAdvisory(t, "terminated", "failed", 3)
	if _, err := e.js.CreateStream(ctx, dlqCfg); err != nil {
		t.Fatal(err)
	}
	e.awaitAdvisory(t, "terminated", "moved", 1)
	testenv.Eventually(t, mvWait, "advisory acked", func() (bool, error) { return e.moverIdle(t), nil })
	if d := e.dead(t); len(d) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(d))
	}
}

func TestMoverFailsFastWithoutConsumer(t *testing.T) {
	t.Parallel()
	srv := testenv.NATS(t)
	mv, err := dlq.NewMover(dlq.MoverConfig{Conn: testenv.Connect(t, srv)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), mvWait)
	defer cancel()
	if err := mv.Run(ctx); err == nil {
		t.Fatal("Run without a declared consumer succeeded")
	}
	for name, cfg := range map[string]dlq.MoverConfig{
		"no connection":   {},
		"batch too large": {Conn: testenv.Connect(t, srv), BatchSize: 1001},
		"poll too short":  {Conn: testenv.Connect(t, srv), PollInterval: time.Millisecond},
	} {
		if _, err := dlq.NewMover(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
