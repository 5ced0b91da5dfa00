package dlq

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
)

type fixture struct {
	pool  *pgxpool.Pool
	nc    *nats.Conn
	js    jetstream.JetStream
	admin *Admin
}

// newFixture gives a test a database with the ops schema, an embedded
// nats-server with paypipe's streams and consumers, and an Admin on them.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool, _ := testenv.Migrated(t, Schema())
	srv := testenv.NATS(t)
	nc := testenv.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	return &fixture{pool: pool, nc: nc, js: js, admin: NewAdmin(js, pool)}
}

// dead describes a message a consumer gave up on.
type dead struct {
	consumer, subject, stream string
	origSeq                   uint64
	id                        string // ce-id; "-" for none
	err, reason               string
	attempts                  int
	payload                   string
	headers                   nats.Header // extra original headers
}

// original is the message as the relay published it: the envelope headers
// and Nats-Msg-Id = ce-id.
func original(d dead) *nats.Msg {
	m := nats.NewMsg(d.subject)
	if d.id != "-" {
		m.Header.Set(outbox.HeaderID, d.id)
		m.Header.Set(jetstream.MsgIDHeader, d.id)
	}
	m.Header.Set(outbox.HeaderType, d.subject+".v1")
	m.Header.Set(outbox.HeaderSource, "paypipe/test")
	m.Header.Set(outbox.HeaderTime, "2026-11-26T09:00:00Z")
	m.Header.Set(outbox.HeaderSpecVersion, "1.0")
	m.Header.Set(outbox.HeaderContentType, "application/json")
	m.Header.Set(outbox.HeaderCorrelationID, "corr-"+d.id)
	m.Header.Set(outbox.HeaderAggregateID, "agg-1")
	m.Header.Set(outbox.HeaderAggregateVersion, "3")
	for k, v := range d.headers {
		m.Header[k] = v
	}
	m.Data = []byte(d.payload)
	return m
}

