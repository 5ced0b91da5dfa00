package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/executor"
	"github.com/paypipe/paypipe/services/ledger"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/payout"
	"github.com/paypipe/paypipe/services/pspsim"
	"github.com/paypipe/paypipe/services/reconciler"
	"github.com/paypipe/paypipe/services/wallet"
)

// ciSeed is the fixed seed of the CI tier: a failure reproduces with
// `go run ./scripts/chaos -tier ci -seeds 0x5eed -keep`.
const ciSeed = 0x5EED

// TestChaosCI runs the CI tier (RELIABILITY §6.6): ~240 checkouts, with
// their fulfilments, refunds (refund races included) and a payout run
// every 8 s, under every scenario but F16 (whose freeze must outlast
// AckWait), against real child processes; then reconciles the day with
// F21's crash and checks every invariant. It needs PostgreSQL's
// server binaries (initdb, pg_ctl): the run has its own cluster so that F13
// can stop it.
func TestChaosCI(t *testing.T) {
	if os.Getenv("DATABASE_URL") == "" {
		t.Skip("DATABASE_URL is not set: the chaos tier needs PostgreSQL's binaries (run it with `go tool task test`, or export DATABASE_URL=$(bash scripts/pg.sh url)); it starts its own private cluster")
	}
	if testing.Short() {
		t.Skip("-short: the chaos tier takes about two and a half minutes")
	}
	if _, err := findPGBin(); err != nil {
		t.Skip(err)
	}
	cfg, err := tier("ci")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Seed = ciSeed
	if cfg.Repo, err = filepath.Abs("../.."); err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	s, err := run(ctx, cfg, log)
	b, _ := json.MarshalIndent(s, "", "  ")
	t.Logf("summary:\n%s", b)
	if err != nil {
		t.Fatalf("the harness could not run: %v", err)
	}
	safety := reflect.ValueOf(s.Safety)
	for i := range safety.NumField() {
		if n := safety.Field(i).Int(); n != 0 {
			t.Errorf("%s = %d, want 0", safety.Type().Field(i).Tag.Get("json"), n)
		}
	}
	if !s.OK {
		t.Errorf("run failed: %v (run directory kept: %s)", s.Failures, s.RunDir)
	}
	// Every client got its answer and every planned checkout exists.
	bursts := s.FaultsInjected[fSameKeyBursts]
	if want := cfg.Checkouts + int(bursts); s.Checkouts != want {
		t.Errorf("checkouts answered 2xx: %d, want %d", s.Checkouts, want)
	}
	// Each scenario really injected its fault.
	for _, k := range []string{fNATSKills, fConsumerKills, fRelayKills, fRelayKillsWindow, fPGRestarts, fSameKeyBursts} {
		if s.FaultsInjected[k] < 1 {
			t.Errorf("faults_injected[%s] = %d: the scenario did not run", k, s.FaultsInjected[k])
		}
	}
	if s.FaultsInjected["psp_after_charge_timeouts"]+s.FaultsInjected["psp_after_charge_500s"] == 0 {
		t.Error("F3/F4: the simulator injected no fault after a charge")
	}
	if s.FaultsInjected["dup_webhooks"] == 0 || s.FaultsInjected["ooo_webhook_batches"] == 0 || s.FaultsInjected["dropped_webhooks"] == 0 {
		t.Errorf("F6–F8: webhook faults injected %d duplicated, %d batches reordered, %d dropped; want each > 0",
			s.FaultsInjected["dup_webhooks"], s.FaultsInjected["ooo_webhook_batches"], s.FaultsInjected["dropped_webhooks"])
	}
	// F11's re-drive after the 1 s window stores copies that only the
	// inboxes stop: both dedupe paths must show.
	if s.FaultsInjected[fRedriven] == 0 || s.Expected.StreamDuplicateCopies == 0 || s.Expected.DuplicatesAbsorbed == 0 {
		t.Errorf("F11: %d rows re-driven, %d copies stored twice, %d duplicates absorbed by inboxes; want each > 0",
			s.FaultsInjected[fRedriven], s.Expected.StreamDuplicateCopies, s.Expected.DuplicatesAbsorbed)
	}
	// F15 runs when the binary dead-letters (it says so otherwise).
	if why, skipped := s.Skipped[scPoison]; skipped {
		t.Logf("F15 skipped: %s", why)
	} else if s.Expected.PoisonInjected == 0 || s.Expected.DLQCount != s.Expected.PoisonInjected {
		t.Errorf("F15: poison injected %d, distinct messages in the DLQ %d; want equal and > 0", s.Expected.PoisonInjected, s.Expected.DLQCount)
	}
	// The pay-out half: sales, payouts racing refunds (F19), PSP faults on
	// refunds and payouts (F20), a reconciliation killed and resumed (F21).
	if s.Sales.Fulfilments == 0 || s.Sales.RefundsAccepted == 0 || s.Sales.RefundRaces == 0 || s.Sales.RaceRefusals == 0 {
		t.Errorf("sales: %+v; want fulfilments, refunds, refund races and refusals > 0", s.Sales)
	}
	if s.Refunds == 0 || s.Payouts == 0 || s.Expected.PSPPayouts == 0 || s.Expected.PSPRefunds == 0 || s.Sales.PayoutRuns < 3 {
		t.Errorf("refunds %d, payouts %d, PSP payouts %d, PSP refunds %d, payout runs %d; want each > 0 (runs ≥ 3)",
			s.Refunds, s.Payouts, s.Expected.PSPPayouts, s.Expected.PSPRefunds, s.Sales.PayoutRuns)
	}
	if s.FaultsInjected[fPayoutRaces] < 1 || s.FaultsInjected[fPSPPayoutWindows] < 1 {
		t.Errorf("F19 races %d, F20 windows %d: a scenario did not run", s.FaultsInjected[fPayoutRaces], s.FaultsInjected[fPSPPayoutWindows])
	}
	if s.FaultsInjected["psp_after_payout_500s"]+s.FaultsInjected["psp_after_payout_timeouts"]+
		s.FaultsInjected["psp_after_refund_500s"]+s.FaultsInjected["psp_after_refund_timeouts"] == 0 || s.Expected.PSPPayoutsFailed == 0 {
		t.Errorf("F20: faults after a PSP refund or payout %v, failed payouts %d; want > 0", s.FaultsInjected, s.Expected.PSPPayoutsFailed)
	}
	if !s.Recon.Ran || s.Recon.Lines == 0 || s.Recon.Matched != s.Recon.Lines || len(s.Recon.DiffByCurrency) == 0 {
		t.Errorf("I8: reconciliation %+v; want every line matched and a diff per currency", s.Recon)
	}
	if s.FaultsInjected[fReconKills] != 1 {
		t.Logf("F21: the kill did not interrupt the run: %s", s.Recon.Crash)
	}
	if s.Expected.Charges == 0 || s.Expected.WebhooksReceived == 0 || s.Client.ReplayProbes == 0 {
		t.Errorf("charges %d, webhooks received %d, replay probes %d: the workload did not run its course",
			s.Expected.Charges, s.Expected.WebhooksReceived, s.Client.ReplayProbes)
	}
}

