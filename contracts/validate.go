package contracts

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts/money"
)

// canonicalUUID accepts ids exactly as paypipe writes them: lower-case,
// hyphenated, not nil. Ids end up in ledger account names
// (seller_payable:<id>), where another spelling would be another account.
func canonicalUUID(name, s string) error {
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil || id.String() != s {
		return fmt.Errorf("%s %q: want a lower-case UUID", name, s)
	}
	return nil
}

// Validate checks a payments.order.succeeded payload beyond its JSON
// Schema's shape: canonical ids, a known currency, 0 < amount ≤
// money.MaxAmount, fee ≥ 0, net ≥ 0 and fee + net = amount (checked
// arithmetic), and a checkout amount, when present, that holds the
// order. The ledger and the wallet both apply it, so they refuse exactly
// the same events and can never drift apart over one.
func (ev OrderSucceeded) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"payment_order_id", ev.PaymentOrderID}, {"checkout_id", ev.CheckoutID},
		{"merchant_id", ev.MerchantID}, {"seller_id", ev.SellerID},
	} {
		if err := canonicalUUID(f.name, f.v); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := money.ParseCurrency(ev.Currency); err != nil {
		errs = append(errs, err)
	}
	if err := money.ValidAmount(ev.AmountMinor); err != nil {
		errs = append(errs, fmt.Errorf("amount: %w", err))
	}
	if ev.FeeMinor < 0 || ev.NetMinor < 0 {
		errs = append(errs, fmt.Errorf("fee %d and net %d must not be negative", ev.FeeMinor, ev.NetMinor))
	} else if sum, err := money.Add(ev.FeeMinor, ev.NetMinor); err != nil || sum != ev.AmountMinor {
		errs = append(errs, fmt.Errorf("fee %d + net %d <> amount %d", ev.FeeMinor, ev.NetMinor, ev.AmountMinor))
	}
	// 0 means an event written before the field existed; otherwise the
	// checkout's gross holds this order.
	if ev.CheckoutAmountMinor != 0 {
		if err := money.ValidAmount(ev.CheckoutAmountMinor); err != nil {
			errs = append(errs, fmt.Errorf("checkout amount: %w", err))
		} else if ev.CheckoutAmountMinor < ev.AmountMinor {
			errs = append(errs, fmt.Errorf("checkout amount %d < order amount %d", ev.CheckoutAmountMinor, ev.AmountMinor))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("payment order %q: %w", ev.PaymentOrderID, errors.Join(errs...))
	}
	return nil
}

// checker collects the violations of one payload, so a refused event
// names everything wrong with it at once.
type checker struct{ errs []error }

func (c *checker) add(err error) {
	if err != nil {
		c.errs = append(c.errs, err)
	}
}

func (c *checker) failf(format string, args ...any) {
	c.errs = append(c.errs, fmt.Errorf(format, args...))
}

// ids checks name/value pairs of paypipe ids.
func (c *checker) ids(pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		c.add(canonicalUUID(pairs[i], pairs[i+1]))
	}
}

func (c *checker) currency(code string) {
	if _, err := money.ParseCurrency(code); err != nil {
		c.add(err)
	}
}

// amount checks 0 < v ≤ money.MaxAmount: one money movement.
func (c *checker) amount(name string, v int64) {
	if err := money.ValidAmount(v); err != nil {
		c.add(fmt.Errorf("%s: %w", name, err))
	}
}

// share checks 0 ≤ v ≤ money.MaxAmount: a part of one movement (a fee, a net).
func (c *checker) share(name string, v int64) {
	if v < 0 || v > money.MaxAmount {
		c.failf("%s %d: want 0 ≤ %s ≤ %d", name, v, name, money.MaxAmount)
	}
}

// split checks fee ≥ 0, net ≥ 0 and fee + net = amount, with checked
// arithmetic: the one rule every consumer of a split relies on.
func (c *checker) split(amount, fee, net int64) {
	if fee < 0 || net < 0 {
		c.failf("fee %d and net %d must not be negative", fee, net)
	} else if sum, err := money.Add(fee, net); err != nil || sum != amount {
		c.failf("fee %d + net %d <> amount %d", fee, net, amount)
	}
}

// text checks a required free-text field: non-empty, at most max
// characters, no control characters (common.json's text).
func (c *checker) text(name, s string, max int) {
	switch {
	case s == "":
		c.failf("%s is empty", name)
	case utf8.RuneCountInString(s) > max:
		c.failf("%s: %d characters, at most %d", name, utf8.RuneCountInString(s), max)
	case strings.ContainsFunc(s, unicode.IsControl):
		c.failf("%s %q: control characters", name, s)
	}
}

// optText is text for an omitempty field: empty means absent.
func (c *checker) optText(name, s string, max int) {
	if s != "" {
		c.text(name, s, max)
	}
}

