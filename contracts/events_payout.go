package contracts

import "time"

// The pay-out half of the money flow (DESIGN.md §1): fulfilment, refunds,
// payouts and reconciliation. Subjects are in events.go.
//
//	payment  ── payments.order.fulfilled ──▶ wallet (pending → available)
//	payment  ── payments.refund.created ──▶ executor ── PSP refund ──▶ payments.refund.reported ──▶ payment
//	payment  ── payments.refund.succeeded ──▶ ledger (reversal), wallet (debit)
//	payout   ── payouts.payout.requested ──▶ wallet (reserves the available balance under its row lock)
//	wallet   ── wallet.payout.reserved | rejected ──▶ payout
//	payout   ── payouts.payout.created ──▶ ledger (seller_payable → payout_in_transit)
//	payout   ── PSP payout API, webhooks ──▶ payouts.payout.sent | paid | failed | canceled
//	            paid   ──▶ ledger (payout_in_transit → bank)
//	            failed ──▶ ledger (payout_in_transit → seller_payable), wallet (paid_out → available)
//	reconciler ── recon.batch.settled ──▶ ledger (psp_receivable → bank, psp_fee_expense)
//	reconciler ── recon.charge.confirmed ──▶ payment (a charge the webhook never reported)

// OrderFulfilled is emitted by payment when the merchant reports a payment
// order delivered: the seller's funds for it move from pending to
// available. NetMinor is the order's net (amount − platform fee); the
// wallet moves what is still pending of it (net − refunds taken from
// pending before the fulfilment).
type OrderFulfilled struct {
	PaymentOrderID string    `json:"payment_order_id"`
	CheckoutID     string    `json:"checkout_id"`
	MerchantID     string    `json:"merchant_id"`
	SellerID       string    `json:"seller_id"`
	Currency       string    `json:"currency"`
	NetMinor       int64     `json:"net_minor"`
	FulfilledAt    time.Time `json:"fulfilled_at"`
}

// Refund statuses (payment's refund objects and the PSP's, normalised).
const (
	RefundStatusPending   = "pending"
	RefundStatusSucceeded = "succeeded"
	RefundStatusFailed    = "failed"
)

