package main

import (
	"fmt"
	"reflect"
)

// Summary is a run's JSON report (RELIABILITY.md §6.5). Every number is
// measured: from the run's database and broker, the simulator's charge
// log, the processes' counters, or the clients' own record.
type Summary struct {
	OK      bool   `json:"ok"`
	Seed    uint64 `json:"seed"`
	SeedHex string `json:"seed_hex"`
	Tier    string `json:"tier"`
	// Checkouts answered 2xx to a client (workload and F18), each of which
	// must end completed or failed.
	Checkouts         int              `json:"checkouts"`
	CheckoutsPlanned  int              `json:"checkouts_planned"`
	CheckoutsByStatus map[string]int64 `json:"checkouts_by_status"`
	// Refunds and payouts paypipe recorded (payment.refunds,
	// payout.payouts), by status.
	Refunds         int64            `json:"refunds"`
	RefundsByStatus map[string]int64 `json:"refunds_by_status"`
	Payouts         int64            `json:"payouts"`
	PayoutsByStatus map[string]int64 `json:"payouts_by_status"`
	// Sales is what the merchant did with paid orders, as the clients saw it.
	Sales SaleFigures `json:"sales"`
	// Recon is the reconciliation of the run's days (I8, F21).
	Recon ReconFigures `json:"recon"`
	// FaultsInjected by type: the harness's own (kills, restarts, bursts)
	// and the simulator's counts of what it actually injected.
	FaultsInjected map[string]int64 `json:"faults_injected"`
	Safety         Safety           `json:"safety"`
	Expected       Expected         `json:"expected"`
	// EventsLostByConsumer details Safety.EventsLost.
	EventsLostByConsumer map[string]int64 `json:"events_lost_by_consumer"`
	Client               ClientFigures    `json:"client"`
	Verify               VerifyFigures    `json:"verify"`
	Liveness             Liveness         `json:"liveness"`
	Episodes             []episodeLog     `json:"episodes"`
	// Skipped scenarios, with the reason.
	Skipped map[string]string `json:"skipped,omitempty"`
	// Warnings: a dedupe path that did not run, or anything worth a look
	// that is not a violation.
	Warnings []string `json:"warnings,omitempty"`
	// Failures explain a non-ok run (the first few of each kind).
	Failures []string `json:"failures,omitempty"`
	RunDir   string   `json:"run_dir,omitempty"`
}

// Safety figures must all be 0.
type Safety struct {
	// A 2xx checkout missing, or not final after healing.
	LostPayments int64 `json:"lost_payments"`
	// Charges beyond the first per checkout in the simulator's charge log.
	DoubleCharges int64 `json:"double_charges"`
	// Charges of checkouts that are not completed, completed checkouts
	// without a charge, amounts or currencies that differ.
	PSPMismatches int64 `json:"psp_mismatches"`
	// |Σ charges − ledger psp_receivable| per currency, summed (I8).
	PSPLedgerDriftMinorUnits int64 `json:"psp_ledger_drift_minor_units"`
	UnbalancedJournals       int64 `json:"unbalanced_journals"`
	// Σ |wallet − ledger seller_payable| (I3).
	WalletDriftMinorUnits int64 `json:"wallet_drift_minor_units"`
	// Σ |wallet − Σ net of the seller's captured orders|.
	WalletOrderDriftMinorUnits int64 `json:"wallet_order_drift_minor_units"`
	// Outbox events on a consumer's subjects in neither its inbox nor the DLQ.
	EventsLost int64 `json:"events_lost"`
	// Two journal entries for one order, two wallet changes for one cause,
	// two transitions into one status.
	EffectsAppliedTwice int64 `json:"effects_applied_twice"`
	StateRegressions    int64 `json:"state_regressions"`
	// Replays that differ from the first answer, F18 bursts with more than
	// one checkout or an unexpected status.
	IdempotencyViolations int64 `json:"idempotency_violations"`
	// Client operations with no definite answer even after healing (I11).
	UnresolvedClientOps int64 `json:"unresolved_client_ops"`
	// 4xx answers to valid requests (other than 429, and the 409 of a
	// refund race's refunds that no longer fit).
	UnexpectedResponses int64 `json:"unexpected_responses"`
	// PSP payouts beyond the first per payout id (I9).
	DoublePayouts int64 `json:"double_payouts"`
	// A PSP payout paypipe does not know or records with another amount or
	// final status; a paid payout without a PSP payout.
	PayoutMismatches int64 `json:"payout_mismatches"`
	// Σ |Σ created, sent and paid payouts − wallet paid_out| per seller and
	// currency: no payout other than what the wallet reserved (I9).
	PayoutWalletDriftMinorUnits int64 `json:"payout_wallet_drift_minor_units"`
	// PSP refunds beyond the first per refund id.
	DoubleRefunds int64 `json:"double_refunds"`
	// A PSP refund paypipe does not know or records differently; a
	// succeeded refund without a PSP refund.
	RefundMismatches int64 `json:"refund_mismatches"`
	// Orders whose refunds (pending and succeeded) exceed the amount paid.
	RefundsOverCaptured int64 `json:"refunds_over_captured"`
	// Refund races (4 concurrent refunds of one order) that accepted more
	// or fewer refunds than fit in the order.
	RefundRaceViolations int64 `json:"refund_race_violations"`
	// Mismatches the reconciliation found, all classes (I8).
	ReconMismatches int64 `json:"recon_mismatches"`
	// Σ over currencies of recon.recon_diff_minor_units_by_currency (I8).
	ReconDiffMinorUnits int64 `json:"recon_diff_minor_units"`
	// F21: a resumed run whose summary differs from the rerun's or from
	// the file, or a settled reference missing, foreign or counted twice.
	ReconRerunDiffs int64 `json:"recon_rerun_diffs"`
}

