package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/pspsim"
)

// Fault counters kept by the harness (the simulator counts its own).
const (
	fNATSKills        = "nats_kills"
	fPGRestarts       = "pg_restarts"
	fConsumerKills    = "consumer_kills"
	fRelayKills       = "relay_kills"
	fRelayKillsWindow = "relay_kills_after_dup_window"
	fRedriven         = "rows_redriven_after_dup_window"
	fSameKeyBursts    = "same_key_bursts"
	fSameKeyRequests  = "same_key_requests"
	fSlowHandler      = "slow_handler_pauses"
	fPoison           = "poison_messages"
	fPSPWindows       = "psp_fault_windows"
	fWebhookWindows   = "webhook_fault_windows"
	fPayoutRaces      = "payout_refund_races"
	fPayoutRaceRefund = "payout_race_refunds"
	fPSPPayoutWindows = "psp_payout_fault_windows"
	fReconKills       = "recon_kills"
)

// ackWait is the consumers' AckWait (contracts.ConsumerOptions default):
// F16 freezes process B for longer than this.
const ackWait = 30 * time.Second

// episode is one fault injected while the workload runs: it starts when
// the workload has started `at` of its checkouts, holds the locks of the
// components it breaks (so two episodes never fight over one process), and
// heals what it broke before it returns.
type episode struct {
	scenario string
	round    int
	at       int // workload ops started
	targets  []string
}

// episodeLog is what the summary reports of an episode.
type episodeLog struct {
	Scenario string  `json:"scenario"`
	Round    int     `json:"round"`
	StartS   float64 `json:"start_s"` // since the workload started
	Seconds  float64 `json:"seconds"`
	Detail   string  `json:"detail,omitempty"`
	Error    string  `json:"error,omitempty"`
}

// sameKeyBurst is F18's record: 50 requests with one key at once.
type sameKeyBurst struct {
	op       *op
	statuses map[int]int
	ids      map[string]bool
	errors   int
}

type nemesis struct {
	cfg Config
	c   *cluster
	w   *workload
	log *slog.Logger
	rng *rand.Rand

	mu       sync.Mutex
	counts   map[string]int64
	episodes []episodeLog
	bursts   []*sameKeyBurst
	locks    map[string]*sync.Mutex
	t0       time.Time
	// poisonFn runs F15 (it needs the harness's broker connection).
	poisonFn       func(context.Context) (string, error)
	poisonInjected int64
	poisonIDs      []string
	// pool is the harness's database connection (awaitBusy).
	pool *pgxpool.Pool
	// pay fires payout runs (F19, F20).
	pay *payouts
}

// targetOrder is the order locks are taken in, so episodes cannot deadlock.
var targetOrder = []string{"pg", "nats", "A", "B", "psp"}

func targetsOf(scenario string) []string {
	switch scenario {
	case scNATSKill, scPoison:
		return []string{"nats"}
	case scPGRestart:
		return []string{"pg"}
	case scConsumerKill, scSlowHandler:
		return []string{"B"}
	case scRelayKill:
		return []string{"A"}
	case scDupWindow:
		// B must not redeclare the streams meanwhile; the operator's
		// redrive and the re-sends need PostgreSQL and NATS up.
		return []string{"A", "B", "pg", "nats"}
	case scPSPAfter, scWebhooks, scPayoutRace, scPSPPayout:
		return []string{"psp"}
	}
	return nil
}

func newNemesis(cfg Config, c *cluster, w *workload, log *slog.Logger) *nemesis {
	n := &nemesis{cfg: cfg, c: c, w: w, log: log, rng: rand.New(rand.NewPCG(cfg.Seed, 0x6e656d65)),
		counts: map[string]int64{}, locks: map[string]*sync.Mutex{}}
	for _, t := range targetOrder {
		n.locks[t] = &sync.Mutex{}
	}
	return n
}

