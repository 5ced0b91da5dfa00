package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/outbox"
)

// target is one relay set up for one scenario: its own tables, its own
// stream, the writer an application would use, and the relay itself.
type target interface {
	// write commits one event (payload carries n) in its own transaction.
	write(ctx context.Context, n int) error
	// start runs the relay in the background; stop ends it and waits.
	start(ctx context.Context) error
	stop() (RelayStats, error)
	// wake is paypipe's Relay.Wake; a no-op for the forwarder.
	wake()
	// analyze runs ANALYZE on the tables the relay reads.
	analyze(ctx context.Context) error
	streamName() string
	cleanup()
}

// payloadSize is the size of every event body. The body is JSON whose first
// bytes carry the event's number at a fixed offset, so the stream watcher can
// read it without decoding.
const payloadSize = 256

const payloadPrefix = `{"n":"`

func payload(n int) []byte {
	b := make([]byte, 0, payloadSize)
	b = append(b, payloadPrefix...)
	s := strconv.Itoa(n)
	for i := len(s); i < 10; i++ {
		b = append(b, '0')
	}
	b = append(b, s...)
	b = append(b, `","pad":"`...)
	for len(b) < payloadSize-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

func parseN(b []byte) (int, bool) {
	const off = len(payloadPrefix)
	if len(b) < off+10 || string(b[:off]) != payloadPrefix {
		return 0, false
	}
	n := 0
	for _, c := range b[off : off+10] {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// newTarget creates the tables and the stream of one scenario run.
func (e *env) newTarget(ctx context.Context, k relayKind) (target, error) {
	id := e.seq.Add(1)
	name := fmt.Sprintf("rb%d", id)
	stream := fmt.Sprintf("RB%d", id)
	subject := name + ".evt.created"
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// Like contracts.Streams: file storage, limits retention, dedup window,
	// atomic batches allowed. A 2 min window covers every run.
	if _, err := e.js.CreateStream(sctx, jetstream.StreamConfig{
		Name:               stream,
		Subjects:           []string{name + ".>"},
		Storage:            jetstream.FileStorage,
		Retention:          jetstream.LimitsPolicy,
		Discard:            jetstream.DiscardOld,
		MaxBytes:           -1,
		Duplicates:         2 * time.Minute,
		Replicas:           1,
		AllowAtomicPublish: true,
		AllowDirect:        true,
	}); err != nil {
		return nil, fmt.Errorf("create stream %s: %w", stream, err)
	}
	dropStream := func() {
		dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.js.DeleteStream(dctx, stream)
	}
	var t target
	var err error
	if k.Forwarder {
		t, err = newForwarderTarget(sctx, e, name, stream, subject, dropStream)
	} else {
		t, err = newPaypipeTarget(sctx, e, k, name, stream, subject, dropStream)
	}
	if err != nil {
		dropStream()
		return nil, err
	}
	return t, nil
}

// RelayStats is what a relay reported about its passes (paypipe only). For
// drain, Passes and MeanBatch are the last run's; the exception counts sum
// every run's.
type RelayStats struct {
	Passes      int     `json:"passes,omitempty"`
	MeanBatch   float64 `json:"mean_batch,omitempty"`
	Duplicates  int     `json:"duplicates_acked,omitempty"`
	FailedSends int     `json:"failed_sends,omitempty"`
	Fallbacks   int     `json:"atomic_fallbacks,omitempty"`
	// Pass durations (non-empty passes), only when the bench drives RunOnce.
	PassP50ms float64 `json:"pass_p50_ms,omitempty"`
	PassP99ms float64 `json:"pass_p99_ms,omitempty"`
	PassMaxMs float64 `json:"pass_max_ms,omitempty"`
}

// ---- paypipe ----

type paypipeTarget struct {
	e        *env
	kind     relayKind
	store    outbox.Store
	stream   string
	subject  string
	drop     func()
	reg      *prometheus.Registry
	metrics  *outbox.Metrics
	relays   []*outbox.Relay
	relayNCs []*nats.Conn
	// loopWake are the wake channels of onceLoop relays; passMs their
	// non-empty passes' durations.
	loopWake []chan struct{}
	passMu   sync.Mutex
	passMs   []float64
	cancel   context.CancelFunc
	runDone  chan error
	stopOnce sync.Once
}

func newPaypipeTarget(ctx context.Context, e *env, k relayKind, schema, stream, subject string, drop func()) (*paypipeTarget, error) {
	store, err := outbox.NewStore(schema)
	if err != nil {
		return nil, err
	}
	if _, err := e.wpool.Exec(ctx, store.DDL()); err != nil {
		return nil, fmt.Errorf("outbox DDL: %w", err)
	}
	reg := prometheus.NewRegistry()
	return &paypipeTarget{e: e, kind: k, store: store, stream: stream, subject: subject, drop: drop,
		reg: reg, metrics: outbox.NewMetrics(reg)}, nil
}

func (t *paypipeTarget) streamName() string { return t.stream }

func (t *paypipeTarget) write(ctx context.Context, n int) error {
	tx, err := t.e.wpool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := t.store.Write(ctx, tx, &outbox.Message{
		Subject: t.subject,
		Type:    "bench.evt.created.v1",
		Source:  "paypipe/relaybench",
		Payload: payload(n),
	}); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (t *paypipeTarget) start(ctx context.Context) error {
	n := max(t.kind.Instances, 1)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	t.cancel, t.runDone = cancel, make(chan error, n)
	stream := t.stream
	for range n {
		nc, err := nats.Connect(t.e.srv.URL(), nats.Timeout(5*time.Second), nats.MaxReconnects(-1))
		if err != nil {
			_, _ = t.stop()
			return err
		}
		t.relayNCs = append(t.relayNCs, nc)
		r, err := outbox.NewRelay(outbox.RelayConfig{
			Store:        t.store,
			Pool:         t.e.rpool,
			Conn:         nc,
			Mode:         t.kind.Mode,
			StreamOf:     func(string) string { return stream },
			BatchSize:    t.kind.Batch,
			PollInterval: t.kind.Poll,
			Metrics:      t.metrics,
			Logger:       t.e.log,
		})
		if err != nil {
			_, _ = t.stop()
			return err
		}
		t.relays = append(t.relays, r)
		if t.kind.Loop == "copy" || t.kind.Loop == "eager" {
			wake := make(chan struct{}, 1)
			t.loopWake = append(t.loopWake, wake)
			go func() { t.runDone <- t.onceLoop(rctx, r, wake) }()
			continue
		}
		go func() { t.runDone <- r.Run(rctx) }()
	}
	return nil
}

// onceLoop is the experiment Config.PaypipeLoop: the relay's RunOnce driven
// by the bench, every pass timed. "copy" waits PollInterval after a pass
// that claimed less than BatchSize, like Relay.Run; "eager" only after an
// empty or failed pass.
func (t *paypipeTarget) onceLoop(ctx context.Context, r *outbox.Relay, wake <-chan struct{}) error {
	poll, batch := t.kind.Poll, t.kind.Batch
	if poll <= 0 {
		poll = 20 * time.Millisecond
	}
	if batch <= 0 {
		batch = 500
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		began := time.Now()
		res, err := r.RunOnce(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if res.Claimed > 0 {
			t.passMu.Lock()
			t.passMs = append(t.passMs, float64(time.Since(began).Microseconds())/1000)
			t.passMu.Unlock()
		}
		if err == nil && (res.Claimed >= batch || (t.kind.Loop == "eager" && res.Claimed > 0)) {
			continue
		}
		timer.Reset(poll)
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		case <-timer.C:
		}
	}
}

func (t *paypipeTarget) wake() {
	for _, r := range t.relays {
		r.Wake()
	}
	for _, w := range t.loopWake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

func (t *paypipeTarget) stop() (RelayStats, error) {
	var err error
	t.stopOnce.Do(func() {
		if t.cancel == nil {
			return
		}
		t.e.errs.stopping.Store(true)
		defer t.e.errs.stopping.Store(false)
		t.cancel()
		timeout := time.After(30 * time.Second)
		for range t.relays {
			select {
			case rerr := <-t.runDone:
				err = errors.Join(err, rerr)
			case <-timeout:
				err = errors.Join(err, errors.New("paypipe relay did not stop within 30s"))
			}
		}
		for _, nc := range t.relayNCs {
			nc.Close()
		}
	})
	return t.stats(), err
}

func (t *paypipeTarget) stats() RelayStats {
	var s RelayStats
	t.passMu.Lock()
	if len(t.passMs) > 0 {
		ms := slices.Clone(t.passMs)
		slices.Sort(ms)
		s.PassP50ms, s.PassP99ms, s.PassMaxMs = round(pct(ms, .5), 2), round(pct(ms, .99), 2), round(ms[len(ms)-1], 2)
	}
	t.passMu.Unlock()
	mfs, err := t.reg.Gather()
	if err != nil {
		return s
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "paypipe_outbox_relay_batch_size":
				h := m.GetHistogram()
				s.Passes = int(h.GetSampleCount())
				if h.GetSampleCount() > 0 {
					s.MeanBatch = round(h.GetSampleSum()/float64(h.GetSampleCount()), 1)
				}
			case "paypipe_outbox_relay_rows_total":
				for _, l := range m.GetLabel() {
					if l.GetName() != "result" {
						continue
					}
					switch l.GetValue() {
					case "duplicate":
						s.Duplicates = int(m.GetCounter().GetValue())
					case "failed":
						s.FailedSends = int(m.GetCounter().GetValue())
					}
				}
			case "paypipe_outbox_relay_batch_fallbacks_total":
				s.Fallbacks = int(m.GetCounter().GetValue())
			}
		}
	}
	return s
}

func (t *paypipeTarget) analyze(ctx context.Context) error {
	_, err := t.e.wpool.Exec(ctx, "ANALYZE "+t.store.Schema()+".outbox")
	return err
}

func (t *paypipeTarget) cleanup() {
	_, _ = t.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := t.e.wpool.Exec(ctx, "DROP SCHEMA IF EXISTS "+t.store.Schema()+" CASCADE"); err != nil {
		t.e.logf("drop schema %s: %v", t.store.Schema(), err)
	}
	t.drop()
}

// ---- watermill-sql forwarder ----

type forwarderTarget struct {
	e        *env
	topic    string // forwarder topic: table watermill_<topic>
	dest     string // destination topic = NATS subject
	stream   string
	drop     func()
	schema   wsql.DefaultPostgreSQLSchema
	offsets  wsql.DefaultPostgreSQLOffsetsAdapter
	logger   watermill.LoggerAdapter
	fwd      *forwarder.Forwarder
	sub      *wsql.Subscriber
	pub      *wnats.Publisher
	runDone  chan error
	stopOnce sync.Once
}

func newForwarderTarget(ctx context.Context, e *env, topic, stream, subject string, drop func()) (*forwarderTarget, error) {
	t := &forwarderTarget{e: e, topic: topic, dest: subject, stream: stream, drop: drop,
		schema:  wsql.DefaultPostgreSQLSchema{},
		offsets: wsql.DefaultPostgreSQLOffsetsAdapter{},
		logger:  watermill.NewSlogLogger(e.log),
	}
	// Create the messages and offsets tables up front, as a migration would:
	// writers publish in their own transactions, where AutoInitializeSchema
	// is not allowed.
	sub, err := t.newSubscriber()
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	if err := sub.SubscribeInitialize(topic); err != nil {
		return nil, fmt.Errorf("watermill-sql schema: %w", err)
	}
	return t, nil
}

func (t *forwarderTarget) newSubscriber() (*wsql.Subscriber, error) {
	return wsql.NewSubscriber(wsql.BeginnerFromPgx(t.e.rpool), wsql.SubscriberConfig{
		ConsumerGroup:  "forwarder",
		SchemaAdapter:  t.schema,
		OffsetsAdapter: t.offsets,
		PollInterval:   t.e.cfg.ForwarderPoll,
	}, t.logger)
}

func (t *forwarderTarget) streamName() string { return t.stream }

// write is what an application does with the forwarder: a watermill-sql
// publisher on its pgx transaction, wrapped by the forwarder's publisher.
func (t *forwarderTarget) write(ctx context.Context, n int) error {
	tx, err := t.e.wpool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	sqlPub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: t.schema}, t.logger)
	if err != nil {
		return err
	}
	pub := forwarder.NewPublisher(sqlPub, forwarder.PublisherConfig{ForwarderTopic: t.topic})
	msg := message.NewMessage(watermill.NewUUID(), payload(n))
	msg.SetContext(ctx)
	if err := pub.Publish(t.dest, msg); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func (t *forwarderTarget) start(ctx context.Context) error {
	sub, err := t.newSubscriber()
	if err != nil {
		return err
	}
	pub, err := wnats.NewPublisher(wnats.PublisherConfig{
		URL:         t.e.srv.URL(),
		NatsOptions: []nats.Option{nats.Timeout(5 * time.Second), nats.MaxReconnects(-1)},
		JetStream:   wnats.JetStreamConfig{TrackMsgId: true},
	}, t.logger)
	if err != nil {
		_ = sub.Close()
		return err
	}
	fwd, err := forwarder.NewForwarder(sub, pub, t.logger, forwarder.Config{
		ForwarderTopic: t.topic,
		CloseTimeout:   30 * time.Second,
	})
	if err != nil {
		_ = sub.Close()
		_ = pub.Close()
		return err
	}
	t.sub, t.pub, t.fwd, t.runDone = sub, pub, fwd, make(chan error, 1)
	go func() { t.runDone <- fwd.Run(context.WithoutCancel(ctx)) }()
	select {
	case <-fwd.Running():
		return nil
	case err := <-t.runDone:
		return fmt.Errorf("forwarder stopped at start: %v", err)
	case <-time.After(30 * time.Second):
		return errors.New("forwarder not running after 30s")
	}
}

func (t *forwarderTarget) wake() {}

func (t *forwarderTarget) stop() (RelayStats, error) {
	var err error
	t.stopOnce.Do(func() {
		if t.fwd == nil {
			return
		}
		t.e.errs.stopping.Store(true)
		defer t.e.errs.stopping.Store(false)
		err = t.fwd.Close()
		select {
		case rerr := <-t.runDone:
			if err == nil && rerr != nil {
				err = rerr
			}
		case <-time.After(60 * time.Second):
			err = errors.New("forwarder did not stop within 60s")
		}
		_ = t.sub.Close()
		_ = t.pub.Close()
	})
	return RelayStats{}, err
}

func (t *forwarderTarget) analyze(ctx context.Context) error {
	_, err := t.e.wpool.Exec(ctx, "ANALYZE "+t.schema.MessagesTable(t.topic))
	return err
}

func (t *forwarderTarget) cleanup() {
	_, _ = t.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := t.e.wpool.Exec(ctx, "DROP TABLE IF EXISTS "+t.schema.MessagesTable(t.topic)+", "+
		t.offsets.MessagesOffsetsTable(t.topic)); err != nil {
		t.e.logf("drop forwarder tables %s: %v", t.topic, err)
	}
	t.drop()
}
