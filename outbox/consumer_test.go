package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/dlq"
	"github.com/paypipe/paypipe/outbox/retry"
)

// 50 concurrent deliveries of one message: the inbox's primary key lets
// exactly one apply the effect.
func TestInboxConcurrentSameMessage(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := uuid.Must(uuid.NewV7())
	var applied atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ok, err := e.store.Handle(context.Background(), e.pool, testConsumer, id, testSubject,
				func(ctx context.Context, tx pgx.Tx) error {
					return recordEffect(ctx, tx, outbox.Delivery{MsgID: id})
				})
			if err != nil {
				t.Error(err)
			}
			if ok {
				applied.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if applied.Load() != 1 {
		t.Fatalf("%d handlers applied the message, want 1", applied.Load())
	}
	if got := e.effects(t)[id]; got != 1 {
		t.Fatalf("effect applied %d times, want 1", got)
	}
}

// The same event reaches the consumer 50 times as distinct NATS messages
// (as after redeliveries, republishes past the duplicate window, or DLQ
// replays): the runner applies it once and acks the rest as duplicates.
func TestRunnerSameEventDelivered50Times(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	id := uuid.Must(uuid.NewV7())
	for i := 0; i < 50; i++ {
		m := nats.NewMsg(testSubject)
		m.Header.Set(outbox.HeaderID, id.String())
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s-%d", id, i))
		m.Data = []byte(`{}`)
		if _, err := e.js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	metrics := outbox.NewMetrics(nil)
	e.runRunner(t, e.nc, outbox.RunnerConfig{Metrics: metrics, Workers: 16})
	testenv.Eventually(t, 30*time.Second, "50 deliveries handled", func() (bool, error) {
		return metrics.ConsumerCount(testConsumer, "applied")+metrics.ConsumerCount(testConsumer, "duplicate") == 50, nil
	})
	if a := metrics.ConsumerCount(testConsumer, "applied"); a != 1 {
		t.Fatalf("applied %v times, want 1", a)
	}
	if got := e.effects(t)[id]; got != 1 {
		t.Fatalf("effect applied %d times, want 1", got)
	}
}

// End to end through relay and runner, with the consumer's database
// connection killed before its first commit: nothing of that attempt
// survives, the message is redelivered and applied once.
func TestConsumerCrashBeforeCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ids := e.write(t, 20, 20)
	drain(t, e, e.relay(t, outbox.RelayConfig{}))

	var crashed atomic.Bool
	var redelivered atomic.Uint64
	metrics := outbox.NewMetrics(nil)
	cfg := outbox.WithBeforeCommit(outbox.RunnerConfig{Metrics: metrics}, func(ctx context.Context, tx pgx.Tx) error {
		if crashed.CompareAndSwap(false, true) {
			return terminateBackend(ctx, tx)
		}
		return nil
	})
	cfg = outbox.WithAfterCommit(cfg, func(d outbox.Delivery) {
		if d.NumDelivered > 1 {
			redelivered.Add(1)
		}
	})
	e.runRunner(t, e.nc, cfg)
	testenv.Eventually(t, 30*time.Second, "all 20 applied", func() (bool, error) {
		return metrics.ConsumerCount(testConsumer, "applied") == 20, nil
	})
	if metrics.ConsumerCount(testConsumer, "error") != 1 || redelivered.Load() != 1 {
		t.Fatalf("errors=%v redelivered=%d, want the one crashed message redelivered",
			metrics.ConsumerCount(testConsumer, "error"), redelivered.Load())
	}
	eff := e.effects(t)
	for _, id := range ids {
		if eff[id] != 1 {
			t.Fatalf("message %s applied %d times, want 1", id, eff[id])
		}
	}
}

// The consumer commits, then its NATS connection dies before the ack. The
// server redelivers after AckWait to a fresh consumer process (new
// connection); its inbox finds the row and acks without a second effect.
func TestConsumerCrashAfterCommitBeforeAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{ackWait: time.Second})
	ids := e.write(t, 1, 1)
	drain(t, e, e.relay(t, outbox.RelayConfig{}))

	nc1 := testenv.Connect(t, e.srv)
	m1 := outbox.NewMetrics(nil)
	committed := make(chan struct{})
	cfg := outbox.WithAfterCommit(outbox.RunnerConfig{Metrics: m1}, func(outbox.Delivery) {
		nc1.Close() // the process dies between commit and ack
		close(committed)
	})
	stop1 := e.runRunner(t, nc1, cfg)
	select {
	case <-committed:
	case <-time.After(30 * time.Second):
		t.Fatal("first consumer never committed")
	}
	stop1()
	if got := e.effects(t)[ids[0]]; got != 1 {
		t.Fatalf("after the first attempt: %d effects, want 1", got)
	}

	m2 := outbox.NewMetrics(nil)
	e.runRunner(t, testenv.Connect(t, e.srv), outbox.RunnerConfig{Metrics: m2})
	testenv.Eventually(t, 30*time.Second, "redelivery skipped by the inbox", func() (bool, error) {
		return m2.ConsumerCount(testConsumer, "duplicate") == 1, nil
	})
	if a := m2.ConsumerCount(testConsumer, "applied"); a != 0 {
		t.Fatalf("second consumer applied %v, want 0", a)
	}
	if got := e.effects(t)[ids[0]]; got != 1 {
		t.Fatalf("effects %d, want 1", got)
	}
}