// deadLetter publishes d to the DLQ stream the way a consumer that gives up
// does (headers.go): every original header except the broker's, plus the
// Paypipe-Dlq-* headers. It returns the DLQ sequence.
func (f *fixture) deadLetter(t *testing.T, d dead) uint64 {
	t.Helper()
	if d.stream == "" {
		d.stream = contracts.StreamPayments
	}
	if d.id == "" {
		d.id = uuid.Must(uuid.NewV7()).String()
	}
	if d.payload == "" {
		d.payload = `{"order_id":"po_1","amount_minor":1234}`
	}
	if d.reason == "" {
		d.reason = ReasonMaxDeliveries
	}
	orig := original(d)
	m := nats.NewMsg(Subject(d.consumer, d.subject))
	for k, v := range orig.Header {
		if k != jetstream.MsgIDHeader {
			m.Header[k] = v
		}
	}
	m.Header.Set(HeaderStream, d.stream)
	m.Header.Set(HeaderSequence, fmt.Sprint(d.origSeq))
	m.Header.Set(HeaderSubject, d.subject)
	m.Header.Set(HeaderMsgID, orig.Header.Get(jetstream.MsgIDHeader))
	m.Header.Set(HeaderConsumer, d.consumer)
	m.Header.Set(HeaderAttempts, fmt.Sprint(d.attempts))
	m.Header.Set(HeaderFirstFailure, "2026-11-26T09:00:01Z")
	m.Header.Set(HeaderLastFailure, "2026-11-26T09:05:00Z")
	m.Header.Set(HeaderError, d.err)
	m.Header.Set(HeaderReason, d.reason)
	m.Header.Set(jetstream.MsgIDHeader, fmt.Sprintf("%s:%d:%s:%s", d.stream, d.origSeq, d.consumer, d.id))
	m.Data = orig.Data
	ack, err := f.js.PublishMsg(context.Background(), m, jetstream.WithExpectStream(contracts.StreamDLQ))
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func (f *fixture) list(t *testing.T, flt Filter, limit int) []uint64 {
	t.Helper()
	es, err := f.admin.List(context.Background(), flt, limit)
	if err != nil {
		t.Fatalf("List(%+v): %v", flt, err)
	}
	var seqs []uint64
	for _, e := range es {
		seqs = append(seqs, e.Seq)
	}
	return seqs
}

func (f *fixture) get(t *testing.T, seq uint64) Entry {
	t.Helper()
	e, err := f.admin.Get(context.Background(), seq)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (f *fixture) streamMsgs(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := f.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	a := f.deadLetter(t, dead{consumer: contracts.LedgerPaymentsConsumer, subject: contracts.SubjectOrderSucceeded,
		origSeq: 7, err: "ledger: account seller_payable:m1 is missing", attempts: 10})
	b := f.deadLetter(t, dead{consumer: contracts.WalletPaymentsConsumer, subject: contracts.SubjectOrderSucceeded,
		origSeq: 7, err: "Timeout talking to the database", attempts: 3, reason: ReasonPermanent})
	c := f.deadLetter(t, dead{consumer: contracts.ExecutorCheckoutsConsumer, subject: contracts.SubjectCheckoutCreated,
		origSeq: 2, err: "psp answered 500", attempts: 10})

	ea, eb := f.get(t, a), f.get(t, b)
	cases := []struct {
		name string
		flt  Filter
		want []uint64
	}{
		{"everything", Filter{}, []uint64{a, b, c}},
		{"consumer", Filter{Consumer: contracts.LedgerPaymentsConsumer}, []uint64{a}},
		{"subject", Filter{Subject: contracts.SubjectOrderSucceeded}, []uint64{a, b}},
		{"subject with *", Filter{Subject: "payments.*.created"}, []uint64{c}},
		{"subject with >", Filter{Subject: "payments.>"}, []uint64{a, b, c}},
		{"consumer and subject", Filter{Consumer: contracts.WalletPaymentsConsumer, Subject: "payments.order.*"}, []uint64{b}},
		{"consumer and other subject", Filter{Consumer: contracts.WalletPaymentsConsumer, Subject: contracts.SubjectCheckoutCreated}, nil},
		{"error contains, any case", Filter{ErrorContains: "TIMEOUT"}, []uint64{b}},
		{"since", Filter{Since: eb.StoredAt}, []uint64{b, c}},
		{"until", Filter{Until: ea.StoredAt}, []uint64{a}},
		{"since and until", Filter{Since: eb.StoredAt, Until: eb.StoredAt}, []uint64{b}},
		{"seqs, in the order given", Filter{Seqs: []uint64{c, a, c}}, []uint64{c, a}},
		{"seqs and a filter", Filter{Seqs: []uint64{a, b, c}, Subject: contracts.SubjectOrderSucceeded, ErrorContains: "missing"}, []uint64{a}},
		{"no match", Filter{Consumer: "nobody"}, nil},
	}
	for _, tc := range cases {
		if got := f.list(t, tc.flt, 0); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := f.list(t, Filter{}, 2); !reflect.DeepEqual(got, []uint64{a, b}) {
		t.Errorf("limit 2: got %v", got)
	}

	// What an entry says.
	if ea.Consumer != contracts.LedgerPaymentsConsumer || ea.OriginalSubject != contracts.SubjectOrderSucceeded ||
		ea.OriginalStream != contracts.StreamPayments || ea.OriginalSeq != 7 || ea.Attempts != 10 ||
		ea.Reason != ReasonMaxDeliveries || !strings.Contains(ea.Error, "seller_payable") || ea.MsgID == "" ||
		ea.OriginalNatsMsgID != ea.MsgID || ea.Subject != Subject(ea.Consumer, ea.OriginalSubject) ||
		!ea.FirstFailure.Equal(time.Date(2026, 11, 26, 9, 0, 1, 0, time.UTC)) || ea.StoredAt.IsZero() ||
		string(ea.Payload) != `{"order_id":"po_1","amount_minor":1234}` || ea.Replayed != nil {
		t.Errorf("entry a: %+v", ea)
	}
	// A get returns what was published: no headers the direct get adds.
	if ea.Headers.Get(jetstream.StreamHeader) != "" || ea.Headers.Get(jetstream.SequenceHeader) != "" ||
		ea.Headers.Get(outbox.HeaderAggregateID) != "agg-1" {
		t.Errorf("entry a headers: %v", ea.Headers)
	}
	listed, err := f.admin.List(ctx, Filter{Seqs: []uint64{a}}, 0)
	if err != nil || len(listed) != 1 || !reflect.DeepEqual(listed[0].Headers, ea.Headers) {
		t.Errorf("list by seq vs get: %v %+v", err, listed)
	}
	scanned, err := f.admin.List(ctx, Filter{Consumer: ea.Consumer}, 0)
	if err != nil || len(scanned) != 1 || !reflect.DeepEqual(scanned[0].Headers, ea.Headers) ||
		!scanned[0].StoredAt.Equal(ea.StoredAt) {
		t.Errorf("list by scan vs get: %v\n%+v\n%+v", err, scanned, ea)
	}

	// Bad input says what is wrong.
	if _, err := f.admin.Get(ctx, c+100); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), fmt.Sprint(c+100)) {
		t.Errorf("get unknown: %v", err)
	}
	if _, err := f.admin.List(ctx, Filter{Seqs: []uint64{a, c + 1}}, 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("list unknown seq: %v", err)
	}
	for _, bad := range []Filter{
		{Consumer: "a.b"}, {Consumer: "a*"}, {Subject: "payments.>.x"}, {Subject: "payments..x"},
		{Since: time.Now(), Until: time.Now().Add(-time.Hour)}, {Seqs: []uint64{0}},
	} {
		if _, err := f.admin.List(ctx, bad, 0); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("List(%+v): %v, want ErrInvalidFilter", bad, err)
		}
	}
	if _, err := f.admin.List(ctx, Filter{}, MaxLimit+1); !errors.Is(err, ErrInvalidFilter) {
		t.Errorf("limit above max: %v", err)
	}
}

