package demo

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
)

// The one event the demo emits.
const (
	SubjectOrderPlaced = "demo.order.placed"
	TypeOrderPlaced    = "demo.order.placed.v1"
	Source             = "paypipe/demo"
)

// MaxCustomerLen bounds a customer name, in characters (the table checks it too).
const MaxCustomerLen = 200

// ErrInvalidOrder is wrapped by every validation error.
var ErrInvalidOrder = errors.New("demo: invalid order")

// OrderPlaced is the payload of demo.order.placed.v1.
type OrderPlaced struct {
	OrderID     uuid.UUID `json:"order_id"`
	Customer    string    `json:"customer"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
}

// Total is one currency's line of the projection.
type Total struct {
	Currency    string `json:"currency"`
	Orders      int64  `json:"orders"`
	AmountMinor int64  `json:"amount_minor"`
}

// ValidateOrder checks an order before anything is written: a positive
// amount in minor units, a currency of three upper-case ASCII letters (ISO
// 4217 form; whether the code exists is not checked) and a printable
// customer name of 1 to MaxCustomerLen characters.
func ValidateOrder(customer string, amountMinor int64, currency string) error {
	var errs []error
	if amountMinor <= 0 {
		errs = append(errs, fmt.Errorf("amount %d: must be positive (minor units)", amountMinor))
	}
	if !validCurrency(currency) {
		errs = append(errs, fmt.Errorf("currency %q: want three upper-case letters (ISO 4217), e.g. EUR", currency))
	}
	switch {
	case strings.TrimSpace(customer) == "":
		errs = append(errs, errors.New("customer is required"))
	case !utf8.ValidString(customer):
		errs = append(errs, errors.New("customer is not valid UTF-8"))
	case utf8.RuneCountInString(customer) > MaxCustomerLen:
		errs = append(errs, fmt.Errorf("customer is longer than %d characters", MaxCustomerLen))
	case strings.IndexFunc(customer, unicode.IsControl) >= 0:
		errs = append(errs, errors.New("customer contains control characters"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidOrder, errors.Join(errs...))
	}
	return nil
}

func (e OrderPlaced) validate() error {
	if e.OrderID == uuid.Nil {
		return fmt.Errorf("%w: order_id is required", ErrInvalidOrder)
	}
	return ValidateOrder(e.Customer, e.AmountMinor, e.Currency)
}

func validCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}