// schedule spreads Rounds × Scenarios episodes over 5–70 % of the
// workload's starts, in a seeded order, so faults fire throughout and the
// last ones leave time for their slow recoveries (a killed executor's
// lease, AckWait, the resolver) before the workload ends.
func (n *nemesis) schedule() []episode {
	var eps []episode
	for r := range n.cfg.Rounds {
		order := slices.Clone(n.cfg.Scenarios)
		n.rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		// F19 and F20 hold the simulator until their payouts are final
		// (tens of seconds with hangs and retries): last in the round, so
		// the charge and webhook faults, which need the workload's
		// checkouts in flight, never wait behind them past its end.
		slices.SortStableFunc(order, func(a, b string) int { return holdsPSPLong(a) - holdsPSPLong(b) })
		for _, s := range order {
			// F16 holds process B frozen for 35 s: a third of the rounds
			// is plenty, and leaves B free for the kills.
			if s == scSlowHandler && r%3 != 0 {
				continue
			}
			// F21 breaks the reconciliation, which runs after the workload.
			if s == scReconCrash {
				continue
			}
			eps = append(eps, episode{scenario: s, round: r + 1, targets: targetsOf(s)})
		}
	}
	total := n.cfg.Checkouts
	for i := range eps {
		frac := 0.05 + 0.65*float64(i)/float64(max(1, len(eps)-1))
		if len(eps) == 1 {
			frac = 0.3
		}
		eps[i].at = int(frac * float64(total))
	}
	return eps
}

// holdsPSPLong is 1 for the scenarios that keep the simulator's lock until
// payouts settle, 0 for the others.
func holdsPSPLong(scenario string) int {
	if scenario == scPayoutRace || scenario == scPSPPayout {
		return 1
	}
	return 0
}

// run fires every episode at its trigger and returns when all have ended.
func (n *nemesis) run(ctx context.Context) {
	n.t0 = time.Now()
	var wg sync.WaitGroup
	for _, ep := range n.schedule() {
		for n.w.started.Load() < int64(ep.at) && ctx.Err() == nil {
			sleepCtx(ctx, 50*time.Millisecond)
		}
		if ctx.Err() != nil {
			break
		}
		seed := n.rng.Uint64()
		wg.Go(func() { n.fire(ctx, ep, rand.New(rand.NewPCG(seed, 1))) })
	}
	wg.Wait()
}

func (n *nemesis) fire(ctx context.Context, ep episode, r *rand.Rand) {
	ts := slices.Clone(ep.targets)
	slices.SortFunc(ts, func(a, b string) int { return slices.Index(targetOrder, a) - slices.Index(targetOrder, b) })
	for _, t := range ts {
		n.locks[t].Lock()
	}
	defer func() {
		for _, t := range ts {
			n.locks[t].Unlock()
		}
	}()
	start := time.Now()
	n.log.Info("fault", "scenario", ep.scenario, "round", ep.round)
	detail, err := n.inject(ctx, ep, r)
	l := episodeLog{Scenario: ep.scenario, Round: ep.round, StartS: round2(start.Sub(n.t0).Seconds()),
		Seconds: round2(time.Since(start).Seconds()), Detail: detail}
	if err != nil {
		l.Error = err.Error()
		n.log.Warn("fault episode failed", "scenario", ep.scenario, "err", err)
	}
	n.mu.Lock()
	n.episodes = append(n.episodes, l)
	n.mu.Unlock()
}

func (n *nemesis) count(k string, d int64) {
	n.mu.Lock()
	n.counts[k] += d
	n.mu.Unlock()
}

func between(r *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
}

// killAndRestart kills p with SIGKILL (scraping its counters just before),
// keeps it down for d and starts it again. With busy schemas, the kill
// waits (up to 3 s) for a moment when one of their outboxes has
// unpublished rows: the process is then inside a write, a relay pass or a
// consumer transaction, not idle, so the kill lands where it can hurt
// (between PubAck and mark, between commit and ack) far more often than a
// kill at a random instant would.
func (n *nemesis) killAndRestart(ctx context.Context, p *proc, d time.Duration, busy ...string) error {
	if len(busy) > 0 {
		n.awaitBusy(ctx, busy, 3*time.Second)
	}
	n.c.scrapes.all(ctx)
	if err := p.kill(ctx); err != nil {
		return err
	}
	sleepCtx(ctx, d)
	if err := p.resume(); err != nil {
		return err
	}
	return p.awaitReady(ctx, 90*time.Second)
}

