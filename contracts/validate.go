package contracts

import (
	"errors"
	"fmt"

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
// arithmetic). The ledger and the wallet both apply it, so they refuse
// exactly the same events and can never drift apart over one.
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
	if len(errs) > 0 {
		return fmt.Errorf("payment order %q: %w", ev.PaymentOrderID, errors.Join(errs...))
	}
	return nil
}
