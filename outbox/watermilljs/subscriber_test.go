package watermilljs

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestCloseKeepsDurableConsumer(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "keep"
	provision(t, js, topic, durable, 30*time.Second)
	pub := newPublisher(t, js)
	bind := BindConsumer(js, sanitize(topic), func(string) string { return durable })

	publish(t, pub, topic, "1", "2", "3")
	sub := newSubscriber(t, SubscriberConfig{ConsumerFor: bind})
	ch := subscribe(t, sub, topic)
	for range 3 {
		receive(t, ch).Ack()
	}
	// Close returns only after the acks were confirmed by the server.
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-ch; ok {
		t.Fatal("channel still open after Close")
	}

	info := consumerInfo(t, js, topic, durable)
	if info.AckFloor.Stream != 3 || info.NumAckPending != 0 || info.NumPending != 0 {
		t.Fatalf("after Close: ack floor %d, ack pending %d, pending %d; want 3, 0, 0",
			info.AckFloor.Stream, info.NumAckPending, info.NumPending)
	}

	// A new subscriber resumes after the acked messages.
	later := publish(t, pub, topic, "4", "5")
	sub2 := newSubscriber(t, SubscriberConfig{ConsumerFor: bind})
	ch2 := subscribe(t, sub2, topic)
	var got []string
	for range 2 {
		m := receive(t, ch2)
		if seq, _ := strconv.Atoi(m.Metadata.Get(MetaStreamSeq)); seq <= 3 || NumDelivered(m) != 1 {
			t.Errorf("got stream seq %d delivered %d times; want a first delivery of seq > 3", seq, NumDelivered(m))
		}
		got = append(got, m.UUID)
		m.Ack()
	}
	if err := sub2.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{later[0].UUID, later[1].UUID}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("resumed with %v, want %v", got, want)
	}
	if info := consumerInfo(t, js, topic, durable); info.NumAckPending != 0 || info.NumPending != 0 || info.NumRedelivered != 0 {
		t.Fatalf("after resume: ack pending %d, pending %d, redelivered %d; want 0, 0, 0",
			info.NumAckPending, info.NumPending, info.NumRedelivered)
	}
}

func TestCloseLeavesUnackedMessages(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "unacked"
	provision(t, js, topic, durable, time.Second)
	bind := BindConsumer(js, sanitize(topic), func(string) string { return durable })
	sent := publish(t, newPublisher(t, js), topic, "x")

	sub := newSubscriber(t, SubscriberConfig{ConsumerFor: bind, Workers: 1})
	m := receive(t, subscribe(t, sub, topic))
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.Context().Done():
	default:
		t.Fatal("message context not cancelled by Close")
	}
	// Neither acked nor nacked: still pending on the server.
	if info := consumerInfo(t, js, topic, durable); info.NumAckPending != 1 || info.AckFloor.Stream != 0 {
		t.Fatalf("after Close: ack pending %d, ack floor %d; want 1, 0", info.NumAckPending, info.AckFloor.Stream)
	}
	m.Ack() // too late: nobody listens any more

	sub2 := newSubscriber(t, SubscriberConfig{ConsumerFor: bind})
	again := receive(t, subscribe(t, sub2, topic))
	if again.UUID != sent[0].UUID || NumDelivered(again) != 2 {
		t.Fatalf("got %s delivered %d times, want %s redelivered (2)", again.UUID, NumDelivered(again), sent[0].UUID)
	}
	again.Ack()
}

func TestNackRedeliversWithDelay(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	const delay = 400 * time.Millisecond
	calls := make(chan uint64, 10)
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: ProvisionConsumer(js, streamConfig, func(string) jetstream.ConsumerConfig {
			// AckWait far above the delay: a redelivery can only come from the nak.
			return consumerConfig("nack", time.Minute)
		}),
		NakDelay: func(n uint64) time.Duration {
			calls <- n
			return delay
		},
	})
	ch := subscribe(t, sub, topic)
	sent := publish(t, newPublisher(t, js), topic, "x")

	first := receive(t, ch)
	if NumDelivered(first) != 1 {
		t.Fatalf("first delivery has NumDelivered %d", NumDelivered(first))
	}
	nackedAt := time.Now()
	first.Nack()
	select {
	case n := <-calls:
		if n != 1 {
			t.Fatalf("NakDelay called with %d, want 1", n)
		}
	case <-time.After(waitFor):
		t.Fatal("NakDelay not called")
	}

	second := receive(t, ch)
	if elapsed := time.Since(nackedAt); elapsed < delay {
		t.Fatalf("redelivered after %s, before the %s nak delay", elapsed, delay)
	}
	if second.UUID != sent[0].UUID || NumDelivered(second) != 2 {
		t.Fatalf("got %s delivered %d times, want %s delivered twice", second.UUID, NumDelivered(second), sent[0].UUID)
	}
	second.Ack()
}