// date checks a settlement date: a real calendar day written YYYY-MM-DD.
func (c *checker) date(name, s string) {
	if d, err := time.Parse(time.DateOnly, s); err != nil || d.Format(time.DateOnly) != s {
		c.failf("%s %q: want YYYY-MM-DD", name, s)
	}
}

func (c *checker) oneOf(name, v string, allowed ...string) {
	if !slices.Contains(allowed, v) {
		c.failf("%s %q: want one of %v", name, v, allowed)
	}
}

// err returns nil or every violation, prefixed with what the event is about.
func (c *checker) err(what, id string) error {
	if len(c.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%s %q: %w", what, id, errors.Join(c.errs...))
}

// Bounds of free-text fields, the same as in the schemas.
const (
	maxPSPID   = 255  // a PSP's id of a payment, refund or payout
	maxCode    = 255  // failure codes, reasons given as codes
	maxPeriod  = 64   // a payout period, e.g. 2026-03-02 or 2026-W10
	maxFileID  = 255  // a settlement file's id (its name or digest)
	maxComment = 1000 // a refund's reason (the merchant's words), a payout's
)

// Validate checks a payments.order.fulfilled payload: canonical ids, a
// known currency and 0 ≤ net ≤ money.MaxAmount (a 100% fee leaves 0).
// The wallet moves at most this much from pending to available.
func (ev OrderFulfilled) Validate() error {
	var c checker
	c.ids("payment_order_id", ev.PaymentOrderID, "checkout_id", ev.CheckoutID,
		"merchant_id", ev.MerchantID, "seller_id", ev.SellerID)
	c.currency(ev.Currency)
	c.share("net_minor", ev.NetMinor)
	return c.err("fulfilled order", ev.PaymentOrderID)
}

// Validate checks a payments.refund.created payload: canonical ids, the
// PSP's payment id, a known currency, 0 < amount ≤ money.MaxAmount and
// the split fee + net = amount with both ≥ 0. executor refuses to send
// anything else to the PSP.
func (ev RefundCreated) Validate() error {
	var c checker
	c.ids("refund_id", ev.RefundID, "payment_order_id", ev.PaymentOrderID, "checkout_id", ev.CheckoutID,
		"merchant_id", ev.MerchantID, "seller_id", ev.SellerID)
	c.text("psp_payment_id", ev.PSPPaymentID, maxPSPID)
	c.currency(ev.Currency)
	c.amount("amount_minor", ev.AmountMinor)
	c.split(ev.AmountMinor, ev.FeeMinor, ev.NetMinor)
	c.optText("reason", ev.Reason, maxComment)
	return c.err("refund", ev.RefundID)
}

// Validate checks a payments.refund.succeeded payload like RefundCreated,
// plus the PSP's refund id. The ledger and the wallet both apply it, so
// they refuse exactly the same events.
func (ev RefundSucceeded) Validate() error {
	var c checker
	c.ids("refund_id", ev.RefundID, "payment_order_id", ev.PaymentOrderID, "checkout_id", ev.CheckoutID,
		"merchant_id", ev.MerchantID, "seller_id", ev.SellerID)
	c.text("psp_payment_id", ev.PSPPaymentID, maxPSPID)
	c.text("psp_refund_id", ev.PSPRefundID, maxPSPID)
	c.currency(ev.Currency)
	c.amount("amount_minor", ev.AmountMinor)
	c.split(ev.AmountMinor, ev.FeeMinor, ev.NetMinor)
	return c.err("refund", ev.RefundID)
}

// Validate checks a payments.refund.reported payload: canonical ids, a
// RefundStatus*, a known currency, 0 < amount ≤ money.MaxAmount, a
// failure code exactly when the refund failed, and the PSP's refund id
// when it succeeded (payment's refunds.succeeded event carries it; the
// reconciler matches the settlement line by it).
func (ev RefundReported) Validate() error {
	var c checker
	c.ids("refund_id", ev.RefundID, "merchant_id", ev.MerchantID)
	c.oneOf("status", ev.Status, RefundStatusPending, RefundStatusSucceeded, RefundStatusFailed)
	c.currency(ev.Currency)
	c.amount("amount_minor", ev.AmountMinor)
	c.optText("psp_refund_id", ev.PSPRefundID, maxPSPID)
	if ev.Status == RefundStatusSucceeded && ev.PSPRefundID == "" {
		c.failf("a succeeded refund needs psp_refund_id")
	}
	if ev.Status == RefundStatusFailed {
		c.text("failure_code", ev.FailureCode, maxCode)
	} else if ev.FailureCode != "" {
		c.failf("failure_code %q on a %s refund", ev.FailureCode, ev.Status)
	}
	return c.err("refund report", ev.RefundID)
}

// Validate checks a payouts.payout.requested payload: canonical ids, a
// known currency and a period of at most 64 characters.
func (ev PayoutRequest) Validate() error {
	var c checker
	c.ids("payout_id", ev.PayoutID, "merchant_id", ev.MerchantID, "seller_id", ev.SellerID)
	c.currency(ev.Currency)
	c.text("period", ev.Period, maxPeriod)
	return c.err("payout request", ev.PayoutID)
}

// Validate checks a wallet.payout.reserved payload: canonical ids, a
// known currency and 0 < amount ≤ money.MaxAmount (the wallet reserves at
// most one movement's maximum per payout; the rest waits for the next).
func (ev PayoutReserved) Validate() error {
	var c checker
	c.ids("payout_id", ev.PayoutID, "merchant_id", ev.MerchantID, "seller_id", ev.SellerID)
	c.currency(ev.Currency)
	c.amount("amount_minor", ev.AmountMinor)
	return c.err("payout reservation", ev.PayoutID)
}

// Validate checks a wallet.payout.rejected payload: canonical ids, a
// known currency and a reason. available_minor is whatever the balance
// was, negative included.
func (ev PayoutRejected) Validate() error {
	var c checker
	c.ids("payout_id", ev.PayoutID, "merchant_id", ev.MerchantID, "seller_id", ev.SellerID)
	c.currency(ev.Currency)
	c.text("reason", ev.Reason, maxCode)
	return c.err("payout rejection", ev.PayoutID)
}

// Validate checks a payouts.payout.{created,sent,paid,failed,canceled}
// payload: canonical ids, a known currency, a period, a PayoutStatus*,
// 0 ≤ amount ≤ money.MaxAmount and > 0 unless canceled (nothing was
// reserved), version ≥ 1, the PSP's payout id once the PSP has it (sent,
// paid) and a failure code exactly on failed.
func (ev PayoutChanged) Validate() error {
	var c checker
	c.ids("payout_id", ev.PayoutID, "merchant_id", ev.MerchantID, "seller_id", ev.SellerID)
	c.currency(ev.Currency)
	c.text("period", ev.Period, maxPeriod)
	c.oneOf("status", ev.Status, PayoutStatusRequested, PayoutStatusCreated, PayoutStatusSent,
		PayoutStatusPaid, PayoutStatusFailed, PayoutStatusCanceled)
	if ev.Status == PayoutStatusCanceled {
		c.share("amount_minor", ev.AmountMinor)
	} else {
		c.amount("amount_minor", ev.AmountMinor)
	}
	if ev.Version < 1 {
		c.failf("version %d: want ≥ 1", ev.Version)
	}
	c.optText("psp_payout_id", ev.PSPPayoutID, maxPSPID)
	if (ev.Status == PayoutStatusSent || ev.Status == PayoutStatusPaid) && ev.PSPPayoutID == "" {
		c.failf("a %s payout needs psp_payout_id", ev.Status)
	}
	if ev.Status == PayoutStatusFailed {
		c.text("failure_code", ev.FailureCode, maxCode)
	} else if ev.FailureCode != "" {
		c.failf("failure_code %q on a %s payout", ev.FailureCode, ev.Status)
	}
	c.optText("reason", ev.Reason, maxComment)
	return c.err("payout", ev.PayoutID)
}

// Validate checks a recon.batch.settled payload: a canonical batch id, a
// settlement date, a file id, a known currency, at least one line, sums
// ≥ 0, and that the ledger's bank line (charges − refunds − fees) is
// computable without overflow.
func (ev BatchSettled) Validate() error {
	var c checker
	c.ids("batch_id", ev.BatchID)
	c.date("settlement_date", ev.SettlementDate)
	c.text("file_id", ev.FileID, maxFileID)
	c.currency(ev.Currency)
	if ev.Lines < 1 {
		c.failf("lines %d: want ≥ 1", ev.Lines)
	}
	if ev.ChargesGrossMinor < 0 || ev.RefundsGrossMinor < 0 || ev.FeesMinor < 0 {
		c.failf("charges %d, refunds %d and fees %d must not be negative", ev.ChargesGrossMinor, ev.RefundsGrossMinor, ev.FeesMinor)
	} else if _, err := money.Sum(ev.ChargesGrossMinor, -ev.RefundsGrossMinor, -ev.FeesMinor); err != nil {
		c.add(fmt.Errorf("charges − refunds − fees: %w", err))
	}
	return c.err("settled batch", ev.BatchID)
}

// Validate checks a recon.charge.confirmed payload: a canonical checkout
// id, the PSP's payment id, status succeeded (the reconciler confirms
// nothing else), 0 < amount ≤ money.MaxAmount, a known currency and a
// settlement date.
func (ev ChargeConfirmed) Validate() error {
	var c checker
	c.ids("checkout_id", ev.CheckoutID)
	c.text("psp_payment_id", ev.PSPPaymentID, maxPSPID)
	c.oneOf("psp_status", ev.PSPStatus, PSPStatusSucceeded)
	c.amount("amount_minor", ev.AmountMinor)
	c.currency(ev.Currency)
	c.date("settlement_date", ev.SettlementDate)
	return c.err("confirmed charge", ev.CheckoutID)
}
