package contracts_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"go.yaml.in/yaml/v3"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
)

// stringConsts returns every string constant declared in events.go and
// events_payout.go, parsed
// from the source so that a subject, status, kind or cause added there
// without a schema, a sample or an AsyncAPI entry fails these tests.
func stringConsts(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, file := range []string{"events.go", "events_payout.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		addStringConsts(t, f, out)
	}
	return out
}

func addStringConsts(t *testing.T, f *ast.File, out map[string]string) {
	t.Helper()
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[name.Name] = v
				}
			}
		}
	}
}

// subjects returns the Subject* constants by name.
func subjects(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for name, v := range stringConsts(t) {
		if strings.HasPrefix(name, "Subject") {
			out[name] = v
		}
	}
	if len(out) == 0 {
		t.Fatal("no Subject* constants found in events.go")
	}
	return out
}

// constValues returns the sorted values of the events.go constants named.
func constValues(t *testing.T, match func(name string) bool) []string {
	t.Helper()
	var out []string
	for name, v := range stringConsts(t) {
		if match(name) {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return out
}

// ids are minted the way the services mint them.
func newID(t *testing.T) string {
	t.Helper()
	id, err := uuid.NewV7()
	if err != nil {
		t.Fatal(err)
	}
	return id.String()
}

// sample is a realistic event as a service builds it, with the Go type the
// service marshals.
type sample struct {
	name  string
	event any
}

// samples returns, per subject, events built as the producing service builds
// them (see services/payment, executor, ledger and wallet): ids from
// uuid.NewV7, fees from money.Fee, times in UTC, optional fields both set and
// left out.
func samples(t *testing.T) map[string][]sample {
	t.Helper()
	checkout, merchant := newID(t), newID(t)
	sellerA, sellerB := newID(t), newID(t)
	orderA, orderB := newID(t), newID(t)
	now := time.Now().UTC()
	fee := func(amount int64, bps int) int64 {
		f, err := money.Fee(amount, bps)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	feeA, feeB := fee(10_000, 300), fee(2_550, 300)
	orders := []contracts.OrderSummary{
		{PaymentOrderID: orderA, SellerID: sellerA, AmountMinor: 10_000, FeeMinor: feeA, NetMinor: 10_000 - feeA},
		{PaymentOrderID: orderB, SellerID: sellerB, AmountMinor: 2_550, FeeMinor: feeB, NetMinor: 2_550 - feeB},
	}
	registered := contracts.CheckoutRegistered{
		CheckoutID: checkout, MerchantID: merchant, PSPPaymentID: "pay_3KqZ8dWmP0", PSPStatus: contracts.PSPStatusRequiresAction,
		AmountMinor: 12_550, Currency: "USD", RedirectURL: "http://127.0.0.1:8081/pay/pay_3KqZ8dWmP0", RegisteredAt: now,
	}
	directFailed := registered
	directFailed.PSPStatus, directFailed.RedirectURL, directFailed.FailureCode = contracts.PSPStatusFailed, "", "card_declined"
	resolved := contracts.CheckoutResolved(registered)
	resolved.PSPStatus, resolved.RedirectURL = contracts.PSPStatusSucceeded, ""
	entryOf := func(net, fee int64) contracts.LedgerEntryPosted {
		e := contracts.LedgerEntryPosted{
			EntryID:    uuid.NewSHA1(uuid.MustParse("6f1d8a52-3c1e-4f0e-9a57-2f8f1a7e0b3d"), []byte("order_captured:"+orderA)).String(),
			ExternalID: contracts.EntryOrderCaptured + ":" + orderA, Kind: contracts.EntryOrderCaptured,
			MerchantID: merchant, PaymentOrderID: orderA, Currency: "USD", PostedAt: now.Truncate(time.Microsecond),
			Postings: []contracts.Posting{{Account: contracts.AccountPSPReceivable, Direction: contracts.Debit, AmountMinor: net + fee}},
		}
		if net > 0 {
			e.Postings = append(e.Postings, contracts.Posting{Account: contracts.SellerPayable(sellerA), Direction: contracts.Credit, AmountMinor: net})
		}
		if fee > 0 {
			e.Postings = append(e.Postings, contracts.Posting{Account: contracts.AccountPlatformFeeRevenue, Direction: contracts.Credit, AmountMinor: fee})
		}
		return e
	}
	out := map[string][]sample{
		contracts.SubjectCheckoutCreated: {
			{"hosted", contracts.CheckoutCreated{
				CheckoutID: checkout, MerchantID: merchant, BuyerID: "buyer-4711", Currency: "USD", AmountMinor: 12_550,
				Mode: contracts.ModeHosted, ReturnURL: "https://shop.example/checkout/done?ref=a%20b", Orders: orders, CreatedAt: now,
			}},
			{"direct, one order, zero-decimal currency, 0 bps fee", contracts.CheckoutCreated{
				CheckoutID: checkout, MerchantID: merchant, BuyerID: "Ünïcødé buyer", Currency: "JPY", AmountMinor: money.MaxAmount,
				Mode: contracts.ModeDirect, PaymentMethod: "pm_card_visa",
				Orders:    []contracts.OrderSummary{{PaymentOrderID: orderA, SellerID: sellerA, AmountMinor: money.MaxAmount, FeeMinor: 0, NetMinor: money.MaxAmount}},
				CreatedAt: now,
			}},
			{"direct with return_url, 100% fee", contracts.CheckoutCreated{
				CheckoutID: checkout, MerchantID: merchant, BuyerID: "b", Currency: "EUR", AmountMinor: 1,
				Mode: contracts.ModeDirect, PaymentMethod: "pm_card_declined", ReturnURL: "http://localhost:3000/done",
				Orders:    []contracts.OrderSummary{{PaymentOrderID: orderA, SellerID: sellerA, AmountMinor: 1, FeeMinor: fee(1, 10_000), NetMinor: 0}},
				CreatedAt: now,
			}},
		},
		contracts.SubjectCheckoutRegistered: {
			{"hosted, waiting for the buyer", registered},
			{"direct, declined", directFailed},
		},
		contracts.SubjectCheckoutResolved: {
			{"succeeded", resolved},
		},
		contracts.SubjectCheckoutRejected: {
			{"rejected", contracts.CheckoutRejected{CheckoutID: checkout, MerchantID: merchant, Code: "currency_not_supported",
				Message: "The currency is not enabled for this account.", RejectedAt: now}},
		},
		contracts.SubjectCheckoutCompleted: {
			{"completed", contracts.CheckoutCompleted{CheckoutID: checkout, MerchantID: merchant, CompletedAt: now}},
		},
		contracts.SubjectOrderSucceeded: {
			{"succeeded", contracts.OrderSucceeded{PaymentOrderID: orderA, CheckoutID: checkout, MerchantID: merchant, SellerID: sellerA,
				Currency: "USD", AmountMinor: 10_000, FeeMinor: feeA, NetMinor: 10_000 - feeA, PSPPaymentID: "pay_3KqZ8dWmP0", SucceededAt: now}},
		},
		contracts.SubjectOrderFailed: {
			{"rejected", contracts.OrderFailed{PaymentOrderID: orderB, CheckoutID: checkout, MerchantID: merchant, SellerID: sellerB,
				Currency: "USD", AmountMinor: 2_550, FailureCode: "psp_rejected:currency_not_supported", FailedAt: now}},
		},
		contracts.SubjectOrderCompleted: {
			{"completed", contracts.OrderCompleted{PaymentOrderID: orderA, CheckoutID: checkout, MerchantID: merchant, SellerID: sellerA, CompletedAt: now}},
		},
		contracts.SubjectLedgerEntryPosted: {
			{"order captured with fee", entryOf(10_000-feeA, feeA)},
			{"order captured without fee", entryOf(10_000, 0)},
		},
		contracts.SubjectWalletBalance: {
			{"order succeeded", contracts.WalletBalanceChanged{SellerID: sellerA, MerchantID: merchant, Currency: "USD",
				Cause: contracts.CauseOrderSucceeded, PaymentOrderID: orderA, DeltaPendingMinor: 10_000 - feeA,
				PendingMinor: 10_000 - feeA, Version: 1, ChangedAt: now}},
			{"owing the platform", contracts.WalletBalanceChanged{SellerID: sellerA, MerchantID: merchant, Currency: "USD",
				Cause: contracts.CauseOrderSucceeded, PaymentOrderID: orderB, DeltaPendingMinor: 0,
				PendingMinor: 9_700, AvailableMinor: -5_000, PaidOutMinor: 120_000, Version: 7, ChangedAt: now}},
		},
	}
	for subject, ss := range payoutSamples(t, checkout, merchant, sellerA, orderA, feeA, now) {
		out[subject] = append(out[subject], ss...)
	}
	return out
}

// payoutSamples are the pay-out side's events (issue 5), built as payment,
// executor, wallet, ledger, payout and the reconciler build them.
func payoutSamples(t *testing.T, checkout, merchant, seller, order string, orderFee int64, now time.Time) map[string][]sample {
	t.Helper()
	const orderAmount, pspPayment = 10_000, "pay_3KqZ8dWmP0"
	orderNet := orderAmount - orderFee
	// A partial refund returns the fee pro rata, half up.
	refund, refundAmount := newID(t), int64(2_500)
	refundFee := (orderFee*refundAmount*2 + orderAmount) / (2 * orderAmount)
	refundNet := refundAmount - refundFee
	ns := uuid.MustParse("6f1d8a52-3c1e-4f0e-9a57-2f8f1a7e0b3d")
	payout := uuid.NewSHA1(ns, []byte(seller+"|USD|2026-03-02")).String()
	run, batch := newID(t), uuid.NewSHA1(ns, []byte("settlement-2026-03-02.csv|USD|0")).String()
	entry := func(kind, ref string) string {
		return uuid.NewSHA1(ns, []byte(kind+":"+ref)).String()
	}
	changed := contracts.PayoutChanged{PayoutID: payout, MerchantID: merchant, SellerID: seller, Currency: "USD",
		Period: "2026-03-02", Status: contracts.PayoutStatusCreated, AmountMinor: 42_000, Version: 2, CreatedAt: now, ChangedAt: now}
	sent, paid, failed, canceled := changed, changed, changed, changed
	sent.Status, sent.PSPPayoutID, sent.Version = contracts.PayoutStatusSent, "po_9xK2mQ", 3
	paid.Status, paid.PSPPayoutID, paid.Version = contracts.PayoutStatusPaid, "po_9xK2mQ", 4
	failed.Status, failed.PSPPayoutID, failed.FailureCode, failed.Version = contracts.PayoutStatusFailed, "po_9xK2mQ", "account_closed", 4
	failedUnsent := failed
	failedUnsent.PSPPayoutID, failedUnsent.FailureCode, failedUnsent.Version = "", "psp_rejected:invalid_bank_account", 3
	canceled.Status, canceled.AmountMinor, canceled.Reason = contracts.PayoutStatusCanceled, 0, "nothing_available"
	balance := contracts.WalletBalanceChanged{SellerID: seller, MerchantID: merchant, Currency: "USD", ChangedAt: now}
	fulfilled, refunded, reserved, returned := balance, balance, balance, balance
	fulfilled.Cause, fulfilled.Ref, fulfilled.PaymentOrderID = contracts.CauseOrderFulfilled, order, order
	fulfilled.DeltaPendingMinor, fulfilled.DeltaAvailableMinor = -orderNet, orderNet
	fulfilled.AvailableMinor, fulfilled.Version = orderNet, 2
	refunded.Cause, refunded.Ref, refunded.DeltaAvailableMinor = contracts.CauseRefund, refund, -refundNet
	refunded.AvailableMinor, refunded.Version = orderNet-refundNet, 3
	reserved.Cause, reserved.Ref, reserved.DeltaAvailableMinor, reserved.DeltaPaidOutMinor = contracts.CausePayoutReserved, payout, -(orderNet - refundNet), orderNet-refundNet
	reserved.PaidOutMinor, reserved.Version = orderNet-refundNet, 4
	returned.Cause, returned.Ref, returned.DeltaAvailableMinor, returned.DeltaPaidOutMinor = contracts.CausePayoutReturned, payout, orderNet-refundNet, -(orderNet - refundNet)
	returned.AvailableMinor, returned.Version = orderNet-refundNet, 5
	legacy := contracts.OrderSucceeded{PaymentOrderID: order, CheckoutID: checkout, MerchantID: merchant, SellerID: seller,
		Currency: "USD", AmountMinor: orderAmount, FeeMinor: orderFee, NetMinor: orderNet, PSPPaymentID: pspPayment,
		CheckoutAmountMinor: 12_550, SucceededAt: now}
	return map[string][]sample{
		contracts.SubjectOrderFulfilled: {
			{"fulfilled", contracts.OrderFulfilled{PaymentOrderID: order, CheckoutID: checkout, MerchantID: merchant, SellerID: seller,
				Currency: "USD", NetMinor: orderNet, FulfilledAt: now}},
			{"100% fee", contracts.OrderFulfilled{PaymentOrderID: order, CheckoutID: checkout, MerchantID: merchant, SellerID: seller,
				Currency: "JPY", NetMinor: 0, FulfilledAt: now}},
		},
		contracts.SubjectRefundCreated: {
			{"partial, with a reason", contracts.RefundCreated{RefundID: refund, PaymentOrderID: order, CheckoutID: checkout, MerchantID: merchant,
				SellerID: seller, PSPPaymentID: pspPayment, Currency: "USD", AmountMinor: refundAmount, FeeMinor: refundFee, NetMinor: refundNet,
				Reason: "requested_by_customer", CreatedAt: now}},
			{"full, no reason", contracts.RefundCreated{RefundID: refund, PaymentOrderID: order, CheckoutID: checkout, MerchantID: merchant,
				SellerID: seller, PSPPaymentID: pspPayment, Currency: "USD", AmountMinor: orderAmount, FeeMinor: orderFee, NetMinor: orderNet, CreatedAt: now}},
		},
		contracts.SubjectRefundReported: {
			{"succeeded", contracts.RefundReported{RefundID: refund, MerchantID: merchant, PSPRefundID: "re_7TqL2v", Status: contracts.RefundStatusSucceeded,
				AmountMinor: refundAmount, Currency: "USD", ReportedAt: now}},
			{"pending", contracts.RefundReported{RefundID: refund, MerchantID: merchant, PSPRefundID: "re_7TqL2v", Status: contracts.RefundStatusPending,
				AmountMinor: refundAmount, Currency: "USD", ReportedAt: now}},
			{"refused by the PSP", contracts.RefundReported{RefundID: refund, MerchantID: merchant, Status: contracts.RefundStatusFailed,
				AmountMinor: refundAmount, Currency: "USD", FailureCode: "psp_rejected:charge_disputed", ReportedAt: now}},
		},
		contracts.SubjectRefundSucceeded: {
			{"succeeded", contracts.RefundSucceeded{RefundID: refund, PaymentOrderID: order, CheckoutID: checkout, MerchantID: merchant,
				SellerID: seller, PSPPaymentID: pspPayment, PSPRefundID: "re_7TqL2v", Currency: "USD",
				AmountMinor: refundAmount, FeeMinor: refundFee, NetMinor: refundNet, SucceededAt: now}},
		},
		contracts.SubjectRefundFailed: {
			{"failed", contracts.RefundFailed{RefundID: refund, PaymentOrderID: order, CheckoutID: checkout, MerchantID: merchant,
				SellerID: seller, Currency: "USD", AmountMinor: refundAmount, FailureCode: "insufficient_funds", FailedAt: now}},
		},
		contracts.SubjectPayoutRequested: {
			{"requested", contracts.PayoutRequest{PayoutID: payout, MerchantID: merchant, SellerID: seller, Currency: "USD",
				Period: "2026-03-02", RequestedAt: now}},
		},
		contracts.SubjectPayoutCreated:  {{"created", changed}},
		contracts.SubjectPayoutSent:     {{"sent", sent}},
		contracts.SubjectPayoutPaid:     {{"paid", paid}},
		contracts.SubjectPayoutFailed:   {{"returned by the bank", failed}, {"refused by the PSP", failedUnsent}},
		contracts.SubjectPayoutCanceled: {{"nothing available", canceled}},
		contracts.SubjectWalletPayoutReserved: {
			{"reserved", contracts.PayoutReserved{PayoutID: payout, MerchantID: merchant, SellerID: seller, Currency: "USD",
				AmountMinor: money.MaxAmount, ReservedAt: now}},
		},
		contracts.SubjectWalletPayoutRejected: {
			{"owing the platform", contracts.PayoutRejected{PayoutID: payout, MerchantID: merchant, SellerID: seller, Currency: "USD",
				Reason: "nothing_available", AvailableMinor: -5_000, RejectedAt: now}},
		},
		contracts.SubjectReconBatchSettled: {
			{"charges and refunds", contracts.BatchSettled{BatchID: batch, SettlementDate: "2026-03-02", FileID: "settlement-2026-03-02.csv",
				Currency: "USD", Lines: 3, ChargesGrossMinor: 22_550, RefundsGrossMinor: refundAmount, FeesMinor: 654, SettledAt: now}},
			{"payout lines only", contracts.BatchSettled{BatchID: batch, SettlementDate: "2024-02-29", FileID: "settlement-2024-02-29.csv",
				Currency: "EUR", Lines: 1, SettledAt: now}},
		},
		contracts.SubjectReconChargeConfirmed: {
			{"confirmed", contracts.ChargeConfirmed{CheckoutID: checkout, PSPPaymentID: pspPayment, PSPStatus: contracts.PSPStatusSucceeded,
				AmountMinor: 12_550, Currency: "USD", SettlementDate: "2026-03-02", ConfirmedAt: now}},
		},
		contracts.SubjectReconMismatchFound: {
			{"a line, fee differs", contracts.MismatchFound{MismatchID: newID(t), RunID: run, SettlementDate: "2026-03-02",
				Class: contracts.MismatchFee, Queue: contracts.MismatchQueue(contracts.MismatchFee), Reaction: "queued",
				LineNo: 4, RecordType: "charge", PSPReference: pspPayment, MerchantReference: checkout, Currency: "USD",
				FileAmountMinor: 728, LedgerAmountMinor: 364, Detail: "fee 728, contract 364 (290 bps of 12550)", FoundAt: now}},
			{"no line: wallet drift", contracts.MismatchFound{MismatchID: newID(t), RunID: run, SettlementDate: "2026-03-02",
				Class: contracts.MismatchWalletDrift, Queue: contracts.QueueFinance, Reaction: "queued",
				FileAmountMinor: 0, LedgerAmountMinor: -120, Detail: "wallet available 9580, seller_payable 9700", FoundAt: now}},
		},
		contracts.SubjectReconMismatchResolved: {
			{"by paypipe", contracts.MismatchResolved{MismatchID: newID(t), Class: contracts.MismatchSettlesLater, Queue: contracts.QueueAuto,
				Resolution: "settled", ResolvedBy: "reconciler", ResolvedAt: now}},
			{"by a person", contracts.MismatchResolved{MismatchID: newID(t), Class: contracts.MismatchUnknownReference, Queue: contracts.QueueInvestigation,
				Resolution: "written_off", ResolvedBy: "ana@finance.example", Note: "PSP test charge, confirmed by support ticket 4411", ResolvedAt: now}},
		},
		contracts.SubjectReconRunCompleted: {
			{"completed", contracts.RunCompleted{RunID: run, SettlementDate: "2026-03-02", FileID: "settlement-2026-03-02.csv", Lines: 5, Matched: 3,
				Mismatches: map[string]int64{contracts.MismatchFee: 1, contracts.MismatchSettlesLater: 1},
				Totals: []contracts.CurrencyTotals{
					{Currency: "EUR", Lines: 1, MatchedLines: 1, FileNetMinor: -42_000, MatchedGrossMinor: -42_000},
					{Currency: "USD", Lines: 4, MatchedLines: 2, FileNetMinor: 19_396, MatchedGrossMinor: 20_050, MismatchedAbsMinor: 364},
				}, CompletedAt: now}},
			{"an empty day", contracts.RunCompleted{RunID: run, SettlementDate: "2026-03-03", FileID: "settlement-2026-03-03.csv",
				Mismatches: map[string]int64{}, Totals: []contracts.CurrencyTotals{}, CompletedAt: now}},
		},
		// The pay-in events' new optional fields, set.
		contracts.SubjectOrderSucceeded: {{"with checkout amount", legacy}},
		contracts.SubjectLedgerEntryPosted: {
			{"refund reversal", contracts.LedgerEntryPosted{EntryID: entry(contracts.EntryOrderRefunded, refund),
				ExternalID: contracts.EntryOrderRefunded + ":" + refund, Kind: contracts.EntryOrderRefunded, MerchantID: merchant,
				PaymentOrderID: order, Currency: "USD", Reference: refund, PSPReference: "re_7TqL2v", PSPAmountMinor: refundAmount,
				Postings: []contracts.Posting{
					{Account: contracts.SellerPayable(seller), Direction: contracts.Debit, AmountMinor: refundNet},
					{Account: contracts.AccountPlatformFeeRevenue, Direction: contracts.Debit, AmountMinor: refundFee},
					{Account: contracts.AccountPSPReceivable, Direction: contracts.Credit, AmountMinor: refundAmount},
				}, PostedAt: now.Truncate(time.Microsecond)}},
			{"payout initiated", contracts.LedgerEntryPosted{EntryID: entry(contracts.EntryPayoutInitiated, payout),
				ExternalID: contracts.EntryPayoutInitiated + ":" + payout, Kind: contracts.EntryPayoutInitiated, MerchantID: merchant,
				Currency: "USD", Reference: payout, Postings: []contracts.Posting{
					{Account: contracts.SellerPayable(seller), Direction: contracts.Debit, AmountMinor: 42_000},
					{Account: contracts.AccountPayoutInTransit, Direction: contracts.Credit, AmountMinor: 42_000},
				}, PostedAt: now.Truncate(time.Microsecond)}},
			{"payout paid", contracts.LedgerEntryPosted{EntryID: entry(contracts.EntryPayoutPaid, payout),
				ExternalID: contracts.EntryPayoutPaid + ":" + payout, Kind: contracts.EntryPayoutPaid, MerchantID: merchant,
				Currency: "USD", Reference: payout, PSPReference: "po_9xK2mQ", PSPAmountMinor: 42_000, Postings: []contracts.Posting{
					{Account: contracts.AccountPayoutInTransit, Direction: contracts.Debit, AmountMinor: 42_000},
					{Account: contracts.AccountBank, Direction: contracts.Credit, AmountMinor: 42_000},
				}, PostedAt: now.Truncate(time.Microsecond)}},
			{"payout returned", contracts.LedgerEntryPosted{EntryID: entry(contracts.EntryPayoutReturned, payout),
				ExternalID: contracts.EntryPayoutReturned + ":" + payout, Kind: contracts.EntryPayoutReturned, MerchantID: merchant,
				Currency: "USD", Reference: payout, Postings: []contracts.Posting{
					{Account: contracts.AccountPayoutInTransit, Direction: contracts.Debit, AmountMinor: 42_000},
					{Account: contracts.SellerPayable(seller), Direction: contracts.Credit, AmountMinor: 42_000},
				}, PostedAt: now.Truncate(time.Microsecond)}},
			{"settlement", contracts.LedgerEntryPosted{EntryID: entry(contracts.EntrySettlement, batch),
				ExternalID: contracts.EntrySettlement + ":" + batch, Kind: contracts.EntrySettlement, MerchantID: merchant,
				Currency: "USD", Postings: []contracts.Posting{
					{Account: contracts.AccountBank, Direction: contracts.Debit, AmountMinor: 22_550 - refundAmount - 654},
					{Account: contracts.AccountPSPFeeExpense, Direction: contracts.Debit, AmountMinor: 654},
					{Account: contracts.AccountPSPReceivable, Direction: contracts.Credit, AmountMinor: 22_550 - refundAmount},
				}, PostedAt: now.Truncate(time.Microsecond)}},
		},
		contracts.SubjectWalletBalance: {
			{"order fulfilled", fulfilled}, {"refund", refunded}, {"payout reserved", reserved}, {"payout returned", returned},
		},
	}
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every subject in events.go has exactly one schema, and every schema
// belongs to a subject.
func TestEverySubjectHasASchema(t *testing.T) {
	t.Parallel()
	var want []string
	for _, s := range subjects(t) {
		want = append(want, contracts.TypeOf(s))
	}
	slices.Sort(want)
	if got := contracts.EventTypes(); !slices.Equal(got, want) {
		t.Fatalf("EventTypes() = %v\nsubjects of events.go give %v", got, want)
	}
	v, err := contracts.NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Types(); !slices.Equal(got, want) {
		t.Fatalf("Validator.Types() = %v, want %v", got, want)
	}
}

// Each schema file is a draft 2020-12 schema whose $id names it.
func TestSchemaFiles(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("schemas/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no schema files: %v", err)
	}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Schema string `json:"$schema"`
			ID     string `json:"$id"`
			Title  string `json:"title"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		base := filepath.Base(f)
		if doc.Schema != "https://json-schema.org/draft/2020-12/schema" {
			t.Errorf("%s: $schema %q", f, doc.Schema)
		}
		if doc.ID != contracts.SchemaBaseURL+base {
			t.Errorf("%s: $id %q, want %q", f, doc.ID, contracts.SchemaBaseURL+base)
		}
		if base != "common.json" && doc.Title != strings.TrimSuffix(base, ".json") {
			t.Errorf("%s: title %q, want the ce-type", f, doc.Title)
		}
	}
}

// What the services marshal validates, and the schemas agree with the Go
// types field by field: same property names, and required exactly where the
// json tag has no omitempty.
func TestSamplesValidate(t *testing.T) {
	t.Parallel()
	all := samples(t)
	for name, subject := range subjects(t) {
		ss := all[subject]
		if len(ss) == 0 {
			t.Errorf("%s (%s): no sample event; add one to samples()", name, subject)
			continue
		}
		ceType := contracts.TypeOf(subject)
		for _, s := range ss {
			if err := contracts.ValidateEvent(ceType, marshal(t, s.event)); err != nil {
				t.Errorf("%s %s: %v", ceType, s.name, err)
			}
			// What the schema accepts, the Go-side checks the consumers run accept too.
			if v, ok := s.event.(interface{ Validate() error }); ok {
				if err := v.Validate(); err != nil {
					t.Errorf("%s %s: Validate: %v", ceType, s.name, err)
				}
			}
		}
		props, required := schemaFields(t, ceType+".json")
		goProps, goRequired := jsonFields(reflect.TypeOf(ss[0].event))
		// Fields added to a type after events of it were written: Go always
		// emits them, the schema cannot require them.
		goRequired = slices.DeleteFunc(goRequired, func(f string) bool { return slices.Contains(addedLater[ceType], f) })
		if !slices.Equal(props, goProps) {
			t.Errorf("%s: schema properties %v, Go %T fields %v", ceType, props, ss[0].event, goProps)
		}
		if !slices.Equal(required, goRequired) {
			t.Errorf("%s: schema requires %v, Go %T always emits %v", ceType, required, ss[0].event, goRequired)
		}
	}
}

// addedLater lists, per ce-type, the fields a Go type always emits that
// its schema leaves optional because events written before them exist.
var addedLater = map[string][]string{
	contracts.TypeOf(contracts.SubjectWalletBalance): {"delta_available_minor", "delta_paid_out_minor"},
}

// schemaFields returns the sorted top-level properties and required fields of
// a schema, following a root allOf $ref (resolved is registered's shape; the
// payouts.payout.* share common.json's payoutChanged). ref is a schema
// file, optionally with a fragment of $defs.
func schemaFields(t *testing.T, ref string) (props, required []string) {
	t.Helper()
	file, fragment, _ := strings.Cut(ref, "#")
	raw, err := os.ReadFile(filepath.Join("schemas", file))
	if err != nil {
		t.Fatal(err)
	}
	if fragment != "" {
		var defs struct {
			Defs map[string]json.RawMessage `json:"$defs"`
		}
		if err := json.Unmarshal(raw, &defs); err != nil {
			t.Fatal(err)
		}
		def, ok := defs.Defs[strings.TrimPrefix(fragment, "/$defs/")]
		if !ok {
			t.Fatalf("%s: no such definition", ref)
		}
		raw = def
	}
	var doc struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
		AllOf      []struct {
			Ref string `json:"$ref"`
		} `json:"allOf"`
		AdditionalProperties *bool `json:"additionalProperties"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.AdditionalProperties == nil {
		for _, a := range doc.AllOf {
			if a.Ref != "" {
				return schemaFields(t, a.Ref)
			}
		}
		t.Fatalf("%s: neither additionalProperties nor a root $ref", ref)
	}
	if *doc.AdditionalProperties {
		t.Errorf("%s: additionalProperties must be false", ref)
	}
	for p := range doc.Properties {
		props = append(props, p)
	}
	slices.Sort(props)
	required = slices.Clone(doc.Required)
	slices.Sort(required)
	return props, required
}

// jsonFields returns the sorted JSON names of a struct's fields and those
// encoding/json always emits (no omitempty).
func jsonFields(typ reflect.Type) (names, always []string) {
	for f := range typ.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
		if !slices.Contains(strings.Split(opts, ","), "omitempty") {
			always = append(always, name)
		}
	}
	slices.Sort(names)
	slices.Sort(always)
	return names, always
}

// mutation changes a decoded payload; the result must be refused.
type mutation struct {
	name string
	fn   func(m map[string]any)
}

func set(path string, v any) mutation {
	return mutation{fmt.Sprintf("%s = %v", path, v), func(m map[string]any) { setPath(m, path, v) }}
}

func del(path string) mutation {
	return mutation{"without " + path, func(m map[string]any) { setPath(m, path, nil) }}
}

// setPath sets (or with v == nil deletes) a value at a dotted path whose
// numeric segments index arrays, e.g. orders.0.amount_minor.
func setPath(m map[string]any, path string, v any) {
	keys := strings.Split(path, ".")
	var cur any = m
	for _, k := range keys[:len(keys)-1] {
		switch c := cur.(type) {
		case map[string]any:
			cur = c[k]
		case []any:
			i, _ := strconv.Atoi(k)
			cur = c[i]
		}
	}
	last := keys[len(keys)-1]
	obj := cur.(map[string]any)
	if v == nil {
		delete(obj, last)
		return
	}
	obj[last] = v
}

// Mutated events are refused: each required field missing, an unknown
// field, ids that are not canonical UUIDs, lower-case currencies, amounts out
// of their bounds, unknown statuses, kinds and causes, malformed times, and
// the cross-field rules (mode, kind, cause).
func TestMutationsFail(t *testing.T) {
	t.Parallel()
	const notUUID, upperUUID, nilUUID = "ord_123", "0198C2A4-7B1F-7D01-A2B3-C4D5E6F7A8B9", "00000000-0000-0000-0000-000000000000"
	badTimes := []string{"2026-13-01T00:00:00Z", "yesterday", "2026-03-02T10:15:30+01:00", "2026-03-02 10:15:30Z"}
	common := func(fields ...string) []mutation {
		var ms []mutation
		for _, f := range fields {
			switch {
			case f == "currency":
				ms = append(ms, set(f, "usd"), set(f, "US"), set(f, "USDT"), set(f, 840.0))
			case strings.HasSuffix(f, "_at"):
				for _, bt := range badTimes {
					ms = append(ms, set(f, bt))
				}
			default: // an id
				ms = append(ms, set(f, notUUID), set(f, upperUUID), set(f, nilUUID), set(f, ""), set(f, 42.0))
			}
		}
		return ms
	}
	amounts := func(f string, min int64) []mutation {
		return []mutation{set(f, min-1), set(f, -1), set(f, money.MaxAmount+1), set(f, 10.5), set(f, "100")}
	}
	pspIDs := func(f string) []mutation {
		return []mutation{set(f, ""), set(f, strings.Repeat("p", 256)), set(f, "pay\n1"), set(f, 7.0)}
	}
	periods := func(f string) []mutation {
		return []mutation{set(f, ""), set(f, strings.Repeat("p", 65)), set(f, "2026\t03")}
	}
	dates := func(f string) []mutation {
		return []mutation{set(f, "2026-3-2"), set(f, "2026-02-30"), set(f, "02/03/2026"), set(f, "2026-03-02T00:00:00Z"), set(f, "")}
	}
	cases := map[string][]mutation{
		contracts.SubjectCheckoutCreated: slices.Concat(
			common("checkout_id", "merchant_id", "currency", "created_at", "orders.0.payment_order_id", "orders.1.seller_id"),
			amounts("amount_minor", 1), amounts("orders.0.amount_minor", 1), amounts("orders.0.fee_minor", 0), amounts("orders.1.net_minor", 0),
			[]mutation{
				set("mode", "card"), set("mode", "HOSTED"), set("buyer_id", ""), set("buyer_id", "a\nb"), set("buyer_id", strings.Repeat("x", 256)),
				set("orders", []any{}), set("orders.0.extra", true), del("orders.0.net_minor"),
				del("return_url"),                     // hosted needs one
				set("payment_method", "pm_card_visa"), // hosted takes none
				set("return_url", "/relative"), set("return_url", "ftp://shop.example/x"),
				set("return_url", "https://shop.example/"+strings.Repeat("p", 2048)),
			}),
		contracts.SubjectCheckoutRegistered: slices.Concat(
			common("checkout_id", "merchant_id", "currency", "registered_at"), amounts("amount_minor", 1),
			[]mutation{set("psp_status", "settled"), set("psp_status", "SUCCEEDED"), set("psp_payment_id", ""),
				set("redirect_url", "not a url"), set("failure_code", "")}),
		contracts.SubjectCheckoutResolved: slices.Concat(
			common("checkout_id", "merchant_id", "currency", "registered_at"), amounts("amount_minor", 1),
			[]mutation{set("psp_status", contracts.PSPStatusProcessing), set("psp_status", contracts.PSPStatusRequiresAction),
				set("psp_status", "settled")}),
		contracts.SubjectCheckoutRejected: slices.Concat(
			common("checkout_id", "merchant_id", "rejected_at"), []mutation{set("code", ""), set("message", "")}),
		contracts.SubjectCheckoutCompleted: common("checkout_id", "merchant_id", "completed_at"),
		contracts.SubjectOrderSucceeded: slices.Concat(
			common("payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "succeeded_at"),
			amounts("amount_minor", 1), amounts("fee_minor", 0), amounts("net_minor", 0),
			[]mutation{set("psp_payment_id", ""), set("checkout_amount_minor", 0), set("checkout_amount_minor", -1),
				set("checkout_amount_minor", money.MaxAmount+1)}),
		contracts.SubjectOrderFailed: slices.Concat(
			common("payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "failed_at"),
			amounts("amount_minor", 1), []mutation{set("failure_code", "")}),
		contracts.SubjectOrderCompleted: common("payment_order_id", "checkout_id", "merchant_id", "seller_id", "completed_at"),
		contracts.SubjectLedgerEntryPosted: slices.Concat(
			common("entry_id", "merchant_id", "payment_order_id", "currency", "posted_at"),
			[]mutation{
				set("kind", "refund"), set("kind", "ORDER_CAPTURED"), del("payment_order_id"),
				set("external_id", "order_captured:something-else"), set("external_id", ""),
				set("postings.0.amount_minor", 0), set("postings.0.amount_minor", -10_000), set("postings.0.amount_minor", 9.5),
				set("postings.0.direction", "DEBIT"), set("postings.0.direction", "dr"), set("postings.0.account", ""),
				set("postings.0.extra", 1), del("postings.1.direction"),
				set("postings", []any{map[string]any{"account": "psp_receivable", "direction": "debit", "amount_minor": 1}}),
				set("merchant_id", ""), // only a settlement has no merchant
				set("reference", ""), set("psp_reference", ""), set("psp_reference", strings.Repeat("r", 256)),
				set("psp_amount_minor", 0), set("psp_amount_minor", money.MaxAmount+1),
			}),
		contracts.SubjectWalletBalance: slices.Concat(
			common("seller_id", "merchant_id", "payment_order_id", "currency", "changed_at"),
			[]mutation{
				set("cause", "refund"), del("payment_order_id"),
				set("pending_minor", -1), set("paid_out_minor", -1), set("version", 0), set("version", -3),
				set("delta_pending_minor", -100), // an order_succeeded change only adds
				set("available_minor", 1.5), set("available_minor", json.Number("-9223372036854775809")),
				set("pending_minor", json.Number("9223372036854775808")),
				set("cause", "payout"), set("ref", "po_1"), set("ref", upperUUID),
				set("delta_available_minor", 5), set("delta_paid_out_minor", -5), // an order_succeeded change touches pending only
				set("delta_available_minor", 1.5),
			}),

		// Pay-out side.
		contracts.SubjectOrderFulfilled: slices.Concat(
			common("payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "fulfilled_at"),
			amounts("net_minor", 0)),
		contracts.SubjectRefundCreated: slices.Concat(
			common("refund_id", "payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "created_at"),
			amounts("amount_minor", 1), amounts("fee_minor", 0), amounts("net_minor", 0), pspIDs("psp_payment_id"),
			[]mutation{set("reason", ""), set("reason", "a\nb"), set("reason", strings.Repeat("r", 1001))}),
		contracts.SubjectRefundReported: slices.Concat(
			common("refund_id", "merchant_id", "currency", "reported_at"), amounts("amount_minor", 1), pspIDs("psp_refund_id"),
			[]mutation{set("status", "refunded"), set("status", "SUCCEEDED"),
				del("psp_refund_id"),          // succeeded: the PSP knows it
				set("failure_code", "denied"), // only on failed
			}),
		contracts.SubjectRefundSucceeded: slices.Concat(
			common("refund_id", "payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "succeeded_at"),
			amounts("amount_minor", 1), amounts("fee_minor", 0), amounts("net_minor", 0), pspIDs("psp_payment_id"), pspIDs("psp_refund_id")),
		contracts.SubjectRefundFailed: slices.Concat(
			common("refund_id", "payment_order_id", "checkout_id", "merchant_id", "seller_id", "currency", "failed_at"),
			amounts("amount_minor", 1), []mutation{set("failure_code", ""), set("failure_code", "a\tb")}),
		contracts.SubjectPayoutRequested: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "requested_at"), periods("period")),
		contracts.SubjectPayoutCreated: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "created_at", "changed_at"),
			amounts("amount_minor", 1), periods("period"),
			[]mutation{set("status", contracts.PayoutStatusSent), set("status", contracts.PayoutStatusRequested), set("status", "CREATED"),
				set("version", 0), set("version", -1), set("failure_code", "x"), set("reason", ""), set("psp_payout_id", "")}),
		contracts.SubjectPayoutSent: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "created_at", "changed_at"), amounts("amount_minor", 1),
			pspIDs("psp_payout_id"), []mutation{set("status", contracts.PayoutStatusPaid), del("psp_payout_id")}),
		contracts.SubjectPayoutPaid: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "created_at", "changed_at"), amounts("amount_minor", 1),
			pspIDs("psp_payout_id"), []mutation{set("status", contracts.PayoutStatusSent), del("psp_payout_id")}),
		contracts.SubjectPayoutFailed: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "created_at", "changed_at"), amounts("amount_minor", 1),
			[]mutation{set("status", contracts.PayoutStatusPaid), del("failure_code"), set("failure_code", ""),
				set("failure_code", strings.Repeat("f", 256))}),
		contracts.SubjectPayoutCanceled: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "created_at", "changed_at"), amounts("amount_minor", 0),
			[]mutation{set("status", contracts.PayoutStatusCreated), set("reason", "")}),
		contracts.SubjectWalletPayoutReserved: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "reserved_at"), amounts("amount_minor", 1)),
		contracts.SubjectWalletPayoutRejected: slices.Concat(
			common("payout_id", "merchant_id", "seller_id", "currency", "rejected_at"),
			[]mutation{set("reason", ""), set("available_minor", 1.5), set("available_minor", "0")}),
		contracts.SubjectReconBatchSettled: slices.Concat(
			common("batch_id", "currency", "settled_at"), dates("settlement_date"),
			[]mutation{set("lines", 0), set("charges_gross_minor", -1), set("refunds_gross_minor", -1), set("fees_minor", -1),
				set("fees_minor", 0.5), set("file_id", ""), set("file_id", strings.Repeat("f", 256))}),
		contracts.SubjectReconChargeConfirmed: slices.Concat(
			common("checkout_id", "currency", "confirmed_at"), dates("settlement_date"), amounts("amount_minor", 1), pspIDs("psp_payment_id"),
			[]mutation{set("psp_status", contracts.PSPStatusFailed), set("psp_status", contracts.PSPStatusProcessing)}),
		contracts.SubjectReconMismatchFound: slices.Concat(
			common("mismatch_id", "run_id", "currency", "found_at"), dates("settlement_date"),
			[]mutation{set("class", "fee"), set("class", ""), set("queue", contracts.QueueAuto), set("queue", "ops"),
				set("record_type", "adjustment"), set("line_no", 0), set("detail", ""), set("reaction", ""),
				set("file_amount_minor", 1.5), set("psp_reference", "")}),
		contracts.SubjectReconMismatchResolved: slices.Concat(
			common("mismatch_id", "resolved_at"),
			[]mutation{set("class", "late"), set("queue", contracts.QueueFinance), set("resolution", ""), set("resolved_by", ""),
				set("note", ""), set("resolved_by", "a\nb")}),
		contracts.SubjectReconRunCompleted: slices.Concat(
			common("run_id", "completed_at", "totals.0.currency"), dates("settlement_date"),
			[]mutation{set("mismatches.fee", 1.0), set("mismatches.fee_mismatch", -1), set("mismatches.fee_mismatch", 0.5),
				set("totals.0.extra", 1), del("totals.0.lines"), set("totals.1.mismatched_abs_minor", -1),
				set("lines", -1), set("matched", -1), set("file_id", ""), set("totals", map[string]any{})}),
	}
	all := samples(t)
	for _, subject := range subjects(t) {
		ceType := contracts.TypeOf(subject)
		ms, ok := cases[subject]
		if !ok {
			t.Errorf("%s: no mutation cases; add them", subject)
			continue
		}
		base := all[subject][0].event
		_, always := jsonFields(reflect.TypeOf(base))
		for _, f := range always {
			if !slices.Contains(addedLater[ceType], f) {
				ms = append(ms, del(f))
			}
		}
		ms = append(ms, set("unexpected", "field"))
		for _, m := range ms {
			refused(t, ceType, base, m)
		}
	}
}