// The checker must be able to fail: plant each kind of violation in a
// fresh database and make sure the figures see it.
func TestCheckerCatchesViolations(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Migrated(t, payment.Schema(), executor.Schema(), ledger.Schema(), wallet.Schema(),
		payout.Schema(), reconciler.Schema())
	ns := testenv.NATS(t)
	nc := testenv.Connect(t, ns)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := &harness{pool: pool, js: js}

	// An order.succeeded event in payment's outbox that neither the ledger
	// nor the wallet consumed, except that the ledger dead-lettered it.
	msgID := uuid.New()
	if _, err := pool.Exec(ctx, `INSERT INTO payment.outbox (msg_id, subject, headers, payload, aggregate_id)
VALUES ($1, $2, '{}', '{}', 'x')`, msgID, contracts.SubjectOrderSucceeded); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: contracts.StreamDLQ, Subjects: []string{"dlq.>"}}); err != nil {
		t.Fatal(err)
	}
	dead := nats.NewMsg("dlq." + contracts.LedgerPaymentsConsumer + "." + contracts.SubjectOrderSucceeded)
	dead.Header.Set(outbox.HeaderID, msgID.String())
	dead.Header.Set("Paypipe-Dlq-Consumer", contracts.LedgerPaymentsConsumer)
	if _, err := js.PublishMsg(ctx, dead); err != nil {
		t.Fatal(err)
	}
	// The same transition recorded twice.
	obj := uuid.New()
	for range 2 {
		if _, err := pool.Exec(ctx, `INSERT INTO payment.status_transitions (object_type, object_id, from_status, to_status, cause)
VALUES ('checkout', $1, 'processing', 'succeeded', 'test')`, obj); err != nil {
			t.Fatal(err)
		}
	}
	// A wallet balance with no ledger posting and no order behind it.
	if _, err := pool.Exec(ctx, `INSERT INTO wallet.balances (seller_id, currency, merchant_id, pending_minor, available_minor, paid_out_minor, version)
VALUES ('s1', 'USD', 'm1', 700, 0, 0, 1)`); err != nil {
		t.Fatal(err)
	}

	var s Summary
	if err := h.measureLedger(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if err := h.measureEventsLost(ctx, &s); err != nil {
		t.Fatal(err)
	}
	if s.Safety.EventsLost != 1 || s.EventsLostByConsumer[contracts.WalletPaymentsConsumer] != 1 || s.EventsLostByConsumer[contracts.LedgerPaymentsConsumer] != 0 {
		t.Errorf("events lost %d %v; want 1, by wallet-payments (ledger-payments dead-lettered it)", s.Safety.EventsLost, s.EventsLostByConsumer)
	}
	if s.Safety.EffectsAppliedTwice != 1 {
		t.Errorf("effects applied twice %d, want 1", s.Safety.EffectsAppliedTwice)
	}
	if s.Safety.WalletDriftMinorUnits != 700 || s.Safety.WalletOrderDriftMinorUnits != 700 {
		t.Errorf("wallet drift %d, against orders %d; want 700 and 700", s.Safety.WalletDriftMinorUnits, s.Safety.WalletOrderDriftMinorUnits)
	}

	// The PSP's log against paypipe's records.
	co := func(status string) checkoutRow { return checkoutRow{status: status, amount: 1000, currency: "EUR"} }
	compareCharges(&s, []pspsim.Charge{
		{ID: 1, MerchantReference: "c1", AmountMinor: 1000, Currency: "EUR"},
		{ID: 2, MerchantReference: "c1", AmountMinor: 1000, Currency: "EUR"}, // charged twice
		{ID: 3, MerchantReference: "c2", AmountMinor: 1000, Currency: "EUR"}, // charged, but failed here
	}, map[string]checkoutRow{"c1": co("completed"), "c2": co("failed"), "c3": co("completed") /* never charged */},
		map[string]int64{"EUR": 2000})
	if s.Safety.DoubleCharges != 1 || s.Safety.PSPMismatches != 2 || s.Safety.PSPLedgerDriftMinorUnits != 1000 {
		t.Errorf("double charges %d (want 1), PSP mismatches %d (want 2), PSP-ledger drift %d (want 1000)",
			s.Safety.DoubleCharges, s.Safety.PSPMismatches, s.Safety.PSPLedgerDriftMinorUnits)
	}

	// Pay-out: a payout paid twice at the PSP, one paid there but failed
	// here, a wallet that reserved less than the payouts; a refund
	// refunded twice, one succeeded here without a PSP refund.
	comparePayouts(&s, []pspsim.PayoutRecord{
		{Seq: 1, ID: "po_1", MerchantReference: "p1", AmountMinor: 500, Currency: "EUR", Status: "paid"},
		{Seq: 2, ID: "po_2", MerchantReference: "p1", AmountMinor: 500, Currency: "EUR", Status: "paid"},
		{Seq: 3, ID: "po_3", MerchantReference: "p2", AmountMinor: 300, Currency: "EUR", Status: "paid"},
	}, map[string]payoutRow{"p1": {"s1", "EUR", "paid", 500}, "p2": {"s1", "EUR", "failed", 300}},
		map[string]int64{"s1/EUR": 400})
	if s.Safety.DoublePayouts != 1 || s.Safety.PayoutMismatches != 1 || s.Safety.PayoutWalletDriftMinorUnits != 100 {
		t.Errorf("double payouts %d (want 1), payout mismatches %d (want 1), payout-wallet drift %d (want 100)",
			s.Safety.DoublePayouts, s.Safety.PayoutMismatches, s.Safety.PayoutWalletDriftMinorUnits)
	}
	compareRefunds(&s, []pspsim.RefundRecord{
		{Seq: 1, ID: "re_1", MerchantReference: "r1", AmountMinor: 100, Currency: "EUR", Status: "succeeded"},
		{Seq: 2, ID: "re_2", MerchantReference: "r1", AmountMinor: 100, Currency: "EUR", Status: "succeeded"},
	}, map[string]refundRow{"r1": {"o1", "EUR", "succeeded", 100}, "r2": {"o1", "EUR", "succeeded", 50}})
	if s.Safety.DoubleRefunds != 1 || s.Safety.RefundMismatches != 1 || s.Refunds != 2 {
		t.Errorf("double refunds %d (want 1), refund mismatches %d (want 1), refunds %d (want 2)",
			s.Safety.DoubleRefunds, s.Safety.RefundMismatches, s.Refunds)
	}
	// I8: a file whose lines the run did not all match, and books that
	// differ from the PSP's closing balance.
	file, err := parseSettlement([]byte("record_type,settlement_date,psp_reference,merchant_reference,currency,gross_minor,fee_minor,net_minor,created_at\n" +
		"opening_balance,2026-03-10,,,EUR,0,0,0,\n" +
		"charge,2026-03-10,pay_1,c1,EUR,1000,29,971,2026-03-10T10:00:00Z\n" +
		"refund,2026-03-10,re_1,r1,EUR,-100,0,-100,2026-03-10T11:00:00Z\n" +
		"closing_balance,2026-03-10,,,EUR,0,0,871,\n"))
	if err != nil || file.lines != 2 || file.net["EUR"] != 871 || file.closing["EUR"] != 871 || !file.refs["re_1"] {
		t.Fatalf("parseSettlement: %+v, %v", file, err)
	}
	s.Recon.MismatchesByClass = map[string]int64{}
	compareRecon(&s, "2026-03-10", reconciler.Summary{Lines: 2, Matched: 1, Mismatches: map[string]int64{"amount_mismatch": 1},
		MismatchTotal: 1, BalancesOK: true, Totals: []contracts.CurrencyTotals{{Currency: "EUR", FileNetMinor: 871}}}, file)
	if s.Safety.ReconMismatches != 1 || s.Safety.ReconRerunDiffs != 0 || s.Recon.MismatchesByClass["amount_mismatch"] != 1 {
		t.Errorf("recon mismatches %d (want 1), rerun diffs %d (want 0), by class %v", s.Safety.ReconMismatches, s.Safety.ReconRerunDiffs, s.Recon.MismatchesByClass)
	}
	compareRecon(&s, "2026-03-10", reconciler.Summary{Lines: 1, Matched: 1, BalancesOK: true}, file)
	if s.Safety.ReconRerunDiffs != 1 {
		t.Errorf("a summary short of the file's lines: rerun diffs %d, want 1", s.Safety.ReconRerunDiffs)
	}
	if d := reconDiff(map[string]int64{"EUR": 5}, map[string]int64{"EUR": 800}, file.closing); d["EUR"] != 5+71 {
		t.Errorf("recon diff %v, want EUR 76", d)
	}

	s.Liveness.Quiescent, s.Verify.Ran, s.Verify.OK, s.Recon.Ran = true, true, true, true
	s.judge(func(string) bool { return false }, nil)
	if s.OK {
		t.Error("judge passed a run with violations")
	}
}

