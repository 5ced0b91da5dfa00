package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/ledger"
)

// books runs the ledger's real handlers in inbox transactions, as the
// runner does.
type books struct {
	t     *testing.T
	pool  *pgxpool.Pool
	specs map[string]outbox.ConsumerSpec
}

func newBooks(t *testing.T) *books {
	pool, _ := testenv.Migrated(t, ledger.Schema())
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	specs := map[string]outbox.ConsumerSpec{}
	for _, s := range ledger.Consumers(ledger.WithLogger(log)) {
		specs[s.Name] = s
	}
	return &books{t: t, pool: pool, specs: specs}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// deliver hands v to the consumer as subject's v1 under msgID (a new one
// when nil): a new message, or a redelivery of an old one.
func (b *books) deliverID(consumer, subject string, msgID uuid.UUID, v any) error {
	b.t.Helper()
	payload, err := json.Marshal(v)
	if err != nil {
		b.t.Fatal(err)
	}
	spec, ok := b.specs[consumer]
	if !ok {
		b.t.Fatalf("no consumer %s", consumer)
	}
	d := outbox.Delivery{MsgID: msgID, Subject: subject, Type: contracts.TypeOf(subject), Payload: payload}
	_, err = ledger.Store.Handle(context.Background(), b.pool, spec.Name, d.MsgID, d.Subject, func(ctx context.Context, tx pgx.Tx) error {
		return spec.Handler(ctx, tx, d)
	})
	return err
}

func (b *books) deliver(consumer, subject string, v any) error {
	return b.deliverID(consumer, subject, uuid.New(), v)
}

func (b *books) must(consumer, subject string, v any) {
	b.t.Helper()
	if err := b.deliver(consumer, subject, v); err != nil {
		b.t.Fatalf("%s: %v", subject, err)
	}
}

// balance is an account's net on its normal side in cur (0 if untouched).
func (b *books) balance(account, cur string) int64 {
	b.t.Helper()
	bs, err := ledger.Balances(context.Background(), b.pool)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, x := range bs {
		if x.Account == account && x.Currency == cur {
			return x.Net()
		}
	}
	return 0
}

// posted returns the ledger.entry.posted events in outbox order, each
// checked against its schema.
func (b *books) posted() []contracts.LedgerEntryPosted {
	b.t.Helper()
	rows, err := b.pool.Query(context.Background(), `SELECT payload FROM ledger.outbox ORDER BY id`)
	if err != nil {
		b.t.Fatal(err)
	}
	var out []contracts.LedgerEntryPosted
	var payload []byte
	if _, err := pgx.ForEachRow(rows, []any{&payload}, func() error {
		checkSchema(b.t, contracts.TypeOf(contracts.SubjectLedgerEntryPosted), payload)
		var ev contracts.LedgerEntryPosted
		if err := json.Unmarshal(payload, &ev); err != nil {
			return err
		}
		out = append(out, ev)
		return nil
	}); err != nil {
		b.t.Fatal(err)
	}
	return out
}

func (b *books) balanced() {
	b.t.Helper()
	v, err := ledger.CheckBalanced(context.Background(), b.pool)
	if err != nil || len(v) != 0 {
		b.t.Fatalf("CheckBalanced: %+v, %v", v, err)
	}
}

func checkSchema(t *testing.T, ceType string, payload []byte) {
	t.Helper()
	err := contracts.ValidateEvent(ceType, payload)
	if errors.Is(err, contracts.ErrUnknownEventType) {
		t.Logf("TODO: no schema for %s yet", ceType)
		return
	}
	if err != nil {
		t.Errorf("%s does not validate: %v\n%s", ceType, err, payload)
	}
}

func byKind(evs []contracts.LedgerEntryPosted) map[string][]contracts.LedgerEntryPosted {
	out := map[string][]contracts.LedgerEntryPosted{}
	for _, ev := range evs {
		out[ev.Kind] = append(out[ev.Kind], ev)
	}
	return out
}

func succeeded(seller string, amount, fee int64) contracts.OrderSucceeded {
	return contracts.OrderSucceeded{PaymentOrderID: uuid.NewString(), CheckoutID: uuid.NewString(), MerchantID: merchantID,
		SellerID: seller, Currency: "EUR", AmountMinor: amount, FeeMinor: fee, NetMinor: amount - fee,
		PSPPaymentID: "pay_" + uuid.NewString()[:8], CheckoutAmountMinor: amount + 500, SucceededAt: time.Now().UTC()}
}

var merchantID = uuid.NewString()

func refundOf(o contracts.OrderSucceeded, amount, fee int64) contracts.RefundSucceeded {
	return contracts.RefundSucceeded{RefundID: uuid.NewString(), PaymentOrderID: o.PaymentOrderID, CheckoutID: o.CheckoutID,
		MerchantID: o.MerchantID, SellerID: o.SellerID, PSPPaymentID: o.PSPPaymentID, PSPRefundID: "re_" + uuid.NewString()[:8],
		Currency: o.Currency, AmountMinor: amount, FeeMinor: fee, NetMinor: amount - fee, SucceededAt: time.Now().UTC()}
}

func payoutAt(seller, status string, amount int64, version int64) contracts.PayoutChanged {
	p := contracts.PayoutChanged{PayoutID: uuid.NewString(), MerchantID: merchantID, SellerID: seller, Currency: "EUR",
		Period: "2026-03-02", Status: status, AmountMinor: amount, Version: version,
		CreatedAt: time.Now().UTC(), ChangedAt: time.Now().UTC()}
	return p
}

func withStatus(p contracts.PayoutChanged, status string) contracts.PayoutChanged {
	p.Status, p.Version, p.FailureCode = status, p.Version+1, ""
	switch status {
	case contracts.PayoutStatusPaid:
		p.PSPPayoutID = "po_" + p.PayoutID[:8]
	case contracts.PayoutStatusFailed:
		p.FailureCode = "account_closed"
	}
	return p
}

// TestCaptureAndRefundEntries: a capture carries the PSP's references (the
// checkout's gross), a refund reverses seller, fee and receivable with its
// own references; re-sends and redeliveries are no-ops, other figures a
// conflict.
func TestCaptureAndRefundEntries(t *testing.T) {
	t.Parallel()
	b := newBooks(t)
	seller := uuid.NewString()
	o := succeeded(seller, 10_000, 290)
	b.must(contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded, o)
	old := succeeded(seller, 2_000, 58)
	old.CheckoutAmountMinor = 0 // an event written before the field existed
	b.must(contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded, old)

	r := refundOf(o, 4_000, 116)
	msg := uuid.New()
	for range 2 { // a redelivery under the same ce-id
		if err := b.deliverID(contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, msg, r); err != nil {
			t.Fatal(err)
		}
	}
	b.must(contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, r) // re-sent under a new ce-id
	other := r
	other.FeeMinor, other.NetMinor = 117, r.NetMinor-1
	if err := b.deliver(contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, other); !errors.Is(err, ledger.ErrExternalIDConflict) {
		t.Fatalf("refund re-sent with another split: %v; want ErrExternalIDConflict", err)
	}
	bad := refundOf(o, 100, 0)
	bad.NetMinor = 99
	if err := b.deliver(contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, bad); !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Fatalf("fee + net ≠ amount: %v; want ErrInvalidEvent", err)
	}
	full := refundOf(old, 2_000, 58) // fee and net both present: three lines
	b.must(contracts.LedgerRefundsConsumer, contracts.SubjectRefundSucceeded, full)

	evs := byKind(b.posted())
	if len(evs[contracts.EntryOrderCaptured]) != 2 || len(evs[contracts.EntryOrderRefunded]) != 2 {
		t.Fatalf("entries %+v", evs)
	}
	cap0 := evs[contracts.EntryOrderCaptured][0]
	if cap0.Reference != o.CheckoutID || cap0.PSPReference != o.PSPPaymentID || cap0.PSPAmountMinor != o.CheckoutAmountMinor {
		t.Errorf("capture references %+v", cap0)
	}
	if cap1 := evs[contracts.EntryOrderCaptured][1]; cap1.PSPAmountMinor != old.AmountMinor {
		t.Errorf("capture without checkout amount: psp amount %d, want the order's %d", cap1.PSPAmountMinor, old.AmountMinor)
	}
	ref := evs[contracts.EntryOrderRefunded][0]
	wantPostings := []contracts.Posting{
		{Account: contracts.SellerPayable(seller), Direction: contracts.Debit, AmountMinor: 3_884},
		{Account: contracts.AccountPlatformFeeRevenue, Direction: contracts.Debit, AmountMinor: 116},
		{Account: contracts.AccountPSPReceivable, Direction: contracts.Credit, AmountMinor: 4_000},
	}
	if ref.ExternalID != ledger.OrderRefundedExternalID(r.RefundID) || ref.PaymentOrderID != o.PaymentOrderID ||
		ref.Reference != r.RefundID || ref.PSPReference != r.PSPRefundID || ref.PSPAmountMinor != 4_000 || !equalPostings(ref.Postings, wantPostings) {
		t.Errorf("refund entry %+v", ref)
	}
	if n := count(t, b.pool, `SELECT count(*) FROM ledger.journal_entries WHERE psp_reference = $1 AND reference = $2 AND psp_amount_minor = 4000`,
		r.PSPRefundID, r.RefundID); n != 1 {
		t.Errorf("refund references not stored: %d rows", n)
	}
	if got, want := b.balance(contracts.SellerPayable(seller), "EUR"), int64(9_710+1_942-3_884-1_942); got != want {
		t.Errorf("seller payable %d, want %d", got, want)
	}
	if got, want := b.balance(contracts.AccountPSPReceivable, "EUR"), int64(10_000+2_000-4_000-2_000); got != want {
		t.Errorf("psp receivable %d, want %d", got, want)
	}
	b.balanced()
}

