package reconciler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/wallet"
)

// seedCleanDay posts a day of movements and returns the matching file lines.
func seedCleanDay(t *testing.T, e *tenv, at time.Time) []fl {
	lines := []fl{
		charge("pay_a", "USD", 10000), charge("pay_b", "USD", 2599), charge("pay_c", "EUR", 123456),
		charge("pay_j", "JPY", 1500), refund("re_a", "USD", 4000), payout("po_a", "EUR", 50000),
	}
	for _, l := range lines {
		switch l.typ {
		case RecordCharge:
			// A checkout of two orders posts two entries with the same gross.
			e.post(t, contracts.EntryOrderCaptured, l.ref, l.mref, l.cur, l.gross, at)
			e.post(t, contracts.EntryOrderCaptured, l.ref, l.mref, l.cur, l.gross, at.Add(time.Second))
		case RecordRefund:
			e.post(t, contracts.EntryOrderRefunded, l.ref, l.mref, l.cur, -l.gross, at)
		case RecordPayout:
			e.post(t, contracts.EntryPayoutPaid, l.ref, l.mref, l.cur, -l.gross, at)
		}
	}
	// Entries the PSP never sees are not expected.
	e.post(t, contracts.EntryPayoutInitiated, "", "po_a", "EUR", 50000, at)
	return lines
}

func TestCleanDayReconcilesToZeroAndRerunIsIdentical(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{ReportDir: filepath.Join(t.TempDir(), "reports")})
	lines := seedCleanDay(t, e, day1.Add(9*time.Hour))
	file := writeFile(t, e.dir, dateOf(day1), lines)

	sum := e.run(t, day1, file)
	if sum.Lines != 6 || sum.Matched != 6 || sum.MismatchTotal != 0 || len(sum.Mismatches) != 0 {
		t.Fatalf("clean day: %+v", sum)
	}
	if !sum.BalancesOK || len(sum.Balances) != 3 {
		t.Fatalf("balances: %+v", sum.Balances)
	}
	if n := e.count(t, `SELECT count(*) FROM recon.expected e WHERE NOT EXISTS (SELECT 1 FROM recon.settlements s WHERE s.psp_reference = e.psp_reference)`); n != 0 {
		t.Fatalf("%d expected rows unsettled", n)
	}
	if n := e.count(t, `SELECT count(*) FROM recon.mismatches`); n != 0 {
		t.Fatalf("%d mismatch rows", n)
	}
	// batch.settled: per currency, charges and refunds; the payout settles nothing.
	bs := decode[contracts.BatchSettled](t, e.events(t, contracts.SubjectReconBatchSettled))
	got := map[string]contracts.BatchSettled{}
	for _, b := range bs {
		got[b.Currency] = b
	}
	feeA, _ := money.Fee(10000, 290)
	feeB, _ := money.Fee(2599, 290)
	feeC, _ := money.Fee(123456, 290)
	feeJ, _ := money.Fee(1500, 290)
	want := map[string]contracts.BatchSettled{
		"USD": {Lines: 3, ChargesGrossMinor: 12599, RefundsGrossMinor: 4000, FeesMinor: feeA + feeB},
		"EUR": {Lines: 1, ChargesGrossMinor: 123456, FeesMinor: feeC},
		"JPY": {Lines: 1, ChargesGrossMinor: 1500, FeesMinor: feeJ},
	}
	if len(got) != len(want) {
		t.Fatalf("batches: %+v", bs)
	}
	for c, w := range want {
		g := got[c]
		if g.Lines != w.Lines || g.ChargesGrossMinor != w.ChargesGrossMinor || g.RefundsGrossMinor != w.RefundsGrossMinor || g.FeesMinor != w.FeesMinor {
			t.Errorf("%s batch %+v, want %+v", c, g, w)
		}
		if g.SettlementDate != dateOf(day1) || g.FileID != sum.FileID {
			t.Errorf("%s batch names %s/%s", c, g.SettlementDate, g.FileID)
		}
	}
	rc := decode[contracts.RunCompleted](t, e.events(t, contracts.SubjectReconRunCompleted))
	if len(rc) != 1 || rc[0].Matched != 6 || rc[0].RunID != sum.RunID {
		t.Fatalf("run.completed: %+v", rc)
	}
	e.validateAll(t)
	for _, f := range []string{"summary.json", "mismatches.csv", "mismatches.json"} {
		if _, err := os.Stat(filepath.Join(e.r.cfg.ReportDir, "recon-"+dateOf(day1)+"-"+f)); err != nil {
			t.Errorf("report file: %v", err)
		}
	}

	before := len(e.events(t, ""))
	again := e.run(t, day1, file)
	if !reflect.DeepEqual(sum, again) {
		t.Fatalf("rerun summary differs:\n%+v\n%+v", sum, again)
	}
	if after := len(e.events(t, "")); after != before {
		t.Fatalf("rerun emitted %d events", after-before)
	}
	rep, err := e.r.Report(context.Background(), dateOf(day1))
	if err != nil || !reflect.DeepEqual(rep, sum) {
		t.Fatalf("report: %v %+v", err, rep)
	}
}