// RefundCreated is emitted by payment when a refund is accepted; executor
// sends it to the PSP with RefundID as the idempotency key. The split of
// the refund is computed once, here: FeeMinor is the platform fee given
// back, NetMinor (= AmountMinor − FeeMinor) is taken from the seller.
// Cumulative refunds of an order return its fee pro rata, half up, so a
// full refund in any number of parts returns exactly the order's fee.
type RefundCreated struct {
	RefundID       string    `json:"refund_id"`
	PaymentOrderID string    `json:"payment_order_id"`
	CheckoutID     string    `json:"checkout_id"`
	MerchantID     string    `json:"merchant_id"`
	SellerID       string    `json:"seller_id"`
	PSPPaymentID   string    `json:"psp_payment_id"`
	Currency       string    `json:"currency"`
	AmountMinor    int64     `json:"amount_minor"`
	FeeMinor       int64     `json:"fee_minor"`
	NetMinor       int64     `json:"net_minor"`
	Reason         string    `json:"reason,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
}

// RefundReported is emitted by executor with the PSP's answer to a refund
// (Status is a RefundStatus* constant). payment applies it forward-only.
type RefundReported struct {
	RefundID    string    `json:"refund_id"`
	MerchantID  string    `json:"merchant_id"`
	PSPRefundID string    `json:"psp_refund_id,omitempty"`
	Status      string    `json:"status"`
	AmountMinor int64     `json:"amount_minor"`
	Currency    string    `json:"currency"`
	FailureCode string    `json:"failure_code,omitempty"`
	ReportedAt  time.Time `json:"reported_at"`
}

// RefundSucceeded is emitted by payment when the PSP refunded the buyer:
// the ledger posts the reversal, the wallet debits the seller.
type RefundSucceeded struct {
	RefundID       string    `json:"refund_id"`
	PaymentOrderID string    `json:"payment_order_id"`
	CheckoutID     string    `json:"checkout_id"`
	MerchantID     string    `json:"merchant_id"`
	SellerID       string    `json:"seller_id"`
	PSPPaymentID   string    `json:"psp_payment_id"`
	PSPRefundID    string    `json:"psp_refund_id"`
	Currency       string    `json:"currency"`
	AmountMinor    int64     `json:"amount_minor"`
	FeeMinor       int64     `json:"fee_minor"`
	NetMinor       int64     `json:"net_minor"`
	SucceededAt    time.Time `json:"succeeded_at"`
}

// RefundFailed is emitted by payment when the PSP refused the refund:
// no money moved; the amount is refundable again.
type RefundFailed struct {
	RefundID       string    `json:"refund_id"`
	PaymentOrderID string    `json:"payment_order_id"`
	CheckoutID     string    `json:"checkout_id"`
	MerchantID     string    `json:"merchant_id"`
	SellerID       string    `json:"seller_id"`
	Currency       string    `json:"currency"`
	AmountMinor    int64     `json:"amount_minor"`
	FailureCode    string    `json:"failure_code"`
	FailedAt       time.Time `json:"failed_at"`
}

// Payout statuses. requested → created (funds reserved) → sent (the PSP
// accepted it) → paid | failed; requested → canceled when nothing was
// available. Forward-only.
const (
	PayoutStatusRequested = "requested"
	PayoutStatusCreated   = "created"
	PayoutStatusSent      = "sent"
	PayoutStatusPaid      = "paid"
	PayoutStatusFailed    = "failed"
	PayoutStatusCanceled  = "canceled"
)

// PayoutRequest is the payload of payouts.payout.requested, emitted by payout for each (seller, currency, period)
// of a payout run. PayoutID is a function of those three, so a run
// repeated for the same period requests the same payout. The wallet decides
// the amount: everything available when it takes the balance's lock.
type PayoutRequest struct {
	PayoutID    string    `json:"payout_id"`
	MerchantID  string    `json:"merchant_id"`
	SellerID    string    `json:"seller_id"`
	Currency    string    `json:"currency"`
	Period      string    `json:"period"`
	RequestedAt time.Time `json:"requested_at"`
}

// PayoutReserved is emitted by wallet when it moved AmountMinor (> 0) of
// the seller's available balance to paid_out for PayoutID.
type PayoutReserved struct {
	PayoutID    string    `json:"payout_id"`
	MerchantID  string    `json:"merchant_id"`
	SellerID    string    `json:"seller_id"`
	Currency    string    `json:"currency"`
	AmountMinor int64     `json:"amount_minor"`
	ReservedAt  time.Time `json:"reserved_at"`
}

// PayoutRejected is emitted by wallet when nothing is available to pay out
// (AvailableMinor ≤ 0, or below the minimum).
type PayoutRejected struct {
	PayoutID       string    `json:"payout_id"`
	MerchantID     string    `json:"merchant_id"`
	SellerID       string    `json:"seller_id"`
	Currency       string    `json:"currency"`
	Reason         string    `json:"reason"`
	AvailableMinor int64     `json:"available_minor"`
	RejectedAt     time.Time `json:"rejected_at"`
}

// PayoutChanged is the payload of every payouts.payout.created, .sent,
// .paid, .failed and .canceled event: the payout after the change. Version
// increases by one per change; projections keep the highest.
type PayoutChanged struct {
	PayoutID    string `json:"payout_id"`
	MerchantID  string `json:"merchant_id"`
	SellerID    string `json:"seller_id"`
	Currency    string `json:"currency"`
	Period      string `json:"period"`
	Status      string `json:"status"`
	AmountMinor int64  `json:"amount_minor"`
	// PSPPayoutID is set from sent on (and on failed when the PSP knew it).
	PSPPayoutID string    `json:"psp_payout_id,omitempty"`
	FailureCode string    `json:"failure_code,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	ChangedAt   time.Time `json:"changed_at"`
}

// BatchSettled is emitted by the reconciler for the matched lines of one
// chunk of a settlement file in one currency. The ledger posts:
//
//	Dr bank             charges − fees − refunds − refund fees (credit if negative)
//	Dr psp_fee_expense  fees
//	    Cr psp_receivable  charges − refunds (debit if negative)
//
// All amounts are ≥ 0 (refunds as a positive sum). Payout lines settle
// nothing here (payout_paid already credited bank); they are matched only.
type BatchSettled struct {
	BatchID           string    `json:"batch_id"`
	SettlementDate    string    `json:"settlement_date"`
	FileID            string    `json:"file_id"`
	Currency          string    `json:"currency"`
	Lines             int64     `json:"lines"`
	ChargesGrossMinor int64     `json:"charges_gross_minor"`
	RefundsGrossMinor int64     `json:"refunds_gross_minor"`
	FeesMinor         int64     `json:"fees_minor"`
	SettledAt         time.Time `json:"settled_at"`
}

// ChargeConfirmed is emitted by the reconciler when the settlement file
// shows a charge the ledger does not hold and the PSP confirmed it
// succeeded (the webhook never came, the resolver has not caught it yet).
// payment applies it like a PSP report.
type ChargeConfirmed struct {
	CheckoutID     string    `json:"checkout_id"`
	PSPPaymentID   string    `json:"psp_payment_id"`
	PSPStatus      string    `json:"psp_status"`
	AmountMinor    int64     `json:"amount_minor"`
	Currency       string    `json:"currency"`
	SettlementDate string    `json:"settlement_date"`
	ConfirmedAt    time.Time `json:"confirmed_at"`
}