// SaleFigures count the sale operations' definite answers.
type SaleFigures struct {
	Fulfilments     int64 `json:"fulfilments"`
	RefundsAccepted int64 `json:"refunds_accepted"`
	RefundRaces     int64 `json:"refund_races"`
	// RaceRefusals are the race refunds refused with 409
	// refund-exceeds-captured, as they must be.
	RaceRefusals int64 `json:"race_refusals"`
	PayoutRuns   int64 `json:"payout_runs"`
}

// Expected figures are non-zero by design: they show the dedupe paths ran.
type Expected struct {
	// Deliveries the consumers' inboxes recognised as already applied.
	DuplicatesAbsorbed   int64            `json:"duplicates_absorbed"`
	DuplicatesByConsumer map[string]int64 `json:"duplicates_by_consumer"`
	// Relay sends JetStream acknowledged as duplicates (within the window).
	PubacksDuplicate int64 `json:"pubacks_duplicate"`
	// Copies of one event stored twice in a stream (re-sent after the
	// duplicate window); only the inboxes stop them.
	StreamDuplicateCopies int64 `json:"stream_duplicate_copies"`
	StreamMessages        int64 `json:"stream_messages"`
	WebhooksReceived      int64 `json:"webhooks_received"`
	Charges               int64 `json:"charges"`
	// The simulator's refund and payout logs; failed payouts gave the
	// money back to the seller's available balance.
	PSPRefunds       int64 `json:"psp_refunds"`
	PSPPayouts       int64 `json:"psp_payouts"`
	PSPPayoutsFailed int64 `json:"psp_payouts_failed"`
	// DLQCount is the distinct messages (ce-ids) in the DLQ: it must equal
	// the poison injected. DLQEntries counts every dead letter (one per
	// consumer that gave up, again after each replay).
	DLQCount       int64 `json:"dlq_count"`
	DLQEntries     int64 `json:"dlq_entries"`
	PoisonInjected int64 `json:"poison_injected"`
}

// ClientFigures are what the clients saw.
type ClientFigures struct {
	Ops               int64 `json:"ops"`
	IndeterminateOps  int64 `json:"indeterminate_client_ops"`
	ResolvedAfterHeal int64 `json:"resolved_after_heal"`
	HostedUnpaid      int64 `json:"hosted_unpaid"`
	Requests          int64 `json:"requests"`
	ConnErrors        int64 `json:"connection_errors"`
	HTTP5xx           int64 `json:"http_5xx"`
	HTTP429           int64 `json:"http_429"`
	Replayed          int64 `json:"idempotent_replays"`
	ReplayProbes      int   `json:"replay_probes"`
}