func TestEachLineClassIsFound(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{})
	at := day1.Add(8 * time.Hour)
	for _, ref := range []string{"pay_ok", "pay_amt", "pay_fee", "pay_cur", "pay_dup"} {
		e.post(t, contracts.EntryOrderCaptured, ref, "co_"+ref, "USD", 10000, at)
	}
	e.post(t, contracts.EntryOrderRefunded, "re_ok", "rf_ok", "USD", 500, at)
	e.psp.set(psp.Payment{ID: "pay_failed", Status: psp.StatusFailed, AmountMinor: 700, Currency: "USD"})

	wrongFee := charge("pay_fee", "USD", 10000)
	wrongFee.fee *= 2
	badNet := charge("pay_bad", "USD", 1000)
	n := int64(5)
	badNet.net = &n
	lines := []fl{
		charge("pay_ok", "USD", 10000),
		charge("pay_amt", "USD", 10100),
		wrongFee,
		charge("pay_cur", "EUR", 10000),
		charge("pay_dup", "USD", 10000),
		charge("pay_dup", "USD", 10000),
		charge("pay_ghost", "USD", 4200), // neither ledger nor PSP
		charge("pay_failed", "USD", 700), // the PSP says it failed
		refund("re_ghost", "USD", 300),   // an unknown refund: the PSP is not asked
		badNet,
		refund("re_ok", "USD", 500),
	}
	sum := e.run(t, day1, writeFile(t, e.dir, dateOf(day1), lines))
	want := map[string]int64{
		contracts.MismatchAmount: 1, contracts.MismatchFee: 1, contracts.MismatchCurrency: 1,
		contracts.MismatchDuplicateLine: 1, contracts.MismatchUnknownReference: 3, contracts.MismatchMalformedLine: 1,
	}
	if sum.Lines != 11 || sum.Matched != 3 || !reflect.DeepEqual(sum.Mismatches, want) {
		t.Fatalf("summary: lines %d matched %d mismatches %v, want 11, 3, %v", sum.Lines, sum.Matched, sum.Mismatches, want)
	}
	byRef := map[string]Mismatch{}
	for _, m := range e.mismatches(t, Filter{Date: dateOf(day1)}) {
		byRef[m.Class+"/"+m.PSPReference] = m
	}
	checks := []struct{ class, ref, queue string }{
		{contracts.MismatchAmount, "pay_amt", contracts.QueueFinance},
		{contracts.MismatchFee, "pay_fee", contracts.QueueFinance},
		{contracts.MismatchCurrency, "pay_cur", contracts.QueueFinance},
		{contracts.MismatchDuplicateLine, "pay_dup", contracts.QueueInvestigation},
		{contracts.MismatchUnknownReference, "pay_ghost", contracts.QueueInvestigation},
		{contracts.MismatchUnknownReference, "pay_failed", contracts.QueueInvestigation},
		{contracts.MismatchUnknownReference, "re_ghost", contracts.QueueInvestigation},
	}
	for _, c := range checks {
		m, ok := byRef[c.class+"/"+c.ref]
		if !ok {
			t.Errorf("no %s for %s (have %v)", c.class, c.ref, keys(byRef))
			continue
		}
		if m.Queue != c.queue || m.Status != StatusOpen || m.Reaction == "" || len(m.Evidence) < 3 {
			t.Errorf("%s/%s: %+v", c.class, c.ref, m)
		}
	}
	if m := byRef[contracts.MismatchAmount+"/pay_amt"]; m.FileAmountMinor != 10100 || m.LedgerAmountMinor != 10000 {
		t.Errorf("amount evidence: %+v", m)
	}
	// The amount, fee and currency mismatches leave their rows unsettled,
	// but already queued: the ledger pass adds no settles_later for them.
	if n := e.count(t, `SELECT count(*) FROM recon.mismatches WHERE class = 'settles_later'`); n != 0 {
		t.Errorf("%d settles_later", n)
	}
	if n := e.count(t, `SELECT count(*) FROM recon.settlements`); n != 3 {
		t.Errorf("%d settled rows, want 3", n)
	}
	if found := e.events(t, contracts.SubjectReconMismatchFound); len(found) != 8 {
		t.Errorf("%d mismatch.found events, want 8", len(found))
	}
	if e.psp.calls < 2 {
		t.Errorf("the PSP was asked %d times", e.psp.calls)
	}
	e.validateAll(t)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLateLineResolvesSettlesLaterAndMissingLineEscalates(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{}) // GraceDays 1
	at := day1.Add(23 * time.Hour)
	e.post(t, contracts.EntryOrderCaptured, "pay_late", "co_late", "USD", 5000, at)
	e.post(t, contracts.EntryOrderCaptured, "pay_lost", "co_lost", "USD", 7000, at)
	e.post(t, contracts.EntryOrderCaptured, "pay_next", "co_next", "USD", 100, day1.AddDate(0, 0, 1).Add(time.Hour))

	s1 := e.run(t, day1, writeFile(t, e.dir, dateOf(day1), nil))
	if s1.Mismatches[contracts.MismatchSettlesLater] != 2 {
		t.Fatalf("day 1: %v (pay_next is posted the next day and not due)", s1.Mismatches)
	}
	d2 := day1.AddDate(0, 0, 1)
	s2 := e.run(t, d2, writeFile(t, e.dir, dateOf(d2), []fl{charge("pay_late", "USD", 5000), charge("pay_next", "USD", 100)}))
	if s2.Matched != 2 || s2.CarriedOver != 1 || s2.MismatchTotal != 0 {
		t.Fatalf("day 2: %+v", s2)
	}
	late := e.mismatches(t, Filter{Class: contracts.MismatchSettlesLater, Status: StatusResolved})
	if len(late) != 1 || late[0].PSPReference != "pay_late" || late[0].Resolution != "settled" {
		t.Fatalf("resolved settles_later: %+v", late)
	}
	d3 := d2.AddDate(0, 0, 1)
	s3 := e.run(t, d3, writeFile(t, e.dir, dateOf(d3), nil))
	if s3.Mismatches[contracts.MismatchMissingInSettlement] != 1 || s3.Escalated != 1 {
		t.Fatalf("day 3: %+v", s3)
	}
	open := e.mismatches(t, Filter{Status: StatusOpen})
	if len(open) != 1 || open[0].Class != contracts.MismatchMissingInSettlement || open[0].PSPReference != "pay_lost" || open[0].Queue != contracts.QueueFinance {
		t.Fatalf("open after day 3: %+v", open)
	}
	res := decode[contracts.MismatchResolved](t, e.events(t, contracts.SubjectReconMismatchResolved))
	if len(res) != 2 || res[0].Resolution != "settled" || res[1].Resolution != "escalated" {
		t.Fatalf("resolved events: %+v", res)
	}
	// Day 4: the escalated movement is queued; nothing new.
	d4 := d3.AddDate(0, 0, 1)
	if s4 := e.run(t, d4, writeFile(t, e.dir, dateOf(d4), nil)); s4.MismatchTotal != 0 {
		t.Fatalf("day 4: %+v", s4)
	}
	e.validateAll(t)
}

