package ledger

import (
	"errors"
	"fmt"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
)

// External ids of the pay-out side's entries: one entry per business effect.
func OrderRefundedExternalID(refundID string) string {
	return contracts.EntryOrderRefunded + ":" + refundID
}

// PayoutInitiatedExternalID is the external id of a payout's initiation.
func PayoutInitiatedExternalID(payoutID string) string {
	return contracts.EntryPayoutInitiated + ":" + payoutID
}

// PayoutPaidExternalID is the external id of a paid payout's entry.
func PayoutPaidExternalID(payoutID string) string { return contracts.EntryPayoutPaid + ":" + payoutID }

// PayoutReturnedExternalID is the external id of a failed payout's return.
func PayoutReturnedExternalID(payoutID string) string {
	return contracts.EntryPayoutReturned + ":" + payoutID
}

// SettlementExternalID is the external id of a settled batch's entry.
func SettlementExternalID(batchID string) string { return contracts.EntrySettlement + ":" + batchID }

// ValidateRefundSucceeded checks a payments.refund.succeeded payload with
// contracts.RefundSucceeded.Validate (the rules the ledger and the wallet
// share, so they refuse the same events); an error wraps ErrInvalidEvent.
func ValidateRefundSucceeded(ev contracts.RefundSucceeded) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return nil
}

// OrderRefunded builds the reversal of a succeeded refund:
//
//	Dr seller_payable:<s>   net
//	Dr platform_fee_revenue fee
//	    Cr psp_receivable   amount
//
// with the split payment computed once. A zero line is left out. The PSP
// knows the refund by the refund id and its own refund id.
func OrderRefunded(ev contracts.RefundSucceeded) (Entry, error) {
	if err := ValidateRefundSucceeded(ev); err != nil {
		return Entry{}, err
	}
	var lines []Line
	if ev.NetMinor > 0 {
		lines = append(lines, Line{Account: contracts.SellerPayable(ev.SellerID), Type: Liability, Direction: contracts.Debit, AmountMinor: ev.NetMinor})
	}
	if ev.FeeMinor > 0 {
		lines = append(lines, Line{Account: contracts.AccountPlatformFeeRevenue, Type: Revenue, Direction: contracts.Debit, AmountMinor: ev.FeeMinor})
	}
	lines = append(lines, Line{Account: contracts.AccountPSPReceivable, Type: Asset, Direction: contracts.Credit, AmountMinor: ev.AmountMinor})
	return Entry{
		ExternalID:     OrderRefundedExternalID(ev.RefundID),
		Kind:           contracts.EntryOrderRefunded,
		MerchantID:     ev.MerchantID,
		PaymentOrderID: ev.PaymentOrderID,
		Currency:       ev.Currency,
		Lines:          lines,
		Reference:      ev.RefundID,
		PSPReference:   ev.PSPRefundID,
		PSPAmountMinor: ev.AmountMinor,
	}, nil
}

