package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/dlq"
)

// paypipeDLQ runs `paypipe dlq …` in-process. Until root.go registers the
// dlq group, it runs the same root with the group added (same error and
// exit-code handling as run).
func paypipeDLQ(t *testing.T, vars map[string]string, args ...string) result {
	t.Helper()
	if hasCommand(newRootCmd(&env{getenv: func(string) string { return "" }}), "dlq") {
		return paypipe(t, vars, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out, errb bytes.Buffer
	e := &env{getenv: func(k string) string { return vars[k] }, stdout: &out, stderr: &errb}
	root := newRootCmd(e)
	root.AddCommand(newDLQCmd(e))
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	code := exitOK
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(&errb, "paypipe: %v\n", err)
		code = exitError
		var ue usageError
		if errors.As(err, &ue) {
			code = exitUsage
		}
	}
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

func hasCommand(root *cobra.Command, name string) bool {
	for _, c := range root.Commands() {
		if c.Name() == name {
			return true
		}
	}
	return false
}

// Bad invocations are usage errors (exit 2), found before anything is
// contacted: no database or broker is configured here.
func TestDLQUsageErrors(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "subcommand"},
		{[]string{"dlq", "nosuch"}, "unknown command"},
		{[]string{"dlq", "list", "-o", "yaml"}, "--output"},
		{[]string{"dlq", "list", "--since", "yesterday"}, "--since"},
		{[]string{"dlq", "list", "--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"}, "before since"},
		{[]string{"dlq", "list", "--consumer", "a.b"}, "consumer"},
		{[]string{"dlq", "list", "--subject", "payments.>.x"}, "subject"},
		{[]string{"dlq", "list", "--limit", "0"}, "--limit"},
		{[]string{"dlq", "list", "3"}, "unknown command"},
		{[]string{"dlq", "show"}, "one DLQ sequence"},
		{[]string{"dlq", "show", "1", "2"}, "one DLQ sequence"},
		{[]string{"dlq", "show", "x"}, "not a DLQ sequence"},
		{[]string{"dlq", "show", "0"}, "not a DLQ sequence"},
		{[]string{"dlq", "replay"}, "--all"},
		{[]string{"dlq", "replay", "abc"}, "not a DLQ sequence"},
		{[]string{"dlq", "replay", "1", "--rate", "fast"}, "--rate"},
		{[]string{"dlq", "replay", "1", "--rate", "5/h"}, "--rate"},
		{[]string{"dlq", "replay", "--nosuch"}, "unknown flag"},
		{[]string{"dlq", "purge"}, "--all"},
		{[]string{"dlq", "purge", "1"}, "--yes"},
		{[]string{"dlq", "purge", "--consumer", "x"}, "--yes"},
	} {
		r := paypipeDLQ(t, nil, c.args...)
		if r.code != exitUsage || !strings.HasPrefix(r.stderr, "paypipe: ") || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: want exit 2 mentioning %q, got %d %q", c.args, c.want, r.code, r.stderr)
		}
	}
}

// dlqEnv is a database, a broker with paypipe's streams, and the variables
// pointing at both.
type dlqEnv struct {
	vars map[string]string
	pool *pgxpool.Pool
	js   jetstream.JetStream
}

