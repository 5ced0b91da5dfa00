package main

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
)

// Step 4: one checkout's event trail, read back from the streams.

// maxTrailScan bounds the messages read per stream. The streams are the
// demo's own (a fresh store per run), so they hold this run's events plus
// any an earlier, interrupted run left pending in the outboxes.
const maxTrailScan = 100_000

// trailMsg is one stream message of the trail and who applied it.
type trailMsg struct {
	stream, subject, ceType string
	about                   string // a, a/1…
	seq                     uint64
	id                      uuid.UUID // ce-id: the inbox key
	stored                  time.Time
	expected                []string // consumers subscribed to it
	applied                 []inboxHit
}

type inboxHit struct {
	consumer string
	at       time.Time
}

func (d *demoRun) printTrail(ctx context.Context) error {
	c := d.trail
	checkoutID := []byte(c.co.ID.String())
	orderIDs := make([][]byte, len(c.co.Orders))
	for i, o := range c.co.Orders {
		orderIDs[i] = []byte(o.ID.String())
	}
	// about labels a message by what it concerns: one order (a/1), or the
	// checkout (a); "" when its payload mentions neither.
	about := func(payload []byte) string {
		found := -1
		for i, id := range orderIDs {
			if bytes.Contains(payload, id) {
				if found >= 0 {
					return c.label // several orders: the checkout as a whole
				}
				found = i
			}
		}
		if found >= 0 {
			return fmt.Sprintf("%s/%d", c.label, found+1)
		}
		if bytes.Contains(payload, checkoutID) {
			return c.label
		}
		return ""
	}
	var msgs []*trailMsg
	for _, stream := range []string{contracts.StreamPayments, contracts.StreamLedger, contracts.StreamWallet} {
		got, err := d.readStream(ctx, stream, about)
		if err != nil {
			return err
		}
		msgs = append(msgs, got...)
	}
	// A checkout reads completed only after its last consumers committed
	// (inbox row and effect in one transaction), so this normally holds at
	// once; wait for it, bounded, rather than assume it.
	missing := 0
	if err := waitFor(ctx, 10*time.Second, "every consumer to record the trail's messages", func(ctx context.Context) (bool, error) {
		var err error
		missing, err = d.loadInboxHits(ctx, msgs)
		return missing == 0, err
	}); err != nil && missing == 0 {
		return err
	}

	d.say("\n4. Event trail of checkout %s (%s): every message in %s, %s and %s whose payload mentions it or its orders",
		c.label, c.co.ID, contracts.StreamPayments, contracts.StreamLedger, contracts.StreamWallet)
	d.say("   (read back with an ordered consumer; times from the checkout's creation; APPLIED BY from each consumer's <schema>.inbox)")
	t := d.table("   ", "STREAM", "SEQ", "SUBJECT", "CE-TYPE", "OF", "STORED", "APPLIED BY", "AT")
	for _, m := range msgs {
		first := []string{m.stream, fmt.Sprint(m.seq), m.subject, m.ceType, m.about, since(c.co.CreatedAt, &m.stored)}
		if len(m.applied) == 0 {
			who := "(no consumer subscribes)"
			if len(m.expected) > 0 {
				who = "NOT APPLIED by " + strings.Join(m.expected, ", ")
			}
			t.row(append(first, who, "")...)
			continue
		}
		for i, h := range m.applied {
			if i > 0 {
				first = make([]string, len(first))
			}
			t.row(append(first, h.consumer, since(c.co.CreatedAt, &h.at))...)
		}
	}
	if err := t.flush(); err != nil {
		return err
	}

	// What the trail must show: each message once, applied by exactly the
	// consumers that subscribe to it, and every stage of a paid checkout
	// once per order.
	var why []string
	ids := map[uuid.UUID]int{}
	count := map[string]int{}
	for _, m := range msgs {
		ids[m.id]++
		count[m.subject]++
		if got, want := consumersOf(m.applied), sortedJoin(m.expected); got != want {
			why = append(why, fmt.Sprintf("%s seq %d applied by [%s], subscribed [%s]", m.stream, m.seq, got, want))
		}
	}
	for id, n := range ids {
		if n > 1 {
			why = append(why, fmt.Sprintf("ce-id %s stored %d times", id, n))
		}
	}
	d.check("   ", fmt.Sprintf("%d messages, each stored once and applied once by every consumer subscribed to it", len(msgs)), len(why) == 0, why...)
	n := len(c.co.Orders)
	want := map[string]int{
		contracts.SubjectCheckoutCreated: 1, contracts.SubjectOrderSucceeded: n, contracts.SubjectLedgerEntryPosted: n,
		contracts.SubjectWalletBalance: n, contracts.SubjectOrderCompleted: n, contracts.SubjectCheckoutCompleted: 1,
	}
	why = nil
	for _, s := range []string{contracts.SubjectCheckoutCreated, contracts.SubjectOrderSucceeded, contracts.SubjectLedgerEntryPosted,
		contracts.SubjectWalletBalance, contracts.SubjectOrderCompleted, contracts.SubjectCheckoutCompleted} {
		if count[s] != want[s] {
			why = append(why, fmt.Sprintf("%d × %s, want %d", count[s], s, want[s]))
		}
	}
	d.check("   ", fmt.Sprintf("every stage of the pay-in, once per order (%d orders): created → succeeded → ledger + wallet → completed", n),
		len(why) == 0, why...)
	return nil
}