// ValidatePayoutChanged checks a payouts.payout.* payload with
// contracts.PayoutChanged.Validate, except a failed payout of amount 0 (it
// failed before it was created: there is nothing to return), which only
// needs the ids and currency that name its balance. The wallet applies the
// same rules. An error wraps ErrInvalidEvent.
func ValidatePayoutChanged(ev contracts.PayoutChanged) error {
	err := ev.Validate()
	if ev.Status == contracts.PayoutStatusFailed && ev.AmountMinor == 0 {
		err = contracts.PayoutRequest{PayoutID: ev.PayoutID, MerchantID: ev.MerchantID, SellerID: ev.SellerID,
			Currency: ev.Currency, Period: ev.Period}.Validate()
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return nil
}

// payoutEntry builds the two-line entries of a payout's life.
func payoutEntry(ev contracts.PayoutChanged, kind, externalID string, dr, cr Line) Entry {
	dr.Direction, cr.Direction = contracts.Debit, contracts.Credit
	dr.AmountMinor, cr.AmountMinor = ev.AmountMinor, ev.AmountMinor
	return Entry{ExternalID: externalID, Kind: kind, MerchantID: ev.MerchantID, Currency: ev.Currency, Lines: []Line{dr, cr}}
}

var (
	payoutInTransit = Line{Account: contracts.AccountPayoutInTransit, Type: Liability}
	bank            = Line{Account: contracts.AccountBank, Type: Asset}
)

// PayoutInitiated builds the entry of a created payout: the seller's funds
// leave what the platform owes the seller for money on its way.
//
//	Dr seller_payable:<s>      amount
//	    Cr payout_in_transit   amount
func PayoutInitiated(ev contracts.PayoutChanged) (Entry, error) {
	if err := ValidatePayoutChanged(ev); err != nil {
		return Entry{}, err
	}
	if ev.AmountMinor == 0 {
		return Entry{}, fmt.Errorf("%w: payout %q: a created payout moves a positive amount", ErrInvalidEvent, ev.PayoutID)
	}
	seller := Line{Account: contracts.SellerPayable(ev.SellerID), Type: Liability}
	return payoutEntry(ev, contracts.EntryPayoutInitiated, PayoutInitiatedExternalID(ev.PayoutID), seller, payoutInTransit), nil
}

// PayoutPaid builds the entry of a paid payout: the money left the bank.
//
//	Dr payout_in_transit  amount
//	    Cr bank           amount
//
// The PSP knows it by the payout id and its own payout id.
func PayoutPaid(ev contracts.PayoutChanged) (Entry, error) {
	if err := ValidatePayoutChanged(ev); err != nil {
		return Entry{}, err
	}
	if ev.AmountMinor == 0 {
		return Entry{}, fmt.Errorf("%w: payout %q: a paid payout moves a positive amount", ErrInvalidEvent, ev.PayoutID)
	}
	e := payoutEntry(ev, contracts.EntryPayoutPaid, PayoutPaidExternalID(ev.PayoutID), payoutInTransit, bank)
	e.Reference, e.PSPReference, e.PSPAmountMinor = ev.PayoutID, ev.PSPPayoutID, ev.AmountMinor
	return e, nil
}

// PayoutReturned builds the entry of a failed payout: the platform owes the
// seller again.
//
//	Dr payout_in_transit      amount
//	    Cr seller_payable:<s> amount
//
// ok is false for a payout that failed before it was created (amount 0):
// nothing was initiated, so nothing returns.
func PayoutReturned(ev contracts.PayoutChanged) (e Entry, ok bool, err error) {
	if err := ValidatePayoutChanged(ev); err != nil {
		return Entry{}, false, err
	}
	if ev.AmountMinor == 0 {
		return Entry{}, false, nil
	}
	seller := Line{Account: contracts.SellerPayable(ev.SellerID), Type: Liability}
	return payoutEntry(ev, contracts.EntryPayoutReturned, PayoutReturnedExternalID(ev.PayoutID), payoutInTransit, seller), true, nil
}

// maxBatchSum bounds each sum of a settled batch: 10⁷ times the largest
// payment, far beyond any real chunk, and small enough that the entry's
// arithmetic cannot overflow int64.
const maxBatchSum = 10_000_000 * money.MaxAmount

// Settlement builds the entry of a settled batch (contracts.BatchSettled):
//
//	Dr bank             charges − refunds − fees   (Cr if negative)
//	Dr psp_fee_expense  fees
//	    Cr psp_receivable  charges − refunds       (Dr if negative)
//
// Zero lines are left out. ok is false when every line is zero (a batch of
// payout lines only, or charges that exactly cancel refunds without fees):
// there is nothing to post. The sums use checked arithmetic.
func Settlement(ev contracts.BatchSettled) (e Entry, ok bool, err error) {
	var errs []error
	if err := ev.Validate(); err != nil {
		errs = append(errs, err)
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"charges", ev.ChargesGrossMinor}, {"refunds", ev.RefundsGrossMinor}, {"fees", ev.FeesMinor}} {
		if f.v < 0 || f.v > maxBatchSum {
			errs = append(errs, fmt.Errorf("%s %d: want 0 to %d", f.name, f.v, maxBatchSum))
		}
	}
	if len(errs) > 0 {
		return Entry{}, false, fmt.Errorf("%w: batch %q: %w", ErrInvalidEvent, ev.BatchID, errors.Join(errs...))
	}
	// Each figure is in [0, maxBatchSum]: neither difference nor its
	// negation can overflow.
	receivable := ev.ChargesGrossMinor - ev.RefundsGrossMinor
	bankNet := receivable - ev.FeesMinor
	var lines []Line
	side := func(acct string, typ AccountType, debitIfPositive int64) {
		switch {
		case debitIfPositive > 0:
			lines = append(lines, Line{Account: acct, Type: typ, Direction: contracts.Debit, AmountMinor: debitIfPositive})
		case debitIfPositive < 0:
			lines = append(lines, Line{Account: acct, Type: typ, Direction: contracts.Credit, AmountMinor: -debitIfPositive})
		}
	}
	side(contracts.AccountBank, Asset, bankNet)
	side(contracts.AccountPSPFeeExpense, Expense, ev.FeesMinor)
	side(contracts.AccountPSPReceivable, Asset, -receivable)
	if len(lines) == 0 {
		return Entry{}, false, nil
	}
	return Entry{
		ExternalID: SettlementExternalID(ev.BatchID),
		Kind:       contracts.EntrySettlement,
		Currency:   ev.Currency,
		Lines:      lines,
	}, true, nil
}