func newDLQEnv(t *testing.T) *dlqEnv {
	t.Helper()
	pool, url := testenv.DB(t)
	srv := testenv.NATS(t)
	js, err := jetstream.New(testenv.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	return &dlqEnv{vars: map[string]string{"DATABASE_URL": url, "NATS_URL": srv.URL(), "USER": "dave"}, pool: pool, js: js}
}

// deadLetter publishes a message to the DLQ as a consumer that gave up
// does (outbox/dlq/headers.go) and returns its DLQ sequence and ce-id.
func (d *dlqEnv) deadLetter(t *testing.T, consumer, subject, errText string) (uint64, string) {
	t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	m := nats.NewMsg(dlq.Subject(consumer, subject))
	for k, v := range map[string]string{
		outbox.HeaderID: id, outbox.HeaderType: contracts.TypeOf(subject), outbox.HeaderSource: contracts.SourcePayment,
		outbox.HeaderSpecVersion: "1.0", outbox.HeaderContentType: "application/json",
		dlq.HeaderStream: contracts.StreamPayments, dlq.HeaderSequence: "12", dlq.HeaderSubject: subject,
		dlq.HeaderMsgID: id, dlq.HeaderConsumer: consumer, dlq.HeaderAttempts: "10",
		dlq.HeaderFirstFailure: "2026-11-26T09:00:00Z", dlq.HeaderLastFailure: "2026-11-26T09:04:00Z",
		dlq.HeaderError: errText, dlq.HeaderReason: dlq.ReasonMaxDeliveries,
		jetstream.MsgIDHeader: "PAYMENTS:12:" + consumer + ":" + id,
	} {
		m.Header.Set(k, v)
	}
	m.Data = []byte(`{"order_id":"po_1","amount_minor":1234,"currency":"EUR"}`)
	ack, err := d.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence, id
}

func (d *dlqEnv) paymentsMsgs(t *testing.T) uint64 {
	t.Helper()
	s, err := d.js.Stream(context.Background(), contracts.StreamPayments)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestDLQNeedsNATSAndDatabase(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	r := paypipeDLQ(t, map[string]string{"DATABASE_URL": d.vars["DATABASE_URL"]}, "dlq", "list")
	if r.code != exitError || !strings.Contains(r.stderr, "NATS_URL is not set") || !strings.Contains(r.stderr, "running deployment") {
		t.Errorf("without NATS_URL: %+v", r)
	}
	r = paypipeDLQ(t, map[string]string{"NATS_URL": d.vars["NATS_URL"]}, "dlq", "show", "1")
	if r.code != exitError || !strings.Contains(r.stderr, "DATABASE_URL") {
		t.Errorf("without DATABASE_URL: %+v", r)
	}
	// A broker that is not paypipe's has no DLQ stream.
	bare := testenv.NATS(t)
	r = paypipeDLQ(t, map[string]string{"DATABASE_URL": d.vars["DATABASE_URL"], "NATS_URL": bare.URL()}, "dlq", "list")
	if r.code != exitError || !strings.Contains(r.stderr, "no DLQ stream") {
		t.Errorf("broker without streams: %+v", r)
	}
}

func TestDLQListAndShow(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	r := paypipeDLQ(t, d.vars, "dlq", "list")
	if r.code != exitOK || !strings.Contains(r.stdout, "the DLQ is empty") {
		t.Fatalf("empty list: %+v", r)
	}
	if r := paypipeDLQ(t, d.vars, "dlq", "list", "-o", "json"); r.code != exitOK || strings.TrimSpace(r.stdout) != "[]" {
		t.Fatalf("empty list as JSON: %+v", r)
	}
	s1, id1 := d.deadLetter(t, contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded, "account seller_payable:m1 is missing")
	s2, _ := d.deadLetter(t, contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded, "Timeout talking\nto the database")

	r = paypipeDLQ(t, d.vars, "dlq", "list")
	if r.code != exitOK {
		t.Fatalf("list: %+v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SEQ") ||
		!strings.HasPrefix(lines[1], fmt.Sprint(s1)) || !strings.Contains(lines[1], contracts.LedgerPaymentsConsumer) ||
		!strings.Contains(lines[1], contracts.SubjectOrderSucceeded) || !strings.Contains(lines[1], "seller_payable:m1") ||
		!strings.HasPrefix(lines[2], fmt.Sprint(s2)) || !strings.Contains(lines[2], "Timeout talking to the database") {
		t.Fatalf("list table:\n%s", r.stdout)
	}

	var items []dlqListItem
	r = paypipeDLQ(t, d.vars, "dlq", "list", "--error-contains", "TIMEOUT", "-o", "json")
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &items) != nil || len(items) != 1 {
		t.Fatalf("list --error-contains: %+v", r)
	}
	if it := items[0]; it.Seq != s2 || it.Consumer != contracts.WalletPaymentsConsumer || it.Attempts != 10 ||
		it.OriginalStream != contracts.StreamPayments || it.OriginalSeq != 12 || it.Reason != dlq.ReasonMaxDeliveries || it.Replayed != nil {
		t.Fatalf("list item %+v", it)
	}

	r = paypipeDLQ(t, d.vars, "dlq", "list", "--consumer", "nobody")
	if r.code != exitError || !strings.Contains(r.stderr, `no DLQ message matches consumer "nobody"`) {
		t.Fatalf("filter matching nothing: %+v", r)
	}
	r = paypipeDLQ(t, d.vars, "dlq", "list", "--limit", "1")
	if r.code != exitOK || strings.Count(strings.TrimSpace(r.stdout), "\n") != 1 || !strings.Contains(r.stderr, "first 1") {
		t.Fatalf("list --limit 1: %+v", r)
	}

	r = paypipeDLQ(t, d.vars, "dlq", "show", fmt.Sprint(s1))
	if r.code != exitOK || !strings.Contains(r.stdout, fmt.Sprintf("DLQ message %d", s1)) || !strings.Contains(r.stdout, id1) ||
		!strings.Contains(r.stdout, "  \"order_id\": \"po_1\",") || !strings.Contains(r.stdout, dlq.HeaderError+": account") ||
		!strings.Contains(r.stdout, "stream PAYMENTS, sequence 12") {
		t.Fatalf("show:\n%+v", r)
	}
	r = paypipeDLQ(t, d.vars, "dlq", "show", fmt.Sprint(s1), "-o", "json")
	var shown struct {
		Seq     uint64              `json:"dlq_seq"`
		MsgID   string              `json:"msg_id"`
		Headers map[string][]string `json:"headers"`
		Payload map[string]any      `json:"payload"`
	}
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &shown) != nil {
		t.Fatalf("show -o json: %+v", r)
	}
	if shown.Seq != s1 || shown.MsgID != id1 || shown.Payload["order_id"] != "po_1" || shown.Headers[outbox.HeaderID][0] != id1 {
		t.Fatalf("show -o json: %+v", shown)
	}
	r = paypipeDLQ(t, d.vars, "dlq", "show", "99")
	if r.code != exitError || !strings.Contains(r.stderr, "no DLQ message with sequence 99") {
		t.Fatalf("show unknown: %+v", r)
	}
}

func TestDLQReplayAndPurge(t *testing.T) {
	t.Parallel()
	d := newDLQEnv(t)
	ctx := context.Background()
	s1, id1 := d.deadLetter(t, contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded, "boom")
	s2, _ := d.deadLetter(t, contracts.WalletPaymentsConsumer, contracts.SubjectOrderSucceeded, "bang")
	seq1 := fmt.Sprint(s1)

	r := paypipeDLQ(t, d.vars, "dlq", "replay", "99")
	if r.code != exitError || !strings.Contains(r.stderr, "no DLQ message with sequence 99") {
		t.Fatalf("replay unknown: %+v", r)
	}
	r = paypipeDLQ(t, d.vars, "dlq", "replay", "--consumer", "nobody")
	if r.code != exitError || !strings.Contains(r.stderr, "no DLQ message matches") {
		t.Fatalf("replay matching nothing: %+v", r)
	}
	r = paypipeDLQ(t, d.vars, "dlq", "replay", seq1, "--dry-run")
	if r.code != exitOK || !strings.Contains(r.stdout, "would replay") || !strings.Contains(r.stdout, "nothing was published") {
		t.Fatalf("dry run: %+v", r)
	}
	if n := d.paymentsMsgs(t); n != 0 {
		t.Fatalf("dry run published %d messages", n)
	}

	var rep replayJSON
	r = paypipeDLQ(t, d.vars, "dlq", "replay", seq1, "--actor", "alice@ops", "-o", "json")
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &rep) != nil {
		t.Fatalf("replay: %+v", r)
	}
	if rep.Replayed != 1 || len(rep.Results) != 1 || rep.Results[0].Outcome != "replayed" || rep.Results[0].Stream != contracts.StreamPayments {
		t.Fatalf("replay report %+v", rep)
	}
	pay, err := d.js.Stream(ctx, contracts.StreamPayments)
	if err != nil {
		t.Fatal(err)
	}
	m, err := pay.GetMsg(ctx, rep.Results[0].StreamSeq)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != contracts.SubjectOrderSucceeded || m.Header.Get(outbox.HeaderID) != id1 ||
		m.Header.Get(outbox.HeaderOriginalMsgID) != id1 || m.Header.Get(jetstream.MsgIDHeader) != rep.Results[0].NewNatsMsgID ||
		m.Header.Get(jetstream.MsgIDHeader) == id1 || m.Header.Get(dlq.HeaderError) != "" {
		t.Fatalf("replayed message: %s %v", m.Subject, m.Header)
	}

	// A second replay is refused without --force, with the reason.
	r = paypipeDLQ(t, d.vars, "dlq", "replay", seq1)
	if r.code != exitError || !strings.Contains(r.stdout, "skipped") || !strings.Contains(r.stdout, "alice@ops") ||
		!strings.Contains(r.stderr, "--force") {
		t.Fatalf("second replay: %+v", r)
	}
	r = paypipeDLQ(t, d.vars, "dlq", "replay", seq1, "--force", "--rate", "0")
	if r.code != exitOK || !strings.Contains(r.stdout, "replayed 1, skipped 0") {
		t.Fatalf("forced replay: %+v", r)
	}
	if n := d.paymentsMsgs(t); n != 2 {
		t.Fatalf("PAYMENTS holds %d messages after two replays, want 2", n)
	}
	// A filter replays what was not replayed yet and skips the rest.
	r = paypipeDLQ(t, d.vars, "dlq", "replay", "--subject", contracts.SubjectOrderSucceeded, "--actor", "erin")
	if r.code != exitOK || !strings.Contains(r.stdout, "replayed 1, skipped 1") {
		t.Fatalf("replay by filter: %+v", r)
	}
	var items []dlqListItem
	r = paypipeDLQ(t, d.vars, "dlq", "list", "-o", "json")
	if r.code != exitOK || json.Unmarshal([]byte(r.stdout), &items) != nil || len(items) != 2 {
		t.Fatalf("list after replays: %+v", r)
	}
	if items[0].Replayed == nil || items[0].Replayed.Count != 2 || !strings.HasPrefix(items[0].Replayed.LastActor, "dave@") ||
		items[1].Replayed == nil || items[1].Replayed.Count != 1 {
		t.Fatalf("replay marks: %+v %+v", items[0].Replayed, items[1].Replayed)
	}

	// Purge.
	r = paypipeDLQ(t, d.vars, "dlq", "purge", "--consumer", "nobody", "--yes")
	if r.code != exitError || !strings.Contains(r.stderr, "no DLQ message matches") {
		t.Fatalf("purge matching nothing: %+v", r)
	}
	r = paypipeDLQ(t, d.vars, "dlq", "purge", fmt.Sprint(s2), "--yes", "--actor", "carol")
	if r.code != exitOK || !strings.Contains(r.stdout, "purged 1") {
		t.Fatalf("purge: %+v", r)
	}
	if r := paypipeDLQ(t, d.vars, "dlq", "show", fmt.Sprint(s2)); r.code != exitError || !strings.Contains(r.stderr, fmt.Sprintf("no DLQ message with sequence %d", s2)) {
		t.Fatalf("show purged: %+v", r)
	}

	rows, err := d.pool.Query(ctx, `SELECT action, dlq_stream_seq, actor FROM ops.dlq_audit ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	var audit []string
	for rows.Next() {
		var action, actor string
		var seq int64
		if err := rows.Scan(&action, &seq, &actor); err != nil {
			t.Fatal(err)
		}
		audit = append(audit, fmt.Sprintf("%s %d %s", action, seq, strings.SplitN(actor, "@", 2)[0]))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	want := []string{
		fmt.Sprintf("replay %d alice", s1), fmt.Sprintf("replay %d dave", s1), fmt.Sprintf("replay %d erin", s2),
		fmt.Sprintf("purge %d carol", s2),
	}
	if strings.Join(audit, "; ") != strings.Join(want, "; ") {
		t.Fatalf("audit:\n got %v\nwant %v", audit, want)
	}
}

func TestParseRate(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]float64{"50/s": 50, "50": 50, "0": 0, "120/m": 2, "0.5/s": 0.5} {
		if got, err := parseRate(in); err != nil || got != want {
			t.Errorf("parseRate(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fast", "-1/s", "5/h", "1/s/s"} {
		if _, err := parseRate(in); err == nil {
			t.Errorf("parseRate(%q) accepted", in)
		}
	}
}

func TestProgressBar(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	p := &progressBar{w: &b, width: 10}
	p.update(3, 10)
	p.update(10, 10)
	p.clear()
	want := "\r[===       ] 3/10\r[==========] 10/10\r\033[K"
	if b.String() != want {
		t.Fatalf("bar wrote %q, want %q", b.String(), want)
	}
	if isTerminal(&b) {
		t.Fatal("a buffer is not a terminal")
	}
}
