package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/pspsim"
)

// zeroFaults turns every simulator fault off.
func zeroFaults(seed uint64) pspsim.Faults { return pspsim.Faults{Seed: seed} }

// noSinkLog is what outbox.Runner logs at start when it has no dead-letter
// sink: its failed messages only reach the DLQ through a MAX_DELIVERIES
// advisory, if something moves those.
const noSinkLog = "no dead-letter sink"

// dlqUnavailable says why F15 cannot run, or "" when it can: it needs the
// `paypipe dlq list` and `paypipe dlq replay` commands, and consumers that
// dead-letter (process B's runner must not report that it has no sink).
func (h *harness) dlqUnavailable(ctx context.Context) string {
	for _, sub := range []string{"list", "replay"} {
		// cobra answers --help of an unknown command with the root's help
		// and exit 0: look for the command's own usage line.
		out, err := h.c.paypipeCmd(ctx, 30*time.Second, false, "dlq", sub, "--help")
		if err != nil || !strings.Contains(string(out), "paypipe dlq "+sub) {
			return "this paypipe has no `paypipe dlq " + sub + "` (dead-lettering is not in yet)"
		}
	}
	b, err := os.ReadFile(h.c.b.logPath)
	if err != nil {
		return "cannot read process B's log: " + err.Error()
	}
	if strings.Contains(string(b), noSinkLog) {
		return "`paypipe serve` runs its consumers without a dead-letter sink (B's log: \"" + noSinkLog +
			"\"): a poison message would be retried to MaxDeliver and never reach the DLQ"
	}
	return ""
}

// dlqItem is the part of `paypipe dlq list -o json` F15 reads.
type dlqItem struct {
	Seq      uint64          `json:"dlq_seq"`
	Consumer string          `json:"consumer"`
	MsgID    string          `json:"msg_id"`
	Replayed json.RawMessage `json:"replayed,omitempty"`
}

// poison is F15. It publishes a malformed payments.order.succeeded straight
// to NATS under a fresh ce-id (no outbox row: nothing in paypipe wrote it),
// expects each consumer of the subject to dead-letter it, replays one copy
// with `paypipe dlq replay` without fixing anything, and expects each
// consumer to dead-letter the replay too (same ce-id), with no effect
// applied anywhere: nothing is dropped silently and nothing is half-applied.
func (h *harness) poison(ctx context.Context) (string, error) {
	id := uuid.Must(uuid.NewV7()).String()
	subject := contracts.SubjectOrderSucceeded
	m := nats.NewMsg(subject)
	m.Header.Set(nats.MsgIdHdr, id)
	m.Header.Set(outbox.HeaderID, id)
	m.Header.Set(outbox.HeaderType, contracts.TypeOf(subject))
	m.Header.Set(outbox.HeaderSource, contracts.SourcePayment)
	m.Header.Set(outbox.HeaderSpecVersion, "1.0")
	m.Header.Set(outbox.HeaderTime, time.Now().UTC().Format(time.RFC3339Nano))
	m.Header.Set(outbox.HeaderContentType, "application/json")
	m.Data = []byte(`{"payment_order_id": "chaos-poison", "amount_minor": `) // cut short: not JSON
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := h.js.PublishMsg(pctx, m)
	cancel()
	if err != nil {
		return "", fmt.Errorf("publish poison: %w", err)
	}
	h.n.count(fPoison, 1)
	h.n.mu.Lock()
	h.n.poisonInjected++
	h.n.poisonIDs = append(h.n.poisonIDs, id)
	h.n.mu.Unlock()

	var consumers []string
	for _, c := range contracts.Consumers(contracts.ConsumerOptions{}) {
		if slices.Contains(c.Config.FilterSubjects, subject) || c.Config.FilterSubject == subject {
			consumers = append(consumers, c.Config.Durable)
		}
	}
	first, err := h.awaitDead(ctx, id, len(consumers), 4*time.Minute)
	if err != nil {
		return "", fmt.Errorf("poison %s not dead-lettered by %v: %w", id, consumers, err)
	}
	out, err := h.c.paypipeCmd(ctx, time.Minute, false, "dlq", "replay", strconv.FormatUint(first[0].Seq, 10),
		"--actor", "chaos-harness", "--rate", "0", "-o", "json")
	if err != nil {
		return "", err
	}
	var rep struct {
		Replayed int `json:"replayed"`
	}
	if err := json.Unmarshal(out, &rep); err != nil || rep.Replayed != 1 {
		return "", fmt.Errorf("dlq replay: want 1 replayed: %s (%v)", truncate(out, 300), err)
	}
	// One replayed copy reaches every consumer of the subject, and each
	// gives up on it again.
	if _, err := h.awaitDead(ctx, id, 2*len(consumers), 4*time.Minute); err != nil {
		return "", fmt.Errorf("replayed poison %s not dead-lettered again: %w", id, err)
	}
	var applied int64
	if err := h.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM ledger.inbox WHERE msg_id = $1)
  + (SELECT count(*) FROM wallet.inbox WHERE msg_id = $1)`, id).Scan(&applied); err != nil {
		return "", err
	}
	if applied != 0 {
		return "", fmt.Errorf("poison %s was applied (%d inbox rows)", id, applied)
	}
	return fmt.Sprintf("malformed %s ce-id %s: dead-lettered by %s, replayed once (DLQ seq %d), dead-lettered again, applied nowhere",
		subject, id, strings.Join(consumers, " and "), first[0].Seq), nil
}

// awaitDead waits until the DLQ holds at least n entries for ce-id id.
func (h *harness) awaitDead(ctx context.Context, id string, n int, timeout time.Duration) ([]dlqItem, error) {
	var found []dlqItem
	err := awaitCond(ctx, timeout, func(ctx context.Context) error {
		out, err := h.c.paypipeCmd(ctx, 30*time.Second, false, "dlq", "list", "--subject", contracts.SubjectOrderSucceeded,
			"--limit", "1000", "-o", "json")
		if err != nil {
			return err
		}
		var items []dlqItem
		if err := json.Unmarshal(out, &items); err != nil {
			return fmt.Errorf("dlq list: %w", err)
		}
		found = found[:0]
		for _, it := range items {
			if it.MsgID == id {
				found = append(found, it)
			}
		}
		if len(found) < n {
			return fmt.Errorf("%d of %d dead letters", len(found), n)
		}
		return nil
	})
	return found, err
}
