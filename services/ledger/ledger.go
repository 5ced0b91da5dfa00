package ledger

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox/retry"
)

// AccountType classifies an account; it fixes the account's normal balance.
type AccountType string

// Account types.
const (
	Asset     AccountType = "asset"
	Liability AccountType = "liability"
	Revenue   AccountType = "revenue"
	Expense   AccountType = "expense"
)

// NormalBalance is the direction in which an account of type t grows:
// debit for assets and expenses, credit for liabilities and revenue.
func (t AccountType) NormalBalance() (string, error) {
	switch t {
	case Asset, Expense:
		return contracts.Debit, nil
	case Liability, Revenue:
		return contracts.Credit, nil
	}
	return "", fmt.Errorf("%w: account type %q", ErrInvalidEntry, t)
}

// Limits on one entry. They keep a runaway caller from building an entry
// the database would take long to check, and match the table's CHECKs.
const (
	MaxLines        = 100
	maxIDLen        = 255
	maxKindLen      = 64
	maxAccountLen   = 255
	entryNamespaceS = "6f1d8a52-3c1e-4f0e-9a57-2f8f1a7e0b3d"
)

// entryNamespace makes entry ids a function of external ids (UUIDv5): the same
// business effect always gets the same entry id, so a replay cannot mint a
// second id and events about the entry agree with each other.
var entryNamespace = uuid.MustParse(entryNamespaceS)

// EntryID is the id Post gives the entry of externalID.
func EntryID(externalID string) uuid.UUID { return uuid.NewSHA1(entryNamespace, []byte(externalID)) }

// Errors of this package; match them with errors.Is.
var (
	// ErrInvalidEntry: the entry breaks a rule (fewer than two lines, a
	// non-positive amount, unbalanced, an unknown currency…). Nothing was written.
	ErrInvalidEntry = errors.New("ledger: invalid entry")
	// ErrExternalIDConflict: an entry with this external id exists and
	// differs from the one posted (TigerBeetle's exists_with_different_*).
	// The first entry stands; the caller has two different stories about one
	// business effect and must not treat this as success.
	ErrExternalIDConflict = retry.Permanent(errors.New("ledger: external id already posted with different fields"))
	// ErrAccountType: an account exists with another type than the line says.
	ErrAccountType = errors.New("ledger: account exists with a different type")
	// ErrInvalidEvent: a consumed event is malformed or its figures are
	// inconsistent. Retrying cannot fix it: it is a permanent error.
	ErrInvalidEvent = retry.Permanent(errors.New("ledger: invalid event"))
)

// Line is one posting of an entry.
type Line struct {
	Account     string
	Type        AccountType // used to create the account on first use
	Direction   string      // contracts.Debit or contracts.Credit
	AmountMinor int64       // > 0, in the entry's currency
}

// Entry is a journal entry to post: lines in one currency that balance.
type Entry struct {
	// ExternalID is the business effect's unique id: posting it twice posts
	// it once.
	ExternalID     string
	Kind           string
	MerchantID     string
	PaymentOrderID string // optional
	Currency       string
	Lines          []Line
	// Reference, PSPReference and PSPAmountMinor say how the PSP knows the
	// money movement (contracts.LedgerEntryPosted): paypipe's reference (a
	// checkout, refund or payout id), the PSP's own id, and the gross the PSP
	// moved under it. Optional; the reconciler matches settlement lines by
	// them. They describe the effect without changing it, so they take no
	// part in the replay comparison either.
	Reference      string
	PSPReference   string
	PSPAmountMinor int64
	// PostedAt defaults to now; SourceMsgID is the causing message's ce-id
	// (optional). Neither takes part in the replay comparison: a re-sent
	// event is the same effect.
	PostedAt    time.Time
	SourceMsgID uuid.UUID
}