func TestDefaultNakDelay(t *testing.T) {
	for n, want := range map[uint64]time.Duration{
		0: time.Second, 1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second,
		6: 32 * time.Second, 7: time.Minute, 64: time.Minute, 1 << 63: time.Minute,
	} {
		if got := DefaultNakDelay(n); got != want {
			t.Errorf("DefaultNakDelay(%d) = %s, want %s", n, got, want)
		}
	}
}

func TestAckTimeoutMovesOn(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "acktimeout"
	provision(t, js, topic, durable, time.Second)
	sent := publish(t, newPublisher(t, js), topic, "1", "2")
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: BindConsumer(js, sanitize(topic), func(string) string { return durable }),
		Workers:     1,
		AckTimeout:  200 * time.Millisecond,
	})
	ch := subscribe(t, sub, topic)

	// With one worker, the second message only arrives if the worker gave up
	// on the first one.
	abandoned := receive(t, ch)
	select {
	case <-abandoned.Context().Done():
	case <-time.After(waitFor):
		t.Fatal("context of the abandoned message not cancelled")
	}
	next := receive(t, ch)
	next.Ack()
	if next.UUID == abandoned.UUID {
		t.Fatal("abandoned message redelivered before the next one")
	}
	// The abandoned message was neither acked nor nacked: it comes back after AckWait.
	again := receive(t, ch)
	if again.UUID != abandoned.UUID || NumDelivered(again) != 2 {
		t.Fatalf("got %s delivered %d times, want %s redelivered", again.UUID, NumDelivered(again), abandoned.UUID)
	}
	again.Ack()
	if !slices.Contains([]string{sent[0].UUID, sent[1].UUID}, abandoned.UUID) {
		t.Fatalf("unexpected message %s", abandoned.UUID)
	}
}

func TestDuplicatePublishStoredOnce(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	provision(t, js, topic, "dup", time.Minute)
	pub := newPublisher(t, js)

	m := message.NewMessage("4c0d0a52-5c3b-4bfb-8e57-1f4d7f1a3b10", []byte("pay"))
	for i := range 2 {
		if err := pub.Publish(topic, m); err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	stream, err := js.Stream(context.Background(), sanitize(topic))
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

func TestBindConsumerMissing(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	provision(t, js, topic, "exists", time.Minute)

	bind := BindConsumer(js, sanitize(topic), func(string) string { return "missing" })
	if _, err := bind(context.Background(), topic); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("BindConsumer: got %v, want ErrConsumerNotFound", err)
	}
	sub := newSubscriber(t, SubscriberConfig{ConsumerFor: bind})
	if _, err := sub.Subscribe(context.Background(), topic); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("Subscribe: got %v, want ErrConsumerNotFound", err)
	}
	if err := sub.SubscribeInitialize(topic); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("SubscribeInitialize: got %v, want ErrConsumerNotFound", err)
	}

	ok := BindConsumer(js, sanitize(topic), func(string) string { return "exists" })
	if _, err := ok(context.Background(), topic); err != nil {
		t.Fatalf("BindConsumer on a declared consumer: %v", err)
	}
}

func TestRejectsNonExplicitAckConsumer(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: ProvisionConsumer(js, streamConfig, func(string) jetstream.ConsumerConfig {
			cfg := consumerConfig("ackall", time.Minute)
			cfg.AckPolicy = jetstream.AckAllPolicy
			return cfg
		}),
	})
	if _, err := sub.Subscribe(context.Background(), topic); err == nil {
		t.Fatal("Subscribe accepted an AckAll consumer")
	}
}

func TestBrokerRestart(t *testing.T) {
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "restart"
	provision(t, js, topic, durable, 30*time.Second)
	pub := newPublisher(t, js)
	acks := newProbeLogger()
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: BindConsumer(js, sanitize(topic), func(string) string { return durable }),
		Logger:      acks,
	})
	ch := subscribe(t, sub, topic)

	before := publish(t, pub, topic, "before")
	if m := receive(t, ch); m.UUID != before[0].UUID {
		t.Fatalf("got %s, want %s", m.UUID, before[0].UUID)
	} else {
		m.Ack()
	}
	// The ack must reach the server before it goes down, or "before" comes back.
	acks.awaitAck(t, before[0].UUID)

	// A handler is still working on this one while the broker bounces; it
	// acks once the broker is back.
	inflight := publish(t, pub, topic, "in flight")
	held := receive(t, ch)
	if held.UUID != inflight[0].UUID {
		t.Fatalf("got %s, want %s", held.UUID, inflight[0].UUID)
	}

	reconnected := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	})
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(waitFor):
		t.Fatal("client did not reconnect")
	}

	held.Ack()
	acks.awaitAck(t, held.UUID)

	// JetStream may still be recovering its streams right after the restart:
	// retry until the PubAck arrives. The id makes the retries idempotent.
	after := message.NewMessage("after-restart", []byte("after"))
	deadline := time.Now().Add(waitFor)
	for {
		err := pub.Publish(topic, after)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("publish after restart: %v", err)
		}
	}

	m := receive(t, ch)
	if m.UUID != after.UUID {
		t.Fatalf("after restart got %s (delivered %d times), want %s", m.UUID, NumDelivered(m), after.UUID)
	}
	m.Ack()
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, js, topic, durable); info.AckFloor.Stream != 3 || info.NumAckPending != 0 || info.NumRedelivered != 0 {
		t.Fatalf("ack floor %d, ack pending %d, redelivered %d; want 3, 0, 0", info.AckFloor.Stream, info.NumAckPending, info.NumRedelivered)
	}
}