// VerifyFigures is `paypipe verify`'s last report, condensed.
type VerifyFigures struct {
	Ran                   bool             `json:"ran"`
	OK                    bool             `json:"ok"`
	ViolationsByInvariant map[string]int   `json:"violations_by_invariant"`
	Counts                map[string]int64 `json:"counts"`
	Warnings              []string         `json:"warnings,omitempty"`
}

// Liveness is about time, not safety.
type Liveness struct {
	Quiescent bool `json:"quiescent"`
	// SettleSeconds: from healing to quiet and verify green.
	SettleSeconds float64 `json:"settle_seconds"`
	// ReconSeconds: the reconciliation (F21 included) and the wait until
	// its settlement batches were posted.
	ReconSeconds    float64 `json:"recon_seconds"`
	WorkloadSeconds float64 `json:"workload_seconds"`
	TotalSeconds    float64 `json:"total_seconds"`
	// UnexpectedExits counts exits the harness did not cause, per child;
	// the supervisor restarted each (a paypipe process refuses to start
	// while PostgreSQL or NATS is unreachable, and is retried every second).
	UnexpectedExits map[string]int `json:"unexpected_exits"`
	Exits           []exitRecord   `json:"exits,omitempty"`
}

// judge sets OK and explains failures: any non-zero safety figure, a
// pipeline that never settled, a DLQ count that differs from the poison
// injected, or a fault the harness could not inject or heal. Expected figures at zero become warnings.
func (s *Summary) judge(ran func(string) bool, harnessErrors []string) {
	v := reflect.ValueOf(s.Safety)
	t := v.Type()
	bad := append([]string{}, harnessErrors...)
	for i := range t.NumField() {
		if n := v.Field(i).Int(); n != 0 {
			bad = append(bad, fmt.Sprintf("%s = %d", t.Field(i).Tag.Get("json"), n))
		}
	}
	if !s.Liveness.Quiescent {
		bad = append(bad, "the pipeline did not settle (see the last failures)")
	}
	if s.Verify.Ran && !s.Verify.OK {
		bad = append(bad, fmt.Sprintf("paypipe verify: %v", s.Verify.ViolationsByInvariant))
	}
	if !s.Verify.Ran {
		bad = append(bad, "paypipe verify did not run")
	}
	if !s.Recon.Ran {
		bad = append(bad, "the reconciliation did not run (the pipeline never settled)")
	}
	if ran(scPoison) && s.Expected.DLQCount != s.Expected.PoisonInjected {
		bad = append(bad, fmt.Sprintf("dlq_count %d != poison_injected %d", s.Expected.DLQCount, s.Expected.PoisonInjected))
	}
	s.Failures = append(bad, s.Failures...)
	s.OK = len(bad) == 0
	if s.Expected.DuplicatesAbsorbed == 0 {
		s.Warnings = append(s.Warnings, "duplicates_absorbed is 0: no redelivery reached an inbox")
	}
	if ran(scReconCrash) && s.Recon.Ran && s.FaultsInjected[fReconKills] == 0 {
		s.Warnings = append(s.Warnings, "F21: the recon run's SIGKILL landed outside the run ("+s.Recon.Crash+")")
	}
	if ran(scPSPPayout) && s.FaultsInjected["psp_after_payout_500s"]+s.FaultsInjected["psp_after_payout_timeouts"] == 0 {
		s.Warnings = append(s.Warnings, "F20: the simulator injected no fault after a payout")
	}
	if ran(scRelayKill) && s.Expected.PubacksDuplicate == 0 {
		s.Warnings = append(s.Warnings, "pubacks_duplicate is 0: no relay kill landed between PubAck and mark this run")
	}
	// Re-driven rows younger than the 1 s window are dropped by JetStream
	// as duplicates, as designed; the older ones must be stored again.
	if r := s.FaultsInjected[fRedriven]; ran(scDupWindow) && r > 0 && s.Expected.StreamDuplicateCopies == 0 {
		s.Warnings = append(s.Warnings, fmt.Sprintf("stream_duplicate_copies is 0 although %d rows were re-driven after the 1 s duplicate window", r))
	}
}