func TestMissingCaptureIsConfirmedParkedAndSettledWhenTheCaptureArrives(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{})
	checkout := uuid.NewString()
	e.psp.set(psp.Payment{ID: "pay_nohook", Status: psp.StatusSucceeded, AmountMinor: 8800, Currency: "EUR", MerchantReference: checkout})
	sum := e.run(t, day1, writeFile(t, e.dir, dateOf(day1), []fl{charge("pay_nohook", "EUR", 8800)}))
	if sum.Mismatches[contracts.MismatchMissingCapture] != 1 || sum.Matched != 0 {
		t.Fatalf("summary: %+v", sum)
	}
	cc := decode[contracts.ChargeConfirmed](t, e.events(t, contracts.SubjectReconChargeConfirmed))
	if len(cc) != 1 || cc[0].CheckoutID != checkout || cc[0].PSPPaymentID != "pay_nohook" || cc[0].AmountMinor != 8800 || cc[0].PSPStatus != psp.StatusSucceeded {
		t.Fatalf("charge.confirmed: %+v", cc)
	}
	if n := len(e.events(t, contracts.SubjectReconBatchSettled)); n != 0 {
		t.Fatalf("%d batches before the capture", n)
	}
	// payment advances, the ledger posts the capture: the parked line settles.
	e.post(t, contracts.EntryOrderCaptured, "pay_nohook", checkout, "EUR", 8800, day1.AddDate(0, 0, 1).Add(time.Hour))
	bs := decode[contracts.BatchSettled](t, e.events(t, contracts.SubjectReconBatchSettled))
	fee, _ := money.Fee(8800, 290)
	if len(bs) != 1 || bs[0].Lines != 1 || bs[0].ChargesGrossMinor != 8800 || bs[0].FeesMinor != fee || bs[0].SettlementDate != dateOf(day1) {
		t.Fatalf("batch after capture: %+v", bs)
	}
	ms := e.mismatches(t, Filter{Class: contracts.MismatchMissingCapture})
	if len(ms) != 1 || ms[0].Status != StatusResolved || ms[0].Resolution != "captured" {
		t.Fatalf("missing_capture: %+v", ms)
	}
	if n := e.count(t, `SELECT count(*) FROM recon.expected e JOIN recon.settlements s USING (psp_reference) WHERE e.psp_reference = 'pay_nohook' AND s.line_no > 0 AND e.parked IS NULL`); n != 1 {
		t.Fatal("parked line not settled")
	}
	// A second order entry of that checkout changes nothing.
	e.post(t, contracts.EntryOrderCaptured, "pay_nohook", checkout, "EUR", 8800, day1.AddDate(0, 0, 1).Add(2*time.Hour))
	if n := len(e.events(t, contracts.SubjectReconBatchSettled)); n != 1 {
		t.Fatalf("%d batches after a second entry", n)
	}
	// The next day's run does not see it as unsettled.
	d2 := day1.AddDate(0, 0, 1)
	if s := e.run(t, d2, writeFile(t, e.dir, dateOf(d2), nil)); s.MismatchTotal != 0 {
		t.Fatalf("day 2: %+v", s)
	}
	e.validateAll(t)
}

