package pspsim_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/services/psp"
	"github.com/paypipe/paypipe/services/pspsim"
)

func utcDay(daysAgo int) time.Time {
	y, m, d := time.Now().UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -daysAgo)
}

// exec runs a statement on the simulator's database: tests backdate
// movements this way, as days cannot be waited for.
func (s *sim) exec(sql string, args ...any) {
	s.t.Helper()
	if _, err := s.pool.Exec(context.Background(), sql, args...); err != nil {
		s.t.Fatal(err)
	}
}

func (s *sim) chargeAt(ref string, amount int64, currency string, at time.Time) psp.Payment {
	s.t.Helper()
	p, err := s.client.CreatePayment(context.Background(), psp.CreatePaymentRequest{IdempotencyKey: "key-" + ref,
		AmountMinor: amount, Currency: currency, MerchantReference: ref, Confirm: true, PaymentMethod: psp.MethodCardSucceeds})
	if err != nil || p.Status != psp.StatusSucceeded {
		s.t.Fatalf("charge %s: %+v, %v", ref, p, err)
	}
	s.exec(`UPDATE pspsim.charges SET charged_at = $2 WHERE payment_id = $1`, p.ID, at)
	return p
}

func (s *sim) refundAt(ref, paymentID string, amount int64, at time.Time) psp.Refund {
	s.t.Helper()
	r, err := s.client.CreateRefund(context.Background(), refundReq(ref, paymentID, amount))
	if err != nil {
		s.t.Fatal(err)
	}
	s.exec(`UPDATE pspsim.refunds SET created_at = $2 WHERE id = $1`, r.ID, at)
	return r
}

// paidPayoutAt creates a payout, waits until the simulator has paid it,
// and moves its arrival to at.
func (s *sim) paidPayoutAt(ref string, amount int64, at time.Time) psp.Payout {
	s.t.Helper()
	p, err := s.client.CreatePayout(context.Background(), payoutReq(ref, "seller-"+ref, amount))
	if err != nil {
		s.t.Fatal(err)
	}
	testenv.Eventually(s.t, 10*time.Second, "payout "+ref+" paid", func() (bool, error) {
		got, err := s.client.GetPayout(context.Background(), p.ID)
		return err == nil && got.Status == psp.PayoutPaid, err
	})
	s.exec(`UPDATE pspsim.payouts SET paid_at = $2 WHERE id = $1`, p.ID, at)
	return p
}

// download fetches a day's file through psp.HTTPClient.
func (s *sim) download(day time.Time) []byte {
	s.t.Helper()
	body, err := s.client.SettlementReport(context.Background(), day)
	if err != nil {
		s.t.Fatalf("settlement %s: %v", day.Format(time.DateOnly), err)
	}
	defer body.Close()
	b, err := io.ReadAll(body)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

// settlementFile is a parsed file.
type settlementFile struct {
	opening, closing map[string]int64
	currencies       []string // of the balance lines, in file order
	lines            []psp.SettlementLine
}

func parseFile(t *testing.T, b []byte, day time.Time) settlementFile {
	t.Helper()
	header, _, ok := bytes.Cut(b, []byte("\n"))
	if !ok || string(header) != psp.SettlementHeader {
		t.Fatalf("header %q", header)
	}
	r := csv.NewReader(bytes.NewReader(b))
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	f := settlementFile{opening: map[string]int64{}, closing: map[string]int64{}}
	var closingOrder []string
	for i, rec := range recs[1:] {
		l, err := psp.ParseSettlementLine(rec)
		if err != nil {
			t.Fatalf("line %d %q: %v", i+2, rec, err)
		}
		if l.SettlementDate != day.Format(time.DateOnly) {
			t.Errorf("line %d settles %s in the file of %s", i+2, l.SettlementDate, day.Format(time.DateOnly))
		}
		switch l.RecordType {
		case psp.RecordOpeningBalance:
			if len(f.lines) > 0 || len(closingOrder) > 0 {
				t.Errorf("opening balance after movements: line %d", i+2)
			}
			f.opening[l.Currency] = l.NetMinor
			f.currencies = append(f.currencies, l.Currency)
		case psp.RecordClosingBalance:
			f.closing[l.Currency] = l.NetMinor
			closingOrder = append(closingOrder, l.Currency)
		default:
			if len(closingOrder) > 0 {
				t.Errorf("movement after the closing balances: line %d", i+2)
			}
			f.lines = append(f.lines, l)
		}
	}
	if !slices.Equal(f.currencies, closingOrder) || !slices.IsSorted(f.currencies) {
		t.Errorf("balance currencies: opening %v, closing %v; want the same, sorted", f.currencies, closingOrder)
	}
	if !slices.IsSortedFunc(f.lines, func(a, b psp.SettlementLine) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.PSPReference, b.PSPReference)
	}) {
		t.Errorf("movement lines not ordered by created_at, psp_reference")
	}
	return f
}