// awaitBusy polls, every 2 ms, until one of the schemas' outboxes has a
// pending row or max passes (PostgreSQL may be down: then it just waits).
func (n *nemesis) awaitBusy(ctx context.Context, schemas []string, max time.Duration) {
	q := ""
	for i, s := range schemas {
		if i > 0 {
			q += " UNION ALL "
		}
		q += "(SELECT 1 FROM " + s + ".outbox WHERE published_at IS NULL LIMIT 1)"
	}
	q = "SELECT EXISTS (" + q + ")"
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		qctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		var pending bool
		err := n.pool.QueryRow(qctx, q).Scan(&pending)
		cancel()
		if err == nil && pending {
			return
		}
		sleepCtx(ctx, 2*time.Millisecond)
	}
}

func (n *nemesis) inject(ctx context.Context, ep episode, r *rand.Rand) (string, error) {
	c := n.c
	switch ep.scenario {
	case scNATSKill:
		d := between(r, time.Second, 3*time.Second)
		n.count(fNATSKills, 1)
		return fmt.Sprintf("nats-server SIGKILL, down %s", d.Round(time.Millisecond)), n.killAndRestart(ctx, c.nats, d)

	case scConsumerKill:
		d := between(r, 300*time.Millisecond, 2*time.Second)
		n.count(fConsumerKills, 1)
		return fmt.Sprintf("process B SIGKILL, down %s", d.Round(time.Millisecond)), n.killAndRestart(ctx, c.b, d, "ledger", "wallet")

	case scRelayKill:
		d := between(r, 200*time.Millisecond, 1500*time.Millisecond)
		n.count(fRelayKills, 1)
		return fmt.Sprintf("process A SIGKILL, down %s", d.Round(time.Millisecond)), n.killAndRestart(ctx, c.a, d, "payment", "executor")

	case scDupWindow:
		// A redeclares the streams with a 1 s duplicate window at start.
		// Killed under load and kept down past the window, its relays may
		// re-send rows that JetStream no longer remembers (if the kill fell
		// between PubAck and mark); an operator's `outbox redrive` past the
		// window certainly does. The copies are stored, and only the
		// consumers' inboxes stop them.
		start := time.Now()
		if err := n.restartWithEnv(ctx, c.a, []string{"PAYPIPE_DUPLICATE_WINDOW=1s"}); err != nil {
			return "", err
		}
		sleepCtx(ctx, between(r, time.Second, 3*time.Second))
		n.count(fRelayKillsWindow, 1)
		err := n.killAndRestart(ctx, c.a, between(r, 1500*time.Millisecond, 2500*time.Millisecond), "payment", "executor")
		var redriven int64
		if err == nil {
			sleepCtx(ctx, 1500*time.Millisecond) // past the window
			redriven, err = n.redrive(ctx, start)
		}
		// Back to the default window whatever happened.
		if rerr := n.restartWithEnv(ctx, c.a, nil); err == nil {
			err = rerr
		}
		return fmt.Sprintf("process A restarted with PAYPIPE_DUPLICATE_WINDOW=1s, SIGKILL under load, restarted after the window; "+
			"then `paypipe outbox redrive --schema payment` re-sent %d rows after the window", redriven), err

	case scPSPAfter:
		f := pspsim.Faults{Seed: r.Uint64(), FailAfterChargeRate: 0.2, HangAfterChargeRate: 0.15,
			HangFor: pspsim.Duration(12 * time.Second)}
		n.count(fPSPWindows, 1)
		return n.pspWindow(ctx, f, "PSP answers 500 (20%) or hangs 12 s past the executor's 10 s timeout (15%) after charging",
			func(i pspsim.Injected) int64 { return i.FailAfterCharge + i.HangAfterCharge })

	case scWebhooks:
		f := pspsim.Faults{Seed: r.Uint64(), DuplicateWebhookRate: 0.5, OutOfOrderWebhooks: true, DropWebhookRate: 0.25}
		n.count(fWebhookWindows, 1)
		// Payout webhooks are dropped, duplicated and reordered too: process
		// A's payout resolver asks the PSP after PAYPIPE_PAYOUT_RESOLVE_AFTER
		// (3 s here), as it would after 10 minutes in production.
		return n.pspWindow(ctx, f, "webhooks duplicated ×2–3 (50%), batches reversed, dropped (25%)",
			func(i pspsim.Injected) int64 { return i.DuplicateWebhooks + i.ReorderedBatches + i.DroppedWebhooks })

	case scSameKey:
		return n.sameKey(ctx, ep.round)

	case scPGRestart:
		d := between(r, 5*time.Second, 8*time.Second)
		n.count(fPGRestarts, 1)
		if err := c.pg.stopImmediate(ctx); err != nil {
			return "", err
		}
		sleepCtx(ctx, d)
		if err := c.pg.start(ctx); err != nil {
			return "", err
		}
		return fmt.Sprintf("pg_ctl stop -m immediate, down %s", d.Round(time.Millisecond)),
			awaitCond(ctx, 60*time.Second, func(ctx context.Context) error { return c.pg.ping(ctx) })

	case scSlowHandler:
		// A handler slower than AckWait, made honestly: the whole process is
		// frozen mid-work (SIGSTOP), its transactions open, for AckWait +
		// 5 s; JetStream redelivers what it had in flight, and after SIGCONT
		// the first copy commits and the second meets the inbox row.
		d := ackWait + 5*time.Second
		n.c.scrapes.all(ctx)
		before := n.c.scrapes.sum("paypipe_consumer_messages_total", `result="duplicate"`)
		if err := c.b.pause(); err != nil {
			return "", err
		}
		n.count(fSlowHandler, 1)
		sleepCtx(ctx, d)
		if err := c.b.cont(); err != nil {
			return "", err
		}
		// The copies redelivered during the freeze reach the inbox within
		// moments of SIGCONT; B stays locked meanwhile, so no other episode
		// on B adds to the count.
		sleepCtx(ctx, 5*time.Second)
		n.c.scrapes.all(ctx)
		after := n.c.scrapes.sum("paypipe_consumer_messages_total", `result="duplicate"`)
		return fmt.Sprintf("process B SIGSTOP for %s (AckWait %s); inbox duplicates in the 5 s after SIGCONT: %d (all processes)",
			d, ackWait, after-before), nil

	case scPoison:
		return n.poisonFn(ctx)

	case scPayoutRace:
		return n.payoutRace(ctx)

	case scPSPPayout:
		// Hangs outlast the 10 s CallTimeout of the executor's refunder
		// and of the payout sender: an unknown outcome, retried after a
		// look-up by reference.
		f := pspsim.Faults{Seed: r.Uint64(), FailAfterRefundRate: 0.25, HangAfterRefundRate: 0.2,
			FailAfterPayoutRate: 0.25, HangAfterPayoutRate: 0.25, HangFor: pspsim.Duration(12 * time.Second),
			FailNextPayouts: 1 + r.IntN(2)}
		n.count(fPSPPayoutWindows, 1)
		var runs []*payoutRun
		detail, err := n.pspWindowWith(ctx, f, "PSP refunds: 500 (25%) or 12 s hang (20%) after committing; payouts: 500 (25%) or hang (25%) after "+
			fmt.Sprintf("committing, the next %d fail (account_closed)", f.FailNextPayouts),
			func(i pspsim.Injected) int64 {
				return i.FailAfterRefund + i.HangAfterRefund + i.FailAfterPayout + i.HangAfterPayout
			},
			func(ctx context.Context) {
				runs = n.pay.fire(ctx, "", false)
				// Keep the faults on until the run's payouts have reached the
				// PSP (A may be down meanwhile), so that they meet them.
				_ = awaitCond(ctx, 15*time.Second, func(ctx context.Context) error {
					var waiting int64
					if err := n.pool.QueryRow(ctx, `SELECT count(*) FROM payout.payouts WHERE status IN ('requested', 'created')
  AND psp_payout_id IS NULL AND attempts = 0`).Scan(&waiting); err != nil {
						return err
					}
					if waiting > 0 {
						return fmt.Errorf("%d payouts not sent yet", waiting)
					}
					return nil
				})
			})
		// Hold the simulator until the window's payouts are final.
		n.pay.awaitSettled(ctx, 90*time.Second)
		if len(runs) > 0 {
			detail += fmt.Sprintf("; payout run %s requested %d", runs[0].Period, runs[0].Result.Requested)
		}
		return detail, err
	}
	return "", fmt.Errorf("scenario %s not implemented", ep.scenario)
}

