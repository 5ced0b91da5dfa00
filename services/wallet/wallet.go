package wallet

import (
	"errors"
	"fmt"
	"time"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox/retry"
)

// Errors of this package; match them with errors.Is.
var (
	// ErrInvalidEvent: a consumed event is malformed or its figures are
	// inconsistent. Retrying cannot fix it: it is a permanent error.
	ErrInvalidEvent = retry.Permanent(errors.New("wallet: invalid event"))
	// ErrConflict: a change contradicts what the wallet holds: its business
	// effect (cause, ref) was applied with other figures or to another
	// seller, or the seller belongs to another merchant. The first version
	// stands; the second needs an operator.
	ErrConflict = retry.Permanent(errors.New("wallet: change conflicts with the recorded one"))
	// ErrInvalidChange: a change would break a balance rule (negative
	// pending or paid-out, overflow). Nothing was written.
	ErrInvalidChange = errors.New("wallet: invalid change")
	// ErrNotYet: a fulfilment or refund arrived before its order's credit
	// (order_succeeded); consumers keep no order across subjects. It is
	// transient: the runner redelivers the event after its retry delay,
	// and by then the credit has normally been applied.
	ErrNotYet = errors.New("wallet: the order's credit is not recorded yet")
)

// Reasons of a wallet.payout.rejected event.
const (
	RejectNothingAvailable = "nothing_available" // available ≤ 0
	RejectBelowMinimum     = "below_minimum"     // 0 < available < Config.MinPayoutMinor
)

// Config configures the consumers. The zero value is valid.
type Config struct {
	// MinPayoutMinor is the smallest amount a payout reserves, in minor
	// units of the payout's currency: a request finding less available is
	// rejected. Values below 1 mean the default, 1.
	MinPayoutMinor int64
}

func (c Config) withDefaults() Config {
	if c.MinPayoutMinor < 1 {
		c.MinPayoutMinor = 1
	}
	return c
}

// Balance is one seller's money in one currency.
type Balance struct {
	SellerID       string    `json:"seller_id"`
	MerchantID     string    `json:"merchant_id"`
	Currency       string    `json:"currency"`
	PendingMinor   int64     `json:"pending_minor"`
	AvailableMinor int64     `json:"available_minor"`
	PaidOutMinor   int64     `json:"paid_out_minor"`
	Version        int64     `json:"version"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// change is one business effect on a balance. (Cause, Ref) identifies the
// effect: applying it twice applies it once.
type change struct {
	SellerID       string
	MerchantID     string
	Currency       string
	Cause          string
	Ref            string
	PaymentOrderID string // the order the change is about, if any
	DeltaPending   int64
	DeltaAvailable int64
	DeltaPaidOut   int64
}

// next returns the balance after c, or ErrInvalidChange if a sum overflows
// or pending or paid-out would go negative. available may go negative (a
// refund after a pay-out).
func (c change) next(b Balance) (Balance, error) {
	var err error
	add := func(v *int64, d int64) {
		if err == nil {
			*v, err = money.Add(*v, d)
		}
	}
	add(&b.PendingMinor, c.DeltaPending)
	add(&b.AvailableMinor, c.DeltaAvailable)
	add(&b.PaidOutMinor, c.DeltaPaidOut)
	if err != nil {
		return Balance{}, fmt.Errorf("%w: %s %s: %w", ErrInvalidChange, c.Cause, c.Ref, err)
	}
	if b.PendingMinor < 0 || b.PaidOutMinor < 0 {
		return Balance{}, fmt.Errorf("%w: %s %s: pending %d, paid out %d after the change", ErrInvalidChange, c.Cause, c.Ref, b.PendingMinor, b.PaidOutMinor)
	}
	b.Version++
	return b, nil
}

// maxIDLen matches the tables' CHECKs.
const maxIDLen = 255

// ValidateOrderSucceeded checks a payments.order.succeeded payload with
// contracts.OrderSucceeded.Validate (the rules the ledger and the wallet
// share); an error wraps ErrInvalidEvent.
func ValidateOrderSucceeded(ev contracts.OrderSucceeded) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return nil
}

// invalid wraps a contracts validation error in ErrInvalidEvent.
func invalid(err error) error {
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return nil
}

// ValidatePayoutChanged checks a payouts.payout.* payload exactly as the
// ledger does: contracts.PayoutChanged.Validate, except that a failed
// payout of amount 0 (failed before it was created) only needs the ids and
// currency that name its balance.
func ValidatePayoutChanged(ev contracts.PayoutChanged) error {
	if ev.Status == contracts.PayoutStatusFailed && ev.AmountMinor == 0 {
		return invalid(contracts.PayoutRequest{PayoutID: ev.PayoutID, MerchantID: ev.MerchantID, SellerID: ev.SellerID,
			Currency: ev.Currency, Period: ev.Period}.Validate())
	}
	return invalid(ev.Validate())
}

// Drift is a (seller, currency) whose wallet disagrees with the ledger.
type Drift struct {
	SellerID       string `json:"seller_id"`
	Currency       string `json:"currency"`
	PendingMinor   int64  `json:"pending_minor"`
	AvailableMinor int64  `json:"available_minor"`
	// WalletMinor is pending + available; LedgerMinor is the credit balance
	// of seller_payable:<seller> in the currency. Either side is 0 when it
	// has no record at all (Missing says which).
	WalletMinor int64  `json:"wallet_minor"`
	LedgerMinor int64  `json:"ledger_minor"`
	Missing     string `json:"missing,omitempty"` // "wallet", "ledger" or ""
}