func equalPostings(a, b []contracts.Posting) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestPayoutEntries: created → paid; paid before created (the initiation
// is posted first, created is then a no-op); failed before created (both
// initiation and return); a failed payout that was never created (amount
// 0) posts nothing; a payout cannot be both paid and returned.
func TestPayoutEntries(t *testing.T) {
	t.Parallel()
	b := newBooks(t)
	seller := uuid.NewString()
	payable := contracts.SellerPayable(seller)
	b.must(contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded, succeeded(seller, 100_000, 3_000)) // payable 97,000
	pay := func(subject string, p contracts.PayoutChanged) error {
		return b.deliver(contracts.LedgerPayoutsConsumer, subject, p)
	}

	// In order: created, paid; then both re-sent and the paid redelivered.
	p1 := payoutAt(seller, contracts.PayoutStatusCreated, 30_000, 1)
	p1paid := withStatus(withStatus(p1, contracts.PayoutStatusSent), contracts.PayoutStatusPaid)
	if err := pay(contracts.SubjectPayoutCreated, p1); err != nil {
		t.Fatal(err)
	}
	if got := b.balance(contracts.AccountPayoutInTransit, "EUR"); got != 30_000 {
		t.Fatalf("in transit %d after created, want 30000", got)
	}
	msg := uuid.New()
	for range 2 {
		if err := b.deliverID(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutPaid, msg, p1paid); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []error{pay(contracts.SubjectPayoutCreated, p1), pay(contracts.SubjectPayoutPaid, p1paid)} {
		if e != nil {
			t.Fatalf("re-send: %v", e)
		}
	}
	// A contradiction: paid, then failed.
	if err := pay(contracts.SubjectPayoutFailed, withStatus(p1, contracts.PayoutStatusFailed)); !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Fatalf("failed after paid: %v; want ErrInvalidEvent", err)
	}

	// Out of order: paid arrives before created.
	p2 := payoutAt(seller, contracts.PayoutStatusCreated, 20_000, 1)
	p2paid := withStatus(withStatus(p2, contracts.PayoutStatusSent), contracts.PayoutStatusPaid)
	if err := pay(contracts.SubjectPayoutPaid, p2paid); err != nil {
		t.Fatal(err)
	}
	if got := b.balance(contracts.AccountPayoutInTransit, "EUR"); got != 0 {
		t.Fatalf("in transit %d after p2 paid before created, want 0", got)
	}
	if err := pay(contracts.SubjectPayoutCreated, p2); err != nil {
		t.Fatalf("late created: %v", err)
	}
	wrong := p2
	wrong.AmountMinor = 20_001
	if err := pay(contracts.SubjectPayoutCreated, wrong); !errors.Is(err, ledger.ErrExternalIDConflict) {
		t.Fatalf("created with another amount: %v; want ErrExternalIDConflict", err)
	}

	// Failed before created arrives: initiated and returned; then created is a no-op.
	p3 := payoutAt(seller, contracts.PayoutStatusCreated, 15_000, 1)
	if err := pay(contracts.SubjectPayoutFailed, withStatus(withStatus(p3, contracts.PayoutStatusSent), contracts.PayoutStatusFailed)); err != nil {
		t.Fatal(err)
	}
	if err := pay(contracts.SubjectPayoutCreated, p3); err != nil {
		t.Fatal(err)
	}
	if err := pay(contracts.SubjectPayoutPaid, withStatus(p3, contracts.PayoutStatusPaid)); !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Fatalf("paid after failed: %v; want ErrInvalidEvent", err)
	}
	// A payout that failed before it was ever created: nothing to post.
	p4 := withStatus(payoutAt(seller, contracts.PayoutStatusRequested, 0, 1), contracts.PayoutStatusFailed)
	if err := pay(contracts.SubjectPayoutFailed, p4); err != nil {
		t.Fatal(err)
	}
	// The status must be the subject's.
	if err := pay(contracts.SubjectPayoutPaid, p2); !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Fatalf("created payload on paid: %v; want ErrInvalidEvent", err)
	}

	if got := b.balance(contracts.AccountPayoutInTransit, "EUR"); got != 0 {
		t.Errorf("in transit %d, want 0", got)
	}
	if got := b.balance(payable, "EUR"); got != 97_000-30_000-20_000 {
		t.Errorf("seller payable %d, want %d", got, 97_000-50_000)
	}
	if got := b.balance(contracts.AccountBank, "EUR"); got != -50_000 {
		t.Errorf("bank %d, want -50000 (paid out, nothing settled yet)", got)
	}
	evs := byKind(b.posted())
	if len(evs[contracts.EntryPayoutInitiated]) != 3 || len(evs[contracts.EntryPayoutPaid]) != 2 || len(evs[contracts.EntryPayoutReturned]) != 1 {
		t.Fatalf("entries: %d initiated, %d paid, %d returned; want 3, 2, 1", len(evs[contracts.EntryPayoutInitiated]),
			len(evs[contracts.EntryPayoutPaid]), len(evs[contracts.EntryPayoutReturned]))
	}
	for _, ev := range evs[contracts.EntryPayoutPaid] {
		want := map[string]contracts.PayoutChanged{p1.PayoutID: p1paid, p2.PayoutID: p2paid}[ev.Reference]
		if want.PayoutID == "" || ev.PSPReference != want.PSPPayoutID || ev.PSPAmountMinor != want.AmountMinor {
			t.Errorf("paid entry references %+v", ev)
		}
	}
	b.balanced()
}