// Validate checks the entry's rules with checked arithmetic. The database
// enforces the same rules again at COMMIT.
func (e Entry) Validate() error {
	var errs []error
	text := func(name, v string, max int, required bool) {
		switch {
		case v == "" && required:
			errs = append(errs, fmt.Errorf("%s is required", name))
		case len(v) > max:
			errs = append(errs, fmt.Errorf("%s is longer than %d bytes", name, max))
		case !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool { return r < ' ' || r == 0x7f }):
			errs = append(errs, fmt.Errorf("%s %q has invalid characters", name, v))
		}
	}
	text("external_id", e.ExternalID, maxIDLen, true)
	text("kind", e.Kind, maxKindLen, true)
	// A settlement is the platform's own money movement: no merchant.
	text("merchant_id", e.MerchantID, maxIDLen, e.Kind != contracts.EntrySettlement)
	text("payment_order_id", e.PaymentOrderID, maxIDLen, false)
	text("reference", e.Reference, maxIDLen, false)
	text("psp_reference", e.PSPReference, maxIDLen, false)
	if e.PSPAmountMinor != 0 {
		if err := money.ValidAmount(e.PSPAmountMinor); err != nil {
			errs = append(errs, fmt.Errorf("psp amount: %w", err))
		}
	}
	if _, err := money.ParseCurrency(e.Currency); err != nil {
		errs = append(errs, err)
	}
	if len(e.Lines) < 2 || len(e.Lines) > MaxLines {
		errs = append(errs, fmt.Errorf("%d lines, want 2 to %d", len(e.Lines), MaxLines))
	}
	var debits, credits int64
	for i, l := range e.Lines {
		text(fmt.Sprintf("line %d account", i+1), l.Account, maxAccountLen, true)
		if _, err := l.Type.NormalBalance(); err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
		}
		if l.AmountMinor <= 0 {
			errs = append(errs, fmt.Errorf("line %d: amount %d must be positive", i+1, l.AmountMinor))
			continue
		}
		var err error
		switch l.Direction {
		case contracts.Debit:
			debits, err = money.Add(debits, l.AmountMinor)
		case contracts.Credit:
			credits, err = money.Add(credits, l.AmountMinor)
		default:
			err = fmt.Errorf("direction %q, want debit or credit", l.Direction)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: %w", i+1, err))
		}
	}
	if len(errs) == 0 && debits != credits {
		errs = append(errs, fmt.Errorf("debits %d <> credits %d in %s", debits, credits, e.Currency))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w %q: %w", ErrInvalidEntry, e.ExternalID, errors.Join(errs...))
	}
	return nil
}

// sameEffect reports whether a stored entry records the same business effect
// as e: every field that carries money or meaning is equal, line by line.
func (e Entry) sameEffect(stored Entry) (bool, string) {
	switch {
	case e.Kind != stored.Kind:
		return false, fmt.Sprintf("kind %q, stored %q", e.Kind, stored.Kind)
	case e.MerchantID != stored.MerchantID:
		return false, fmt.Sprintf("merchant %q, stored %q", e.MerchantID, stored.MerchantID)
	case e.PaymentOrderID != stored.PaymentOrderID:
		return false, fmt.Sprintf("payment order %q, stored %q", e.PaymentOrderID, stored.PaymentOrderID)
	case e.Currency != stored.Currency:
		return false, fmt.Sprintf("currency %s, stored %s", e.Currency, stored.Currency)
	case len(e.Lines) != len(stored.Lines):
		return false, fmt.Sprintf("%d lines, stored %d", len(e.Lines), len(stored.Lines))
	}
	for i, l := range e.Lines {
		s := stored.Lines[i]
		if l.Account != s.Account || l.Direction != s.Direction || l.AmountMinor != s.AmountMinor {
			return false, fmt.Sprintf("line %d: %s %s %d, stored %s %s %d", i+1,
				l.Direction, l.Account, l.AmountMinor, s.Direction, s.Account, s.AmountMinor)
		}
	}
	return true, ""
}

// OrderCapturedExternalID is the external id of a captured payment order's entry.
func OrderCapturedExternalID(paymentOrderID string) string {
	return contracts.EntryOrderCaptured + ":" + paymentOrderID
}

