// Package psp is paypipe's boundary with a payment service provider. The
// executor and the webhook receiver talk to "a PSP" only through Client and
// the webhook types here; HTTPClient implements it for paypipe's PSP
// simulator (services/pspsim), and an adapter for a real PSP (Stripe, Adyen)
// would implement the same interface.
//
// Outcomes are three-valued. A call either succeeded (a Payment), failed
// permanently (an *Error with Permanent() true: the PSP refused the request
// and nothing happened), or has an unknown outcome (ErrUnknownOutcome: a
// timeout, a dropped connection, a 5xx): the PSP may or may not have acted.
// An unknown outcome is never treated as a failure. The caller retries with
// the same idempotency key, or looks the payment up, until it knows.
//
// Clients do not retry: the caller owns retries (the executor, with its
// retry.Policy and attempt rows that survive restarts). Errors are built for
// retry.Classify and retry.Policy: *Error's Permanent() is the
// classification input (a refusing 4xx is permanent; 409, 429, and every
// unknown outcome are transient), and a server's Retry-After (on a 429, or
// on a 5xx such as 503) is carried by an error implementing
// retry.RetryAfterer.
package psp

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/paypipe/paypipe/outbox/retry"
)

// Normalised payment statuses (the PSP's own vocabulary is mapped onto these).
const (
	StatusRequiresAction = "requires_action" // waiting for the buyer on the hosted page
	StatusProcessing     = "processing"
	StatusSucceeded      = "succeeded"
	StatusFailed         = "failed"
)

// Final reports whether a status can no longer change.
func Final(status string) bool { return status == StatusSucceeded || status == StatusFailed }

// Test payment methods understood by the simulator in direct mode (and the
// card numbers for its hosted page).
const (
	MethodCardSucceeds          = "pm_card_visa"               // 4242 4242 4242 4242
	MethodCardDeclined          = "pm_card_declined"           // 4000 0000 0000 0002
	MethodCardInsufficientFunds = "pm_card_insufficient_funds" // 4000 0000 0000 9995
	MethodCardDelayedWebhook    = "pm_card_delayed_webhook"    // 4000 0000 0000 0077: succeeds, webhook sent late
)

// CreatePaymentRequest asks the PSP to create (and, with Confirm, charge) a
// payment. IdempotencyKey makes it safe to repeat: the same key returns the
// same payment and never charges twice.
type CreatePaymentRequest struct {
	IdempotencyKey    string
	AmountMinor       int64
	Currency          string
	MerchantReference string // paypipe's checkout id
	Description       string
	ReturnURL         string // hosted: where the PSP sends the buyer afterwards
	Confirm           bool   // direct: charge PaymentMethod now
	PaymentMethod     string
}

// Card is what the PSP reveals about the card: never the number.
type Card struct {
	Brand string `json:"brand"`
	Last4 string `json:"last4"`
}

// Payment is the PSP's view of one payment.
type Payment struct {
	ID                string    `json:"id"`
	Status            string    `json:"status"`
	AmountMinor       int64     `json:"amount_minor"`
	Currency          string    `json:"currency"`
	MerchantReference string    `json:"merchant_reference"`
	RedirectURL       string    `json:"redirect_url,omitempty"`
	FailureCode       string    `json:"failure_code,omitempty"`
	Card              *Card     `json:"card,omitempty"`
	Created           time.Time `json:"created"`
	Updated           time.Time `json:"updated"`
}

// ListParams pages through payments by creation time, oldest first.
type ListParams struct {
	CreatedAfter      time.Time
	MerchantReference string
	StartingAfter     string // a payment id from the previous page
	Limit             int    // 1..100
}

// Page is one page of a listing.
type Page struct {
	Payments []Payment `json:"payments"`
	HasMore  bool      `json:"has_more"`
}

// Client is the PSP as paypipe uses it. Every method takes a context whose
// deadline bounds the call; implementations add their own timeout too.
type Client interface {
	CreatePayment(ctx context.Context, req CreatePaymentRequest) (Payment, error)
	GetPayment(ctx context.Context, id string) (Payment, error)
	// FindByReference returns the payment created for a merchant reference,
	// or an *Error with Code "not_found": how a caller that lost a response
	// learns whether its create went through.
	FindByReference(ctx context.Context, merchantReference string) (Payment, error)
	ListPayments(ctx context.Context, p ListParams) (Page, error)
}

// ErrUnknownOutcome wraps every error after which the PSP may or may not have
// acted: timeouts, connection errors, 5xx. Retry with the same key or look up.
var ErrUnknownOutcome = errors.New("psp: outcome unknown")

// Error is a definite answer from the PSP that the request was not carried out.
type Error struct {
	HTTPStatus int
	Code       string // stable code, e.g. "card_declined", "idempotency_key_reused", "not_found"
	Message    string
	// RetryAfterDelay is the server's Retry-After (a 429's), 0 if none.
	RetryAfterDelay time.Duration
}

var (
	_ retry.RetryAfterer            = (*Error)(nil)
	_ interface{ Permanent() bool } = (*Error)(nil)
	_ retry.RetryAfterer            = (*unknownOutcome)(nil)
)

// RetryAfter implements retry.RetryAfterer: retry.Policy waits at least
// this long before the next attempt.
func (e *Error) RetryAfter() time.Duration { return e.RetryAfterDelay }

func (e *Error) Error() string {
	return fmt.Sprintf("psp: %d %s: %s", e.HTTPStatus, e.Code, e.Message)
}

// Permanent reports whether repeating the request cannot succeed (a 4xx other
// than 409/429). 409 and 429 are the PSP saying "not now". retry.Classify
// reads it.
func (e *Error) Permanent() bool {
	return e.HTTPStatus >= 400 && e.HTTPStatus < 500 && e.HTTPStatus != 409 && e.HTTPStatus != 429
}

// IsPermanent reports whether err is a PSP refusal that retrying cannot change.
func IsPermanent(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.Permanent()
}

// unknownOutcome is an ErrUnknownOutcome whose server asked, with
// Retry-After, to wait before the next try (a 503).
type unknownOutcome struct {
	err   error // wraps ErrUnknownOutcome
	after time.Duration
}

func (u *unknownOutcome) Error() string             { return u.err.Error() }
func (u *unknownOutcome) Unwrap() error             { return u.err }
func (u *unknownOutcome) RetryAfter() time.Duration { return u.after }

// IsNotFound reports whether err is the PSP saying the object does not exist.
func IsNotFound(err error) bool {
	var pe *Error
	return errors.As(err, &pe) && pe.HTTPStatus == 404
}