// A listing crosses pull batches, stops at the default limit, and does not
// wait for messages that arrive after it started.
func TestListManyAndEmpty(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	if got := f.list(t, Filter{}, 0); len(got) != 0 {
		t.Fatalf("empty DLQ listed %v", got)
	}
	const n = DefaultLimit + 150
	futs := make([]jetstream.PubAckFuture, 0, n)
	for i := range n {
		m := nats.NewMsg(Subject(contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded))
		m.Header.Set(outbox.HeaderID, uuid.NewString())
		m.Header.Set(HeaderError, fmt.Sprintf("error %d", i))
		fut, err := f.js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, fut)
	}
	for _, fut := range futs {
		select {
		case <-fut.Ok():
		case err := <-fut.Err():
			t.Fatal(err)
		case <-time.After(30 * time.Second):
			t.Fatal("no PubAck")
		}
	}
	if got := f.list(t, Filter{}, 0); len(got) != DefaultLimit || got[0] != 1 || got[len(got)-1] != DefaultLimit {
		t.Fatalf("default limit: %d entries, %v…%v", len(got), got[0], got[len(got)-1])
	}
	all := f.list(t, Filter{}, 2*n)
	if len(all) != n {
		t.Fatalf("listed %d, want %d", len(all), n)
	}
	for i, s := range all {
		if s != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, s)
		}
	}
	// A filter the server cannot apply (error text) still scans everything.
	es, err := f.admin.List(ctx, Filter{ErrorContains: fmt.Sprintf("error %d", n-1)}, 0)
	if err != nil || len(es) != 1 || es[0].Seq != n {
		t.Fatalf("error filter over %d messages: %v %d", n, err, len(es))
	}
}

func TestReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	d := dead{consumer: contracts.LedgerPaymentsConsumer, subject: contracts.SubjectOrderSucceeded, stream: contracts.StreamPayments,
		id: uuid.Must(uuid.NewV7()).String(), err: "boom", attempts: 10,
		headers: nats.Header{"traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}}
	// The original is in its stream, inside the duplicate window: a replay
	// under its Nats-Msg-Id would be acknowledged as a duplicate and dropped.
	origAck, err := f.js.PublishMsg(ctx, original(d))
	if err != nil {
		t.Fatal(err)
	}
	d.origSeq = origAck.Sequence
	seq := f.deadLetter(t, d)
	before := f.streamMsgs(t, contracts.StreamPayments)

	stale := f.get(t, seq) // listed before the replay: no mark
	var progress [][2]int
	// Given twice, replayed once.
	rep, err := f.admin.Replay(ctx, []Entry{stale, stale}, ReplayOptions{Actor: "alice@ops-1",
		Progress: func(done, total int) { progress = append(progress, [2]int{done, total}) }})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Replayed != 1 || rep.Skipped != 0 || len(rep.Results) != 1 || !reflect.DeepEqual(progress, [][2]int{{1, 1}}) {
		t.Fatalf("report %+v, progress %v", rep, progress)
	}
	r := rep.Results[0]
	if r.Stream != contracts.StreamPayments || r.StreamSeq <= origAck.Sequence || r.Err != nil {
		t.Fatalf("result %+v", r)
	}
	if got := f.streamMsgs(t, contracts.StreamPayments); got != before+1 {
		t.Fatalf("PAYMENTS holds %d messages, want %d", got, before+1)
	}
	pay, err := f.js.Stream(ctx, contracts.StreamPayments)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pay.GetMsg(ctx, r.StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	newID, err := uuid.Parse(got.Header.Get(jetstream.MsgIDHeader))
	if err != nil || newID.Version() != 7 || newID.String() == d.id || newID.String() != r.NewNatsMsgID {
		t.Fatalf("replay Nats-Msg-Id %q (%v), want a new UUIDv7 = %s", got.Header.Get(jetstream.MsgIDHeader), err, r.NewNatsMsgID)
	}
	if got.Subject != contracts.SubjectOrderSucceeded || got.Header.Get(outbox.HeaderID) != d.id ||
		got.Header.Get(outbox.HeaderOriginalMsgID) != d.id || string(got.Data) != `{"order_id":"po_1","amount_minor":1234}` {
		t.Fatalf("replayed message: subject %s headers %v data %s", got.Subject, got.Header, got.Data)
	}
	orig := original(d)
	for k, v := range orig.Header {
		if k != jetstream.MsgIDHeader && !reflect.DeepEqual(got.Header[k], v) {
			t.Errorf("header %s = %v, want the original's %v", k, got.Header[k], v)
		}
	}
	for k := range got.Header {
		if strings.HasPrefix(k, "Paypipe-Dlq-") {
			t.Errorf("replay carries DLQ header %s", k)
		}
	}

	// Marked and audited.
	e := f.get(t, seq)
	if e.Replayed == nil || e.Replayed.Count != 1 || e.Replayed.LastActor != "alice@ops-1" {
		t.Fatalf("mark after replay: %+v", e.Replayed)
	}
	log, err := f.admin.AuditLog(ctx, seq, 0)
	if err != nil || len(log) != 1 {
		t.Fatalf("audit: %v %+v", err, log)
	}
	if l := log[0]; l.Action != ActionReplay || l.DLQSeq != seq || l.MsgID != d.id || l.NewNatsMsgID != r.NewNatsMsgID ||
		l.ReplayStream != contracts.StreamPayments || l.ReplayStreamSeq != r.StreamSeq || l.Actor != "alice@ops-1" ||
		l.Consumer != d.consumer || l.OriginalSubject != d.subject || l.OriginalStream != d.stream || l.DLQStream != contracts.StreamDLQ {
		t.Fatalf("audit row %+v", l)
	}
	if _, err := f.pool.Exec(ctx, `UPDATE ops.dlq_audit SET actor = 'mallory'`); err == nil {
		t.Fatal("the audit accepted an UPDATE")
	}
	if _, err := f.pool.Exec(ctx, `DELETE FROM ops.dlq_audit`); err == nil {
		t.Fatal("the audit accepted a DELETE")
	}

	// A second replay is refused per entry (reported, not fatal), even when
	// the caller's entry predates the first replay.
	rep, err = f.admin.Replay(ctx, []Entry{stale}, ReplayOptions{Actor: "bob@ops-2"})
	if err != nil || rep.Replayed != 0 || rep.Skipped != 1 {
		t.Fatalf("second replay: %v %+v", err, rep)
	}
	for _, r := range rep.Results {
		if !errors.Is(r.Err, ErrAlreadyReplayed) || r.Previously == nil || r.Previously.LastActor != "alice@ops-1" {
			t.Fatalf("second replay result %+v", r)
		}
	}
	if got := f.streamMsgs(t, contracts.StreamPayments); got != before+1 {
		t.Fatalf("refused replay published: %d messages", got)
	}
	// Force replays it again, under yet another Nats-Msg-Id.
	rep, err = f.admin.Replay(ctx, []Entry{e}, ReplayOptions{Actor: "bob@ops-2", Force: true})
	if err != nil || rep.Replayed != 1 || rep.Results[0].NewNatsMsgID == r.NewNatsMsgID {
		t.Fatalf("forced replay: %v %+v", err, rep)
	}
	if e := f.get(t, seq); e.Replayed == nil || e.Replayed.Count != 2 || e.Replayed.LastActor != "bob@ops-2" {
		t.Fatalf("mark after forced replay: %+v", e.Replayed)
	}
	if got := f.streamMsgs(t, contracts.StreamPayments); got != before+2 {
		t.Fatalf("after forced replay: %d messages, want %d", got, before+2)
	}

	// A dead message without ce-id is not replayed: under a new Nats-Msg-Id
	// it would be a new message to every consumer.
	noID := f.deadLetter(t, dead{consumer: d.consumer, subject: d.subject, id: "-", err: "undecodable"})
	rep, err = f.admin.Replay(ctx, []Entry{f.get(t, noID)}, ReplayOptions{Actor: "alice@ops-1", Force: true})
	if err != nil || rep.Skipped != 1 || !errors.Is(rep.Results[0].Err, ErrNoMessageID) {
		t.Fatalf("replay without ce-id: %v %+v", err, rep)
	}
	if _, err := f.admin.Replay(ctx, []Entry{e}, ReplayOptions{Force: true}); err == nil {
		t.Fatal("replay without an actor accepted")
	}
}

func TestReplayDryRunChangesNothing(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	d := dead{consumer: contracts.WalletPaymentsConsumer, subject: contracts.SubjectOrderSucceeded, err: "boom"}
	fresh := f.deadLetter(t, d)
	done := f.deadLetter(t, d)
	if rep, err := f.admin.Replay(ctx, []Entry{f.get(t, done)}, ReplayOptions{Actor: "alice"}); err != nil || rep.Replayed != 1 {
		t.Fatalf("%v %+v", err, rep)
	}
	before := f.streamMsgs(t, contracts.StreamPayments)
	es, err := f.admin.List(ctx, Filter{Consumer: d.consumer}, 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("%v %d", err, len(es))
	}
	var progress int
	rep, err := f.admin.Replay(ctx, es, ReplayOptions{DryRun: true, Progress: func(int, int) { progress++ }})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || rep.Replayed != 1 || rep.Skipped != 1 || rep.Results[0].Seq != fresh || rep.Results[0].NewNatsMsgID != "" ||
		!errors.Is(rep.Results[1].Err, ErrAlreadyReplayed) || progress != 2 {
		t.Fatalf("dry run report %+v", rep)
	}
	if got := f.streamMsgs(t, contracts.StreamPayments); got != before {
		t.Fatalf("dry run published: %d messages, want %d", got, before)
	}
	if log, err := f.admin.AuditLog(ctx, 0, 0); err != nil || len(log) != 1 || log[0].DLQSeq != done {
		t.Fatalf("dry run audited: %v %+v", err, log)
	}
	if e := f.get(t, fresh); e.Replayed != nil {
		t.Fatalf("dry run marked: %+v", e.Replayed)
	}
}

// n replays at rate r/s take at least (n-1)/r: the first goes at once.
func TestReplayRate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const n, perSec = 6, 20.0
	var es []Entry
	for range n {
		es = append(es, f.get(t, f.deadLetter(t, dead{consumer: contracts.LedgerPaymentsConsumer, subject: contracts.SubjectOrderSucceeded})))
	}
	start := time.Now()
	rep, err := f.admin.Replay(context.Background(), es, ReplayOptions{Actor: "alice", Rate: perSec})
	elapsed := time.Since(start)
	if err != nil || rep.Replayed != n {
		t.Fatalf("%v %+v", err, rep)
	}
	if floor := time.Duration(float64(n-1) / perSec * float64(time.Second)); elapsed < floor-10*time.Millisecond {
		t.Fatalf("%d replays at %v/s took %v, want at least %v", n, perSec, elapsed, floor)
	}
	if _, err := f.admin.Replay(context.Background(), es, ReplayOptions{Actor: "alice", Rate: -1}); err == nil {
		t.Fatal("negative rate accepted")
	}
}

// One replay or purge at a time: the second finds the lock taken and says so.
func TestReplayAndPurgeAreSerialised(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	e := f.get(t, f.deadLetter(t, dead{consumer: contracts.LedgerPaymentsConsumer, subject: contracts.SubjectOrderSucceeded}))
	unlock, err := f.admin.lock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := NewAdmin(f.js, f.pool)
	if _, err := other.Replay(ctx, []Entry{e}, ReplayOptions{Actor: "bob"}); !errors.Is(err, ErrBusy) {
		t.Fatalf("replay under the lock: %v", err)
	}
	if _, err := other.Purge(ctx, []Entry{e}, "bob"); !errors.Is(err, ErrBusy) {
		t.Fatalf("purge under the lock: %v", err)
	}
	// A dry run changes nothing, so it needs no lock.
	if rep, err := other.Replay(ctx, []Entry{e}, ReplayOptions{DryRun: true}); err != nil || rep.Replayed != 1 {
		t.Fatalf("dry run under the lock: %v %+v", err, rep)
	}
	unlock()
	if rep, err := other.Replay(ctx, []Entry{e}, ReplayOptions{Actor: "bob"}); err != nil || rep.Replayed != 1 {
		t.Fatalf("replay after unlock: %v %+v", err, rep)
	}
}

func TestPurge(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	d := dead{consumer: contracts.LedgerPaymentsConsumer, subject: contracts.SubjectOrderSucceeded, err: "boom"}
	a, b := f.deadLetter(t, d), f.deadLetter(t, d)
	ea := f.get(t, a)
	rep, err := f.admin.Purge(ctx, []Entry{ea}, "carol@ops-3")
	if err != nil || rep.Purged != 1 || rep.Missing != 0 {
		t.Fatalf("%v %+v", err, rep)
	}
	if _, err := f.admin.Get(ctx, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("purged message still there: %v", err)
	}
	if got := f.list(t, Filter{}, 0); !reflect.DeepEqual(got, []uint64{b}) {
		t.Fatalf("after purge: %v", got)
	}
	log, err := f.admin.AuditLog(ctx, a, 0)
	if err != nil || len(log) != 1 || log[0].Action != ActionPurge || log[0].Actor != "carol@ops-3" || log[0].MsgID != ea.MsgID ||
		log[0].NewNatsMsgID != "" {
		t.Fatalf("audit: %v %+v", err, log)
	}
	// Purging it again reports it gone, changes nothing, audits nothing.
	rep, err = f.admin.Purge(ctx, []Entry{ea}, "carol@ops-3")
	if err != nil || rep.Purged != 0 || rep.Missing != 1 || !errors.Is(rep.Results[0].Err, ErrNotFound) {
		t.Fatalf("second purge: %v %+v", err, rep)
	}
	if log, _ := f.admin.AuditLog(ctx, 0, 0); len(log) != 1 {
		t.Fatalf("audit after second purge: %+v", log)
	}
	if _, err := f.admin.Purge(ctx, []Entry{f.get(t, b)}, " "); err == nil {
		t.Fatal("purge without an actor accepted")
	}
}

func TestSubjectMatching(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		pattern, subject string
		want             bool
	}{
		{"a.b.c", "a.b.c", true},
		{"a.b.c", "a.b", false},
		{"a.b", "a.b.c", false},
		{"a.*.c", "a.b.c", true},
		{"a.*", "a.b.c", false},
		{"a.>", "a.b.c", true},
		{"a.>", "a", false},
		{">", "a", true},
		{"*.b.>", "x.b.c.d", true},
	} {
		if got := subjectMatches(c.pattern, c.subject); got != c.want {
			t.Errorf("subjectMatches(%q, %q) = %v", c.pattern, c.subject, got)
		}
	}
}