// bigDay seeds n charges and returns their lines plus a few mismatches.
func bigDay(t *testing.T, e *tenv, n int) []fl {
	var lines []fl
	for i := range n {
		ref := "pay_" + strings.Repeat("0", 4-len(itoa(i))) + itoa(i)
		e.post(t, contracts.EntryOrderCaptured, ref, "co_"+ref, []string{"USD", "EUR"}[i%2], int64(1000+i), day1.Add(time.Hour))
		lines = append(lines, charge(ref, []string{"USD", "EUR"}[i%2], int64(1000+i)))
	}
	lines[3].gross++ // amount_mismatch
	lines[3].fee, _ = money.Fee(lines[3].gross, 290)
	lines = append(lines, lines[7]) // duplicate in a later chunk
	lines = append(lines, charge("pay_unknown", "USD", 999))
	return lines
}

func itoa(i int) string {
	return strings.TrimSpace(strings.Replace(time.Duration(i).String(), "ns", "", 1))
}

func TestCrashMidRunResumesToTheSameResult(t *testing.T) {
	t.Parallel()
	ref := newTestEnv(t, Config{ChunkLines: 4})
	whole := ref.run(t, day1, writeFile(t, ref.dir, dateOf(day1), bigDay(t, ref, 17)))

	e := newTestEnv(t, Config{ChunkLines: 4})
	file := writeFile(t, e.dir, dateOf(day1), bigDay(t, e, 17))
	crash := errors.New("crash")
	e.r.hooks.afterChunk = func(k int) error {
		if k == 2 {
			return crash
		}
		return nil
	}
	if _, err := e.r.Run(context.Background(), RunRequest{Date: day1, File: file}); !errors.Is(err, crash) {
		t.Fatalf("first attempt: %v", err)
	}
	var cursor int64
	if err := e.pool.QueryRow(context.Background(), `SELECT cursor_line FROM recon.runs`).Scan(&cursor); err != nil || cursor == 0 {
		t.Fatalf("cursor %d %v", cursor, err)
	}
	settledBefore := e.count(t, `SELECT count(*) FROM recon.settlements`)
	if settledBefore == 0 || settledBefore >= 16 {
		t.Fatalf("%d settled after the crash", settledBefore)
	}
	e.r.hooks.afterChunk = nil
	resumed := e.run(t, day1, file)

	norm := func(s Summary) Summary {
		s.RunID, s.FileID, s.StartedAt, s.CompletedAt = "", "", time.Time{}, time.Time{}
		return s
	}
	if !reflect.DeepEqual(norm(whole), norm(resumed)) {
		t.Fatalf("resumed run differs:\n%+v\n%+v", norm(whole), norm(resumed))
	}
	for _, x := range []*tenv{ref, e} {
		if n := x.count(t, `SELECT count(*) FROM recon.settlements`); n != 16 {
			t.Errorf("%d settled rows, want 16", n)
		}
	}
	sumBatches := func(x *tenv) (lines, gross int64) {
		for _, b := range decode[contracts.BatchSettled](t, x.events(t, contracts.SubjectReconBatchSettled)) {
			lines += b.Lines
			gross += b.ChargesGrossMinor
		}
		return
	}
	l1, g1 := sumBatches(ref)
	l2, g2 := sumBatches(e)
	if l1 != 16 || l1 != l2 || g1 != g2 {
		t.Fatalf("batches: uninterrupted %d/%d, resumed %d/%d", l1, g1, l2, g2)
	}
	if a, b := len(ref.events(t, contracts.SubjectReconMismatchFound)), len(e.events(t, contracts.SubjectReconMismatchFound)); a != b || a != 3 {
		t.Fatalf("mismatch.found: %d vs %d, want 3", a, b)
	}
}

