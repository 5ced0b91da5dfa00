// Package money is paypipe's representation of amounts: int64 minor units
// plus an ISO 4217 currency, never floats. Every operation that can overflow
// is checked and returns an error instead of wrapping.
package money

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
)

// Currency is an ISO 4217 alphabetic code with its minor-unit exponent.
type Currency struct {
	Code     string
	Exponent int
}

// currencies lists the ISO 4217 currencies paypipe accepts, with their
// exponents (ISO 4217 amendment list, minor units column). Funds, precious
// metals and testing codes (XXX, XTS, XAU…) are deliberately absent.
var currencies = map[string]int{
	"AED": 2, "AFN": 2, "ALL": 2, "AMD": 2, "ANG": 2, "AOA": 2, "ARS": 2, "AUD": 2, "AWG": 2, "AZN": 2,
	"BAM": 2, "BBD": 2, "BDT": 2, "BGN": 2, "BHD": 3, "BIF": 0, "BMD": 2, "BND": 2, "BOB": 2, "BRL": 2,
	"BSD": 2, "BTN": 2, "BWP": 2, "BYN": 2, "BZD": 2, "CAD": 2, "CDF": 2, "CHF": 2, "CLP": 0, "CNY": 2,
	"COP": 2, "CRC": 2, "CUP": 2, "CVE": 2, "CZK": 2, "DJF": 0, "DKK": 2, "DOP": 2, "DZD": 2, "EGP": 2,
	"ERN": 2, "ETB": 2, "EUR": 2, "FJD": 2, "FKP": 2, "GBP": 2, "GEL": 2, "GHS": 2, "GIP": 2, "GMD": 2,
	"GNF": 0, "GTQ": 2, "GYD": 2, "HKD": 2, "HNL": 2, "HTG": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
	"IQD": 3, "IRR": 2, "ISK": 0, "JMD": 2, "JOD": 3, "JPY": 0, "KES": 2, "KGS": 2, "KHR": 2, "KMF": 0,
	"KPW": 2, "KRW": 0, "KWD": 3, "KYD": 2, "KZT": 2, "LAK": 2, "LBP": 2, "LKR": 2, "LRD": 2, "LSL": 2,
	"LYD": 3, "MAD": 2, "MDL": 2, "MGA": 2, "MKD": 2, "MMK": 2, "MNT": 2, "MOP": 2, "MRU": 2, "MUR": 2,
	"MVR": 2, "MWK": 2, "MXN": 2, "MYR": 2, "MZN": 2, "NAD": 2, "NGN": 2, "NIO": 2, "NOK": 2, "NPR": 2,
	"NZD": 2, "OMR": 3, "PAB": 2, "PEN": 2, "PGK": 2, "PHP": 2, "PKR": 2, "PLN": 2, "PYG": 0, "QAR": 2,
	"RON": 2, "RSD": 2, "RUB": 2, "RWF": 0, "SAR": 2, "SBD": 2, "SCR": 2, "SDG": 2, "SEK": 2, "SGD": 2,
	"SHP": 2, "SLE": 2, "SOS": 2, "SRD": 2, "SSP": 2, "STN": 2, "SYP": 2, "SZL": 2, "THB": 2, "TJS": 2,
	"TMT": 2, "TND": 3, "TOP": 2, "TRY": 2, "TTD": 2, "TWD": 2, "TZS": 2, "UAH": 2, "UGX": 0, "USD": 2,
	"UYU": 2, "UZS": 2, "VES": 2, "VND": 0, "VUV": 0, "WST": 2, "XAF": 0, "XCD": 2, "XOF": 0, "XPF": 0,
	"YER": 2, "ZAR": 2, "ZMW": 2, "ZWG": 2,
}

// Errors returned by this package; match them with errors.Is.
var (
	ErrUnknownCurrency = errors.New("money: unknown currency")
	ErrNotPositive     = errors.New("money: amount must be positive")
	ErrTooLarge        = errors.New("money: amount too large")
	ErrOverflow        = errors.New("money: arithmetic overflow")
)

