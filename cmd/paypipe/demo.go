package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/config"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/demo"
)

type demoOptions struct {
	orders   int
	workers  int
	timeout  time.Duration
	keepData bool
}

func newDemoCmd(e *env) *cobra.Command {
	o := demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the backbone end to end in-process and print the trail of every order",
		Long: `demo starts the demo service in-process exactly as serve would (same app), with
its own embedded nats-server on a fresh store under PAYPIPE_DATA_DIR (removed at
exit unless --keep-data), against DATABASE_URL (migrations applied; earlier data is
kept and only this run's change is checked). NATS_URL is ignored, so the demo
never touches a deployment's streams or consumers; do not point it at a database
a running "paypipe serve" uses, whose relay would publish the demo's rows to its
own broker.

It places orders from concurrent goroutines (each order and its event in one
transaction), waits until the demo-projector consumer has applied all of them,
and prints each order's trail: outbox row → JetStream stream sequence → inbox
row; the totals per currency; the outbox status; and the checks. Then it
publishes one message again, first with its original Nats-Msg-Id (JetStream
acknowledges a duplicate and stores nothing), then under a new Nats-Msg-Id, as
a replay after the duplicate window would (JetStream stores it, the inbox skips
it). The exit status is 0 only if every check passes.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.orders < 1 || o.orders > 1000 {
				return usagef("--orders %d: want 1 to 1000", o.orders)
			}
			if o.workers < 1 || o.workers > 64 {
				return usagef("--workers %d: want 1 to 64", o.workers)
			}
			if o.timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			return runDemo(cmd.Context(), e, o)
		},
	}
	cmd.Flags().IntVar(&o.orders, "orders", 20, "orders to place")
	cmd.Flags().IntVar(&o.workers, "workers", 4, "goroutines placing orders concurrently")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 50*time.Second, "give up (and fail) after this long")
	cmd.Flags().BoolVar(&o.keepData, "keep-data", false, "keep the demo's NATS store directory")
	return cmd
}

// placed is one order the demo placed, with what the pipeline made of it.
type placed struct {
	customer string
	amount   int64
	currency string
	orderID  uuid.UUID
	msgID    uuid.UUID

	outboxID    int64
	createdAt   time.Time
	publishedAt *time.Time
	seq         uint64 // DEMO stream sequence; 0 if not found
	copies      int    // messages in the stream carrying this Nats-Msg-Id
	appliedAt   *time.Time
}

var (
	demoCurrencies = []string{"EUR", "USD", "GBP", "JPY"}
	demoCustomers  = []string{"ada", "grace", "edsger", "barbara", "ken", "margaret", "dennis", "frances"}
)

// demoRun holds one demo's state; its methods are the demo's steps.
type demoRun struct {
	e     *env
	o     demoOptions
	w     io.Writer
	a     *app
	start time.Time

	failures []string
}

func (d *demoRun) say(format string, args ...any) { fmt.Fprintf(d.w, format+"\n", args...) }

// check records a named check and prints its line.
func (d *demoRun) check(indent, line string, ok bool, why ...string) {
	if ok {
		d.say("%s%s: OK", indent, line)
		return
	}
	d.say("%s%s: FAILED (%s)", indent, line, strings.Join(why, "; "))
	d.failures = append(d.failures, line)
}

func runDemo(ctx context.Context, e *env, o demoOptions) (err error) {
	d := &demoRun{e: e, o: o, w: e.stdout, start: time.Now()}
	// The demo always brings its own broker, whatever NATS_URL says.
	cfg, err := config.FromEnv(func(k string) string {
		if k == config.EnvNATSURL {
			return ""
		}
		return e.getenv(k)
	})
	if err != nil {
		return err
	}
	if err := cfg.RequireDatabase(); err != nil {
		return err
	}
	cfg.HTTPAddr = "127.0.0.1:0" // never collide with a running serve
	level := slog.LevelWarn      // keep the terminal for the trail unless asked
	if cfg.LogLevelSet {
		level = cfg.LogLevel
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	dir := filepath.Join(cfg.DataDir, "demo-"+time.Now().UTC().Format("20060102T150405.000Z"))
	if !o.keepData {
		defer func() {
			if rerr := os.RemoveAll(dir); rerr != nil {
				err = errors.Join(err, fmt.Errorf("remove %s: %w", dir, rerr))
			}
		}()
	}
	svcs, err := selectServices([]string{"demo"})
	if err != nil {
		return err
	}
	d.a, err = newApp(appOptions{cfg: cfg, services: svcs, log: e.logger(level), natsStoreDir: filepath.Join(dir, "nats")})
	if err != nil {
		return err
	}
	d.say("paypipe demo: outbox → NATS JetStream → inbox, end to end")
	if e.getenv(config.EnvNATSURL) != "" {
		d.say("   (NATS_URL is ignored: the demo runs its own embedded broker)")
	}
	if err := d.a.Start(ctx); err != nil {
		return err
	}
	defer func() {
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer scancel()
		err = errors.Join(err, d.a.Stop(sctx))
	}()
	if err := d.run(ctx, cfg, dir); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("demo: gave up after --timeout %s: %w", o.timeout, err)
		}
		return err
	}
	if len(d.failures) > 0 {
		return fmt.Errorf("demo: %d check(s) failed: %s", len(d.failures), strings.Join(d.failures, "; "))
	}
	d.say("\npaypipe demo: OK in %s", time.Since(d.start).Round(time.Millisecond))
	return nil
}

func (d *demoRun) run(ctx context.Context, cfg config.Config, dir string) error {
	a := d.a
	store := demo.Store
	keep := "removed at exit"
	if d.o.keepData {
		keep = "kept"
	}
	d.say("   PostgreSQL  %s: durability settings on, migrations applied", redactURL(cfg.DatabaseURL))
	d.say("   NATS        embedded %s, JetStream store %s (%s), fsync on every write", a.natsURL(), filepath.Join(dir, "nats"), keep)
	d.say("   relay       %s; consumer %s on stream %s", cfg.RelayMode, contracts.DemoConsumer, contracts.StreamDemo)
	d.say("   HTTP        http://%s  /metrics /healthz /readyz → %s", a.http.Addr(), readyzOf(ctx, a.http.Addr()))

	stream, err := a.js.Stream(ctx, contracts.StreamDemo)
	if err != nil {
		return err
	}
	cons, err := a.js.Consumer(ctx, contracts.StreamDemo, contracts.DemoConsumer)
	if err != nil {
		return err
	}
	// Rows left pending by an earlier, interrupted run are relayed and
	// applied first, so that this run's changes can be measured alone.
	if err := waitFor(ctx, 20*time.Second, "rows left by earlier runs to drain", func(ctx context.Context) (bool, error) {
		st, err := store.Status(ctx, a.pool)
		if err != nil {
			return false, err
		}
		ci, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		return st.Backlog == 0 && ci.NumPending == 0 && ci.NumAckPending == 0, nil
	}); err != nil {
		return err
	}
	si, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	seq0 := si.State.LastSeq
	if seq0 > 0 {
		d.say("   (first relayed %d row(s) found pending in the outbox, from an interrupted run or a redrive; the inbox decided whether each applied)", seq0)
	}
	totals0, err := demo.Totals(ctx, a.pool)
	if err != nil {
		return err
	}
	applied0 := counterValue(a.reg, "paypipe_consumer_messages_total", "consumer", contracts.DemoConsumer, "result", "applied")
	dup0 := counterValue(a.reg, "paypipe_consumer_messages_total", "consumer", contracts.DemoConsumer, "result", "duplicate")

	// 1. Place the orders concurrently.
	n := d.o.orders
	orders := make([]*placed, n)
	for i := range orders {
		orders[i] = &placed{
			customer: demoCustomers[i%len(demoCustomers)],
			currency: demoCurrencies[i%len(demoCurrencies)],
			amount:   100 + rand.Int64N(50_000), // 1.00 to 500.99 (JPY: 100 to 50,099)
		}
	}
	d.say("\n1. Placing %d orders from %d concurrent goroutines (each: order row + outbox row, one transaction)", n, d.o.workers)
	t0 := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, d.o.workers)
	for w := range d.o.workers {
		wg.Go(func() {
			for i := w; i < n; i += d.o.workers {
				p := orders[i]
				p.orderID, p.msgID, errs[w] = demo.PlaceOrder(ctx, a.pool, p.customer, p.amount, p.currency)
				if errs[w] != nil {
					return
				}
				a.relays["demo"].Wake()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("place orders: %w", err)
	}
	d.say("   placed %d orders in %s", n, time.Since(t0).Round(time.Millisecond))
	msgIDs := make([]uuid.UUID, n)
	for i, p := range orders {
		msgIDs[i] = p.msgID
	}

	// 2. Wait for the consumer to apply every one of them.
	d.say("2. Waiting for the relay to publish them and %s to apply them", contracts.DemoConsumer)
	t1 := time.Now()
	var applied int
	if err := waitFor(ctx, 30*time.Second, "every order to be applied", func(ctx context.Context) (bool, error) {
		err := a.pool.QueryRow(ctx, `SELECT count(*) FROM `+store.Schema()+`.inbox WHERE consumer = $1 AND msg_id = ANY($2)`,
			contracts.DemoConsumer, msgIDs).Scan(&applied)
		return applied == n, err
	}); err != nil {
		return fmt.Errorf("%w: %d of %d applied (is a `paypipe serve` relaying from the same database?)", err, applied, n)
	}
	d.say("   all %d applied %s after the last order was placed", n, time.Since(t1).Round(time.Millisecond))

	// 3. The trail of each order.
	if err := d.trail(ctx, stream, orders, seq0); err != nil {
		return err
	}
	slices.SortFunc(orders, func(x, y *placed) int { return cmp.Compare(x.seq, y.seq) })
	d.say("\n3. Trail: order → outbox row → JetStream %s stream → %s inbox (times from the outbox insert)", contracts.StreamDemo, contracts.DemoConsumer)
	tw := tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   ORDER\tCUSTOMER\tAMOUNT\tOUTBOX ROW\tMSG ID (ce-id = Nats-Msg-Id)\tPUBLISHED\tSTREAM SEQ\tAPPLIED")
	for _, p := range orders {
		fmt.Fprintf(tw, "   %s\t%s\t%s %s\t#%d\t%s\t%s\t%s\t%s\n", p.orderID, p.customer, p.currency, demo.FormatAmount(p.amount, p.currency),
			p.outboxID, p.msgID, since(p.createdAt, p.publishedAt), seqString(p.seq), since(p.createdAt, p.appliedAt))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	d.say("   (PUBLISHED is when the relay recorded the PubAck; the consumer may apply a message before that commit)")

	// 4. Totals: this run's change against what was placed.
	totals1, err := demo.Totals(ctx, a.pool)
	if err != nil {
		return err
	}
	want := map[string]demo.Total{}
	for _, p := range orders {
		t := want[p.currency]
		t.Orders++
		t.AmountMinor += p.amount
		want[p.currency] = t
	}
	d.say("\n4. Totals per currency (demo.order_totals, written only by %s)", contracts.DemoConsumer)
	totalsOK := true
	tw = tabwriter.NewWriter(d.w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   CURRENCY\tAPPLIED THIS RUN\t\tPLACED THIS RUN\tALL-TIME TOTAL")
	for _, cur := range sortedKeys(want) {
		got := demo.Total{Orders: totals1[cur].Orders - totals0[cur].Orders, AmountMinor: totals1[cur].AmountMinor - totals0[cur].AmountMinor}
		mark := "="
		if got.Orders != want[cur].Orders || got.AmountMinor != want[cur].AmountMinor {
			mark, totalsOK = "≠", false
		}
		fmt.Fprintf(tw, "   %s\t%s\t%s\t%s\t%s\n", cur, ordersAmount(got, cur), mark, ordersAmount(want[cur], cur), ordersAmount(totals1[cur], cur))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	// 5. Outbox status, as `paypipe outbox status` prints it.
	sts, err := outboxStatuses(ctx, a.pool, []outbox.Store{store})
	if err != nil {
		return err
	}
	d.say("\n5. Outbox status (paypipe outbox status)")
	if err := printOutboxStatus(d.w, sts, "   "); err != nil {
		return err
	}

	// 6. The checks.
	published, inStreamOnce, inbox := 0, 0, 0
	for _, p := range orders {
		if p.publishedAt != nil {
			published++
		}
		if p.copies == 1 {
			inStreamOnce++
		}
		if p.appliedAt != nil {
			inbox++
		}
	}
	appliedMetric := counterValue(a.reg, "paypipe_consumer_messages_total", "consumer", contracts.DemoConsumer, "result", "applied") - applied0
	d.say("\n6. Checks")
	var why []string
	if published != n || inStreamOnce != n {
		why = append(why, fmt.Sprintf("%d outbox rows marked published, %d found exactly once in the stream", published, inStreamOnce))
	}
	if inbox != n || appliedMetric != float64(n) {
		why = append(why, fmt.Sprintf("%d inbox rows, handler applied %v times", inbox, appliedMetric))
	}
	if !totalsOK {
		why = append(why, "totals differ from the orders placed")
	}
	d.check("   ", fmt.Sprintf("%d placed, %d published, %d applied exactly once", n, min(published, inStreamOnce), min(inbox, int(appliedMetric))),
		len(why) == 0, why...)

	// 7. Duplicates.
	return d.duplicates(ctx, stream, cons, orders[0], totals1, dup0)
}

// trail fills in each order's outbox row, stream sequence and inbox row.
func (d *demoRun) trail(ctx context.Context, stream jetstream.Stream, orders []*placed, seq0 uint64) error {
	a := d.a
	byMsg := make(map[uuid.UUID]*placed, len(orders))
	ids := make([]uuid.UUID, 0, len(orders))
	for _, p := range orders {
		byMsg[p.msgID] = p
		ids = append(ids, p.msgID)
	}
	rows, err := a.pool.Query(ctx, `SELECT msg_id, id, created_at, published_at FROM `+demo.Store.Schema()+`.outbox WHERE msg_id = ANY($1)`, ids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id uuid.UUID
		var r placed
		if err := rows.Scan(&id, &r.outboxID, &r.createdAt, &r.publishedAt); err != nil {
			rows.Close()
			return err
		}
		if p := byMsg[id]; p != nil {
			p.outboxID, p.createdAt, p.publishedAt = r.outboxID, r.createdAt, r.publishedAt
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = a.pool.Query(ctx, `SELECT msg_id, processed_at FROM `+demo.Store.Schema()+`.inbox WHERE consumer = $1 AND msg_id = ANY($2)`,
		contracts.DemoConsumer, ids)
	if err != nil {
		return err
	}
	for rows.Next() {
		var id uuid.UUID
		var at time.Time
		if err := rows.Scan(&id, &at); err != nil {
			rows.Close()
			return err
		}
		if p := byMsg[id]; p != nil {
			p.appliedAt = &at
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	si, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	// The stream is the demo's own, so it holds this run's messages (plus
	// any left over by an interrupted run); the bound guards the loop anyway.
	last := si.State.LastSeq
	if last-seq0 > uint64(2*len(orders)+1000) {
		return fmt.Errorf("stream %s holds %d messages since the demo started; expected about %d", contracts.StreamDemo, last-seq0, len(orders))
	}
	for seq := seq0 + 1; seq <= last; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s seq %d: %w", contracts.StreamDemo, seq, err)
		}
		id, err := uuid.Parse(m.Header.Get(jetstream.MsgIDHeader))
		if err != nil {
			continue
		}
		if p := byMsg[id]; p != nil {
			p.copies++
			if p.seq == 0 {
				p.seq = seq
			}
		}
	}
	return nil
}

// duplicates sends p's message twice more and checks that neither changes
// anything: once with its original Nats-Msg-Id, as a relay re-sends after a
// crash between PubAck and commit; once with a new Nats-Msg-Id and the same
// ce-id, as a re-send after the duplicate window or a DLQ replay looks.
func (d *demoRun) duplicates(ctx context.Context, stream jetstream.Stream, cons jetstream.Consumer, p *placed, totals1 map[string]demo.Total, dup0 float64) error {
	a := d.a
	d.say("\n7. Duplicates: sending order %s's message %s again", p.orderID, p.msgID)
	var subject string
	var headers map[string]string
	var payload []byte
	if err := a.pool.QueryRow(ctx, `SELECT subject, headers, payload FROM `+demo.Store.Schema()+`.outbox WHERE msg_id = $1`, p.msgID).
		Scan(&subject, &headers, &payload); err != nil {
		return err
	}
	msg := func(natsMsgID string) *nats.Msg {
		m := nats.NewMsg(subject)
		for k, v := range headers {
			m.Header.Set(k, v)
		}
		m.Header.Set(jetstream.MsgIDHeader, natsMsgID)
		m.Data = payload
		return m
	}
	before, err := stream.Info(ctx)
	if err != nil {
		return err
	}

	// a. Same Nats-Msg-Id: the broker drops it.
	ack, err := a.js.PublishMsg(ctx, msg(p.msgID.String()))
	if err != nil {
		return fmt.Errorf("re-publish: %w", err)
	}
	after, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	d.say("   a. same Nats-Msg-Id %s → PubAck {stream %s, seq %d, duplicate %v}; stream holds %d messages (was %d)",
		p.msgID, ack.Stream, ack.Sequence, ack.Duplicate, after.State.Msgs, before.State.Msgs)
	d.check("      ", "JetStream acknowledged it as a duplicate and stored nothing", ack.Duplicate && after.State.Msgs == before.State.Msgs,
		fmt.Sprintf("duplicate=%v, %d new messages", ack.Duplicate, after.State.Msgs-before.State.Msgs))

	// b. New Nats-Msg-Id, same ce-id: the broker stores it; the inbox drops it.
	replay := msg(uuid.NewString())
	replay.Header.Set(outbox.HeaderOriginalMsgID, p.msgID.String())
	ack, err = a.js.PublishMsg(ctx, replay)
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	d.say("   b. new Nats-Msg-Id %s, same ce-id → PubAck {stream %s, seq %d, duplicate %v}: stored, delivered to %s",
		replay.Header.Get(jetstream.MsgIDHeader), ack.Stream, ack.Sequence, ack.Duplicate, contracts.DemoConsumer)
	var dups float64
	if err := waitFor(ctx, 20*time.Second, "the consumer to acknowledge the replayed message", func(ctx context.Context) (bool, error) {
		ci, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		dups = counterValue(a.reg, "paypipe_consumer_messages_total", "consumer", contracts.DemoConsumer, "result", "duplicate") - dup0
		return ci.AckFloor.Stream >= ack.Sequence && dups >= 1, nil
	}); err != nil {
		return err
	}
	var inboxRows int
	if err := a.pool.QueryRow(ctx, `SELECT count(*) FROM `+demo.Store.Schema()+`.inbox WHERE consumer = $1 AND msg_id = $2`,
		contracts.DemoConsumer, p.msgID).Scan(&inboxRows); err != nil {
		return err
	}
	totals2, err := demo.Totals(ctx, a.pool)
	if err != nil {
		return err
	}
	cur := p.currency
	d.say("      %s acked seq %d and skipped it: inbox rows for (%s, %s): %d; %s total: %s (before: %s)",
		contracts.DemoConsumer, ack.Sequence, contracts.DemoConsumer, p.msgID, inboxRows,
		cur, ordersAmount(totals2[cur], cur), ordersAmount(totals1[cur], cur))
	d.check("      ", "the inbox skipped the replay and the totals are unchanged",
		!ack.Duplicate && dups == 1 && inboxRows == 1 && totals2[cur] == totals1[cur],
		fmt.Sprintf("stored=%v, skipped=%v, inbox rows=%d, totals %+v → %+v", !ack.Duplicate, dups, inboxRows, totals1[cur], totals2[cur]))
	return nil
}

// waitFor polls cond every 20ms until it holds, ctx ends or timeout passes.
// Polling a condition is the bounded wait here; nothing sleeps blindly.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	var lastErr error
	for {
		ok, err := cond(ctx)
		if ok && err == nil {
			return nil
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil && ctx.Err() != nil {
				return fmt.Errorf("waiting for %s: %w (last error: %v)", what, ctx.Err(), lastErr)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// counterValue reads one counter from reg; labels are name, value pairs.
func counterValue(reg *prometheus.Registry, name string, labels ...string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if got[labels[i]] != labels[i+1] {
					continue next
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func readyzOf(ctx context.Context, addr string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body.Status)
}

func ordersAmount(t demo.Total, currency string) string {
	return fmt.Sprintf("%d orders, %s %s", t.Orders, currency, demo.FormatAmount(t.AmountMinor, currency))
}

func since(from time.Time, to *time.Time) string {
	if to == nil {
		return "-"
	}
	return "+" + to.Sub(from).Round(100*time.Microsecond).String()
}

func seqString(seq uint64) string {
	if seq == 0 {
		return "-"
	}
	return fmt.Sprint(seq)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