// OrderCaptured builds the entry of a succeeded payment order:
//
//	Dr psp_receivable          amount
//	    Cr seller_payable:<s>  net
//	    Cr platform_fee_revenue fee
//
// using the fee and net payment computed once (the ledger never recomputes
// them). A zero line is left out; fee + net = amount keeps it balanced. The
// PSP knows the charge by the checkout id and its own payment id, for the
// whole checkout's amount (older events without it: the order's).
func OrderCaptured(ev contracts.OrderSucceeded) (Entry, error) {
	if err := ValidateOrderSucceeded(ev); err != nil {
		return Entry{}, err
	}
	lines := []Line{{Account: contracts.AccountPSPReceivable, Type: Asset, Direction: contracts.Debit, AmountMinor: ev.AmountMinor}}
	if ev.NetMinor > 0 {
		lines = append(lines, Line{Account: contracts.SellerPayable(ev.SellerID), Type: Liability, Direction: contracts.Credit, AmountMinor: ev.NetMinor})
	}
	if ev.FeeMinor > 0 {
		lines = append(lines, Line{Account: contracts.AccountPlatformFeeRevenue, Type: Revenue, Direction: contracts.Credit, AmountMinor: ev.FeeMinor})
	}
	return Entry{
		ExternalID:     OrderCapturedExternalID(ev.PaymentOrderID),
		Kind:           contracts.EntryOrderCaptured,
		MerchantID:     ev.MerchantID,
		PaymentOrderID: ev.PaymentOrderID,
		Currency:       ev.Currency,
		Lines:          lines,
		Reference:      ev.CheckoutID,
		PSPReference:   ev.PSPPaymentID,
		PSPAmountMinor: cmp.Or(ev.CheckoutAmountMinor, ev.AmountMinor),
	}, nil
}

// ValidateOrderSucceeded checks a payments.order.succeeded payload with
// contracts.OrderSucceeded.Validate (the rules the ledger and the wallet
// share); an error wraps ErrInvalidEvent.
func ValidateOrderSucceeded(ev contracts.OrderSucceeded) error {
	if err := ev.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidEvent, err)
	}
	return nil
}

// Balance is one account's running totals in one currency.
type Balance struct {
	Account      string      `json:"account"`
	Type         AccountType `json:"type"`
	Currency     string      `json:"currency"`
	DebitsMinor  int64       `json:"debits_minor"`
	CreditsMinor int64       `json:"credits_minor"`
	Version      int64       `json:"version"`
}

// Net is the balance on the account's normal side: debits − credits for
// assets and expenses, credits − debits for liabilities and revenue. Both
// totals are non-negative, so the difference cannot overflow.
func (b Balance) Net() int64 {
	if nb, _ := b.Type.NormalBalance(); nb == contracts.Debit {
		return b.DebitsMinor - b.CreditsMinor
	}
	return b.CreditsMinor - b.DebitsMinor
}

// Violation is one broken ledger invariant found by CheckBalanced.
type Violation struct {
	// Kind is one of the Violation* constants.
	Kind       string `json:"kind"`
	EntryID    string `json:"entry_id,omitempty"`
	ExternalID string `json:"external_id,omitempty"`
	Account    string `json:"account,omitempty"`
	Currency   string `json:"currency"`
	// Debits and Credits are the sums compared (for ViolationBalanceTable,
	// the stored running totals against Σ postings, in Detail).
	DebitsMinor  int64  `json:"debits_minor"`
	CreditsMinor int64  `json:"credits_minor"`
	Detail       string `json:"detail"`
}

// Violation kinds.
const (
	ViolationUnbalancedEntry = "unbalanced_entry" // an entry's Σ debits ≠ Σ credits in a currency, or < 2 postings
	ViolationGlobal          = "global_imbalance" // Σ debits ≠ Σ credits over every posting of a currency
	ViolationBalanceTable    = "balance_drift"    // account_balances ≠ Σ postings for an account and currency
)