// MaxAmount is the largest amount, in minor units, paypipe accepts in one
// payment order or checkout: 99,999,999,999 (e.g. USD 999,999,999.99). It
// keeps every sum of a checkout's orders and every fee product far from
// int64's limit and is within what card PSPs accept.
const MaxAmount int64 = 99_999_999_999

// ParseCurrency returns the currency for an upper-case ISO 4217 code. Lower
// case is refused rather than guessed: an API that silently upper-cases one
// field tends to silently fix others.
func ParseCurrency(code string) (Currency, error) {
	exp, ok := currencies[code]
	if !ok {
		if up := strings.ToUpper(code); up != code {
			if _, ok := currencies[up]; ok {
				return Currency{}, fmt.Errorf("%w: %q (currency codes are upper case: %q)", ErrUnknownCurrency, code, up)
			}
		}
		return Currency{}, fmt.Errorf("%w: %q", ErrUnknownCurrency, code)
	}
	return Currency{Code: code, Exponent: exp}, nil
}

// ValidAmount checks 0 < amount ≤ MaxAmount.
func ValidAmount(amount int64) error {
	if amount <= 0 {
		return fmt.Errorf("%w: %d", ErrNotPositive, amount)
	}
	if amount > MaxAmount {
		return fmt.Errorf("%w: %d > %d", ErrTooLarge, amount, MaxAmount)
	}
	return nil
}

// Add returns a+b or ErrOverflow.
func Add(a, b int64) (int64, error) {
	s := a + b
	if (s > a) != (b > 0) {
		return 0, fmt.Errorf("%w: %d + %d", ErrOverflow, a, b)
	}
	return s, nil
}

// Sum adds amounts with overflow checks.
func Sum(amounts ...int64) (int64, error) {
	var s int64
	for _, a := range amounts {
		var err error
		if s, err = Add(s, a); err != nil {
			return 0, err
		}
	}
	return s, nil
}

// Fee returns the platform fee on a positive amount at bps basis points
// (1 bp = 0.01%), rounded half up to the minor unit: fee = ⌊(amount·bps + 5000) / 10000⌋.
// Half up (not banker's rounding) because it is what a seller can recompute
// from the rate card by hand; the rounding difference goes to the platform at
// exactly half a minor unit and nowhere else. The seller's net is amount − fee,
// so fee + net = amount always, and no money is created or lost by rounding.
func Fee(amount int64, bps int) (int64, error) {
	if amount < 0 || bps < 0 || bps > 10_000 {
		return 0, fmt.Errorf("money: fee of %d at %d bps: out of range", amount, bps)
	}
	hi, lo := bits.Mul64(uint64(amount), uint64(bps))
	lo, carry := bits.Add64(lo, 5000, 0)
	hi += carry
	if hi >= 10_000 {
		return 0, fmt.Errorf("%w: fee of %d at %d bps", ErrOverflow, amount, bps)
	}
	q, _ := bits.Div64(hi, lo, 10_000)
	if q > math.MaxInt64 {
		return 0, fmt.Errorf("%w: fee of %d at %d bps", ErrOverflow, amount, bps)
	}
	return int64(q), nil
}

// Format renders an amount in major units with the currency's exponent, for
// people (logs, the demo): Format(1050, USD) = "USD 10.50", JPY 1050 = "JPY 1050".
func Format(amount int64, c Currency) string {
	neg := amount < 0
	u := uint64(amount)
	if neg {
		u = uint64(-(amount + 1)) + 1
	}
	s := strconv.FormatUint(u, 10)
	if c.Exponent > 0 {
		if len(s) <= c.Exponent {
			s = strings.Repeat("0", c.Exponent-len(s)+1) + s
		}
		s = s[:len(s)-c.Exponent] + "." + s[len(s)-c.Exponent:]
	}
	if neg {
		s = "-" + s
	}
	return c.Code + " " + s
}