// refused checks that the schema of ceType refuses event changed by m.
func refused(t *testing.T, ceType string, event any, m mutation) {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(marshal(t, event), &doc); err != nil {
		t.Fatal(err)
	}
	m.fn(doc)
	err := contracts.ValidateEvent(ceType, marshal(t, doc))
	var se *contracts.SchemaError
	switch {
	case err == nil:
		t.Errorf("%s %s: accepted", ceType, m.name)
	case !errors.Is(err, contracts.ErrInvalidEvent) || !errors.As(err, &se) || len(se.Violations) == 0:
		t.Errorf("%s %s: error %v, want a *SchemaError with violations", ceType, m.name, err)
	}
}

// The checkout's mode decides its optional fields, as payment's validation
// does: hosted needs return_url and takes no payment_method; direct needs a
// payment_method and may have a return_url.
func TestCheckoutModeRules(t *testing.T) {
	t.Parallel()
	ceType := contracts.TypeOf(contracts.SubjectCheckoutCreated)
	ss := samples(t)[contracts.SubjectCheckoutCreated]
	hosted := ss[0].event.(contracts.CheckoutCreated)
	direct := ss[2].event.(contracts.CheckoutCreated)
	for _, c := range []struct {
		name string
		mod  func(*contracts.CheckoutCreated)
		ok   bool
	}{
		{"hosted as emitted", func(*contracts.CheckoutCreated) {}, true},
		{"hosted without return_url", func(e *contracts.CheckoutCreated) { e.ReturnURL = "" }, false},
		{"hosted with payment_method", func(e *contracts.CheckoutCreated) { e.PaymentMethod = "pm_card_visa" }, false},
		{"direct as hosted with payment_method", func(e *contracts.CheckoutCreated) {
			e.Mode, e.PaymentMethod = contracts.ModeDirect, "pm_card_visa"
		}, true},
		{"direct without payment_method", func(e *contracts.CheckoutCreated) { e.Mode = contracts.ModeDirect }, false},
		{"direct, token with a space", func(e *contracts.CheckoutCreated) {
			e.Mode, e.PaymentMethod = contracts.ModeDirect, "pm card"
		}, false},
	} {
		e := hosted
		c.mod(&e)
		err := contracts.ValidateEvent(ceType, marshal(t, e))
		if (err == nil) != c.ok {
			t.Errorf("%s: err = %v, want ok = %v", c.name, err, c.ok)
		}
	}
	direct.ReturnURL = ""
	if err := contracts.ValidateEvent(ceType, marshal(t, direct)); err != nil {
		t.Errorf("direct without return_url: %v", err)
	}
}

