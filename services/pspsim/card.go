package pspsim

import (
	"strconv"
	"strings"
	"time"

	"github.com/paypipe/paypipe/services/psp"
)

// Failure codes the simulator reports.
const (
	failureDeclined     = "card_declined"
	failureInsufficient = "insufficient_funds"
	failureExpired      = "expired"
)

// outcome is what charging a card does: the brand and last four digits it
// reveals, a failure code ("" when the charge succeeds) and whether the
// final webhook is held back by Config.DelayedWebhook.
type outcome struct {
	brand, last4 string
	failure      string
	delayed      bool
}

// Test card numbers of the hosted page; any other Luhn-valid number succeeds.
const (
	cardSucceeds     = "4242424242424242"
	cardDeclined     = "4000000000000002"
	cardInsufficient = "4000000000009995"
	cardDelayed      = "4000000000000077"
)

// methodOutcome maps the direct-mode test payment methods of package psp.
func methodOutcome(pm string) (outcome, bool) {
	switch pm {
	case psp.MethodCardSucceeds:
		return cardOutcome(cardSucceeds), true
	case psp.MethodCardDeclined:
		return cardOutcome(cardDeclined), true
	case psp.MethodCardInsufficientFunds:
		return cardOutcome(cardInsufficient), true
	case psp.MethodCardDelayedWebhook:
		return cardOutcome(cardDelayed), true
	}
	return outcome{}, false
}

// cardOutcome classifies a validated card number. Only the brand and the last
// four digits leave this function.
func cardOutcome(pan string) outcome {
	o := outcome{brand: cardBrand(pan), last4: pan[len(pan)-4:]}
	switch pan {
	case cardDeclined:
		o.failure = failureDeclined
	case cardInsufficient:
		o.failure = failureInsufficient
	case cardDelayed:
		o.delayed = true
	}
	return o
}

func cardBrand(pan string) string {
	p2, _ := strconv.Atoi(pan[:2])
	p4, _ := strconv.Atoi(pan[:4])
	switch {
	case pan[0] == '4':
		return "visa"
	case (p2 >= 51 && p2 <= 55) || (p4 >= 2221 && p4 <= 2720):
		return "mastercard"
	case p2 == 34 || p2 == 37:
		return "amex"
	case strings.HasPrefix(pan, "6011") || p2 == 65:
		return "discover"
	}
	return "unknown"
}

// Card form messages, shown to the buyer. They never quote what was typed.
const (
	msgCardNumber = "The card number is not valid."
	msgExpiry     = "The expiry date must be this month or later, as MM/YY."
	msgCVC        = "The security code is 3 or 4 digits."
	msgName       = "Enter the name on the card."
)

// normalizePAN removes the spaces and dashes people type and checks length
// and the Luhn digit.
func normalizePAN(s string) (string, bool) {
	if len(s) > 40 {
		return "", false
	}
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == ' ' || r == '-':
		default:
			return "", false
		}
	}
	pan := b.String()
	if len(pan) < 12 || len(pan) > 19 || !luhnValid(pan) {
		return "", false
	}
	return pan, true
}

func luhnValid(digits string) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}

// validExpiry accepts MM/YY or MM/YYYY (spaces allowed around the slash) for
// the current month or later: a card is valid to the end of its month.
func validExpiry(s string, now time.Time) bool {
	mm, yy, ok := strings.Cut(s, "/")
	if !ok {
		return false
	}
	mm, yy = strings.TrimSpace(mm), strings.TrimSpace(yy)
	if !allDigits(mm) || !allDigits(yy) || len(mm) > 2 {
		return false
	}
	m, _ := strconv.Atoi(mm)
	y, _ := strconv.Atoi(yy)
	if m < 1 || m > 12 {
		return false
	}
	switch len(yy) {
	case 2:
		y += 2000
	case 4:
	default:
		return false
	}
	now = now.UTC()
	if y < now.Year() || (y == now.Year() && time.Month(m) < now.Month()) || y > now.Year()+50 {
		return false
	}
	return true
}

func validCVC(s string) bool { return len(s) >= 3 && len(s) <= 4 && allDigits(s) }

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
