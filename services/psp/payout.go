package psp

import (
	"context"
	"io"
	"time"
)

// Refunds, payouts and settlement reports: the PSP as the pay-out side uses
// it. The same three-valued outcome rules as Client apply: a definite
// refusal is an *Error, anything else that is not a success wraps
// ErrUnknownOutcome and is retried with the same idempotency key or looked
// up by reference.

// Normalised refund statuses.
const (
	RefundPending   = "pending"
	RefundSucceeded = "succeeded"
	RefundFailed    = "failed"
)

// CreateRefundRequest refunds AmountMinor of a succeeded payment.
// IdempotencyKey and MerchantReference are paypipe's refund id.
type CreateRefundRequest struct {
	IdempotencyKey    string
	PaymentID         string // the PSP's payment id (pay_…)
	AmountMinor       int64
	Currency          string
	MerchantReference string
	Reason            string
}

// Refund is the PSP's view of one refund.
type Refund struct {
	ID                string    `json:"id"` // re_…
	PaymentID         string    `json:"payment_id"`
	Status            string    `json:"status"`
	AmountMinor       int64     `json:"amount_minor"`
	Currency          string    `json:"currency"`
	MerchantReference string    `json:"merchant_reference"`
	FailureCode       string    `json:"failure_code,omitempty"`
	Created           time.Time `json:"created"`
	Updated           time.Time `json:"updated"`
}

// RefundClient refunds payments. FindRefundByReference returns the refund
// created for a merchant reference, or an *Error with HTTP status 404.
type RefundClient interface {
	CreateRefund(ctx context.Context, req CreateRefundRequest) (Refund, error)
	GetRefund(ctx context.Context, id string) (Refund, error)
	FindRefundByReference(ctx context.Context, merchantReference string) (Refund, error)
}

// Normalised payout statuses. pending: accepted, not yet sent to the bank;
// in_transit: sent; paid and failed are final and announced by webhook.
const (
	PayoutPending   = "pending"
	PayoutInTransit = "in_transit"
	PayoutPaid      = "paid"
	PayoutFailed    = "failed"
)

// FinalPayout reports whether a payout status can no longer change.
func FinalPayout(status string) bool { return status == PayoutPaid || status == PayoutFailed }

// CreatePayoutRequest sends AmountMinor from the platform's PSP balance to a
// seller's bank account. IdempotencyKey and MerchantReference are paypipe's
// payout id.
type CreatePayoutRequest struct {
	IdempotencyKey    string
	AmountMinor       int64
	Currency          string
	MerchantReference string
	// Destination is the seller's payout destination as the PSP knows it
	// (paypipe sends the seller id; a real adapter maps it to a bank account).
	Destination string
	Description string
}

// Payout is the PSP's view of one payout.
type Payout struct {
	ID                string    `json:"id"` // po_…
	Status            string    `json:"status"`
	AmountMinor       int64     `json:"amount_minor"`
	Currency          string    `json:"currency"`
	MerchantReference string    `json:"merchant_reference"`
	Destination       string    `json:"destination"`
	FailureCode       string    `json:"failure_code,omitempty"`
	Created           time.Time `json:"created"`
	Updated           time.Time `json:"updated"`
}

// PayoutClient sends payouts. FindPayoutByReference returns the payout
// created for a merchant reference, or an *Error with HTTP status 404.
type PayoutClient interface {
	CreatePayout(ctx context.Context, req CreatePayoutRequest) (Payout, error)
	GetPayout(ctx context.Context, id string) (Payout, error)
	FindPayoutByReference(ctx context.Context, merchantReference string) (Payout, error)
}

// Payout webhook event types. The PSP sends them to the payout webhook
// endpoint, signed like payment webhooks (SignatureHeader).
const (
	EventPayoutPaid   = "payout.paid"
	EventPayoutFailed = "payout.failed"
)

// PayoutEvent is a payout webhook's body.
type PayoutEvent struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Created time.Time `json:"created"`
	Data    Payout    `json:"data"`
}

// SettlementClient downloads the PSP's settlement report of one day (UTC) as
// CSV in the format of docs/settlement-file.md. The caller streams and
// closes the body; a day with no report yet is an *Error with status 404.
type SettlementClient interface {
	SettlementReport(ctx context.Context, date time.Time) (io.ReadCloser, error)
}

// Full is everything paypipe asks of a PSP.
type Full interface {
	Client
	RefundClient
	PayoutClient
	SettlementClient
}