// With a 1 s duplicate window, a re-send after the window is stored again:
// the stream holds two copies, and the consumer's inbox applies the effect once.
func TestRepublishAfterDuplicateWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{duplicates: time.Second})
	ctx := context.Background()
	ids := e.write(t, 1, 1)
	r := e.relay(t, outbox.RelayConfig{})
	if sum := drain(t, e, r); sum.Published != 1 {
		t.Fatalf("%+v", sum)
	}
	// Re-drive until the broker stores the copy as new: inside the window
	// it answers Duplicate and stores nothing.
	var dupsInWindow int
	testenv.Eventually(t, 15*time.Second, "a re-send stored after the window", func() (bool, error) {
		if _, err := e.store.Redrive(ctx, e.pool, time.Now().Add(-time.Hour)); err != nil {
			return false, err
		}
		sum := drain(t, e, r)
		dupsInWindow += sum.Duplicates
		return sum.Published == 1, nil
	})
	counts := e.streamIDs(t)
	if counts[ids[0].String()] != 2 || len(counts) != 1 {
		t.Fatalf("stream ids %v, want the one id twice", counts)
	}
	metrics := outbox.NewMetrics(nil)
	e.runRunner(t, e.nc, outbox.RunnerConfig{Metrics: metrics})
	testenv.Eventually(t, 30*time.Second, "both copies handled", func() (bool, error) {
		return metrics.ConsumerCount(testConsumer, "applied")+metrics.ConsumerCount(testConsumer, "duplicate") == 2, nil
	})
	if metrics.ConsumerCount(testConsumer, "applied") != 1 {
		t.Fatalf("applied %v, want 1", metrics.ConsumerCount(testConsumer, "applied"))
	}
	if got := e.effects(t)[ids[0]]; got != 1 {
		t.Fatalf("effects %d, want 1", got)
	}
	t.Logf("re-sends answered Duplicate inside the window: %d", dupsInWindow)
}