// redrive re-queues payment's rows created since t with `paypipe outbox
// redrive` and waits (up to 30 s) until A's relay has sent them again.
func (n *nemesis) redrive(ctx context.Context, since time.Time) (int64, error) {
	out, err := n.c.paypipeCmd(ctx, time.Minute, false, "outbox", "redrive", "--schema", "payment",
		"--since", since.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return 0, err
	}
	var rows int64
	if _, err := fmt.Sscanf(lastLine(string(out)), "re-queued %d rows", &rows); err != nil {
		return 0, fmt.Errorf("outbox redrive: unexpected output %q", truncate(out, 300))
	}
	n.count(fRedriven, rows)
	return rows, awaitCond(ctx, 30*time.Second, func(ctx context.Context) error {
		var pending int64
		if err := n.pool.QueryRow(ctx, `SELECT count(*) FROM payment.outbox WHERE published_at IS NULL AND created_at >= $1`, since).Scan(&pending); err != nil {
			return err
		}
		if pending > 0 {
			return fmt.Errorf("%d re-driven rows not sent yet", pending)
		}
		return nil
	})
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// restartWithEnv restarts p gracefully with extra environment.
func (n *nemesis) restartWithEnv(ctx context.Context, p *proc, env []string) error {
	n.c.scrapes.all(ctx)
	if err := p.term(ctx); err != nil {
		return err
	}
	p.mu.Lock()
	p.envExtra = env
	p.mu.Unlock()
	if err := p.resume(); err != nil {
		return err
	}
	return p.awaitReady(ctx, 90*time.Second)
}

// pspWindow turns the simulator's faults on for PSPFaultWindow, then off.
// A window in which hit (the simulator's count of the faults it is about)
// did not move, because no request came that could be faulted (NATS down
// at the same time, say), is extended by up to two more windows.
func (n *nemesis) pspWindow(ctx context.Context, f pspsim.Faults, what string, hit func(pspsim.Injected) int64) (string, error) {
	return n.pspWindowWith(ctx, f, what, hit, nil)
}

// pspWindowWith is pspWindow with an action started as the faults go on.
func (n *nemesis) pspWindowWith(ctx context.Context, f pspsim.Faults, what string, hit func(pspsim.Injected) int64,
	during func(context.Context)) (string, error) {
	before, err := n.c.faultsView(ctx)
	if err != nil {
		return "", err
	}
	if err := n.c.setFaults(ctx, f); err != nil {
		return "", err
	}
	start := time.Now()
	if during != nil {
		during(ctx)
	}
	sleepCtx(ctx, n.cfg.PSPFaultWindow-time.Since(start))
	for ext := 0; ext < 2 && ctx.Err() == nil; ext++ {
		now, err := n.c.faultsView(ctx)
		if err != nil || hit(now.Injected) > hit(before.Injected) {
			break
		}
		sleepCtx(ctx, n.cfg.PSPFaultWindow)
	}
	window := time.Since(start).Round(100 * time.Millisecond)
	// Clearing must not fail silently: faults left on would run into the
	// checks. Retry for a while (the simulator may be restarting).
	hctx := context.WithoutCancel(ctx)
	err = awaitCond(hctx, 60*time.Second, func(ctx context.Context) error {
		return n.c.setFaults(ctx, pspsim.Faults{Seed: f.Seed})
	})
	return fmt.Sprintf("%s for %s", what, window), err
}

// sameKey is F18: 50 concurrent requests with one Idempotency-Key and one
// body. Then the key is retried until it answers, to learn the checkout
// (whose payment the checks follow like any other).
func (n *nemesis) sameKey(ctx context.Context, round int) (string, error) {
	const parallel = 50
	w := n.w
	o := w.plan(-round) // a fresh, seeded request outside the workload's numbering
	o.Kind = "same_key"
	o.BuyerID = fmt.Sprintf("chaos-same-key-%d", round)
	var req map[string]any
	_ = json.Unmarshal(o.Body, &req)
	req["buyer_id"], req["mode"], req["payment_method"] = o.BuyerID, "direct", "pm_card_visa"
	delete(req, "return_url")
	o.Mode, o.Card = "direct", ""
	o.Body, _ = json.Marshal(req)
	b := &sameKeyBurst{op: o, statuses: map[int]int{}, ids: map[string]bool{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	gate := make(chan struct{})
	for range parallel {
		wg.Go(func() {
			<-gate
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			res, err := w.api.do(rctx, http.MethodPost, "/v1/checkouts", o.Key, o.Body)
			w.stats.note(res, err)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				b.errors++
				return
			}
			b.statuses[res.status]++
			if res.status/100 == 2 {
				var co payment.Checkout
				if json.Unmarshal(res.body, &co) == nil {
					b.ids[co.ID.String()] = true
				}
			}
		})
	}
	close(gate)
	wg.Wait()
	n.count(fSameKeyBursts, 1)
	n.count(fSameKeyRequests, parallel)
	w.checkout(ctx, o, n.cfg.OpTimeout)
	n.mu.Lock()
	n.bursts = append(n.bursts, b)
	n.mu.Unlock()
	return fmt.Sprintf("%d requests, one key: statuses %v, connection errors %d, checkout %s", parallel, b.statuses, b.errors, o.CheckoutID), nil
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// payoutRace is F19: up to three fulfilled orders of one seller are fully
// refunded while a payout run for that seller is requested, all at once.
// The wallet's row lock orders them: the payout takes what is available
// when it reserves, the refunds take the rest (leaving a debt if they come
// after). The checks then hold every payout to its reservation (I9).
func (n *nemesis) payoutRace(ctx context.Context) (string, error) {
	var orders []fulfilledOrder
	// Early in the workload no order may be fulfilled yet.
	_ = awaitCond(ctx, 30*time.Second, func(context.Context) error {
		if orders = n.w.takeFulfilled(3); len(orders) == 0 {
			return fmt.Errorf("no fulfilled order yet")
		}
		return nil
	})
	if len(orders) == 0 {
		return "no fulfilled order to refund within 30 s: nothing raced", nil
	}
	r := rand.New(rand.NewPCG(n.cfg.Seed, keySeed(orders[0].orderID)))
	var ops []*saleOp
	for _, o := range orders {
		ops = append(ops, &saleOp{N: -1, Kind: kindRefundF19, OrderID: o.orderID, SellerID: o.sellerID, OrderAmount: o.amount,
			Key: seededUUID(r), Body: []byte(`{"reason":"requested_by_customer"}`)})
	}
	n.w.addSaleOps(ops...)
	n.count(fPayoutRaces, 1)
	n.count(fPayoutRaceRefund, int64(len(ops)))
	var wg sync.WaitGroup
	gate := make(chan struct{})
	var runs []*payoutRun
	wg.Go(func() {
		<-gate
		runs = n.pay.fire(ctx, orders[0].sellerID, false)
	})
	for _, s := range ops {
		wg.Go(func() {
			<-gate
			n.w.send(ctx, s, n.cfg.OpTimeout)
		})
	}
	close(gate)
	wg.Wait()
	n.pay.awaitSettled(ctx, 90*time.Second)
	accepted := 0
	for _, s := range ops {
		if s.Outcome == outcomeOK {
			accepted++
		}
	}
	return fmt.Sprintf("payout run %s for seller %s racing %d full refunds of its fulfilled orders (%d accepted); payouts requested %d",
		runs[0].Period, orders[0].sellerID, len(ops), accepted, runs[0].Result.Requested), nil
}