// The reader looks chunk k+1 up before chunk k commits: a reference that
// chunk k settles and chunk k+1 repeats must still be a duplicate.
func TestDuplicateInTheChunkReadAheadIsCaught(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{ChunkLines: 2})
	for _, ref := range []string{"pay_a", "pay_b", "pay_c"} {
		e.post(t, contracts.EntryOrderCaptured, ref, "co_"+ref, "USD", 1000, day1)
	}
	lookedUp := make(chan struct{})
	e.r.hooks.readAhead = func(k int) {
		if k == 2 {
			close(lookedUp)
		}
	}
	e.r.hooks.chunk = func(k, _ int) {
		if k == 1 {
			<-lookedUp // chunk 2 saw pay_a unsettled
		}
	}
	file := writeFile(t, e.dir, dateOf(day1), []fl{charge("pay_a", "USD", 1000), charge("pay_b", "USD", 1000),
		charge("pay_a", "USD", 1000), charge("pay_c", "USD", 1000)})
	sum := e.run(t, day1, file)
	if sum.Matched != 3 || sum.Mismatches[contracts.MismatchDuplicateLine] != 1 || sum.MismatchTotal != 1 {
		t.Fatalf("summary: %+v", sum)
	}
	if n := e.count(t, `SELECT count(*) FROM recon.settlements`); n != 3 {
		t.Fatalf("%d settlements, want 3", n)
	}
	if n := e.count(t, `SELECT line_no FROM recon.settlements WHERE psp_reference = 'pay_a'`); n != 3 {
		t.Fatalf("pay_a settled by line %d, want 3 (after the header and the opening balance)", n)
	}
	dup := e.mismatches(t, Filter{Class: contracts.MismatchDuplicateLine})
	if len(dup) != 1 || dup[0].PSPReference != "pay_a" || !strings.Contains(dup[0].Detail, "line 3 of file") {
		t.Fatalf("duplicate: %+v", dup)
	}
	var lines int64
	for _, b := range decode[contracts.BatchSettled](t, e.events(t, contracts.SubjectReconBatchSettled)) {
		lines += b.Lines
	}
	if lines != 3 {
		t.Fatalf("batches settle %d lines, want 3", lines)
	}
}

