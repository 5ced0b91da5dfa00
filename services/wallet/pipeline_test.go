package wallet_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/ledger"
	"github.com/paypipe/paypipe/services/wallet"
)

// TestPipelineLedgerAndWallet runs both services on the real pipeline
// (PostgreSQL, embedded JetStream, relays in atomic-batch mode, runners).
// payments.order.succeeded events come from a scratch outbox standing in for
// the payment service. Every event is sent three times: once more under a new
// ce-id (the same payment order re-sent: the external id and the (cause, ref)
// key must catch it) and then every NATS message once more with the same
// ce-id and a new Nats-Msg-Id (the inbox must catch it). Then: one entry and
// one change per order, balanced books, the expected balances in four
// currencies (exponents 0, 2 and 3), wallet == ledger, and the events each
// service emitted carry the right figures.
func TestPipelineLedgerAndWallet(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := outbox.MustStore("paysrc")
	pool, _ := testenv.Migrated(t, migrate.Schema{Store: src}, ledger.Schema(), wallet.Schema())
	nc := testenv.Connect(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	metrics := outbox.NewMetrics(reg)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	var srcRelay *outbox.Relay
	for _, store := range []outbox.Store{src, ledger.Store, wallet.Store} {
		relay, err := outbox.NewRelay(outbox.RelayConfig{Store: store, Pool: pool, Conn: nc, Mode: outbox.PublishAtomicBatch,
			StreamOf: contracts.StreamOf, Metrics: metrics, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		if store == src {
			srcRelay = relay
		}
		wg.Go(func() { _ = relay.Run(runCtx) })
	}
	for _, svc := range []struct {
		store outbox.Store
		specs []outbox.ConsumerSpec
	}{
		{ledger.Store, ledger.Consumers(ledger.WithLogger(log))},
		{wallet.Store, wallet.Consumers(wallet.WithLogger(log))},
	} {
		runner, err := outbox.NewRunner(outbox.RunnerConfig{Store: svc.store, Pool: pool, Conn: nc, Metrics: metrics, Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range svc.specs {
			if err := runner.Add(s); err != nil {
				t.Fatal(err)
			}
		}
		wg.Go(func() {
			if err := runner.Run(runCtx); err != nil {
				t.Errorf("runner %s: %v", svc.store.Schema(), err)
			}
		})
	}

	// The orders: 4 sellers of 2 merchants, 4 currencies, fee rates from 0
	// (no fee line) to 10%, amounts up to 10,000 major units.
	const n = 40
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x1ed6e7))
	merchants := []string{uuid.NewString(), uuid.NewString()}
	sellers := []struct{ id, merchant string }{
		{uuid.NewString(), merchants[0]}, {uuid.NewString(), merchants[0]}, {uuid.NewString(), merchants[0]}, {uuid.NewString(), merchants[1]},
	}
	currencies := []string{"USD", "EUR", "JPY", "KWD"}
	rates := []int{0, 175, 290, 1000}
	orders := map[string]contracts.OrderSucceeded{}
	type key struct{ seller, cur string }
	wantPayable, wantCount := map[key]int64{}, map[key]int64{}
	wantPSP, wantFees := map[string]int64{}, map[string]int64{}
	var events []contracts.OrderSucceeded
	for i := range n {
		s := sellers[i%len(sellers)]
		cur, err := money.ParseCurrency(currencies[rng.IntN(len(currencies))])
		if err != nil {
			t.Fatal(err)
		}
		amount := 1 + rng.Int64N(10_000*int64(math.Pow10(cur.Exponent)))
		fee, err := money.Fee(amount, rates[rng.IntN(len(rates))])
		if err != nil {
			t.Fatal(err)
		}
		ev := contracts.OrderSucceeded{PaymentOrderID: uuid.NewString(), CheckoutID: uuid.NewString(), MerchantID: s.merchant,
			SellerID: s.id, Currency: cur.Code, AmountMinor: amount, FeeMinor: fee, NetMinor: amount - fee,
			PSPPaymentID: fmt.Sprintf("pi_%d", i), SucceededAt: time.Now().UTC()}
		events = append(events, ev)
		orders[ev.PaymentOrderID] = ev
		k := key{s.id, cur.Code}
		wantPayable[k] += ev.NetMinor
		wantCount[k]++
		wantPSP[cur.Code] += amount
		wantFees[cur.Code] += fee
	}
	// Each order goes out twice from the outbox: as itself and re-sent under
	// a new ce-id, in separate transactions of 10 orders.
	for start := 0; start < n; start += 10 {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			var msgs []*outbox.Message
			for _, ev := range events[start:min(start+10, n)] {
				payload, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				for range 2 {
					msgs = append(msgs, &outbox.Message{Subject: contracts.SubjectOrderSucceeded,
						Type: contracts.TypeOf(contracts.SubjectOrderSucceeded), Source: contracts.SourcePayment,
						AggregateID: ev.PaymentOrderID, AggregateVersion: 3, Payload: payload})
				}
			}
			return src.Write(ctx, tx, msgs...)
		})
		if err != nil {
			t.Fatal(err)
		}
		srcRelay.Wake()
	}
	testenv.Eventually(t, 30*time.Second, "every order published", func() (bool, error) {
		st, err := src.Status(ctx, pool)
		return err == nil && st.Backlog == 0, err
	})

	// Every NATS message once more: same ce-id, new Nats-Msg-Id, as a DLQ
	// replay does. The stream stores the copies; the inboxes must drop them.
	payments, err := js.Stream(ctx, contracts.StreamPayments)
	if err != nil {
		t.Fatal(err)
	}
	info, err := payments.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2*n {
		t.Fatalf("PAYMENTS holds %d messages, want %d", info.State.Msgs, 2*n)
	}
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		raw, err := payments.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(raw.Subject)
		for k, v := range raw.Header {
			if !strings.HasPrefix(strings.ToLower(k), "nats-") { // the relay's batch headers
				m.Header[k] = v
			}
		}
		m.Header.Set(jetstream.MsgIDHeader, uuid.NewString())
		m.Data = raw.Data
		if ack, err := js.PublishMsg(ctx, m); err != nil || ack.Duplicate {
			t.Fatalf("copy of seq %d: %+v, %v", seq, ack, err)
		}
	}

	for _, c := range []string{contracts.LedgerPaymentsConsumer, contracts.WalletPaymentsConsumer} {
		testenv.Eventually(t, 30*time.Second, c+" saw every message", func() (bool, error) {
			applied := gather(t, reg, "paypipe_consumer_messages_total", map[string]string{"consumer": c, "result": "applied"})
			dup := gather(t, reg, "paypipe_consumer_messages_total", map[string]string{"consumer": c, "result": "duplicate"})
			return applied == 2*n && dup == 2*n, nil
		})
		if e := gather(t, reg, "paypipe_consumer_messages_total", map[string]string{"consumer": c, "result": "error"}); e != 0 {
			t.Errorf("%s: %v handler errors", c, e)
		}
	}
	for _, s := range []outbox.Store{ledger.Store, wallet.Store} {
		testenv.Eventually(t, 30*time.Second, s.Schema()+" events published", func() (bool, error) {
			st, err := s.Status(ctx, pool)
			return err == nil && st.Backlog == 0, err
		})
	}

	// The books: one entry per order, balanced, with the expected balances.
	if got := count(t, pool, `SELECT count(*) FROM ledger.journal_entries`); got != n {
		t.Fatalf("%d journal entries, want %d", got, n)
	}
	if got := count(t, pool, `SELECT count(DISTINCT payment_order_id) FROM ledger.journal_entries WHERE kind = $1`, contracts.EntryOrderCaptured); got != n {
		t.Fatalf("%d orders posted, want %d", got, n)
	}
	if got := count(t, pool, `SELECT count(*) FROM ledger.inbox WHERE consumer = $1`, contracts.LedgerPaymentsConsumer); got != 2*n {
		t.Fatalf("%d ledger inbox rows, want %d", got, 2*n)
	}
	if v, err := ledger.CheckBalanced(ctx, pool); err != nil || len(v) != 0 {
		t.Fatalf("CheckBalanced = %+v, %v", v, err)
	}
	balances, err := ledger.Balances(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	gotPSP, gotFees := map[string]int64{}, map[string]int64{}
	for _, b := range balances {
		switch {
		case b.Account == contracts.AccountPSPReceivable:
			gotPSP[b.Currency] = b.Net()
		case b.Account == contracts.AccountPlatformFeeRevenue:
			gotFees[b.Currency] = b.Net()
		case strings.HasPrefix(b.Account, contracts.AccountSellerPayablePrefix):
		default:
			t.Errorf("unexpected account %s", b.Account)
		}
	}
	for cur := range wantPSP {
		if gotPSP[cur] != wantPSP[cur] || gotFees[cur] != wantFees[cur] {
			t.Errorf("%s: psp_receivable %d (want %d), platform_fee_revenue %d (want %d)", cur, gotPSP[cur], wantPSP[cur], gotFees[cur], wantFees[cur])
		}
	}
	for _, s := range sellers {
		payable, err := ledger.SellerPayable(ctx, pool, s.id)
		if err != nil {
			t.Fatal(err)
		}
		for _, cur := range currencies {
			if payable[cur] != wantPayable[key{s.id, cur}] {
				t.Errorf("seller_payable:%s %s = %d, want %d", s.id, cur, payable[cur], wantPayable[key{s.id, cur}])
			}
		}
	}

	// The wallets: one change per order, pending = Σ net, version = orders.
	if got := count(t, pool, `SELECT count(*) FROM wallet.changes`); got != n {
		t.Fatalf("%d wallet changes, want %d", got, n)
	}
	if got := count(t, pool, `SELECT count(*) FROM wallet.inbox WHERE consumer = $1`, contracts.WalletPaymentsConsumer); got != 2*n {
		t.Fatalf("%d wallet inbox rows, want %d", got, 2*n)
	}
	all, err := wallet.All(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != len(wantPayable) {
		t.Fatalf("%d wallet balances, want %d", len(all), len(wantPayable))
	}
	for _, b := range all {
		k := key{b.SellerID, b.Currency}
		if b.PendingMinor != wantPayable[k] || b.AvailableMinor != 0 || b.PaidOutMinor != 0 || b.Version != wantCount[k] {
			t.Errorf("wallet %s %s: %+v; want pending %d, version %d", b.SellerID, b.Currency, b, wantPayable[k], wantCount[k])
		}
	}
	if d, err := wallet.CheckAgainstLedger(ctx, pool); err != nil || len(d) != 0 {
		t.Fatalf("CheckAgainstLedger = %+v, %v", d, err)
	}

	// What the services told the others.
	posted := map[string]bool{}
	for _, raw := range streamMsgs(t, js, contracts.StreamLedger) {
		var ev contracts.LedgerEntryPosted
		if err := json.Unmarshal(raw.Data, &ev); err != nil {
			t.Fatal(err)
		}
		o, ok := orders[ev.PaymentOrderID]
		if !ok || posted[ev.PaymentOrderID] {
			t.Fatalf("ledger event for unknown or repeated order: %+v", ev)
		}
		posted[ev.PaymentOrderID] = true
		want := []contracts.Posting{{Account: contracts.AccountPSPReceivable, Direction: contracts.Debit, AmountMinor: o.AmountMinor}}
		if o.NetMinor > 0 {
			want = append(want, contracts.Posting{Account: contracts.SellerPayable(o.SellerID), Direction: contracts.Credit, AmountMinor: o.NetMinor})
		}
		if o.FeeMinor > 0 {
			want = append(want, contracts.Posting{Account: contracts.AccountPlatformFeeRevenue, Direction: contracts.Credit, AmountMinor: o.FeeMinor})
		}
		if raw.Header.Get(outbox.HeaderType) != contracts.TypeOf(contracts.SubjectLedgerEntryPosted) || raw.Subject != contracts.SubjectLedgerEntryPosted ||
			ev.ExternalID != "order_captured:"+o.PaymentOrderID || ev.Kind != contracts.EntryOrderCaptured || ev.MerchantID != o.MerchantID ||
			ev.Currency != o.Currency || fmt.Sprint(ev.Postings) != fmt.Sprint(want) || ev.EntryID == "" {
			t.Errorf("ledger event %+v (%s); want postings %+v for %+v", ev, raw.Header.Get(outbox.HeaderType), want, o)
		}
	}
	if len(posted) != n {
		t.Fatalf("%d ledger.entry.posted events, want %d", len(posted), n)
	}
	credited := map[string]bool{}
	byBalance := map[key][]contracts.WalletBalanceChanged{}
	for _, raw := range streamMsgs(t, js, contracts.StreamWallet) {
		var ev contracts.WalletBalanceChanged
		if err := json.Unmarshal(raw.Data, &ev); err != nil {
			t.Fatal(err)
		}
		o, ok := orders[ev.PaymentOrderID]
		if !ok || credited[ev.PaymentOrderID] {
			t.Fatalf("wallet event for unknown or repeated order: %+v", ev)
		}
		credited[ev.PaymentOrderID] = true
		if raw.Header.Get(outbox.HeaderType) != contracts.TypeOf(contracts.SubjectWalletBalance) || ev.Cause != contracts.CauseOrderSucceeded ||
			ev.SellerID != o.SellerID || ev.MerchantID != o.MerchantID || ev.Currency != o.Currency || ev.DeltaPendingMinor != o.NetMinor {
			t.Errorf("wallet event %+v for %+v", ev, o)
		}
		k := key{ev.SellerID, ev.Currency}
		byBalance[k] = append(byBalance[k], ev)
	}
	if len(credited) != n {
		t.Fatalf("%d wallet.balance.changed events, want %d", len(credited), n)
	}
	for k, evs := range byBalance {
		// Versions 1..k, each once; each event's pending is the running sum.
		byVersion := map[int64]contracts.WalletBalanceChanged{}
		for _, ev := range evs {
			byVersion[ev.Version] = ev
		}
		var running int64
		for v := int64(1); v <= wantCount[k]; v++ {
			ev, ok := byVersion[v]
			if !ok {
				t.Fatalf("%v: no event with version %d among %+v", k, v, evs)
			}
			running += ev.DeltaPendingMinor
			if ev.PendingMinor != running {
				t.Errorf("%v version %d: pending %d, want %d", k, v, ev.PendingMinor, running)
			}
		}
		if len(evs) != int(wantCount[k]) || running != wantPayable[k] {
			t.Errorf("%v: %d events ending at %d; want %d ending at %d", k, len(evs), running, wantCount[k], wantPayable[k])
		}
	}

	// The wallet ↔ ledger check is not vacuous: money on one side only, or a
	// figure off by one minor unit, is reported with both figures.
	s0 := sellers[0].id
	var cur0 string
	var pending0 int64
	if err := pool.QueryRow(ctx, `SELECT currency, pending_minor FROM wallet.balances WHERE seller_id = $1 ORDER BY currency LIMIT 1`, s0).Scan(&cur0, &pending0); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `UPDATE wallet.balances SET available_minor = 1 WHERE seller_id = $1 AND currency = $2`, s0, cur0); err != nil {
		t.Fatal(err)
	}
	stranger := uuid.NewString()
	if err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		e, err := ledger.OrderCaptured(contracts.OrderSucceeded{PaymentOrderID: uuid.NewString(), CheckoutID: uuid.NewString(), MerchantID: merchants[1], SellerID: stranger,
			Currency: "JPY", AmountMinor: 500, FeeMinor: 0, NetMinor: 500})
		if err != nil {
			return err
		}
		_, err = ledger.Post(ctx, tx, e)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	drifts, err := wallet.CheckAgainstLedger(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]wallet.Drift{
		s0:       {SellerID: s0, Currency: cur0, PendingMinor: pending0, AvailableMinor: 1, WalletMinor: pending0 + 1, LedgerMinor: pending0},
		stranger: {SellerID: stranger, Currency: "JPY", LedgerMinor: 500, Missing: "wallet"},
	}
	if len(drifts) != len(want) {
		t.Fatalf("drifts %+v, want %+v", drifts, want)
	}
	for _, d := range drifts {
		if d != want[d.SellerID] {
			t.Errorf("drift %+v, want %+v", d, want[d.SellerID])
		}
	}
}

// TestValidatorsAgree: the ledger and the wallet must refuse the same
// events, or one would record an order the other never sees.
func TestValidatorsAgree(t *testing.T) {
	t.Parallel()
	base := contracts.OrderSucceeded{PaymentOrderID: uuid.NewString(), CheckoutID: uuid.NewString(), MerchantID: uuid.NewString(),
		SellerID: uuid.NewString(), Currency: "USD", AmountMinor: 1000, FeeMinor: 30, NetMinor: 970}
	cases := []func(*contracts.OrderSucceeded){
		func(*contracts.OrderSucceeded) {},
		func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = 0, 1000 },
		func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = 1000, 0 },
		func(e *contracts.OrderSucceeded) { e.NetMinor = 971 },
		func(e *contracts.OrderSucceeded) { e.AmountMinor = 0 },
		func(e *contracts.OrderSucceeded) { e.AmountMinor, e.FeeMinor, e.NetMinor = -1000, 0, -1000 },
		func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = -1, 1001 },
		func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = math.MaxInt64, math.MaxInt64 },
		func(e *contracts.OrderSucceeded) {
			e.AmountMinor, e.FeeMinor, e.NetMinor = money.MaxAmount+1, 1, money.MaxAmount
		},
		func(e *contracts.OrderSucceeded) { e.Currency = "usd" },
		func(e *contracts.OrderSucceeded) { e.Currency = "" },
		func(e *contracts.OrderSucceeded) { e.SellerID = "" },
		func(e *contracts.OrderSucceeded) { e.MerchantID = strings.Repeat("m", 256) },
		func(e *contracts.OrderSucceeded) { e.PaymentOrderID = "" },
		func(e *contracts.OrderSucceeded) { e.SellerID = "s" },
	}
	for i, f := range cases {
		ev := base
		f(&ev)
		le, we := ledger.ValidateOrderSucceeded(ev), wallet.ValidateOrderSucceeded(ev)
		if (le == nil) != (we == nil) {
			t.Errorf("case %d %+v: ledger %v, wallet %v", i, ev, le, we)
		}
		if i > 2 && le == nil {
			t.Errorf("case %d %+v: accepted", i, ev)
		}
	}
}

func streamMsgs(t *testing.T, js jetstream.JetStream, stream string) []*jetstream.RawStreamMsg {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func gather(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// testWriter sends service logs (warnings and errors only) to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