func TestRebindsAfterConsumerRedeclared(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "redeclared"
	provision(t, js, topic, durable, 30*time.Second)
	pub := newPublisher(t, js)
	acks := newProbeLogger()
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: BindConsumer(js, sanitize(topic), func(string) string { return durable }),
		Logger:      acks,
	})
	ch := subscribe(t, sub, topic)
	publish(t, pub, topic, "1")
	first := receive(t, ch)
	first.Ack()
	// Acks are processed asynchronously by the server: deleting the consumer
	// first would drop the ack (and stall this worker for the ack timeout).
	acks.awaitAck(t, first.UUID)

	// An operator deletes the consumer and the deployment declares it again,
	// starting after what was already processed.
	ctx := context.Background()
	if err := js.DeleteConsumer(ctx, sanitize(topic), durable); err != nil {
		t.Fatal(err)
	}
	cfg := consumerConfig(durable, 30*time.Second)
	cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	if _, err := js.CreateConsumer(ctx, sanitize(topic), cfg); err != nil {
		t.Fatal(err)
	}
	sent := publish(t, pub, topic, "2")

	m := receive(t, ch)
	if m.UUID != sent[0].UUID {
		t.Fatalf("got %s, want %s", m.UUID, sent[0].UUID)
	}
	m.Ack()
}

func TestSubscribeCtxCancelClosesChannel(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	provision(t, js, topic, "ctx", time.Minute)
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: BindConsumer(js, sanitize(topic), func(string) string { return "ctx" }),
	})
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := sub.Subscribe(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	select {
	case _, ok := <-ch:
		if ok {
			t.Fatal("unexpected message")
		}
	case <-time.After(waitFor):
		t.Fatal("channel not closed after ctx cancel")
	}
	// The subscriber itself is still usable.
	if err := sub.SubscribeInitialize(topic); err != nil {
		t.Fatal(err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe(context.Background(), topic); !errors.Is(err, ErrSubscriberClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestNewSubscriberConfig(t *testing.T) {
	noop := func(context.Context, string) (jetstream.Consumer, error) { return nil, errors.New("unused") }
	for name, cfg := range map[string]SubscriberConfig{
		"no ConsumerFor":       {},
		"too many workers":     {ConsumerFor: noop, Workers: maxWorkers + 1},
		"negative workers":     {ConsumerFor: noop, Workers: -1},
		"negative pull":        {ConsumerFor: noop, PullMaxMessages: -1},
		"negative ack timeout": {ConsumerFor: noop, AckTimeout: -time.Second},
	} {
		if _, err := NewSubscriber(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	s, err := NewSubscriber(SubscriberConfig{ConsumerFor: noop})
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Workers != 8 || s.cfg.PullMaxMessages != 16 || s.cfg.PullExpiry != 5*time.Second {
		t.Fatalf("defaults: %+v", s.cfg)
	}
}

// A broker that comes back without its store has lost the consumer without
// telling anyone; nats.go keeps pulling into the void. The subscriber must
// notice (missing heartbeats, then the consumer lookup fails) and bind again
// once the deployment re-declared the consumer.
func TestRebindsAfterBrokerLostConsumer(t *testing.T) {
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "lost"
	declare := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		// Memory storage: the restarted broker has forgotten stream and consumer.
		_, err := ProvisionConsumer(js,
			func(topic string) jetstream.StreamConfig {
				cfg := streamConfig(topic)
				cfg.Storage = jetstream.MemoryStorage
				return cfg
			},
			func(string) jetstream.ConsumerConfig { return consumerConfig(durable, 30*time.Second) },
		)(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
	}
	declare()
	probe := newProbeLogger()
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: BindConsumer(js, sanitize(topic), func(string) string { return durable }),
		PullExpiry:  time.Second, // heartbeats every 500ms
		Logger:      probe,
	})
	ch := subscribe(t, sub, topic)

	reconnected := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) {
		select {
		case reconnected <- struct{}{}:
		default:
		}
	})
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reconnected:
	case <-time.After(waitFor):
		t.Fatal("client did not reconnect")
	}

	err := probe.awaitStopped(t)
	if !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("iterator stopped with %v, want consumer or stream not found", err)
	}
	declare()
	sent := publish(t, newPublisher(t, js), topic, "after")
	m := receive(t, ch)
	if m.UUID != sent[0].UUID {
		t.Fatalf("got %s, want %s", m.UUID, sent[0].UUID)
	}
	m.Ack()
}