func TestChunksBoundMemory(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{ChunkLines: 3})
	var sizes []int
	e.r.hooks.chunk = func(k, n int) { sizes = append(sizes, n) }
	var lines []fl
	for i := range 10 {
		lines = append(lines, charge("pay_x"+itoa(i), "USD", 100))
	}
	sum := e.run(t, day1, writeFile(t, e.dir, dateOf(day1), lines))
	if !reflect.DeepEqual(sizes, []int{3, 3, 3, 1}) {
		t.Fatalf("chunk sizes %v, want [3 3 3 1]", sizes)
	}
	if sum.Lines != 10 {
		t.Fatalf("lines %d", sum.Lines)
	}
}

func TestPSPDownFailsTheRunWhichResumes(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{ChunkLines: 2})
	e.post(t, contracts.EntryOrderCaptured, "pay_1", "co_1", "USD", 1000, day1)
	e.post(t, contracts.EntryOrderCaptured, "pay_2", "co_2", "USD", 1000, day1)
	file := writeFile(t, e.dir, dateOf(day1), []fl{charge("pay_1", "USD", 1000), charge("pay_2", "USD", 1000), charge("pay_3", "USD", 500)})
	e.psp.set(psp.Payment{ID: "pay_3", Status: psp.StatusSucceeded, AmountMinor: 500, Currency: "USD", MerchantReference: uuid.NewString()})
	e.psp.setDown(true)
	if _, err := e.r.Run(context.Background(), RunRequest{Date: day1, File: file}); !errors.Is(err, psp.ErrUnknownOutcome) {
		t.Fatalf("with the PSP down: %v", err)
	}
	if n := e.count(t, `SELECT count(*) FROM recon.mismatches`); n != 0 {
		t.Fatalf("guessed %d mismatches", n)
	}
	if n := e.count(t, `SELECT cursor_line FROM recon.runs`); n != 4 {
		t.Fatalf("cursor %d, want 4 (header, opening balance, first chunk)", n)
	}
	e.psp.setDown(false)
	sum := e.run(t, day1, file)
	if sum.Matched != 2 || sum.Mismatches[contracts.MismatchMissingCapture] != 1 {
		t.Fatalf("after the PSP came back: %+v", sum)
	}
}