// TestConcurrentPaidAndFailed: contradictory events of one payout racing
// in separate transactions: exactly one is posted.
func TestConcurrentPaidAndFailed(t *testing.T) {
	t.Parallel()
	b := newBooks(t)
	seller := uuid.NewString()
	b.must(contracts.LedgerPaymentsConsumer, contracts.SubjectOrderSucceeded, succeeded(seller, 50_000, 0))
	for range 8 {
		p := payoutAt(seller, contracts.PayoutStatusSent, 1_000, 2)
		var wg sync.WaitGroup
		errs := make([]error, 2)
		wg.Go(func() {
			errs[0] = b.deliver(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutPaid, withStatus(p, contracts.PayoutStatusPaid))
		})
		wg.Go(func() {
			errs[1] = b.deliver(contracts.LedgerPayoutsConsumer, contracts.SubjectPayoutFailed, withStatus(p, contracts.PayoutStatusFailed))
		})
		wg.Wait()
		if (errs[0] == nil) == (errs[1] == nil) {
			t.Fatalf("paid: %v, failed: %v; want exactly one refused", errs[0], errs[1])
		}
		for _, err := range errs {
			if err != nil && !errors.Is(err, ledger.ErrInvalidEvent) {
				t.Fatalf("refused with %v; want ErrInvalidEvent", err)
			}
		}
	}
	if got := b.balance(contracts.AccountPayoutInTransit, "EUR"); got != 0 {
		t.Errorf("in transit %d, want 0", got)
	}
	b.balanced()
}