// A reader that asked for a Term (Terminate) gets one instead of an ack:
// the server stops delivering the message and says so, with the reason, in
// a MSG_TERMINATED advisory. A publisher cannot ask for that: a header of
// the verdict's name is dropped on the way in, and its message is acked.
func TestTerminateInsteadOfAck(t *testing.T) {
	srv := startServer(t)
	nc, js := connect(t, srv.URL())
	topic, durable := newTopic(t), "term"
	provision(t, js, topic, durable, time.Second)
	advisories := make(chan *nats.Msg, 4)
	advSub, err := nc.ChanSubscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED."+sanitize(topic)+"."+durable, advisories)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = advSub.Unsubscribe() }()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	probe := newProbeLogger()
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: BindConsumer(js, sanitize(topic), func(string) string { return durable }),
		Logger:      probe,
	})
	ch := subscribe(t, sub, topic)
	pub := newPublisher(t, js)
	publish(t, pub, topic, "doomed")
	spoof := message.NewMessage("spoof", []byte("spoof"))
	spoof.Metadata.Set(MetaTerminate, "evil")
	spoof.Metadata.Set(MetaNakDelay, "1h")
	spoof.Metadata.Set("x-custom", "kept")
	if err := pub.Publish(topic, spoof); err != nil {
		t.Fatal(err)
	}

	doomed := receive(t, ch)
	Terminate(doomed, "dead-lettered")
	doomed.Ack()
	select {
	case m := <-advisories:
		var adv struct {
			StreamSeq uint64 `json:"stream_seq"`
			Reason    string `json:"reason"`
		}
		if err := json.Unmarshal(m.Data, &adv); err != nil {
			t.Fatal(err)
		}
		if adv.StreamSeq != 1 || adv.Reason != "dead-lettered" {
			t.Fatalf("advisory %s", m.Data)
		}
	case <-time.After(waitFor):
		t.Fatal("no MSG_TERMINATED advisory")
	}

	got := receive(t, ch)
	if got.UUID != spoof.UUID {
		t.Fatalf("got %s, want the spoofed message", got.UUID)
	}
	if _, ok := got.Metadata[MetaTerminate]; ok {
		t.Fatal("a publisher's header set the reader's verdict")
	}
	if _, ok := got.Metadata[MetaNakDelay]; ok {
		t.Fatal("a publisher's header set the reader's nak delay")
	}
	h := OriginalHeaders(got)
	if h.Get("x-custom") != "kept" || h.Get(MetaStream) != "" || h.Get(MetaNumDelivered) != "" {
		t.Fatalf("original headers %v", h)
	}
	got.Ack()
	probe.awaitAck(t, got.UUID)
	if info := consumerInfo(t, js, topic, durable); info.NumAckPending != 0 || info.NumRedelivered != 0 || info.AckFloor.Stream != 2 {
		t.Fatalf("ack pending %d, redelivered %d, ack floor %d; want 0, 0, 2", info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream)
	}
	select {
	case m := <-advisories:
		t.Fatalf("second advisory: %s", m.Data)
	default:
	}
}

// SetNakDelay overrides NakDelay for one nack: delays that depend on the
// error (a Retry-After) are the reader's to choose.
func TestSetNakDelayOverridesNakDelay(t *testing.T) {
	srv := startServer(t)
	_, js := connect(t, srv.URL())
	topic := newTopic(t)
	const delay = 500 * time.Millisecond
	sub := newSubscriber(t, SubscriberConfig{
		ConsumerFor: ProvisionConsumer(js, streamConfig, func(string) jetstream.ConsumerConfig {
			return consumerConfig("override", time.Minute)
		}),
		NakDelay: func(uint64) time.Duration { return time.Millisecond },
	})
	ch := subscribe(t, sub, topic)
	publish(t, newPublisher(t, js), topic, "x")
	first := receive(t, ch)
	SetNakDelay(first, delay)
	nackedAt := time.Now()
	first.Nack()
	second := receive(t, ch)
	if elapsed := time.Since(nackedAt); elapsed < delay {
		t.Fatalf("redelivered after %s, before the %s the reader asked for", elapsed, delay)
	}
	if NumDelivered(second) != 2 {
		t.Fatalf("NumDelivered %d", NumDelivered(second))
	}
	second.Ack()
}