func TestBadFilesFailClearly(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{})
	bad := filepath.Join(e.dir, "bad.csv")
	os.WriteFile(bad, []byte("record_type,date\n"), 0o600)
	if _, err := e.r.Run(context.Background(), RunRequest{Date: day1, File: bad}); !errors.Is(err, ErrBadFile) || !strings.Contains(err.Error(), "header") {
		t.Fatalf("bad header: %v", err)
	}
	other := writeFile(t, e.dir, "2026-01-01", []fl{charge("pay_1", "USD", 1)})
	if _, err := e.r.Run(context.Background(), RunRequest{Date: day1, File: other}); !errors.Is(err, ErrBadFile) {
		t.Fatalf("another day's file: %v", err)
	}
	long := filepath.Join(e.dir, "long.csv")
	os.WriteFile(long, []byte(Header+"\ncharge,"+strings.Repeat("x", 2*MaxLineBytes)+"\n"), 0o600)
	if _, err := e.r.Run(context.Background(), RunRequest{Date: day1, File: long}); !errors.Is(err, ErrBadFile) {
		t.Fatalf("long line: %v", err)
	}
	if _, err := e.r.Run(context.Background(), RunRequest{Date: day1, File: filepath.Join(e.dir, "nope.csv")}); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := e.r.Run(context.Background(), RunRequest{Date: day1}); !errors.Is(err, ErrNoPSP) {
		t.Fatalf("no file, no settlement client: %v", err)
	}
}

func TestWalletDriftAndManualResolve(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{})
	e.r.cfg.SkipWalletCheck = false
	e.r.hooks.walletCheck = func(context.Context) ([]wallet.Drift, error) {
		return []wallet.Drift{{SellerID: "s1", Currency: "USD", WalletMinor: 900, LedgerMinor: 1000}}, nil
	}
	sum := e.run(t, day1, writeFile(t, e.dir, dateOf(day1), nil))
	if sum.Mismatches[contracts.MismatchWalletDrift] != 1 {
		t.Fatalf("summary: %+v", sum)
	}
	ms := e.mismatches(t, Filter{Queue: contracts.QueueFinance, Status: StatusOpen})
	if len(ms) != 1 || ms[0].SellerID != "s1" || ms[0].Currency != "USD" || ms[0].LedgerAmountMinor != 1000 {
		t.Fatalf("drift: %+v", ms)
	}
	ctx := context.Background()
	if _, err := e.r.Resolve(ctx, ms[0].ID, "ana", ""); !errors.Is(err, ErrInvalidRequest) {
		t.Fatalf("resolve without a note: %v", err)
	}
	got, err := e.r.Resolve(ctx, ms[0].ID, "ana", "wallet replayed")
	if err != nil || got.Status != StatusResolved || got.ResolvedBy != "ana" || got.Note != "wallet replayed" {
		t.Fatalf("resolve: %v %+v", err, got)
	}
	if _, err := e.r.Resolve(ctx, ms[0].ID, "ana", "again"); !errors.Is(err, ErrAlreadyResolved) {
		t.Fatalf("resolve twice: %v", err)
	}
	if _, err := e.r.Resolve(ctx, "00000000-0000-0000-0000-000000000001", "ana", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("resolve unknown: %v", err)
	}
	res := decode[contracts.MismatchResolved](t, e.events(t, contracts.SubjectReconMismatchResolved))
	if len(res) != 1 || res[0].ResolvedBy != "ana" || res[0].Resolution != "manual" {
		t.Fatalf("resolved events: %+v", res)
	}
	e.validateAll(t)
}