// A negative available balance is legal (a refund after a pay-out), so is a
// balance far beyond a single payment's MaxAmount: balances are sums.
func TestWalletBalanceBounds(t *testing.T) {
	t.Parallel()
	ev := samples(t)[contracts.SubjectWalletBalance][0].event.(contracts.WalletBalanceChanged)
	for _, mod := range []func(*contracts.WalletBalanceChanged){
		func(e *contracts.WalletBalanceChanged) { e.AvailableMinor = -1 << 63 },
		func(e *contracts.WalletBalanceChanged) { e.PendingMinor = 1<<63 - 1 },
		func(e *contracts.WalletBalanceChanged) { e.PaidOutMinor = 10 * money.MaxAmount },
		func(e *contracts.WalletBalanceChanged) { e.Version = 1<<63 - 1 },
	} {
		e := ev
		mod(&e)
		if err := contracts.ValidateEvent(contracts.TypeOf(contracts.SubjectWalletBalance), marshal(t, e)); err != nil {
			t.Errorf("%+v: %v", e, err)
		}
	}
}

func TestValidateEventErrors(t *testing.T) {
	t.Parallel()
	payload := marshal(t, samples(t)[contracts.SubjectOrderSucceeded][0].event)
	for _, typ := range []string{"", "payments.order.succeeded", "payments.order.succeeded.v2", "common", "../schemas/common"} {
		if err := contracts.ValidateEvent(typ, payload); !errors.Is(err, contracts.ErrUnknownEventType) {
			t.Errorf("ValidateEvent(%q): %v, want ErrUnknownEventType", typ, err)
		}
	}
	ceType := contracts.TypeOf(contracts.SubjectOrderSucceeded)
	for _, bad := range []string{``, `{`, `{"a":1} {"b":2}`, `null`, `[]`, `"x"`} {
		if err := contracts.ValidateEvent(ceType, []byte(bad)); !errors.Is(err, contracts.ErrInvalidEvent) {
			t.Errorf("ValidateEvent(%q): %v, want ErrInvalidEvent", bad, err)
		}
	}

	// Every violation is reported, each with the path of its value.
	var doc map[string]any
	if err := json.Unmarshal(payload, &doc); err != nil {
		t.Fatal(err)
	}
	doc["currency"], doc["fee_minor"] = "usd", -1
	delete(doc, "seller_id")
	err := contracts.ValidateEvent(ceType, marshal(t, doc))
	var se *contracts.SchemaError
	if !errors.As(err, &se) {
		t.Fatalf("got %v, want a *SchemaError", err)
	}
	if se.Type != ceType {
		t.Errorf("Type = %q", se.Type)
	}
	var paths []string
	for _, v := range se.Violations {
		paths = append(paths, v.Path)
		if v.Message == "" {
			t.Errorf("violation at %q without a message", v.Path)
		}
	}
	if want := []string{"", "/currency", "/fee_minor"}; !slices.Equal(paths, want) {
		t.Errorf("violations at %v, want %v: %v", paths, want, err)
	}
	for _, s := range []string{"seller_id", "/currency", "/fee_minor"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %s", err, s)
		}
	}
}

