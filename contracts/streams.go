package contracts

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream names.
const (
	StreamPayments = "PAYMENTS"
	StreamLedger   = "LEDGER"
	StreamWallet   = "WALLET"
	StreamPayouts  = "PAYOUTS"
	StreamRecon    = "RECON"
	StreamDLQ      = "DLQ"
	// StreamAdvisories keeps JetStream's MAX_DELIVERIES and MSG_TERMINATED
	// advisories. The server publishes advisories as plain NATS messages,
	// dropped when nobody listens; captured here they wait for the DLQ
	// mover (outbox/dlq) however long it is down, so a message that died
	// outside a consumer's own dead-lettering is found too.
	StreamAdvisories = "ADVISORIES"
)

// Subject prefixes of the advisories StreamAdvisories captures; the server
// appends .<stream>.<consumer>.
const (
	AdvisoryMaxDeliveries = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"
	AdvisoryTerminated    = "$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED"
)

// StreamOptions are the knobs operators may turn; every field has a safe default.
type StreamOptions struct {
	// Duplicates is the Nats-Msg-Id deduplication window. It must cover the
	// longest relay outage after which a re-send should still be caught by
	// the broker (the inbox catches the rest). Each id in the window costs
	// roughly 100 B of RAM per replica: 30 min at 1,000 msg/s ≈ 200 MB.
	// Default 30 min.
	Duplicates time.Duration
	// MaxAge bounds how long events stay in the pipeline streams: default 7 days.
	MaxAge time.Duration
	// DLQMaxAge bounds the dead-letter stream and the advisories stream:
	// default 30 days.
	DLQMaxAge time.Duration
	// MaxMsgs bounds each stream's message count: default 100 million.
	MaxMsgs int64
	// Replicas: 1 on a single server, 3 on a cluster. Default 1.
	Replicas int
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Duplicates <= 0 {
		o.Duplicates = 30 * time.Minute
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 7 * 24 * time.Hour
	}
	if o.DLQMaxAge <= 0 {
		o.DLQMaxAge = 30 * 24 * time.Hour
	}
	if o.MaxMsgs <= 0 {
		o.MaxMsgs = 100_000_000
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return o
}

// streamSubjects maps each stream to the subject prefix it captures.
var streamSubjects = []struct{ name, prefix string }{
	{StreamPayments, "payments"},
	{StreamLedger, "ledger"},
	{StreamWallet, "wallet"},
	{StreamPayouts, "payouts"},
	{StreamRecon, "recon"},
	{StreamDLQ, "dlq"},
}

// Streams returns the configuration of every stream. All are file-backed
// limits streams (events stay for replay and new consumers after they are
// acked) with an explicit duplicate window. The event streams and DLQ
// deduplicate by Nats-Msg-Id and accept atomic batches from the relay;
// ADVISORIES is written by the server only.
func Streams(o StreamOptions) []jetstream.StreamConfig {
	o = o.withDefaults()
	out := make([]jetstream.StreamConfig, 0, len(streamSubjects)+1)
	for _, s := range streamSubjects {
		maxAge := o.MaxAge
		if s.name == StreamDLQ {
			maxAge = o.DLQMaxAge
		}
		out = append(out, jetstream.StreamConfig{
			Name:               s.name,
			Subjects:           []string{s.prefix + ".>"},
			Storage:            jetstream.FileStorage,
			Retention:          jetstream.LimitsPolicy,
			Discard:            jetstream.DiscardOld,
			MaxAge:             maxAge,
			MaxMsgs:            o.MaxMsgs,
			MaxBytes:           -1,
			Duplicates:         min(o.Duplicates, maxAge),
			Replicas:           o.Replicas,
			AllowAtomicPublish: true,
			AllowDirect:        true,
		})
	}
	return append(out, jetstream.StreamConfig{
		Name:        StreamAdvisories,
		Description: "MAX_DELIVERIES and MSG_TERMINATED advisories, for the DLQ mover",
		Subjects:    []string{AdvisoryMaxDeliveries + ".>", AdvisoryTerminated + ".>"},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		// As long as the DLQ: an advisory the mover could not handle yet
		// is the only trace of its message.
		MaxAge:     o.DLQMaxAge,
		MaxMsgs:    o.MaxMsgs,
		MaxBytes:   -1,
		Duplicates: min(o.Duplicates, o.DLQMaxAge),
		Replicas:   o.Replicas,
	})
}

// StreamOf returns the event stream (or DLQ) that captures subject, or "".
func StreamOf(subject string) string {
	for _, s := range streamSubjects {
		if strings.HasPrefix(subject, s.prefix+".") {
			return s.name
		}
	}
	return ""
}

// Consumer is a durable pull consumer declared up front.
type Consumer struct {
	Stream string
	Config jetstream.ConsumerConfig
}

// ConsumerOptions are the consumer knobs; every field has a safe default.
type ConsumerOptions struct {
	// AckWait is how long a delivered message may stay unacknowledged before
	// the server redelivers it: default 30s, well above a handler's p99.
	AckWait time.Duration
	// MaxDeliver bounds deliveries of one message: default 10.
	MaxDeliver int
	// MaxAckPending bounds unacknowledged messages per consumer: default 1000.
	MaxAckPending int
}

func (o ConsumerOptions) withDefaults() ConsumerOptions {
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.MaxDeliver <= 0 {
		o.MaxDeliver = 10
	}
	if o.MaxAckPending <= 0 {
		o.MaxAckPending = 1000
	}
	return o
}

// DurableConsumer builds the configuration every paypipe consumer uses:
// durable, pull, explicit acks, delivered from the start of the stream.
func DurableConsumer(stream, name, description string, filters []string, o ConsumerOptions) Consumer {
	o = o.withDefaults()
	return Consumer{Stream: stream, Config: jetstream.ConsumerConfig{
		Durable:        name,
		Description:    description,
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        o.AckWait,
		MaxDeliver:     o.MaxDeliver,
		MaxAckPending:  o.MaxAckPending,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		ReplayPolicy:   jetstream.ReplayInstantPolicy,
	}}
}

// Durable consumer names. Each is also the consumer's inbox key, so a name
// must never be reused for a different purpose.
const (
	ExecutorCheckoutsConsumer   = "executor-checkouts"
	PaymentRegistrationConsumer = "payment-registrations"
	LedgerPaymentsConsumer      = "ledger-payments"
	WalletPaymentsConsumer      = "wallet-payments"
	CompletionLedgerConsumer    = "payment-completion-ledger"
	CompletionWalletConsumer    = "payment-completion-wallet"

	// Pay-out and reconciliation (issue 5).
	WalletFulfilmentsConsumer    = "wallet-fulfilments"
	WalletRefundsConsumer        = "wallet-refunds"
	WalletPayoutsConsumer        = "wallet-payouts"
	ExecutorRefundsConsumer      = "executor-refunds"
	PaymentRefundReportsConsumer = "payment-refund-reports"
	PaymentPayoutsConsumer       = "payment-payouts"
	PaymentReconConsumer         = "payment-recon"
	LedgerRefundsConsumer        = "ledger-refunds"
	LedgerPayoutsConsumer        = "ledger-payouts"
	LedgerSettlementsConsumer    = "ledger-settlements"
	PayoutBalancesConsumer       = "payout-balances"
	PayoutReservationsConsumer   = "payout-reservations"
	ReconLedgerConsumer          = "recon-ledger"

	// DLQMoverConsumer reads StreamAdvisories (outbox/dlq's Mover).
	DLQMoverConsumer = "dlq-mover"
)

// DLQMover is the DLQ mover's consumer on StreamAdvisories: every advisory,
// from the start, explicit acks, and no MaxDeliver. Giving up on an
// advisory would lose the only pointer to a dead message (and the server's
// MAX_DELIVERIES about this consumer is one the mover skips), so the bounds
// are the mover's capped retry delay and the stream's MaxAge.
func DLQMover(o ConsumerOptions) Consumer {
	o = o.withDefaults()
	return Consumer{Stream: StreamAdvisories, Config: jetstream.ConsumerConfig{
		Durable:       DLQMoverConsumer,
		Description:   "dlq mover: copies messages that died by MaxDeliver or a foreign Term into the DLQ",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.AckWait,
		MaxDeliver:    -1,
		MaxAckPending: o.MaxAckPending,
		DeliverPolicy: jetstream.DeliverAllPolicy,
		ReplayPolicy:  jetstream.ReplayInstantPolicy,
	}}
}

// Consumers returns every durable consumer paypipe declares.
func Consumers(o ConsumerOptions) []Consumer {
	return []Consumer{
		DurableConsumer(StreamPayments, ExecutorCheckoutsConsumer, "executor: registers or charges new checkouts at the PSP",
			[]string{SubjectCheckoutCreated}, o),
		DurableConsumer(StreamPayments, PaymentRegistrationConsumer, "payment: applies the PSP's answer reported by executor",
			[]string{SubjectCheckoutRegistered, SubjectCheckoutRejected, SubjectCheckoutResolved}, o),
		DurableConsumer(StreamPayments, LedgerPaymentsConsumer, "ledger: posts captured payment orders",
			[]string{SubjectOrderSucceeded}, o),
		DurableConsumer(StreamPayments, WalletPaymentsConsumer, "wallet: credits sellers' pending balances",
			[]string{SubjectOrderSucceeded}, o),
		DurableConsumer(StreamLedger, CompletionLedgerConsumer, "payment: marks orders recorded by the ledger",
			[]string{SubjectLedgerEntryPosted}, o),
		DurableConsumer(StreamWallet, CompletionWalletConsumer, "payment: marks orders recorded by the wallet",
			[]string{SubjectWalletBalance}, o),
		DurableConsumer(StreamPayments, WalletFulfilmentsConsumer, "wallet: moves fulfilled orders' funds from pending to available",
			[]string{SubjectOrderFulfilled}, o),
		DurableConsumer(StreamPayments, WalletRefundsConsumer, "wallet: debits sellers for succeeded refunds",
			[]string{SubjectRefundSucceeded}, o),
		DurableConsumer(StreamPayouts, WalletPayoutsConsumer, "wallet: reserves available funds for requested payouts, returns failed ones",
			[]string{SubjectPayoutRequested, SubjectPayoutFailed}, o),
		DurableConsumer(StreamPayments, ExecutorRefundsConsumer, "executor: sends refunds to the PSP",
			[]string{SubjectRefundCreated}, o),
		DurableConsumer(StreamPayments, PaymentRefundReportsConsumer, "payment: applies the PSP's answer to refunds",
			[]string{SubjectRefundReported}, o),
		DurableConsumer(StreamPayouts, PaymentPayoutsConsumer, "payment: projects payouts for GET /v1/payouts",
			[]string{SubjectPayoutCreated, SubjectPayoutSent, SubjectPayoutPaid, SubjectPayoutFailed, SubjectPayoutCanceled}, o),
		DurableConsumer(StreamRecon, PaymentReconConsumer, "payment: applies charges the reconciler confirmed with the PSP",
			[]string{SubjectReconChargeConfirmed}, o),
		DurableConsumer(StreamPayments, LedgerRefundsConsumer, "ledger: posts refund reversals",
			[]string{SubjectRefundSucceeded}, o),
		DurableConsumer(StreamPayouts, LedgerPayoutsConsumer, "ledger: posts payouts initiated, paid and returned",
			[]string{SubjectPayoutCreated, SubjectPayoutPaid, SubjectPayoutFailed}, o),
		DurableConsumer(StreamRecon, LedgerSettlementsConsumer, "ledger: posts settled batches",
			[]string{SubjectReconBatchSettled}, o),
		DurableConsumer(StreamWallet, PayoutBalancesConsumer, "payout: projects available balances to pick payout candidates",
			[]string{SubjectWalletBalance}, o),
		DurableConsumer(StreamWallet, PayoutReservationsConsumer, "payout: learns the amount the wallet reserved, or that nothing was",
			[]string{SubjectWalletPayoutReserved, SubjectWalletPayoutRejected}, o),
		DurableConsumer(StreamLedger, ReconLedgerConsumer, "reconciler: projects what the ledger expects the PSP to settle",
			[]string{SubjectLedgerEntryPosted}, o),
		DLQMover(o),
	}
}

// Declare creates or updates every stream and consumer. It is idempotent and
// safe to run from many replicas at start-up.
func Declare(ctx context.Context, js jetstream.JetStream, so StreamOptions, co ConsumerOptions) error {
	var errs []error
	for _, cfg := range Streams(so) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			errs = append(errs, fmt.Errorf("contracts: stream %s: %w", cfg.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	for _, c := range Consumers(co) {
		if _, err := js.CreateOrUpdateConsumer(ctx, c.Stream, c.Config); err != nil {
			errs = append(errs, fmt.Errorf("contracts: consumer %s/%s: %w", c.Stream, c.Config.Durable, err))
		}
	}
	return errors.Join(errs...)
}