// consumerCount reads paypipe_consumer_messages_total{consumer, result}.
func consumerCount(t *testing.T, reg *prometheus.Registry, consumer, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "paypipe_consumer_messages_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["consumer"] == consumer && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// End to end through the real consumer runner: a message the consumer
// applied and then finds in the DLQ is skipped by its inbox on replay; a
// message whose handler failed until the consumer gave up is applied by the
// replay, exactly once, however often it is replayed.
func TestReplayThroughRunner(t *testing.T) {
	t.Parallel()
	const (
		stream   = "T"
		subject  = "t.thing.happened"
		consumer = "t-effects"
	)
	store := outbox.MustStore("svc")
	pool, _ := testenv.Migrated(t, migrate.Schema{Store: store}, Schema())
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `CREATE TABLE svc.effects (msg_id uuid NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	srv := testenv.NATS(t)
	nc := testenv.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: stream, Subjects: []string{"t.>"},
		Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	// Two deliveries, then the server gives up on a message.
	if _, err := js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{Durable: consumer,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 2}); err != nil {
		t.Fatal(err)
	}
	f := &fixture{pool: pool, nc: nc, js: js, admin: NewAdmin(js, pool)}

	var broken atomic.Bool
	broken.Store(true)
	var failures atomic.Int64
	handler := func(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
		if string(d.Payload) == `{"fail":true}` && broken.Load() {
			failures.Add(1)
			return errors.New("handler bug")
		}
		_, err := tx.Exec(ctx, `INSERT INTO svc.effects (msg_id) VALUES ($1)`, d.MsgID)
		return err
	}
	effects := func(id string) int {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM svc.effects WHERE msg_id = $1`, id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	applied := dead{consumer: consumer, subject: subject, stream: stream, id: uuid.Must(uuid.NewV7()).String(), payload: `{"ok":true}`, err: "put here by hand"}
	failed := dead{consumer: consumer, subject: subject, stream: stream, id: uuid.Must(uuid.NewV7()).String(), payload: `{"fail":true}`, err: "handler bug"}
	for _, d := range []*dead{&applied, &failed} {
		ack, err := js.PublishMsg(ctx, original(*d))
		if err != nil {
			t.Fatal(err)
		}
		d.origSeq = ack.Sequence
	}

	reg := prometheus.NewRegistry()
	runner, err := outbox.NewRunner(outbox.RunnerConfig{Store: store, Pool: pool, Conn: nc, Metrics: outbox.NewMetrics(reg),
		NakDelay: func(uint64) time.Duration { return 10 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	if err := runner.Add(outbox.ConsumerSpec{Name: consumer, Stream: stream, Handler: handler}); err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runner.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("runner did not stop")
		}
	})

	testenv.Eventually(t, 20*time.Second, "the good message applied and the bad one failed twice", func() (bool, error) {
		return effects(applied.id) == 1 && failures.Load() >= 2, nil
	})
	if n := effects(failed.id); n != 0 {
		t.Fatalf("failing message applied %d times", n)
	}

	// Both end up in the DLQ; the bug is fixed; an operator replays both.
	seqs := []uint64{f.deadLetter(t, applied), f.deadLetter(t, failed)}
	broken.Store(false)
	es, err := f.admin.List(ctx, Filter{Consumer: consumer, Seqs: seqs}, 0)
	if err != nil || len(es) != 2 {
		t.Fatalf("%v %d", err, len(es))
	}
	rep, err := f.admin.Replay(ctx, es, ReplayOptions{Actor: "alice"})
	if err != nil || rep.Replayed != 2 {
		t.Fatalf("%v %+v", err, rep)
	}
	testenv.Eventually(t, 20*time.Second, "both replays handled", func() (bool, error) {
		return consumerCount(t, reg, consumer, "duplicate") == 1 && effects(failed.id) == 1, nil
	})
	if a, b := effects(applied.id), effects(failed.id); a != 1 || b != 1 {
		t.Fatalf("effects after replay: applied message %d, failed message %d; want 1 and 1", a, b)
	}

	// Replaying the now-applied message again (forced) changes nothing.
	rep, err = f.admin.Replay(ctx, es[1:], ReplayOptions{Actor: "bob", Force: true})
	if err != nil || rep.Replayed != 1 {
		t.Fatalf("%v %+v", err, rep)
	}
	testenv.Eventually(t, 20*time.Second, "forced replay handled", func() (bool, error) {
		return consumerCount(t, reg, consumer, "duplicate") == 2, nil
	})
	if n := effects(failed.id); n != 1 || consumerCount(t, reg, consumer, "applied") != 2 {
		t.Fatalf("after a forced replay: %d effects, %v applied; want 1 and 2", n, consumerCount(t, reg, consumer, "applied"))
	}
}
