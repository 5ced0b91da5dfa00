package contracts

import "time"

// Subjects and versioned event types (ce-type = subject + ".v1"). Payloads
// are JSON; each has a JSON Schema in contracts/schemas/<type>.json and an
// entry in contracts/asyncapi.yaml.
const (
	SubjectCheckoutCreated    = "payments.checkout.created"
	SubjectCheckoutRegistered = "payments.checkout.registered"
	SubjectCheckoutRejected   = "payments.checkout.rejected"
	SubjectCheckoutResolved   = "payments.checkout.resolved"
	SubjectCheckoutCompleted  = "payments.checkout.completed"
	SubjectOrderSucceeded     = "payments.order.succeeded"
	SubjectOrderFailed        = "payments.order.failed"
	SubjectOrderCompleted     = "payments.order.completed"
	SubjectLedgerEntryPosted  = "ledger.entry.posted"
	SubjectWalletBalance      = "wallet.balance.changed"

	// Pay-out side (issue 5). See events_payout.go for the payloads.
	SubjectOrderFulfilled  = "payments.order.fulfilled"
	SubjectRefundCreated   = "payments.refund.created"
	SubjectRefundReported  = "payments.refund.reported"
	SubjectRefundSucceeded = "payments.refund.succeeded"
	SubjectRefundFailed    = "payments.refund.failed"

	SubjectPayoutRequested = "payouts.payout.requested"
	SubjectPayoutCreated   = "payouts.payout.created"
	SubjectPayoutSent      = "payouts.payout.sent"
	SubjectPayoutPaid      = "payouts.payout.paid"
	SubjectPayoutFailed    = "payouts.payout.failed"
	SubjectPayoutCanceled  = "payouts.payout.canceled"

	SubjectWalletPayoutReserved = "wallet.payout.reserved"
	SubjectWalletPayoutRejected = "wallet.payout.rejected"

	SubjectReconBatchSettled     = "recon.batch.settled"
	SubjectReconChargeConfirmed  = "recon.charge.confirmed"
	SubjectReconMismatchFound    = "recon.mismatch.found"
	SubjectReconMismatchResolved = "recon.mismatch.resolved"
	SubjectReconRunCompleted     = "recon.run.completed"
)

// TypeOf is the ce-type of the current version of a subject's event.
func TypeOf(subject string) string { return subject + ".v1" }

// Sources (ce-source).
const (
	SourcePayment  = "paypipe/payment"
	SourceExecutor = "paypipe/executor"
	SourceLedger   = "paypipe/ledger"
	SourceWallet   = "paypipe/wallet"
	SourcePayout   = "paypipe/payout"
	SourceRecon    = "paypipe/reconciler"
)

// Checkout modes.
const (
	ModeHosted = "hosted" // the buyer pays on the PSP's hosted payment page
	ModeDirect = "direct" // server-to-server confirmation with a payment method token
)

// CheckoutCreated is emitted by payment when a checkout is accepted. The fee
// of each order is computed once, here, from the merchant's rate; ledger and
// wallet use these figures and never recompute them.
type CheckoutCreated struct {
	CheckoutID    string         `json:"checkout_id"`
	MerchantID    string         `json:"merchant_id"`
	BuyerID       string         `json:"buyer_id"`
	Currency      string         `json:"currency"`
	AmountMinor   int64          `json:"amount_minor"`
	Mode          string         `json:"mode"`
	PaymentMethod string         `json:"payment_method,omitempty"`
	ReturnURL     string         `json:"return_url,omitempty"`
	Orders        []OrderSummary `json:"orders"`
	CreatedAt     time.Time      `json:"created_at"`
}

// OrderSummary is one seller's part of a checkout.
type OrderSummary struct {
	PaymentOrderID string `json:"payment_order_id"`
	SellerID       string `json:"seller_id"`
	AmountMinor    int64  `json:"amount_minor"`
	FeeMinor       int64  `json:"fee_minor"`
	NetMinor       int64  `json:"net_minor"`
}

// PSP payment statuses as paypipe sees them (normalised by the psp client).
const (
	PSPStatusRequiresAction = "requires_action" // hosted page waiting for the buyer
	PSPStatusProcessing     = "processing"
	PSPStatusSucceeded      = "succeeded"
	PSPStatusFailed         = "failed"
)