// TestSettlementEntries: directions follow the signs, zero lines are left
// out, and the entry balances, including a day whose refunds exceed its
// charges.
func TestSettlementEntries(t *testing.T) {
	t.Parallel()
	b := newBooks(t)
	batch := func(charges, refunds, fees int64) contracts.BatchSettled {
		return contracts.BatchSettled{BatchID: uuid.NewString(), SettlementDate: "2026-03-02", FileID: "settlement-2026-03-02.csv",
			Currency: "EUR", Lines: 3, ChargesGrossMinor: charges, RefundsGrossMinor: refunds, FeesMinor: fees, SettledAt: time.Now().UTC()}
	}
	type want struct{ bank, fee, receivable int64 }
	var total want
	for _, tc := range []struct {
		name string
		ev   contracts.BatchSettled
		want want // normal-side change of bank, psp_fee_expense, psp_receivable
		n    int  // lines of the entry
	}{
		{"charges only", batch(100_000, 0, 2_900), want{97_100, 2_900, -100_000}, 3},
		{"charges and refunds", batch(100_000, 30_000, 3_100), want{66_900, 3_100, -70_000}, 3},
		{"refunds exceed charges", batch(10_000, 40_000, 500), want{-30_500, 500, 30_000}, 3},
		{"fees eat the net", batch(10_000, 9_000, 1_000), want{0, 1_000, -1_000}, 2},
		{"refunds cancel charges, fees", batch(5_000, 5_000, 200), want{-200, 200, 0}, 2},
		{"no fees", batch(5_000, 0, 0), want{5_000, 0, -5_000}, 2},
	} {
		before := want{b.balance(contracts.AccountBank, "EUR"), b.balance(contracts.AccountPSPFeeExpense, "EUR"), b.balance(contracts.AccountPSPReceivable, "EUR")}
		b.must(contracts.LedgerSettlementsConsumer, contracts.SubjectReconBatchSettled, tc.ev)
		b.must(contracts.LedgerSettlementsConsumer, contracts.SubjectReconBatchSettled, tc.ev) // re-sent
		after := want{b.balance(contracts.AccountBank, "EUR"), b.balance(contracts.AccountPSPFeeExpense, "EUR"), b.balance(contracts.AccountPSPReceivable, "EUR")}
		got := want{after.bank - before.bank, after.fee - before.fee, after.receivable - before.receivable}
		if got != tc.want {
			t.Errorf("%s: moved %+v, want %+v", tc.name, got, tc.want)
		}
		if n := count(t, b.pool, `SELECT count(*) FROM ledger.postings p JOIN ledger.journal_entries e ON e.id = p.entry_id WHERE e.external_id = $1`,
			ledger.SettlementExternalID(tc.ev.BatchID)); n != tc.n {
			t.Errorf("%s: %d postings, want %d", tc.name, n, tc.n)
		}
		total = after
	}
	// A batch of payout lines only moves nothing.
	empty := batch(0, 0, 0)
	b.must(contracts.LedgerSettlementsConsumer, contracts.SubjectReconBatchSettled, empty)
	if n := count(t, b.pool, `SELECT count(*) FROM ledger.journal_entries WHERE external_id = $1`, ledger.SettlementExternalID(empty.BatchID)); n != 0 {
		t.Errorf("empty batch posted %d entries", n)
	}
	if err := b.deliver(contracts.LedgerSettlementsConsumer, contracts.SubjectReconBatchSettled, batch(-1, 0, 0)); !errors.Is(err, ledger.ErrInvalidEvent) {
		t.Errorf("negative charges: %v; want ErrInvalidEvent", err)
	}
	evs := byKind(b.posted())
	if len(evs[contracts.EntrySettlement]) != 6 {
		t.Fatalf("%d settlement events, want 6", len(evs[contracts.EntrySettlement]))
	}
	if ev := evs[contracts.EntrySettlement][0]; ev.MerchantID != "" || ev.PaymentOrderID != "" {
		t.Errorf("settlement names a merchant or order: %+v", ev)
	}
	if total.bank+total.fee+total.receivable != 0 { // assets and expense: Σ debits − credits over the three = 0
		t.Errorf("settlements do not net out: %+v", total)
	}
	b.balanced()
}