func consumersOf(hits []inboxHit) string {
	names := make([]string, len(hits))
	for i, h := range hits {
		names[i] = h.consumer
	}
	return sortedJoin(names)
}

func sortedJoin(s []string) string {
	return strings.Join(slices.Sorted(slices.Values(s)), ",")
}

// readStream reads stream from its first message to its last with an
// ordered consumer (ephemeral, no acks, gone with the demo's broker) and
// keeps the messages that about labels.
func (d *demoRun) readStream(ctx context.Context, name string, about func([]byte) string) ([]*trailMsg, error) {
	stream, err := d.a.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	st := info.State
	if st.Msgs == 0 {
		return nil, nil
	}
	if st.Msgs > maxTrailScan {
		return nil, fmt.Errorf("stream %s holds %d messages; the demo reads at most %d", name, st.Msgs, maxTrailScan)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, fmt.Errorf("stream %s: ordered consumer: %w", name, err)
	}
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("stream %s: ordered consumer: %w", name, err)
	}
	defer it.Stop()
	subscribers := subscribersOf(name)
	var out []*trailMsg
	var read uint64
	// Bounded by the message count taken above; each Next waits at most
	// 5 s for a message the stream already holds.
	for read < st.Msgs {
		nctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		msg, err := it.Next(jetstream.NextContext(nctx))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("stream %s: read %d of %d messages: %w", name, read, st.Msgs, err)
		}
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		read++
		if md.Sequence.Stream >= st.LastSeq {
			read = st.Msgs // the last one: nothing older is left
		}
		label := about(msg.Data())
		if label == "" {
			continue
		}
		h := msg.Headers()
		id, err := uuid.Parse(h.Get(outbox.HeaderID))
		if err != nil {
			return nil, fmt.Errorf("stream %s seq %d: ce-id: %w", name, md.Sequence.Stream, err)
		}
		out = append(out, &trailMsg{stream: name, about: label, seq: md.Sequence.Stream, subject: msg.Subject(), ceType: h.Get(outbox.HeaderType),
			id: id, stored: md.Timestamp, expected: subscribers(msg.Subject())})
	}
	return out, nil
}

// subscribersOf returns, for a subject of stream, the durable consumers
// whose filters take it (contracts.Consumers is the one list of them).
func subscribersOf(stream string) func(subject string) []string {
	consumers := contracts.Consumers(contracts.ConsumerOptions{})
	return func(subject string) []string {
		var out []string
		for _, c := range consumers {
			if c.Stream == stream && slices.ContainsFunc(c.Config.FilterSubjects, func(f string) bool { return subjectMatches(f, subject) }) {
				out = append(out, c.Config.Durable)
			}
		}
		return out
	}
}

// subjectMatches applies a NATS filter ("*" one token, ">" the rest).
func subjectMatches(filter, subject string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subject, ".")
	for i, f := range ft {
		switch {
		case f == ">":
			return len(st) > i
		case i >= len(st):
			return false
		case f != "*" && f != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

// loadInboxHits fills each message's inbox rows, from every service
// schema's inbox (the inbox key is the ce-id), and returns how many
// subscribed consumers have not applied their message yet.
func (d *demoRun) loadInboxHits(ctx context.Context, msgs []*trailMsg) (int, error) {
	byID := map[uuid.UUID]*trailMsg{}
	ids := make([]uuid.UUID, 0, len(msgs))
	for _, m := range msgs {
		byID[m.id] = m
		ids = append(ids, m.id)
		m.applied = nil
	}
	var parts []string
	for _, s := range d.a.opts.services {
		parts = append(parts, `SELECT consumer, msg_id, processed_at FROM `+s.store().Schema()+`.inbox WHERE msg_id = ANY($1)`)
	}
	rows, err := d.a.pool.Query(ctx, strings.Join(parts, " UNION ALL ")+` ORDER BY processed_at, consumer`, ids)
	if err != nil {
		return 0, fmt.Errorf("inboxes: %w", err)
	}
	var consumer string
	var id uuid.UUID
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&consumer, &id, &at}, func() error {
		if m := byID[id]; m != nil {
			m.applied = append(m.applied, inboxHit{consumer: consumer, at: at})
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("inboxes: %w", err)
	}
	missing := 0
	for _, m := range msgs {
		missing += max(0, len(m.expected)-len(m.applied))
	}
	return missing, nil
}