// A handler error rolls back its writes (including outbox rows it wrote) and
// the message is retried; a handler's outgoing messages commit with its effect.
func TestHandlerErrorRollsBackOutgoingMessages(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := context.Background()
	in := uuid.Must(uuid.NewV7())
	attempt := 0
	for {
		attempt++
		_, err := e.store.Handle(ctx, e.pool, testConsumer, in, testSubject, func(ctx context.Context, tx pgx.Tx) error {
			out := &outbox.Message{Subject: "t.next.happened", Type: "t.next.v1", Source: "test", Payload: []byte(`{}`)}
			if err := e.store.Write(ctx, tx, out); err != nil {
				return err
			}
			if attempt == 1 {
				return fmt.Errorf("transient failure")
			}
			return nil
		})
		if attempt == 1 {
			if err == nil {
				t.Fatal("first attempt should fail")
			}
			if b := e.backlog(t); b != 0 {
				t.Fatalf("failed attempt left %d outbox rows", b)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		break
	}
	if b := e.backlog(t); b != 1 {
		t.Fatalf("backlog %d, want the one outgoing message", b)
	}
}

// dlqEnv gives a test paypipe's DLQ and ADVISORIES streams (contracts), a
// dead-letter Publisher for the runner, and the DLQ metrics.
type dlqEnv struct {
	*env
	dlqCfg jetstream.StreamConfig
	pub    *dlq.Publisher
	reg    *prometheus.Registry
	dm     *dlq.Metrics
}

func newDLQEnv(t *testing.T, o envOpts) *dlqEnv {
	t.Helper()
	e := &dlqEnv{env: newEnv(t, o), reg: prometheus.NewRegistry()}
	ctx := context.Background()
	for _, s := range contracts.Streams(contracts.StreamOptions{}) {
		if s.Name != contracts.StreamDLQ && s.Name != contracts.StreamAdvisories {
			continue
		}
		if s.Name == contracts.StreamDLQ {
			e.dlqCfg = s
		}
		if _, err := e.js.CreateOrUpdateStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	mover := contracts.DLQMover(contracts.ConsumerOptions{})
	if _, err := e.js.CreateOrUpdateConsumer(ctx, mover.Stream, mover.Config); err != nil {
		t.Fatal(err)
	}
	e.dm = dlq.NewMetrics(e.reg)
	pub, err := dlq.NewPublisher(dlq.PublisherConfig{JetStream: e.js, Metrics: e.dm})
	if err != nil {
		t.Fatal(err)
	}
	e.pub = pub
	return e
}

// consumer declares a consumer on stream T like newEnv's, with maxDeliver.
func (e *dlqEnv) consumer(t *testing.T, name string, maxDeliver int) {
	t.Helper()
	if _, err := e.js.CreateOrUpdateConsumer(context.Background(), testStream, jetstream.ConsumerConfig{
		Durable: name, AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxDeliver: maxDeliver, DeliverPolicy: jetstream.DeliverAllPolicy,
	}); err != nil {
		t.Fatal(err)
	}
}

// runSpecs runs specs on a runner with cfg (DeadLetters: the env's
// Publisher) until the test ends.
func (e *dlqEnv) runSpecs(t *testing.T, cfg outbox.RunnerConfig, specs ...outbox.ConsumerSpec) (stop func()) {
	t.Helper()
	cfg.Store, cfg.Pool, cfg.Conn, cfg.DeadLetters = e.store, e.pool, e.nc, e.pub
	r, err := outbox.NewRunner(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range specs {
		if err := r.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	return startLoop(t, r.Run, r.Running())
}

// runMover runs a DLQ mover until the test ends.
func (e *dlqEnv) runMover(t *testing.T) {
	t.Helper()
	mv, err := dlq.NewMover(dlq.MoverConfig{Conn: e.nc, Metrics: e.dm, PollInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	startLoop(t, mv.Run, nil)
}

// startLoop runs fn until the returned stop (or the test's end) cancels it.
func startLoop(t *testing.T, fn func(context.Context) error, running <-chan struct{}) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	if running != nil {
		select {
		case <-running:
		case err := <-done:
			cancel()
			t.Fatalf("stopped before running: %v", err)
		case <-time.After(10 * time.Second):
			cancel()
			t.Fatal("did not start")
		}
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("loop: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("loop did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// deadLetters returns the DLQ stream's messages (none if it does not exist).
func (e *dlqEnv) deadLetters(t *testing.T) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := e.js.Stream(ctx, contracts.StreamDLQ)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
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

// settled reports whether consumer name has nothing pending on stream T:
// every message acked or terminated.
func (e *dlqEnv) settled(t *testing.T, name string) (*jetstream.ConsumerInfo, bool) {
	t.Helper()
	c, err := e.js.Consumer(context.Background(), testStream, name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info, info.NumAckPending == 0 && info.NumPending == 0
}

// counter reads a counter from reg (0 if the series does not exist yet).
func counter(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// attemptLog records each delivery a handler saw.
type attemptLog struct {
	mu    sync.Mutex
	calls []outbox.Delivery
	at    []time.Time
}

func (l *attemptLog) add(d outbox.Delivery) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, d)
	l.at = append(l.at, time.Now())
}

func (l *attemptLog) snapshot() ([]outbox.Delivery, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.calls), slices.Clone(l.at)
}

// A handler that says "retrying cannot help" (retry.Permanent) sends the
// message to the DLQ at once, with every header, and the original is
// terminated: no redelivery, nothing pending, and other messages flow past
// it. Its transaction rolled back, so the inbox has no row (a replay will
// apply it). A message whose envelope cannot be decoded goes the same way.
// The DLQ mover, watching MSG_TERMINATED, sees the runner's own Term and
// adds no second copy.
func TestRunnerDeadLettersPermanentError(t *testing.T) {
	t.Parallel()
	e := newDLQEnv(t, envOpts{})
	ctx := context.Background()
	ids := e.write(t, 3, 3)
	poison := ids[1]
	drain(t, e.env, e.relay(t, outbox.RelayConfig{}))
	bad := nats.NewMsg(testSubject)
	bad.Header.Set(outbox.HeaderID, "not-a-uuid")
	bad.Data = []byte(`{"bad":true}`)
	if _, err := e.js.PublishMsg(ctx, bad); err != nil {
		t.Fatal(err)
	}

	var poisoned attemptLog
	metrics := outbox.NewMetrics(nil)
	e.runMover(t)
	e.runSpecs(t, outbox.RunnerConfig{Metrics: metrics}, outbox.ConsumerSpec{
		Name: testConsumer, Stream: testStream,
		Handler: func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
			if d.MsgID != poison {
				return recordEffect(ctx, tx, d)
			}
			poisoned.add(d)
			if err := recordEffect(ctx, tx, d); err != nil { // rolled back with the rest
				return err
			}
			return fmt.Errorf("order %s: %w", d.AggregateID, retry.Permanent(errors.New("unknown currency XYZ")))
		},
	})
	testenv.Eventually(t, 30*time.Second, "two applied, two dead-lettered, nothing pending", func() (bool, error) {
		_, settled := e.settled(t, testConsumer)
		return settled && metrics.ConsumerCount(testConsumer, "applied") == 2 && len(e.deadLetters(t)) == 2, nil
	})
	testenv.Eventually(t, 30*time.Second, "the mover skipped both runner Terms", func() (bool, error) {
		return counter(t, e.reg, "paypipe_dlq_advisories_total", map[string]string{"kind": "terminated", "result": "skipped"}) == 2, nil
	})

	calls, _ := poisoned.snapshot()
	if len(calls) != 1 {
		t.Fatalf("poisoned message handled %d times, want 1 (no redelivery)", len(calls))
	}
	dead := e.deadLetters(t)
	if len(dead) != 2 {
		t.Fatalf("DLQ holds %d messages after the mover ran, want 2", len(dead))
	}
	byID := map[string]*jetstream.RawStreamMsg{}
	for _, d := range dead {
		byID[d.Header.Get(outbox.HeaderID)] = d
	}
	d, ok := byID[poison.String()]
	if !ok {
		t.Fatalf("poisoned message not in the DLQ: %v", byID)
	}
	seq := calls[0].StreamSeq
	for k, want := range map[string]string{
		dlq.HeaderStream:      testStream,
		dlq.HeaderSequence:    strconv.FormatUint(seq, 10),
		dlq.HeaderSubject:     testSubject,
		dlq.HeaderMsgID:       poison.String(),
		dlq.HeaderConsumer:    testConsumer,
		dlq.HeaderAttempts:    "1",
		dlq.HeaderReason:      dlq.ReasonPermanent,
		jetstream.MsgIDHeader: dlq.MsgID(testStream, seq, testConsumer),
		outbox.HeaderType:     "t.thing.happened.v1",
		outbox.HeaderSource:   "paypipe/test",
	} {
		if got := d.Header.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if e := d.Header.Get(dlq.HeaderError); !strings.Contains(e, "unknown currency XYZ") {
		t.Errorf("error header %q", e)
	}
	first, err1 := time.Parse(time.RFC3339Nano, d.Header.Get(dlq.HeaderFirstFailure))
	last, err2 := time.Parse(time.RFC3339Nano, d.Header.Get(dlq.HeaderLastFailure))
	if err1 != nil || err2 != nil || last.Before(first) || time.Since(first) > time.Minute {
		t.Errorf("failure times %q %q", d.Header.Get(dlq.HeaderFirstFailure), d.Header.Get(dlq.HeaderLastFailure))
	}
	if string(d.Data) != `{"n":1}` {
		t.Errorf("payload %s", d.Data)
	}
	if d.Subject != dlq.Subject(testConsumer, testSubject) {
		t.Errorf("DLQ subject %s", d.Subject)
	}
	u, ok := byID["not-a-uuid"]
	if !ok || u.Header.Get(dlq.HeaderReason) != dlq.ReasonPermanent || !strings.Contains(u.Header.Get(dlq.HeaderError), "undecodable") {
		t.Errorf("undecodable message: in DLQ %v, headers %v", ok, u)
	}

	eff := e.effects(t)
	if eff[poison] != 0 || eff[ids[0]] != 1 || eff[ids[2]] != 1 {
		t.Errorf("effects %v: want the two good messages once, the poisoned one rolled back", eff)
	}
	if done, err := e.store.Processed(ctx, e.pool, testConsumer, poison); err != nil || done {
		t.Errorf("inbox has the dead message (%v, %v): a replay would be skipped", done, err)
	}
	if info, _ := e.settled(t, testConsumer); info.NumRedelivered != 0 {
		t.Errorf("%d redelivered", info.NumRedelivered)
	}
	if got := metrics.ConsumerCount(testConsumer, "dead_lettered"); got != 2 {
		t.Errorf("consumer dead_lettered %v, want 2", got)
	}
	if got := counter(t, e.reg, "paypipe_dlq_dead_lettered_total", map[string]string{"consumer": testConsumer, "reason": dlq.ReasonPermanent}); got != 2 {
		t.Errorf("paypipe_dlq_dead_lettered_total %v, want 2", got)
	}
}

// A transient failure is redelivered after the policy's delay
// (NakWithDelay), each delivery counted, until the attempt limit: the
// consumer's MaxDeliver, or the policy's MaxAttempts if smaller. The last
// attempt goes to the DLQ, reason max_deliveries, attempts = the limit.
func TestRunnerRetriesThenDeadLetters(t *testing.T) {
	t.Parallel()
	policy := retry.Policy{Strategy: retry.Incremental, Initial: 100 * time.Millisecond, Step: 100 * time.Millisecond}
	for _, tc := range []struct {
		name        string
		maxDeliver  int
		maxAttempts int
		limit       int
	}{
		{"limit is MaxDeliver", 4, 0, 4},
		{"limit is the policy's MaxAttempts", 20, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newDLQEnv(t, envOpts{})
			name := "t-flaky"
			e.consumer(t, name, tc.maxDeliver)
			ids := e.write(t, 1, 1)
			drain(t, e.env, e.relay(t, outbox.RelayConfig{}))
			p := policy
			p.MaxAttempts = tc.maxAttempts
			var attempts attemptLog
			metrics := outbox.NewMetrics(nil)
			e.runSpecs(t, outbox.RunnerConfig{Metrics: metrics}, outbox.ConsumerSpec{
				Name: name, Stream: testStream, Retry: p,
				Handler: func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
					attempts.add(d)
					return errors.New("ledger database unavailable")
				},
			})
			testenv.Eventually(t, 30*time.Second, "dead-lettered and settled", func() (bool, error) {
				_, settled := e.settled(t, name)
				return settled && len(e.deadLetters(t)) == 1, nil
			})

			calls, at := attempts.snapshot()
			if len(calls) != tc.limit {
				t.Fatalf("%d deliveries, want %d", len(calls), tc.limit)
			}
			var total time.Duration
			for i, d := range calls {
				if d.NumDelivered != uint64(i+1) || d.MsgID != ids[0] {
					t.Errorf("delivery %d: NumDelivered %d, id %s", i+1, d.NumDelivered, d.MsgID)
				}
				if i > 0 {
					want := p.Delay(i, nil)
					total += want
					if gap := at[i].Sub(at[i-1]); gap < want {
						t.Errorf("delivery %d came %s after delivery %d, policy delay %s", i+1, gap, i, want)
					}
				}
			}
			d := e.deadLetters(t)[0]
			if d.Header.Get(dlq.HeaderReason) != dlq.ReasonMaxDeliveries || d.Header.Get(dlq.HeaderAttempts) != strconv.Itoa(tc.limit) ||
				d.Header.Get(dlq.HeaderConsumer) != name || !strings.Contains(d.Header.Get(dlq.HeaderError), "ledger database unavailable") {
				t.Errorf("DLQ headers %v", d.Header)
			}
			// The first failure is the first delivery's, not the last's.
			first, _ := time.Parse(time.RFC3339Nano, d.Header.Get(dlq.HeaderFirstFailure))
			last, _ := time.Parse(time.RFC3339Nano, d.Header.Get(dlq.HeaderLastFailure))
			if last.Sub(first) < total {
				t.Errorf("first failure %s, last %s: want at least the %s of delays apart", first, last, total)
			}
			if got := metrics.ConsumerCount(name, "error"); got != float64(tc.limit-1) {
				t.Errorf("errors %v, want %d", got, tc.limit-1)
			}
			if got := counter(t, e.reg, "paypipe_dlq_dead_lettered_total", map[string]string{"consumer": name, "reason": dlq.ReasonMaxDeliveries}); got != 1 {
				t.Errorf("paypipe_dlq_dead_lettered_total %v, want 1", got)
			}
		})
	}
}

// While the DLQ cannot store the dead letter, the original is never
// terminated: it keeps being redelivered. Once the DLQ is back it lands
// there, once, and the original is terminated.
func TestRunnerDeadLetterPublishFails(t *testing.T) {
	t.Parallel()
	e := newDLQEnv(t, envOpts{})
	ctx := context.Background()
	if err := e.js.DeleteStream(ctx, contracts.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	ids := e.write(t, 1, 1)
	drain(t, e.env, e.relay(t, outbox.RelayConfig{}))
	var attempts attemptLog
	e.runSpecs(t, outbox.RunnerConfig{Retry: retry.Policy{Strategy: retry.Fixed, Initial: 50 * time.Millisecond}},
		outbox.ConsumerSpec{
			Name: testConsumer, Stream: testStream,
			Handler: func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
				attempts.add(d)
				return retry.Permanent(errors.New("malformed"))
			},
		})
	testenv.Eventually(t, 30*time.Second, "three deliveries without a DLQ", func() (bool, error) {
		calls, _ := attempts.snapshot()
		return len(calls) >= 3, nil
	})
	if info, settled := e.settled(t, testConsumer); settled || info.NumRedelivered == 0 {
		t.Fatalf("the message was settled without a DLQ copy: %+v", info)
	}
	if _, err := e.js.CreateStream(ctx, e.dlqCfg); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, "dead-lettered once the DLQ is back", func() (bool, error) {
		_, settled := e.settled(t, testConsumer)
		return settled, nil
	})
	calls, _ := attempts.snapshot()
	for i, d := range calls {
		if d.NumDelivered != uint64(i+1) {
			t.Errorf("call %d: NumDelivered %d", i+1, d.NumDelivered)
		}
	}
	dead := e.deadLetters(t)
	if len(dead) != 1 || dead[0].Header.Get(outbox.HeaderID) != ids[0].String() {
		t.Fatalf("DLQ holds %d messages, want the one", len(dead))
	}
	if got, want := dead[0].Header.Get(dlq.HeaderAttempts), strconv.Itoa(len(calls)); got != want {
		t.Errorf("attempts %s, want %s (the delivery that got through)", got, want)
	}
}

// A shutdown cancels handlers in flight; that is not the handler giving up.
// Although retry.Classify calls a cancellation permanent, nothing is
// dead-lettered: the message stays pending for redelivery.
func TestRunnerShutdownDoesNotDeadLetter(t *testing.T) {
	t.Parallel()
	e := newDLQEnv(t, envOpts{})
	e.write(t, 1, 1)
	drain(t, e.env, e.relay(t, outbox.RelayConfig{}))
	started := make(chan struct{})
	var once sync.Once
	metrics := outbox.NewMetrics(nil)
	stop := e.runSpecs(t, outbox.RunnerConfig{Metrics: metrics}, outbox.ConsumerSpec{
		Name: testConsumer, Stream: testStream,
		Handler: func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
			once.Do(func() { close(started) })
			<-ctx.Done()
			return fmt.Errorf("waiting for the ledger: %w", ctx.Err())
		},
	})
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("handler never ran")
	}
	stop()
	if n := len(e.deadLetters(t)); n != 0 {
		t.Fatalf("shutdown dead-lettered %d messages", n)
	}
	if info, _ := e.settled(t, testConsumer); info.NumAckPending != 1 {
		t.Fatalf("ack pending %d, want the message left for redelivery", info.NumAckPending)
	}
	if got := metrics.ConsumerCount(testConsumer, "dead_lettered"); got != 0 {
		t.Fatalf("dead_lettered %v", got)
	}
}