func TestParseCounters(t *testing.T) {
	t.Parallel()
	text := `# HELP paypipe_consumer_messages_total Messages handled by consumers.
# TYPE paypipe_consumer_messages_total counter
paypipe_consumer_messages_total{consumer="ledger-payments",result="applied"} 12
paypipe_consumer_messages_total{consumer="ledger-payments",result="duplicate"} 3
paypipe_consumer_messages_total{consumer="wallet-payments",result="duplicate"} 2
paypipe_outbox_relay_rows_total{result="duplicate",schema="payment"} 5
go_goroutines 40
`
	s := &scraper{series: map[string]map[int]map[string]float64{"B": {
		1: parseCounters([]byte(text), "paypipe_consumer_messages_total", "paypipe_outbox_relay_rows_total"),
		2: {`paypipe_consumer_messages_total{consumer="wallet-payments",result="duplicate"}`: 4},
	}}}
	if got := s.sum("paypipe_consumer_messages_total", `result="duplicate"`); got != 9 {
		t.Errorf("duplicates over two incarnations: %d, want 9", got)
	}
	if got := s.by("paypipe_consumer_messages_total", "consumer", `result="duplicate"`); got["wallet-payments"] != 6 || got["ledger-payments"] != 3 {
		t.Errorf("by consumer: %v", got)
	}
	if got := s.sum("paypipe_outbox_relay_rows_total", `result="duplicate"`); got != 5 {
		t.Errorf("relay duplicates %d, want 5", got)
	}
}

func TestSubjectRegexp(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		filter, want string
	}{
		{"payments.order.succeeded", `^payments\.order\.succeeded$`},
		{"payments.*.created", `^payments\.[^.]+\.created$`},
		{"ledger.>", `^ledger\..+$`},
	} {
		if got := subjectRegexp(c.filter); got != c.want {
			t.Errorf("%s: %s, want %s", c.filter, got, c.want)
		}
	}
}