// Mismatch queues: what happens next to a mismatch.
const (
	QueueAuto          = "auto"          // fixed or rechecked by paypipe itself
	QueueFinance       = "finance"       // needs a person: money differs
	QueueInvestigation = "investigation" // unclassifiable: nobody knows the line
)

// Mismatch classes. Each has one queue (MismatchQueue).
const (
	MismatchMissingCapture      = "missing_capture"       // auto: PSP charged, our books lack it; PSP confirmed, payment advanced
	MismatchSettlesLater        = "settles_later"         // auto: in our books, not in the file yet; carried over and rechecked
	MismatchMissingInSettlement = "missing_in_settlement" // finance: in our books, still not settled after the grace period
	MismatchAmount              = "amount_mismatch"       // finance: gross differs
	MismatchFee                 = "fee_mismatch"          // finance: the PSP's fee differs from the contract
	MismatchCurrency            = "currency_mismatch"     // finance: currency differs
	MismatchWalletDrift         = "wallet_ledger_drift"   // finance: a wallet differs from its ledger account
	MismatchUnknownReference    = "unknown_reference"     // investigation: neither the ledger nor the PSP knows the line
	MismatchDuplicateLine       = "duplicate_line"        // investigation: the line was settled before
	MismatchMalformedLine       = "malformed_line"        // investigation: the line cannot be read (net ≠ gross − fee, bad field)
)

// MismatchQueue returns the queue of a mismatch class ("" if unknown).
func MismatchQueue(class string) string {
	switch class {
	case MismatchMissingCapture, MismatchSettlesLater:
		return QueueAuto
	case MismatchMissingInSettlement, MismatchAmount, MismatchFee, MismatchCurrency, MismatchWalletDrift:
		return QueueFinance
	case MismatchUnknownReference, MismatchDuplicateLine, MismatchMalformedLine:
		return QueueInvestigation
	}
	return ""
}

// MismatchFound is emitted by the reconciler for every new mismatch.
type MismatchFound struct {
	MismatchID        string    `json:"mismatch_id"`
	RunID             string    `json:"run_id"`
	SettlementDate    string    `json:"settlement_date"`
	Class             string    `json:"class"`
	Queue             string    `json:"queue"`
	Reaction          string    `json:"reaction"`
	LineNo            int64     `json:"line_no,omitempty"`
	RecordType        string    `json:"record_type,omitempty"`
	PSPReference      string    `json:"psp_reference,omitempty"`
	MerchantReference string    `json:"merchant_reference,omitempty"`
	Currency          string    `json:"currency,omitempty"`
	FileAmountMinor   int64     `json:"file_amount_minor"`
	LedgerAmountMinor int64     `json:"ledger_amount_minor"`
	Detail            string    `json:"detail"`
	FoundAt           time.Time `json:"found_at"`
}

// MismatchResolved is emitted when a mismatch is closed, by paypipe (an
// auto mismatch whose line settled, whose capture arrived) or by a person
// (`paypipe recon queue resolve`).
type MismatchResolved struct {
	MismatchID string    `json:"mismatch_id"`
	Class      string    `json:"class"`
	Queue      string    `json:"queue"`
	Resolution string    `json:"resolution"`
	ResolvedBy string    `json:"resolved_by"`
	Note       string    `json:"note,omitempty"`
	ResolvedAt time.Time `json:"resolved_at"`
}

// CurrencyTotals sums a run's lines in one currency.
type CurrencyTotals struct {
	Currency           string `json:"currency"`
	Lines              int64  `json:"lines"`
	MatchedLines       int64  `json:"matched_lines"`
	FileNetMinor       int64  `json:"file_net_minor"`
	MatchedGrossMinor  int64  `json:"matched_gross_minor"`
	MismatchedAbsMinor int64  `json:"mismatched_abs_minor"`
}

// RunCompleted is emitted when a reconciliation run of a settlement date
// finished.
type RunCompleted struct {
	RunID          string           `json:"run_id"`
	SettlementDate string           `json:"settlement_date"`
	FileID         string           `json:"file_id"`
	Lines          int64            `json:"lines"`
	Matched        int64            `json:"matched"`
	Mismatches     map[string]int64 `json:"mismatches"`
	Totals         []CurrencyTotals `json:"totals"`
	CompletedAt    time.Time        `json:"completed_at"`
}