// The package-level validator is built once and shared; concurrent use is
// safe (run with -race).
func TestValidateEventConcurrent(t *testing.T) {
	t.Parallel()
	all := samples(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8*len(all))
	for range 8 {
		for subject, ss := range all {
			wg.Go(func() {
				errs <- contracts.ValidateEvent(contracts.TypeOf(subject), marshal(t, ss[0].event))
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// asyncAPI is the part of contracts/asyncapi.yaml the tests read.
type asyncAPI struct {
	AsyncAPI string `yaml:"asyncapi"`
	Servers  map[string]struct {
		Protocol string `yaml:"protocol"`
	} `yaml:"servers"`
	Channels map[string]struct {
		Address  string                       `yaml:"address"`
		Stream   string                       `yaml:"x-paypipe-stream"`
		Messages map[string]map[string]string `yaml:"messages"`
	} `yaml:"channels"`
	Operations map[string]struct {
		Action   string            `yaml:"action"`
		Service  string            `yaml:"x-paypipe-service"`
		Channel  map[string]string `yaml:"channel"`
		Messages []map[string]string
		Consumer *struct {
			Durable        string   `yaml:"durable"`
			Stream         string   `yaml:"stream"`
			FilterSubjects []string `yaml:"filterSubjects"`
		} `yaml:"x-paypipe-consumer"`
	} `yaml:"operations"`
	Components struct {
		Messages map[string]struct {
			Name    string `yaml:"name"`
			Title   string `yaml:"title"`
			Headers struct {
				AllOf []struct {
					Ref        string `yaml:"$ref"`
					Properties map[string]struct {
						Const string `yaml:"const"`
					} `yaml:"properties"`
				} `yaml:"allOf"`
			} `yaml:"headers"`
			Payload struct {
				SchemaFormat string            `yaml:"schemaFormat"`
				Schema       map[string]string `yaml:"schema"`
			} `yaml:"payload"`
			Examples []struct {
				Name    string         `yaml:"name"`
				Payload map[string]any `yaml:"payload"`
			} `yaml:"examples"`
		} `yaml:"messages"`
		Schemas map[string]struct {
			Required []string `yaml:"required"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func loadAsyncAPI(t *testing.T) (asyncAPI, map[string]any) {
	t.Helper()
	raw, err := os.ReadFile("asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc asyncAPI
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var tree map[string]any
	if err := yaml.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	return doc, tree
}

// resolve follows a local reference (#/a/b/c) in the YAML tree.
func resolve(tree map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = tree
	for _, k := range strings.Split(p, "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[strings.NewReplacer("~1", "/", "~0", "~").Replace(k)]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// refs collects every $ref value in the tree.
func refs(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			if s, ok := c.(string); ok && k == "$ref" {
				*out = append(*out, s)
			}
			refs(c, out)
		}
	case []any:
		for _, c := range x {
			refs(c, out)
		}
	}
}

// The AsyncAPI document describes every subject: a channel at the subject's
// address naming the stream that captures it, one message whose payload is
// the subject's schema file and whose headers pin ce-type, one send
// operation, and one receive operation per durable consumer whose filter
// takes the subject (and none for consumers that do not exist). Every
// reference resolves and every example validates.
func TestAsyncAPI(t *testing.T) {
	t.Parallel()
	doc, tree := loadAsyncAPI(t)
	if doc.AsyncAPI != "3.0.0" {
		t.Errorf("asyncapi %q, want 3.0.0", doc.AsyncAPI)
	}
	if len(doc.Servers) == 0 {
		t.Error("no servers")
	}
	for name, s := range doc.Servers {
		if s.Protocol != "nats" {
			t.Errorf("server %s: protocol %q", name, s.Protocol)
		}
	}

	var all []string
	refs(tree, &all)
	for _, r := range all {
		if strings.HasPrefix(r, "#/") {
			if _, ok := resolve(tree, r); !ok {
				t.Errorf("$ref %s does not resolve", r)
			}
		} else if _, err := os.Stat(r); err != nil {
			t.Errorf("$ref %s: %v", r, err)
		}
	}
	envelope := doc.Components.Schemas["envelope"].Required
	for _, h := range []string{"ce-id", "ce-type", "ce-source", "ce-time", "ce-specversion", "content-type",
		"paypipe-correlation-id", "paypipe-aggregate-id", "paypipe-aggregate-version", "Nats-Msg-Id"} {
		if !slices.Contains(envelope, h) {
			t.Errorf("envelope does not require header %s", h)
		}
	}

	// consumers by subject, from contracts.Consumers.
	consumersOf := map[string][]string{}
	declared := map[string]contracts.Consumer{}
	for _, c := range contracts.Consumers(contracts.ConsumerOptions{}) {
		declared[c.Config.Durable] = c
		for _, f := range c.Config.FilterSubjects {
			consumersOf[f] = append(consumersOf[f], c.Config.Durable)
		}
	}
	sources := map[string]bool{contracts.SourcePayment: true, contracts.SourceExecutor: true, contracts.SourceLedger: true,
		contracts.SourceWallet: true, contracts.SourcePayout: true, contracts.SourceRecon: true}

	channelOf := map[string]string{}
	for id, ch := range doc.Channels {
		if prev, dup := channelOf[ch.Address]; dup {
			t.Errorf("channels %s and %s share address %s", prev, id, ch.Address)
		}
		channelOf[ch.Address] = id
	}
	for name, subject := range subjects(t) {
		ceType := contracts.TypeOf(subject)
		chID, ok := channelOf[subject]
		if !ok {
			t.Errorf("%s (%s): no channel", name, subject)
			continue
		}
		ch := doc.Channels[chID]
		if want := contracts.StreamOf(subject); ch.Stream != want {
			t.Errorf("channel %s: x-paypipe-stream %q, want %q", chID, ch.Stream, want)
		}
		if len(ch.Messages) != 1 {
			t.Errorf("channel %s: %d messages, want 1", chID, len(ch.Messages))
			continue
		}
		var msgRef string
		for _, m := range ch.Messages {
			msgRef = m["$ref"]
		}
		msgID, ok := strings.CutPrefix(msgRef, "#/components/messages/")
		msg, found := doc.Components.Messages[msgID]
		if !ok || !found {
			t.Errorf("channel %s: message %q is not a component message", chID, msgRef)
			continue
		}
		if msg.Name != subject || msg.Title != ceType {
			t.Errorf("message %s: name %q title %q, want %q and %q", msgID, msg.Name, msg.Title, subject, ceType)
		}
		if want := "./schemas/" + ceType + ".json"; msg.Payload.Schema["$ref"] != want {
			t.Errorf("message %s: payload $ref %q, want %q", msgID, msg.Payload.Schema["$ref"], want)
		}
		if msg.Payload.SchemaFormat != "application/schema+json;version=draft-2020-12" {
			t.Errorf("message %s: schemaFormat %q", msgID, msg.Payload.SchemaFormat)
		}
		var gotType, gotSource string
		var envRef bool
		for _, a := range msg.Headers.AllOf {
			envRef = envRef || a.Ref == "#/components/schemas/envelope"
			if p, ok := a.Properties["ce-type"]; ok {
				gotType = p.Const
			}
			if p, ok := a.Properties["ce-source"]; ok {
				gotSource = p.Const
			}
		}
		if !envRef || gotType != ceType || !sources[gotSource] {
			t.Errorf("message %s headers: envelope %v, ce-type %q (want %q), ce-source %q", msgID, envRef, gotType, ceType, gotSource)
		}
		if len(msg.Examples) == 0 {
			t.Errorf("message %s: no example", msgID)
		}
		for _, ex := range msg.Examples {
			if err := contracts.ValidateEvent(ceType, marshal(t, ex.Payload)); err != nil {
				t.Errorf("message %s example %q: %v", msgID, ex.Name, err)
			}
		}

		// Operations on this channel.
		var senders []string
		var receivers []string
		for opID, op := range doc.Operations {
			if op.Channel["$ref"] != "#/channels/"+chID {
				continue
			}
			if len(op.Messages) != 1 || op.Messages[0]["$ref"] != "#/channels/"+chID+"/messages/"+firstKey(ch.Messages) {
				t.Errorf("operation %s: messages %v", opID, op.Messages)
			}
			switch op.Action {
			case "send":
				senders = append(senders, op.Service)
				if "paypipe/"+op.Service != gotSource {
					t.Errorf("operation %s: sent by %s, but ce-source is %s", opID, op.Service, gotSource)
				}
			case "receive":
				if op.Consumer == nil {
					t.Errorf("operation %s: receive without x-paypipe-consumer", opID)
					continue
				}
				receivers = append(receivers, op.Consumer.Durable)
				c, ok := declared[op.Consumer.Durable]
				if !ok {
					t.Errorf("operation %s: consumer %s is not declared in contracts.Consumers", opID, op.Consumer.Durable)
					continue
				}
				if op.Consumer.Stream != c.Stream || !slices.Equal(op.Consumer.FilterSubjects, c.Config.FilterSubjects) {
					t.Errorf("operation %s: consumer %s on %s %v, declared on %s %v", opID, op.Consumer.Durable,
						op.Consumer.Stream, op.Consumer.FilterSubjects, c.Stream, c.Config.FilterSubjects)
				}
			default:
				t.Errorf("operation %s: action %q", opID, op.Action)
			}
		}
		if len(senders) != 1 {
			t.Errorf("channel %s: senders %v, want exactly one", chID, senders)
		}
		slices.Sort(receivers)
		want := slices.Clone(consumersOf[subject])
		slices.Sort(want)
		if !slices.Equal(receivers, want) {
			t.Errorf("channel %s: receive operations for %v, declared consumers %v", chID, receivers, want)
		}
	}
	if len(doc.Channels) != len(subjects(t)) {
		t.Errorf("%d channels for %d subjects", len(doc.Channels), len(subjects(t)))
	}
}

func firstKey(m map[string]map[string]string) string {
	for k := range m {
		return k
	}
	return ""
}

// The schemas' enums are exactly the constants of events.go: a status, mode,
// kind, cause or direction added in Go must be added to its schema.
func TestEnumsMatchConstants(t *testing.T) {
	t.Parallel()
	prefix := func(p string) func(string) bool { return func(n string) bool { return strings.HasPrefix(n, p) } }
	for _, c := range []struct {
		file    string
		pointer []string
		consts  func(string) bool
	}{
		{"common.json", []string{"$defs", "pspStatus", "enum"}, prefix("PSPStatus")},
		{"payments.checkout.created.v1.json", []string{"properties", "mode", "enum"}, prefix("Mode")},
		{"ledger.entry.posted.v1.json", []string{"properties", "kind", "enum"}, prefix("Entry")},
		{"ledger.entry.posted.v1.json", []string{"$defs", "posting", "properties", "direction", "enum"},
			func(n string) bool { return n == "Debit" || n == "Credit" }},
		{"wallet.balance.changed.v1.json", []string{"properties", "cause", "enum"}, prefix("Cause")},
		{"payments.refund.reported.v1.json", []string{"properties", "status", "enum"}, prefix("RefundStatus")},
		// requested is payouts.payout.requested's own shape, not a PayoutChanged.
		{"common.json", []string{"$defs", "payoutChanged", "properties", "status", "enum"},
			func(n string) bool { return strings.HasPrefix(n, "PayoutStatus") && n != "PayoutStatusRequested" }},
		{"common.json", []string{"$defs", "mismatchClass", "enum"}, prefix("Mismatch")},
		{"common.json", []string{"$defs", "mismatchQueue", "enum"}, prefix("Queue")},
	} {
		raw, err := os.ReadFile(filepath.Join("schemas", c.file))
		if err != nil {
			t.Fatal(err)
		}
		var cur any
		if err := json.Unmarshal(raw, &cur); err != nil {
			t.Fatal(err)
		}
		for _, k := range c.pointer {
			m, _ := cur.(map[string]any)
			cur = m[k]
		}
		arr, ok := cur.([]any)
		if !ok {
			t.Errorf("%s: no enum at %s", c.file, strings.Join(c.pointer, "/"))
			continue
		}
		var got []string
		for _, v := range arr {
			s, _ := v.(string)
			got = append(got, s)
		}
		slices.Sort(got)
		want := constValues(t, c.consts)
		if len(want) == 0 || !slices.Equal(got, want) {
			t.Errorf("%s %s: enum %v, events.go constants %v", c.file, strings.Join(c.pointer, "/"), got, want)
		}
	}
}

// sampleNamed returns the sample of subject called name.
func sampleNamed(t *testing.T, subject, name string) any {
	t.Helper()
	for _, s := range samples(t)[subject] {
		if s.name == name {
			return s.event
		}
	}
	t.Fatalf("%s: no sample %q", subject, name)
	return nil
}

// The cross-field rules of the pay-out side that the first sample of a
// subject cannot show: per ledger kind, per wallet cause, per refund
// status. Each row starts from a valid sample; ok says whether the change
// keeps it valid.
func TestPayoutSideRules(t *testing.T) {
	t.Parallel()
	const somePayout = "0198c2a4-7b1f-7d01-a2b3-c4d5e6f7a8b9"
	for _, c := range []struct {
		subject, sample string
		m               mutation
		ok              bool
	}{
		{contracts.SubjectRefundReported, "refused by the PSP", del("failure_code"), false},
		{contracts.SubjectRefundReported, "refused by the PSP", set("psp_refund_id", "re_1"), true},
		{contracts.SubjectRefundReported, "pending", set("failure_code", "x"), false},
		{contracts.SubjectRefundReported, "pending", del("psp_refund_id"), true},

		{contracts.SubjectLedgerEntryPosted, "refund reversal", del("reference"), false},
		{contracts.SubjectLedgerEntryPosted, "refund reversal", del("psp_reference"), false},
		{contracts.SubjectLedgerEntryPosted, "refund reversal", del("psp_amount_minor"), false},
		{contracts.SubjectLedgerEntryPosted, "refund reversal", set("external_id", "payout_paid:"+somePayout), false},
		{contracts.SubjectLedgerEntryPosted, "refund reversal", del("payment_order_id"), true},
		{contracts.SubjectLedgerEntryPosted, "payout paid", del("psp_reference"), false},
		{contracts.SubjectLedgerEntryPosted, "payout paid", set("merchant_id", ""), false},
		{contracts.SubjectLedgerEntryPosted, "payout initiated", del("reference"), true},
		{contracts.SubjectLedgerEntryPosted, "payout initiated", set("external_id", "payout_initiated:po_1"), false},
		{contracts.SubjectLedgerEntryPosted, "payout returned", set("kind", contracts.EntryPayoutInitiated), false},
		{contracts.SubjectLedgerEntryPosted, "settlement", set("merchant_id", ""), true},
		{contracts.SubjectLedgerEntryPosted, "settlement", set("merchant_id", "platform"), false},
		{contracts.SubjectLedgerEntryPosted, "settlement", set("payment_order_id", somePayout), false},
		{contracts.SubjectLedgerEntryPosted, "settlement", set("psp_reference", "st_1"), false},

		// Balance events written before ref and the new deltas existed.
		{contracts.SubjectWalletBalance, "order succeeded", mutation{"legacy", func(m map[string]any) {
			delete(m, "delta_available_minor")
			delete(m, "delta_paid_out_minor")
		}}, true},
		{contracts.SubjectWalletBalance, "order succeeded", set("ref", somePayout), true},
		{contracts.SubjectWalletBalance, "order fulfilled", del("ref"), false},
		{contracts.SubjectWalletBalance, "order fulfilled", del("delta_available_minor"), false},
		{contracts.SubjectWalletBalance, "order fulfilled", set("delta_available_minor", -1), false},
		{contracts.SubjectWalletBalance, "order fulfilled", set("delta_pending_minor", 1), false},
		{contracts.SubjectWalletBalance, "order fulfilled", set("delta_paid_out_minor", 1), false},
		{contracts.SubjectWalletBalance, "refund", set("delta_pending_minor", -5), true},
		{contracts.SubjectWalletBalance, "refund", set("delta_available_minor", 5), false},
		{contracts.SubjectWalletBalance, "refund", set("delta_paid_out_minor", -5), false},
		{contracts.SubjectWalletBalance, "refund", del("delta_paid_out_minor"), false},
		{contracts.SubjectWalletBalance, "payout reserved", set("delta_paid_out_minor", 0), false},
		{contracts.SubjectWalletBalance, "payout reserved", set("delta_available_minor", 0), false},
		{contracts.SubjectWalletBalance, "payout reserved", set("delta_pending_minor", -1), false},
		{contracts.SubjectWalletBalance, "payout returned", set("delta_available_minor", -1), false},
		{contracts.SubjectWalletBalance, "payout returned", set("delta_paid_out_minor", 1), false},

		{contracts.SubjectPayoutFailed, "refused by the PSP", set("psp_payout_id", "po_1"), true},
		{contracts.SubjectPayoutCanceled, "nothing available", set("amount_minor", 1), true},
		{contracts.SubjectPayoutCanceled, "nothing available", del("reason"), true},
		{contracts.SubjectReconMismatchFound, "no line: wallet drift", set("line_no", 1), true},
		// A malformed line carries what could be read of it; other lines only what the file format allows.
		{contracts.SubjectReconMismatchFound, "a line, fee differs", mutation{"malformed", func(m map[string]any) {
			m["class"], m["queue"], m["record_type"], m["currency"] = contracts.MismatchMalformedLine, contracts.QueueInvestigation, "chrage", "usd"
		}}, true},
		{contracts.SubjectReconMismatchFound, "a line, fee differs", set("currency", "usd"), false},
		{contracts.SubjectPayoutCanceled, "nothing available", set("reason", strings.Repeat("r", 1001)), false},
		{contracts.SubjectReconMismatchFound, "no line: wallet drift", set("queue", contracts.QueueAuto), false},
		{contracts.SubjectReconRunCompleted, "an empty day", set("mismatches", map[string]any{}), true},
	} {
		ceType := contracts.TypeOf(c.subject)
		ev := sampleNamed(t, c.subject, c.sample)
		if !c.ok {
			refused(t, ceType, ev, c.m)
			continue
		}
		var doc map[string]any
		if err := json.Unmarshal(marshal(t, ev), &doc); err != nil {
			t.Fatal(err)
		}
		c.m.fn(doc)
		if err := contracts.ValidateEvent(ceType, marshal(t, doc)); err != nil {
			t.Errorf("%s %s, %s: %v", ceType, c.sample, c.m.name, err)
		}
	}
}

// Each payouts.payout.* subject pins its status: a payout event is only
// ever published on the subject of the status it carries.
func TestPayoutStatusPerSubject(t *testing.T) {
	t.Parallel()
	base := sampleNamed(t, contracts.SubjectPayoutPaid, "paid").(contracts.PayoutChanged)
	statuses := constValues(t, func(n string) bool { return strings.HasPrefix(n, "PayoutStatus") && n != "PayoutStatusRequested" })
	for _, subject := range statuses {
		for _, status := range statuses {
			ev := base
			ev.Status = status
			if status == contracts.PayoutStatusFailed {
				ev.FailureCode = "account_closed"
			}
			err := contracts.ValidateEvent(contracts.TypeOf("payouts.payout."+subject), marshal(t, ev))
			if (err == nil) != (subject == status) {
				t.Errorf("payouts.payout.%s with status %s: %v", subject, status, err)
			}
		}
	}
}

// The schemas' class → queue rule is contracts.MismatchQueue.
func TestMismatchQueues(t *testing.T) {
	t.Parallel()
	classes := constValues(t, func(n string) bool { return strings.HasPrefix(n, "Mismatch") })
	queues := constValues(t, func(n string) bool { return strings.HasPrefix(n, "Queue") })
	found := sampleNamed(t, contracts.SubjectReconMismatchFound, "a line, fee differs").(contracts.MismatchFound)
	resolved := sampleNamed(t, contracts.SubjectReconMismatchResolved, "by paypipe").(contracts.MismatchResolved)
	for _, class := range classes {
		if contracts.MismatchQueue(class) == "" {
			t.Errorf("class %s has no queue", class)
		}
		for _, queue := range queues {
			found.Class, found.Queue = class, queue
			resolved.Class, resolved.Queue = class, queue
			want := queue == contracts.MismatchQueue(class)
			for subject, ev := range map[string]any{contracts.SubjectReconMismatchFound: found, contracts.SubjectReconMismatchResolved: resolved} {
				if err := contracts.ValidateEvent(contracts.TypeOf(subject), marshal(t, ev)); (err == nil) != want {
					t.Errorf("%s class %s queue %s: %v, want ok = %v", subject, class, queue, err, want)
				}
			}
		}
	}
}

// validateCase changes a valid event; ok says whether Validate must
// accept the result. schemaToo says the event's schema refuses it as well:
// false marks rules JSON Schema cannot say (sums, a known currency), which
// is why consumers call Validate.
type validateCase[T any] struct {
	name      string
	mod       func(*T)
	ok        bool
	schemaToo bool
}

// checkValidate runs cases against base's Validate and, where they should
// agree, its schema (the ce-type comes from ceType, which may depend on the
// event).
func checkValidate[T interface{ Validate() error }](t *testing.T, ceType func(T) string, base T, cases []validateCase[T]) {
	t.Helper()
	if err := base.Validate(); err != nil {
		t.Fatalf("%T base: %v", base, err)
	}
	for _, c := range cases {
		ev := base
		c.mod(&ev)
		err := ev.Validate()
		if (err == nil) != c.ok {
			t.Errorf("%T %s: Validate() = %v, want ok = %v", base, c.name, err, c.ok)
		}
		schemaErr := contracts.ValidateEvent(ceType(ev), marshal(t, ev))
		switch {
		case c.ok && schemaErr != nil:
			t.Errorf("%T %s: Validate accepts it, the schema refuses it: %v", base, c.name, schemaErr)
		case !c.ok && c.schemaToo && schemaErr == nil:
			t.Errorf("%T %s: Validate refuses it (%v), the schema accepts it", base, c.name, err)
		}
	}
}

func fixed[T any](subject string) func(T) string {
	return func(T) string { return contracts.TypeOf(subject) }
}

func TestValidateOrderSucceeded(t *testing.T) {
	t.Parallel()
	type E = contracts.OrderSucceeded
	checkValidate(t, fixed[E](contracts.SubjectOrderSucceeded), sampleNamed(t, contracts.SubjectOrderSucceeded, "with checkout amount").(E), []validateCase[E]{
		{"legacy, no checkout amount", func(e *E) { e.CheckoutAmountMinor = 0 }, true, false},
		{"checkout amount = order amount", func(e *E) { e.CheckoutAmountMinor = e.AmountMinor }, true, false},
		{"checkout amount < order amount", func(e *E) { e.CheckoutAmountMinor = e.AmountMinor - 1 }, false, false},
		{"checkout amount too large", func(e *E) { e.CheckoutAmountMinor = money.MaxAmount + 1 }, false, true},
		{"checkout amount negative", func(e *E) { e.CheckoutAmountMinor = -1 }, false, true},
		{"fee + net <> amount", func(e *E) { e.FeeMinor++ }, false, false},
		{"unknown currency", func(e *E) { e.Currency = "XXY" }, false, false},
	})
}

func TestValidateOrderFulfilled(t *testing.T) {
	t.Parallel()
	type E = contracts.OrderFulfilled
	checkValidate(t, fixed[E](contracts.SubjectOrderFulfilled), sampleNamed(t, contracts.SubjectOrderFulfilled, "fulfilled").(E), []validateCase[E]{
		{"net 0", func(e *E) { e.NetMinor = 0 }, true, false},
		{"net max", func(e *E) { e.NetMinor = money.MaxAmount }, true, false},
		{"net negative", func(e *E) { e.NetMinor = -1 }, false, true},
		{"net too large", func(e *E) { e.NetMinor = money.MaxAmount + 1 }, false, true},
		{"upper-case order id", func(e *E) { e.PaymentOrderID = strings.ToUpper(e.PaymentOrderID) }, false, true},
		{"no seller", func(e *E) { e.SellerID = "" }, false, true},
		{"nil checkout", func(e *E) { e.CheckoutID = uuid.Nil.String() }, false, true},
		{"lower-case currency", func(e *E) { e.Currency = "usd" }, false, true},
		{"unknown currency", func(e *E) { e.Currency = "XXY" }, false, false},
	})
}

func TestValidateRefundCreated(t *testing.T) {
	t.Parallel()
	type E = contracts.RefundCreated
	checkValidate(t, fixed[E](contracts.SubjectRefundCreated), sampleNamed(t, contracts.SubjectRefundCreated, "partial, with a reason").(E), []validateCase[E]{
		{"no reason", func(e *E) { e.Reason = "" }, true, false},
		{"all fee", func(e *E) { e.FeeMinor, e.NetMinor = e.AmountMinor, 0 }, true, false},
		{"max amount", func(e *E) { e.AmountMinor, e.FeeMinor, e.NetMinor = money.MaxAmount, 0, money.MaxAmount }, true, false},
		{"fee + net <> amount", func(e *E) { e.FeeMinor++ }, false, false},
		{"fee + net overflows", func(e *E) { e.FeeMinor, e.NetMinor = 1<<63-1, 1 }, false, true},
		{"negative net", func(e *E) { e.FeeMinor, e.NetMinor = e.AmountMinor+1, -1 }, false, true},
		{"negative fee", func(e *E) { e.FeeMinor, e.NetMinor = -1, e.AmountMinor+1 }, false, true},
		{"zero amount", func(e *E) { e.AmountMinor, e.FeeMinor, e.NetMinor = 0, 0, 0 }, false, true},
		{"amount too large", func(e *E) { e.AmountMinor, e.FeeMinor, e.NetMinor = money.MaxAmount+1, 0, money.MaxAmount+1 }, false, true},
		{"no psp payment id", func(e *E) { e.PSPPaymentID = "" }, false, true},
		{"psp payment id too long", func(e *E) { e.PSPPaymentID = strings.Repeat("p", 256) }, false, true},
		{"psp payment id of 255", func(e *E) { e.PSPPaymentID = strings.Repeat("p", 255) }, true, false},
		{"reason with a line break", func(e *E) { e.Reason = "a\nb" }, false, true},
		{"reason too long", func(e *E) { e.Reason = strings.Repeat("é", 1001) }, false, true},
		{"nil refund id", func(e *E) { e.RefundID = uuid.Nil.String() }, false, true},
		{"unknown currency", func(e *E) { e.Currency = "XXY" }, false, false},
	})
}

func TestValidateRefundSucceeded(t *testing.T) {
	t.Parallel()
	type E = contracts.RefundSucceeded
	checkValidate(t, fixed[E](contracts.SubjectRefundSucceeded), sampleNamed(t, contracts.SubjectRefundSucceeded, "succeeded").(E), []validateCase[E]{
		{"no psp refund id", func(e *E) { e.PSPRefundID = "" }, false, true},
		{"psp refund id too long", func(e *E) { e.PSPRefundID = strings.Repeat("r", 256) }, false, true},
		{"no psp payment id", func(e *E) { e.PSPPaymentID = "" }, false, true},
		{"fee + net <> amount", func(e *E) { e.NetMinor-- }, false, false},
		{"negative fee", func(e *E) { e.FeeMinor, e.NetMinor = -1, e.AmountMinor+1 }, false, true},
		{"zero amount", func(e *E) { e.AmountMinor, e.FeeMinor, e.NetMinor = 0, 0, 0 }, false, true},
		{"upper-case seller", func(e *E) { e.SellerID = strings.ToUpper(e.SellerID) }, false, true},
	})
}

func TestValidateRefundReported(t *testing.T) {
	t.Parallel()
	type E = contracts.RefundReported
	checkValidate(t, fixed[E](contracts.SubjectRefundReported), sampleNamed(t, contracts.SubjectRefundReported, "succeeded").(E), []validateCase[E]{
		{"pending", func(e *E) { e.Status = contracts.RefundStatusPending }, true, false},
		{"pending before the PSP id", func(e *E) { e.Status, e.PSPRefundID = contracts.RefundStatusPending, "" }, true, false},
		{"failed", func(e *E) { e.Status, e.FailureCode = contracts.RefundStatusFailed, "charge_disputed" }, true, false},
		{"failed without a code", func(e *E) { e.Status = contracts.RefundStatusFailed }, false, true},
		{"succeeded with a code", func(e *E) { e.FailureCode = "x" }, false, true},
		{"succeeded without the PSP id", func(e *E) { e.PSPRefundID = "" }, false, true},
		{"unknown status", func(e *E) { e.Status = "refunded" }, false, true},
		{"no status", func(e *E) { e.Status = "" }, false, true},
		{"zero amount", func(e *E) { e.AmountMinor = 0 }, false, true},
		{"code with a control character", func(e *E) { e.Status, e.FailureCode = contracts.RefundStatusFailed, "x\x00" }, false, true},
		{"upper-case merchant", func(e *E) { e.MerchantID = strings.ToUpper(e.MerchantID) }, false, true},
	})
}

func TestValidatePayoutRequest(t *testing.T) {
	t.Parallel()
	type E = contracts.PayoutRequest
	checkValidate(t, fixed[E](contracts.SubjectPayoutRequested), sampleNamed(t, contracts.SubjectPayoutRequested, "requested").(E), []validateCase[E]{
		{"period of 64", func(e *E) { e.Period = strings.Repeat("p", 64) }, true, false},
		{"period of 65", func(e *E) { e.Period = strings.Repeat("p", 65) }, false, true},
		{"no period", func(e *E) { e.Period = "" }, false, true},
		{"no seller", func(e *E) { e.SellerID = "" }, false, true},
		{"unknown currency", func(e *E) { e.Currency = "XXY" }, false, false},
	})
}

func TestValidatePayoutReserved(t *testing.T) {
	t.Parallel()
	type E = contracts.PayoutReserved
	checkValidate(t, fixed[E](contracts.SubjectWalletPayoutReserved), sampleNamed(t, contracts.SubjectWalletPayoutReserved, "reserved").(E), []validateCase[E]{
		{"one minor unit", func(e *E) { e.AmountMinor = 1 }, true, false},
		{"zero", func(e *E) { e.AmountMinor = 0 }, false, true},
		{"too large", func(e *E) { e.AmountMinor = money.MaxAmount + 1 }, false, true},
		{"nil payout", func(e *E) { e.PayoutID = uuid.Nil.String() }, false, true},
	})
}

func TestValidatePayoutRejected(t *testing.T) {
	t.Parallel()
	type E = contracts.PayoutRejected
	checkValidate(t, fixed[E](contracts.SubjectWalletPayoutRejected), sampleNamed(t, contracts.SubjectWalletPayoutRejected, "owing the platform").(E), []validateCase[E]{
		{"zero available", func(e *E) { e.AvailableMinor = 0 }, true, false},
		{"deep in debt", func(e *E) { e.AvailableMinor = -1 << 63 }, true, false},
		{"no reason", func(e *E) { e.Reason = "" }, false, true},
		{"reason too long", func(e *E) { e.Reason = strings.Repeat("r", 256) }, false, true},
		{"no merchant", func(e *E) { e.MerchantID = "" }, false, true},
	})
}

func TestValidatePayoutChanged(t *testing.T) {
	t.Parallel()
	type E = contracts.PayoutChanged
	byStatus := func(e E) string { return contracts.TypeOf("payouts.payout." + e.Status) }
	checkValidate(t, byStatus, sampleNamed(t, contracts.SubjectPayoutCreated, "created").(E), []validateCase[E]{
		{"sent", func(e *E) { e.Status, e.PSPPayoutID = contracts.PayoutStatusSent, "po_1" }, true, false},
		{"paid", func(e *E) { e.Status, e.PSPPayoutID = contracts.PayoutStatusPaid, "po_1" }, true, false},
		{"failed before the PSP knew it", func(e *E) { e.Status, e.FailureCode = contracts.PayoutStatusFailed, "psp_rejected" }, true, false},
		{"canceled, nothing reserved", func(e *E) { e.Status, e.AmountMinor, e.Reason = contracts.PayoutStatusCanceled, 0, "nothing_available" }, true, false},
		{"sent without the PSP id", func(e *E) { e.Status = contracts.PayoutStatusSent }, false, true},
		{"paid without the PSP id", func(e *E) { e.Status = contracts.PayoutStatusPaid }, false, true},
		{"failed without a code", func(e *E) { e.Status = contracts.PayoutStatusFailed }, false, true},
		{"created with a failure code", func(e *E) { e.FailureCode = "x" }, false, true},
		{"created for nothing", func(e *E) { e.AmountMinor = 0 }, false, true},
		{"canceled with a negative amount", func(e *E) { e.Status, e.AmountMinor = contracts.PayoutStatusCanceled, -1 }, false, true},
		{"too large", func(e *E) { e.AmountMinor = money.MaxAmount + 1 }, false, true},
		{"version 0", func(e *E) { e.Version = 0 }, false, true},
		{"unknown status", func(e *E) { e.Status = "returned" }, false, true},
		{"no period", func(e *E) { e.Period = "" }, false, true},
		{"psp payout id too long", func(e *E) { e.PSPPayoutID = strings.Repeat("p", 256) }, false, true},
		{"unknown currency", func(e *E) { e.Currency = "XXY" }, false, false},
	})
}

func TestValidateBatchSettled(t *testing.T) {
	t.Parallel()
	type E = contracts.BatchSettled
	checkValidate(t, fixed[E](contracts.SubjectReconBatchSettled), sampleNamed(t, contracts.SubjectReconBatchSettled, "charges and refunds").(E), []validateCase[E]{
		{"payout lines only", func(e *E) { e.ChargesGrossMinor, e.RefundsGrossMinor, e.FeesMinor = 0, 0, 0 }, true, false},
		{"more refunds than charges", func(e *E) { e.RefundsGrossMinor = e.ChargesGrossMinor + 1 }, true, false},
		{"sums beyond one payment's maximum", func(e *E) { e.ChargesGrossMinor = 50 * money.MaxAmount }, true, false},
		{"leap day", func(e *E) { e.SettlementDate = "2028-02-29" }, true, false},
		{"bank line overflows", func(e *E) { e.ChargesGrossMinor, e.RefundsGrossMinor, e.FeesMinor = 0, 1<<63-1, 1<<63-1 }, false, false},
		{"no lines", func(e *E) { e.Lines = 0 }, false, true},
		{"negative charges", func(e *E) { e.ChargesGrossMinor = -1 }, false, true},
		{"negative refunds", func(e *E) { e.RefundsGrossMinor = -1 }, false, true},
		{"negative fees", func(e *E) { e.FeesMinor = -1 }, false, true},
		{"not a day", func(e *E) { e.SettlementDate = "2026-02-30" }, false, true},
		{"not padded", func(e *E) { e.SettlementDate = "2026-3-2" }, false, true},
		{"a time", func(e *E) { e.SettlementDate = "2026-03-02T00:00:00Z" }, false, true},
		{"no file", func(e *E) { e.FileID = "" }, false, true},
		{"upper-case batch", func(e *E) { e.BatchID = strings.ToUpper(e.BatchID) }, false, true},
		{"unknown currency", func(e *E) { e.Currency = "XXY" }, false, false},
	})
}

func TestValidateChargeConfirmed(t *testing.T) {
	t.Parallel()
	type E = contracts.ChargeConfirmed
	checkValidate(t, fixed[E](contracts.SubjectReconChargeConfirmed), sampleNamed(t, contracts.SubjectReconChargeConfirmed, "confirmed").(E), []validateCase[E]{
		{"failed", func(e *E) { e.PSPStatus = contracts.PSPStatusFailed }, false, true},
		{"processing", func(e *E) { e.PSPStatus = contracts.PSPStatusProcessing }, false, true},
		{"no psp payment id", func(e *E) { e.PSPPaymentID = "" }, false, true},
		{"zero amount", func(e *E) { e.AmountMinor = 0 }, false, true},
		{"no date", func(e *E) { e.SettlementDate = "" }, false, true},
		{"nil checkout", func(e *E) { e.CheckoutID = uuid.Nil.String() }, false, true},
		{"unknown currency", func(e *E) { e.Currency = "XXY" }, false, false},
	})
}

// Validate reports every violation at once, and says which event it is.
func TestValidateReportsAll(t *testing.T) {
	t.Parallel()
	ev := sampleNamed(t, contracts.SubjectRefundCreated, "partial, with a reason").(contracts.RefundCreated)
	ev.SellerID, ev.Currency, ev.FeeMinor, ev.PSPPaymentID = "S", "usd", ev.FeeMinor+1, ""
	err := ev.Validate()
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{ev.RefundID, "seller_id", "usd", "fee", "psp_payment_id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v: does not mention %s", err, want)
		}
	}
	if !errors.Is(err, money.ErrUnknownCurrency) {
		t.Errorf("%v: does not wrap money.ErrUnknownCurrency", err)
	}
}