func TestConcurrentRunsOfOneDateAreKeptApart(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{ChunkLines: 1})
	e.post(t, contracts.EntryOrderCaptured, "pay_1", "co_1", "USD", 1000, day1)
	file := writeFile(t, e.dir, dateOf(day1), []fl{charge("pay_1", "USD", 1000)})
	inside := make(chan struct{})
	release := make(chan struct{})
	e.r.hooks.afterChunk = func(k int) error {
		if k == 1 {
			close(inside)
			<-release
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { _, err := e.r.Run(context.Background(), RunRequest{Date: day1, File: file}); done <- err }()
	<-inside
	r2, err := New(Config{SkipWalletCheck: true}, e.pool, e.psp, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r2.Run(context.Background(), RunRequest{Date: day1, File: file}); !errors.Is(err, ErrRunInProgress) {
		t.Fatalf("second run: %v", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	for _, c := range []Config{{ChunkLines: MaxChunkLines + 1}, {PSPFeeBPS: -1}, {RunAt: "25:00"}, {GraceDays: -1}} {
		if err := c.withDefaults().Validate(); err == nil {
			t.Errorf("%+v validated", c)
		}
	}
	if err := (Config{RunAt: "off"}).withDefaults().Validate(); err != nil {
		t.Error(err)
	}
}

// A PSP may issue a day's file again (corrected, or fetched before the day
// ended): lines the earlier version settled count as matched and post
// nothing; new lines settle; a line another day's file settled is still a
// duplicate.
func TestReissuedFileOfTheSameDay(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{})
	at := day1.Add(9 * time.Hour)
	for _, ref := range []string{"pay_1", "pay_2", "pay_3"} {
		e.post(t, contracts.EntryOrderCaptured, ref, "co_"+ref, "USD", 5000, at)
	}
	first := e.run(t, day1, writeFile(t, t.TempDir(), dateOf(day1), []fl{charge("pay_1", "USD", 5000), charge("pay_2", "USD", 5000)}))
	if first.Matched != 2 || first.MismatchTotal != 1 { // pay_3 settles later
		t.Fatalf("first version: %+v", first)
	}
	batchesBefore := len(e.events(t, contracts.SubjectReconBatchSettled))
	second := e.run(t, day1, writeFile(t, t.TempDir(), dateOf(day1),
		[]fl{charge("pay_1", "USD", 5000), charge("pay_2", "USD", 5000), charge("pay_3", "USD", 5000)}))
	if second.RunID == first.RunID || second.Matched != 3 || second.MismatchTotal != 0 {
		t.Fatalf("second version of the day: %+v", second)
	}
	bs := decode[contracts.BatchSettled](t, e.events(t, contracts.SubjectReconBatchSettled))
	if len(bs) != batchesBefore+1 || bs[len(bs)-1].Lines != 1 || bs[len(bs)-1].ChargesGrossMinor != 5000 {
		t.Fatalf("the second version must settle only pay_3: %+v", bs)
	}
	if n := e.count(t, `SELECT count(*) FROM recon.mismatches WHERE class = $1 AND status = 'open'`, contracts.MismatchSettlesLater); n != 0 {
		t.Fatalf("%d settles_later still open", n)
	}
	// Another day's file repeating pay_1 is a duplicate.
	day2 := day1.AddDate(0, 0, 1)
	third := e.run(t, day2, writeFile(t, t.TempDir(), dateOf(day2), []fl{charge("pay_1", "USD", 5000)}))
	if third.Mismatches[contracts.MismatchDuplicateLine] != 1 || third.Matched != 0 {
		t.Fatalf("a line settled on another day: %+v", third)
	}
}

// The order entries of one checkout arrive together from the ledger:
// concurrent projections of one reference converge on one row, without
// asking for redeliveries.
func TestConcurrentEntriesOfOneCheckout(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, Config{})
	at := day1.Add(9 * time.Hour)
	var wg sync.WaitGroup
	errs := make(chan error, 120)
	for i := range 40 {
		ref := fmt.Sprintf("pay_race_%d", i)
		for range 3 {
			wg.Go(func() {
				ev, _ := json.Marshal(contracts.LedgerEntryPosted{EntryID: uuid.NewString(), ExternalID: "order_captured:" + uuid.NewString(),
					Kind: contracts.EntryOrderCaptured, MerchantID: "m1", Currency: "USD", Reference: "co_" + ref, PSPReference: ref,
					PSPAmountMinor: 3000, PostedAt: at, Postings: []contracts.Posting{}})
				d := outbox.Delivery{MsgID: uuid.New(), Subject: contracts.SubjectLedgerEntryPosted,
					Type: contracts.TypeOf(contracts.SubjectLedgerEntryPosted), Payload: ev}
				_, err := Store.Handle(context.Background(), e.pool, contracts.ReconLedgerConsumer, d.MsgID, d.Subject,
					func(ctx context.Context, tx pgx.Tx) error { return e.r.entryPosted(ctx, tx, d) })
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent entry: %v", err)
		}
	}
	if n := e.count(t, `SELECT count(*) FROM recon.expected WHERE gross_minor = 3000`); n != 40 {
		t.Fatalf("%d expected rows, want 40", n)
	}
}