func fee(t *testing.T, amount int64) int64 {
	t.Helper()
	f, err := money.Fee(amount, 290)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSettlementFile: a day with two charges (in two currencies and one
// more the day before), a refund and a paid payout has exactly those lines,
// with the fees and nets, and balances that chain from day to day; the API,
// the file writer and repeated downloads give the same bytes; a future day
// is not found, today is a file of balances.
func TestSettlementFile(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{cfg: func(c *pspsim.Config) {
		c.PayoutDelay = time.Millisecond
		c.PayoutInterval = 10 * time.Millisecond
	}})
	prev, day, next := utcDay(3), utcDay(2), utcDay(1)
	early := s.chargeAt("st-early", 1234, "EUR", prev.Add(9*time.Hour))
	a := s.chargeAt("st-a", 2599, "EUR", day.Add(10*time.Hour))
	j := s.chargeAt("st-j", 5000, "JPY", day.Add(10*time.Hour+30*time.Minute))
	r := s.refundAt("st-r", a.ID, 1000, day.Add(12*time.Hour))
	po := s.paidPayoutAt("st-po", 500, day.Add(13*time.Hour))

	fPrev := parseFile(t, s.download(prev), prev)
	if len(fPrev.lines) != 1 || fPrev.lines[0].PSPReference != early.ID || fPrev.lines[0].FeeMinor != fee(t, 1234) ||
		fPrev.opening["EUR"] != 0 || fPrev.closing["EUR"] != 1234-fee(t, 1234) {
		t.Fatalf("day before: %+v", fPrev)
	}

	raw := s.download(day)
	f := parseFile(t, raw, day)
	want := []psp.SettlementLine{
		{RecordType: "charge", PSPReference: a.ID, MerchantReference: "st-a", Currency: "EUR", GrossMinor: 2599, FeeMinor: fee(t, 2599)},
		{RecordType: "charge", PSPReference: j.ID, MerchantReference: "st-j", Currency: "JPY", GrossMinor: 5000, FeeMinor: fee(t, 5000)},
		{RecordType: "refund", PSPReference: r.ID, MerchantReference: "st-r", Currency: "EUR", GrossMinor: -1000},
		{RecordType: "payout", PSPReference: po.ID, MerchantReference: "st-po", Currency: "EUR", GrossMinor: -500},
	}
	if len(f.lines) != len(want) {
		t.Fatalf("lines %+v; want %d", f.lines, len(want))
	}
	sum := map[string]int64{}
	for i, w := range want {
		g := f.lines[i]
		if g.RecordType != w.RecordType || g.PSPReference != w.PSPReference || g.MerchantReference != w.MerchantReference ||
			g.Currency != w.Currency || g.GrossMinor != w.GrossMinor || g.FeeMinor != w.FeeMinor || g.NetMinor != w.GrossMinor-w.FeeMinor {
			t.Errorf("line %d: %+v; want %+v", i, g, w)
		}
		sum[w.Currency] += w.GrossMinor - w.FeeMinor
	}
	if fee(t, 2599) != 75 { // 75.371 → 75: the doc's rounding, checked once by hand
		t.Errorf("fee of 2599 at 290 bps: %d", fee(t, 2599))
	}
	if !f.lines[0].CreatedAt.Equal(day.Add(10*time.Hour)) || !f.lines[3].CreatedAt.Equal(day.Add(13*time.Hour)) {
		t.Errorf("created_at: %s, %s", f.lines[0].CreatedAt, f.lines[3].CreatedAt)
	}
	if !slices.Equal(f.currencies, []string{"EUR", "JPY"}) || f.opening["EUR"] != fPrev.closing["EUR"] || f.opening["JPY"] != 0 ||
		f.closing["EUR"] != f.opening["EUR"]+sum["EUR"] || f.closing["JPY"] != sum["JPY"] {
		t.Fatalf("balances: opening %v, closing %v, sums %v", f.opening, f.closing, sum)
	}

	fNext := parseFile(t, s.download(next), next)
	if len(fNext.lines) != 0 || fNext.opening["EUR"] != f.closing["EUR"] || fNext.closing["EUR"] != f.closing["EUR"] ||
		fNext.opening["JPY"] != f.closing["JPY"] {
		t.Fatalf("next day: %+v; want the closing balances carried, no lines", fNext)
	}
	today := parseFile(t, s.download(utcDay(0)), utcDay(0))
	if len(today.lines) != 0 || today.opening["EUR"] != f.closing["EUR"] {
		t.Fatalf("today: %+v", today)
	}

	if again := s.download(day); !bytes.Equal(again, raw) {
		t.Fatalf("second download differs:\n%s\n%s", raw, again)
	}
	dir := t.TempDir()
	path, err := s.srv.WriteSettlement(context.Background(), day, dir)
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil || filepath.Base(path) != "settlement-"+day.Format(time.DateOnly)+".csv" || !bytes.Equal(onDisk, raw) {
		t.Fatalf("file %s (%v) differs from the download", path, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("the writer left %d files", len(entries))
	}

	_, err = s.client.SettlementReport(context.Background(), utcDay(-1))
	if !psp.IsNotFound(err) {
		t.Fatalf("tomorrow: %v, want not found", err)
	}
	if _, err := s.srv.WriteSettlement(context.Background(), utcDay(-1), dir); !errors.Is(err, pspsim.ErrFutureDay) {
		t.Fatalf("WriteSettlement tomorrow: %v", err)
	}
	st, hdr, _ := s.raw(http.MethodGet, "/v1/settlements/2026-13-01", "", nil, "")
	if st != http.StatusBadRequest {
		t.Fatalf("bad date: %d %v", st, hdr)
	}
}

// TestSettlementDiscrepancies: each seeded kind changes the day's file as
// docs/settlement-file.md says, the same way on every download, and only
// settles_late moves the balances.
func TestSettlementDiscrepancies(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{cfg: func(c *pspsim.Config) {
		c.PayoutDelay = time.Millisecond
		c.PayoutInterval = 10 * time.Millisecond
		c.Seed = 42
	}})
	day, next := utcDay(2), utcDay(1)
	at := func(h int) time.Time { return day.Add(time.Duration(h) * time.Hour) }
	c1 := s.chargeAt("d-c1", 1000, "EUR", at(1))
	c2 := s.chargeAt("d-c2", 2599, "EUR", at(2))
	c3 := s.chargeAt("d-c3", 3000, "EUR", at(3))
	c4 := s.chargeAt("d-c4", 4000, "EUR", at(4))
	r := s.refundAt("d-r", c1.ID, 100, at(5))
	po := s.paidPayoutAt("d-po", 700, at(6))
	clean := parseFile(t, s.download(day), day)
	cleanNext := parseFile(t, s.download(next), next)
	if len(clean.lines) != 6 {
		t.Fatalf("clean day: %+v", clean.lines)
	}

	seed := func(kind, ref string) pspsim.Discrepancy {
		var d pspsim.Discrepancy
		s.admin(http.MethodPost, "/admin/settlement_discrepancies",
			pspsim.DiscrepancyRequest{Date: day.Format(time.DateOnly), Kind: kind, PSPReference: ref}, &d)
		return d
	}
	seed(pspsim.DiscrepancyMissingLine, c1.ID)
	seed(pspsim.DiscrepancyAlteredAmount, c2.ID)
	seed(pspsim.DiscrepancyWrongFee, c3.ID)
	seed(pspsim.DiscrepancySettlesLate, c4.ID)
	seed(pspsim.DiscrepancyDuplicatedLine, r.ID)
	cm := seed(pspsim.DiscrepancyCurrencyMismatch, po.ID)
	unknown := seed(pspsim.DiscrepancyUnknownReference, "")
	if cm.Currency != "USD" || !strings.HasPrefix(unknown.PSPReference, "pay_") || unknown.AmountMinor <= 0 ||
		unknown.FeeMinor != fee(t, unknown.AmountMinor) || unknown.Currency != "EUR" {
		t.Fatalf("stored discrepancies: %+v, %+v", cm, unknown)
	}
	// Seeding the same again changes nothing.
	if again := seed(pspsim.DiscrepancyMissingLine, c1.ID); again.PSPReference != c1.ID {
		t.Fatal(again)
	}
	var listed pspsim.DiscrepanciesPage
	s.admin(http.MethodGet, "/admin/settlement_discrepancies?date="+day.Format(time.DateOnly), nil, &listed)
	if len(listed.Discrepancies) != 7 {
		t.Fatalf("%d discrepancies listed, want 7", len(listed.Discrepancies))
	}

	raw := s.download(day)
	if again := s.download(day); !bytes.Equal(raw, again) {
		t.Fatal("downloads of a day with discrepancies differ")
	}
	f := parseFile(t, raw, day)
	byRef := map[string][]psp.SettlementLine{}
	for _, l := range f.lines {
		byRef[l.PSPReference] = append(byRef[l.PSPReference], l)
	}
	check := func(what string, ok bool, got any) {
		t.Helper()
		if !ok {
			t.Errorf("%s: %+v", what, got)
		}
	}
	check("missing_line", len(byRef[c1.ID]) == 0, byRef[c1.ID])
	alt := byRef[c2.ID]
	check("altered_amount", len(alt) == 1 && alt[0].GrossMinor == 2599+25 && alt[0].FeeMinor == fee(t, 2624) &&
		alt[0].NetMinor == 2624-fee(t, 2624), alt)
	wf := byRef[c3.ID]
	check("wrong_fee", len(wf) == 1 && wf[0].GrossMinor == 3000 && wf[0].FeeMinor == 2*fee(t, 3000) && wf[0].NetMinor == 3000-2*fee(t, 3000), wf)
	check("settles_late (gone from its day)", len(byRef[c4.ID]) == 0, byRef[c4.ID])
	dup := byRef[r.ID]
	check("duplicated_line", len(dup) == 2 && dup[0] == dup[1] && dup[0].GrossMinor == -100, dup)
	cml := byRef[po.ID]
	check("currency_mismatch", len(cml) == 1 && cml[0].Currency == "USD" && cml[0].GrossMinor == -700, cml)
	unk := byRef[unknown.PSPReference]
	check("unknown_reference", len(unk) == 1 && unk[0].RecordType == psp.RecordCharge && unk[0].GrossMinor == unknown.AmountMinor &&
		unk[0].FeeMinor == unknown.FeeMinor && unk[0].Currency == "EUR", unk)
	if len(f.lines) != 6 { // 6 clean − missing − late + duplicate + unknown
		t.Errorf("%d lines, want 6", len(f.lines))
	}
	// The books: only the late charge's net leaves the day. USD is listed
	// (a line is in it) at zero.
	c4net := 4000 - fee(t, 4000)
	if f.opening["EUR"] != clean.opening["EUR"] || f.closing["EUR"] != clean.closing["EUR"]-c4net ||
		f.opening["USD"] != 0 || f.closing["USD"] != 0 || !slices.Equal(f.currencies, []string{"EUR", "USD"}) {
		t.Errorf("balances: opening %v closing %v; clean closing %v", f.opening, f.closing, clean.closing)
	}
	fn := parseFile(t, s.download(next), next)
	late := []psp.SettlementLine{}
	for _, l := range fn.lines {
		if l.PSPReference == c4.ID {
			late = append(late, l)
		}
	}
	if len(late) != 1 || !late[0].CreatedAt.Equal(at(4)) || late[0].GrossMinor != 4000 ||
		fn.opening["EUR"] != f.closing["EUR"] || fn.closing["EUR"] != cleanNext.closing["EUR"] {
		t.Errorf("next day: late lines %+v, opening %v closing %v; clean next closing %v", late, fn.opening, fn.closing, cleanNext.closing)
	}

	// Without a reference, the line is picked by the seed: a charge of the
	// day, the same one for the same seed and the same history.
	picked := seed(pspsim.DiscrepancyWrongFee, "")
	if !slices.Contains([]string{c1.ID, c2.ID, c3.ID, c4.ID}, picked.PSPReference) {
		t.Fatalf("picked %q, not a charge of the day", picked.PSPReference)
	}
	st, _, b := s.raw(http.MethodPost, "/admin/settlement_discrepancies", s.adminKey, nil,
		`{"date":"`+utcDay(10).Format(time.DateOnly)+`","kind":"missing_line"}`)
	if st != http.StatusBadRequest {
		t.Fatalf("a day without charges: %d %s", st, b)
	}
	st, _, b = s.raw(http.MethodPost, "/admin/settlement_discrepancies", s.adminKey, nil,
		`{"date":"`+next.Format(time.DateOnly)+`","kind":"missing_line","psp_reference":"`+c2.ID+`"}`)
	if st != http.StatusBadRequest {
		t.Fatalf("a reference of another day: %d %s", st, b)
	}
}

// TestSettlementPickIsSeeded: two simulators with one seed and the same
// history pick the same position among the day's charges.
func TestSettlementPickIsSeeded(t *testing.T) {
	t.Parallel()
	day := utcDay(2)
	pick := func() int {
		s := newSim(t, simOptions{noRun: true, cfg: func(c *pspsim.Config) { c.Seed = 7 }})
		var ids []string
		for i := range 8 {
			ids = append(ids, s.chargeAt("pk-"+string(rune('a'+i)), 1000+int64(i), "EUR", day.Add(time.Duration(i+1)*time.Hour)).ID)
		}
		var d pspsim.Discrepancy
		s.admin(http.MethodPost, "/admin/settlement_discrepancies",
			pspsim.DiscrepancyRequest{Date: day.Format(time.DateOnly), Kind: pspsim.DiscrepancyMissingLine}, &d)
		return slices.Index(ids, d.PSPReference)
	}
	a, b := pick(), pick()
	if a < 0 || a != b {
		t.Fatalf("picked positions %d and %d", a, b)
	}
}

// probeWriter records, at each write, how many movement rows had been read
// from the database, and the largest write.
type probeWriter struct {
	rowsRead *int
	firstAt  int // rows read when the first movement bytes arrived
	maxWrite int
	total    int
}

func (p *probeWriter) Write(b []byte) (int, error) {
	if *p.rowsRead > 0 && p.firstAt == 0 {
		p.firstAt = *p.rowsRead
	}
	p.maxWrite = max(p.maxWrite, len(b))
	p.total += len(b)
	return len(b), nil
}

// TestSettlementStreams: a day of 20,000 charges reaches the writer in small
// pieces while the rows are still being read: the file is never assembled
// in memory.
func TestSettlementStreams(t *testing.T) {
	t.Parallel()
	s := newSim(t, simOptions{noRun: true})
	day := utcDay(1)
	const n = 20000
	s.exec(`INSERT INTO pspsim.payments (id, merchant_reference, amount_minor, currency, status, card_brand, card_last4, idempotency_key)
SELECT 'pay_' || lpad(i::text, 26, '0'), 'bulk-' || i, 1000 + i, 'EUR', 'succeeded', 'visa', '4242', 'bulk-' || i
FROM generate_series(1, $1::int) i`, n)
	s.exec(`INSERT INTO pspsim.charges (payment_id, idempotency_key, merchant_reference, amount_minor, currency, card_brand, card_last4, fee_minor, fee_bps, charged_at)
SELECT 'pay_' || lpad(i::text, 26, '0'), 'bulk-' || i, 'bulk-' || i, 1000 + i, 'EUR', 'visa', '4242', 29, 290,
       $2::timestamptz + i * interval '1 second'
FROM generate_series(1, $1::int) i`, n, day)
	rows := 0
	w := &probeWriter{rowsRead: &rows}
	if err := pspsim.WriteSettlementProbed(context.Background(), s.pool, w, day, func() { rows++ }); err != nil {
		t.Fatal(err)
	}
	if rows != n {
		t.Fatalf("%d rows read, want %d", rows, n)
	}
	if w.firstAt == 0 || w.firstAt > n/10 || w.maxWrite > 64<<10 || w.total < n*60 {
		t.Fatalf("first movement bytes after %d of %d rows, largest write %d bytes, %d bytes in all: not streamed",
			w.firstAt, n, w.maxWrite, w.total)
	}
}