// CheckoutRegistered is emitted by executor once the PSP knows the payment.
// For hosted checkouts RedirectURL is the hosted payment page; for direct
// ones PSPStatus may already be final. It is a report of the PSP's answer,
// applied by payment through the same forward-only state machine as webhooks.
type CheckoutRegistered struct {
	CheckoutID   string    `json:"checkout_id"`
	MerchantID   string    `json:"merchant_id"`
	PSPPaymentID string    `json:"psp_payment_id"`
	PSPStatus    string    `json:"psp_status"`
	AmountMinor  int64     `json:"amount_minor"`
	Currency     string    `json:"currency"`
	RedirectURL  string    `json:"redirect_url,omitempty"`
	FailureCode  string    `json:"failure_code,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
}

// CheckoutResolved is emitted by executor's resolver when polling the PSP
// found a payment's final status (the webhook may have been lost). payment
// applies it exactly like a webhook; whichever arrives first wins, the
// other is a no-op.
type CheckoutResolved CheckoutRegistered

// CheckoutRejected is emitted by executor when the PSP refused to create the
// payment (a permanent 4xx): nothing was charged.
type CheckoutRejected struct {
	CheckoutID string    `json:"checkout_id"`
	MerchantID string    `json:"merchant_id"`
	Code       string    `json:"code"`
	Message    string    `json:"message"`
	RejectedAt time.Time `json:"rejected_at"`
}

// OrderSucceeded is emitted by payment when the PSP confirmed the payment:
// one per payment order (per seller) of the checkout.
type OrderSucceeded struct {
	PaymentOrderID string `json:"payment_order_id"`
	CheckoutID     string `json:"checkout_id"`
	MerchantID     string `json:"merchant_id"`
	SellerID       string `json:"seller_id"`
	Currency       string `json:"currency"`
	AmountMinor    int64  `json:"amount_minor"`
	FeeMinor       int64  `json:"fee_minor"`
	NetMinor       int64  `json:"net_minor"`
	PSPPaymentID   string `json:"psp_payment_id"`
	// CheckoutAmountMinor is what the PSP charged for the whole checkout
	// (Σ of its orders): the gross the settlement file shows for
	// PSPPaymentID. 0 in events written before it existed.
	CheckoutAmountMinor int64     `json:"checkout_amount_minor,omitempty"`
	SucceededAt         time.Time `json:"succeeded_at"`
}

// OrderFailed is emitted by payment when the payment failed or was rejected.
type OrderFailed struct {
	PaymentOrderID string    `json:"payment_order_id"`
	CheckoutID     string    `json:"checkout_id"`
	MerchantID     string    `json:"merchant_id"`
	SellerID       string    `json:"seller_id"`
	Currency       string    `json:"currency"`
	AmountMinor    int64     `json:"amount_minor"`
	FailureCode    string    `json:"failure_code"`
	FailedAt       time.Time `json:"failed_at"`
}

// OrderCompleted is emitted by payment once ledger and wallet both recorded
// the order.
type OrderCompleted struct {
	PaymentOrderID string    `json:"payment_order_id"`
	CheckoutID     string    `json:"checkout_id"`
	MerchantID     string    `json:"merchant_id"`
	SellerID       string    `json:"seller_id"`
	CompletedAt    time.Time `json:"completed_at"`
}

// CheckoutCompleted is emitted by payment when every order of a checkout is completed.
type CheckoutCompleted struct {
	CheckoutID  string    `json:"checkout_id"`
	MerchantID  string    `json:"merchant_id"`
	CompletedAt time.Time `json:"completed_at"`
}

// Posting directions.
const (
	Debit  = "debit"
	Credit = "credit"
)

// Posting is one line of a journal entry.
type Posting struct {
	Account     string `json:"account"`
	Direction   string `json:"direction"`
	AmountMinor int64  `json:"amount_minor"`
}

// Journal entry kinds.
const (
	EntryOrderCaptured   = "order_captured"   // Dr psp_receivable / Cr seller_payable, platform_fee_revenue
	EntryOrderRefunded   = "order_refunded"   // Dr seller_payable, platform_fee_revenue / Cr psp_receivable
	EntryPayoutInitiated = "payout_initiated" // Dr seller_payable / Cr payout_in_transit
	EntryPayoutPaid      = "payout_paid"      // Dr payout_in_transit / Cr bank
	EntryPayoutReturned  = "payout_returned"  // Dr payout_in_transit / Cr seller_payable (a failed payout)
	EntrySettlement      = "settlement"       // Dr bank, psp_fee_expense / Cr psp_receivable (a settled batch)
)

// LedgerEntryPosted is emitted by ledger for every journal entry. ExternalID
// is the business effect's unique id (e.g. "order_captured:<payment order id>").
type LedgerEntryPosted struct {
	EntryID        string    `json:"entry_id"`
	ExternalID     string    `json:"external_id"`
	Kind           string    `json:"kind"`
	MerchantID     string    `json:"merchant_id"`
	PaymentOrderID string    `json:"payment_order_id,omitempty"`
	Currency       string    `json:"currency"`
	Postings       []Posting `json:"postings"`
	// Reference is the id the PSP knows the money movement by on paypipe's
	// side (its "merchant reference"): the checkout id of a capture, the
	// refund id of a refund, the payout id of a payout. PSPReference is the
	// PSP's own id of it (pay_…, re_…, po_…). PSPAmountMinor is the gross
	// the PSP moved under PSPReference (for a capture: the whole checkout,
	// which may span several orders and entries). The reconciler matches
	// settlement lines by them. Empty for entries the PSP never sees.
	Reference      string    `json:"reference,omitempty"`
	PSPReference   string    `json:"psp_reference,omitempty"`
	PSPAmountMinor int64     `json:"psp_amount_minor,omitempty"`
	PostedAt       time.Time `json:"posted_at"`
}

// Wallet change causes.
const (
	CauseOrderSucceeded = "order_succeeded"  // + pending
	CauseOrderFulfilled = "order_fulfilled"  // pending → available
	CauseRefund         = "refund_succeeded" // − pending (order not fulfilled) or − available
	CausePayoutReserved = "payout_reserved"  // available → paid_out
	CausePayoutReturned = "payout_returned"  // paid_out → available (the payout failed)
)

// WalletBalanceChanged is emitted by wallet after every change of a seller's
// balance in one currency, with the balance after the change.
type WalletBalanceChanged struct {
	SellerID       string `json:"seller_id"`
	MerchantID     string `json:"merchant_id"`
	Currency       string `json:"currency"`
	Cause          string `json:"cause"`
	PaymentOrderID string `json:"payment_order_id,omitempty"`
	// Ref is the id of the business effect within its cause: a payment
	// order id, a refund id or a payout id.
	Ref                 string `json:"ref,omitempty"`
	DeltaPendingMinor   int64  `json:"delta_pending_minor"`
	DeltaAvailableMinor int64  `json:"delta_available_minor"`
	DeltaPaidOutMinor   int64  `json:"delta_paid_out_minor"`
	PendingMinor        int64  `json:"pending_minor"`
	AvailableMinor      int64  `json:"available_minor"`
	PaidOutMinor        int64  `json:"paid_out_minor"`
	// Version increases by one with every change of this (seller, currency)
	// balance: projections keep the highest version they have seen.
	Version   int64     `json:"version"`
	ChangedAt time.Time `json:"changed_at"`
}

// Ledger account names. Seller accounts are per seller and currency is a
// property of every posting, not of the account name.
const (
	AccountPSPReceivable       = "psp_receivable"
	AccountPlatformFeeRevenue  = "platform_fee_revenue"
	AccountSellerPayablePrefix = "seller_payable:"
	AccountPSPFeeExpense       = "psp_fee_expense"   // expense: the PSP's processing fees
	AccountBank                = "bank"              // asset: settled funds (the PSP balance and the bank account)
	AccountPayoutInTransit     = "payout_in_transit" // liability: sent to a seller, not yet confirmed paid
)

// SellerPayable is the ledger account of a seller's funds held by the platform.
func SellerPayable(sellerID string) string { return AccountSellerPayablePrefix + sellerID }
