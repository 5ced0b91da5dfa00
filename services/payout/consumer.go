package payout

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/outbox/retry"
)

// ErrInvalidEvent is wrapped by the consumers' errors for events they can
// never apply (malformed, or contradicting the payout): permanent, they go
// to the dead-letter queue for an operator.
var ErrInvalidEvent = retry.Permanent(errors.New("payout: invalid event"))

// Consumers returns the service's consumers: the balances projection
// (payout candidates) and the wallet's answers to payout requests. Run them
// on a Runner whose Store is Store, so each inbox row commits with its
// effect.
func (s *Service) Consumers() []outbox.ConsumerSpec {
	return []outbox.ConsumerSpec{
		{Name: contracts.PayoutBalancesConsumer, Stream: contracts.StreamWallet, Handler: s.handleBalance},
		{Name: contracts.PayoutReservationsConsumer, Stream: contracts.StreamWallet, Handler: s.handleReservation,
			// Woken only once the payout is created; polling is what
			// correctness relies on.
			AfterCommit: func(outbox.Delivery) { s.wakeSender(); s.wakeRelay() }},
	}
}

// handleBalance projects a seller's available balance. The highest wallet
// version wins, so a stale or repeated event changes nothing.
func (s *Service) handleBalance(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	if want := contracts.TypeOf(contracts.SubjectWalletBalance); d.Type != want {
		return fmt.Errorf("%w: message %s: type %q, want %q", ErrInvalidEvent, d.MsgID, d.Type, want)
	}
	var ev contracts.WalletBalanceChanged
	if err := json.Unmarshal(d.Payload, &ev); err != nil {
		return fmt.Errorf("%w: message %s: decode: %w", ErrInvalidEvent, d.MsgID, err)
	}
	if err := validIDs(ev.SellerID, ev.MerchantID, ev.Currency); err != nil || ev.Version < 1 {
		return fmt.Errorf("%w: message %s: balance of %q in %q version %d: %v", ErrInvalidEvent, d.MsgID, ev.SellerID, ev.Currency, ev.Version, err)
	}
	_, err := tx.Exec(ctx, `INSERT INTO payout.balances (seller_id, currency, merchant_id, available_minor, version)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (seller_id, currency) DO UPDATE
SET merchant_id = EXCLUDED.merchant_id, available_minor = EXCLUDED.available_minor, version = EXCLUDED.version, updated_at = now()
WHERE payout.balances.version < EXCLUDED.version`, ev.SellerID, ev.Currency, ev.MerchantID, ev.AvailableMinor, ev.Version)
	if err != nil {
		return fmt.Errorf("payout: project balance of %s %s: %w", ev.SellerID, ev.Currency, err)
	}
	return nil
}

func validIDs(seller, merchant, currency string) error {
	var errs []error
	if seller == "" || len(seller) > 255 {
		errs = append(errs, fmt.Errorf("seller id %q", seller))
	}
	if merchant == "" || len(merchant) > 255 {
		errs = append(errs, fmt.Errorf("merchant id %q", merchant))
	}
	if _, err := money.ParseCurrency(currency); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// handleReservation applies the wallet's answer to a payout request:
// reserved → created (the amount is the wallet's), rejected → canceled.
// Forward-only: an answer for a payout that has moved on is a repeat or
// stale, and changes nothing.
func (s *Service) handleReservation(ctx context.Context, tx pgx.Tx, d outbox.Delivery) error {
	var payoutID, seller, currency string
	var apply func(p *Payout) (change, error)
	switch d.Type {
	case contracts.TypeOf(contracts.SubjectWalletPayoutReserved):
		var ev contracts.PayoutReserved
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			return fmt.Errorf("%w: message %s: decode: %w", ErrInvalidEvent, d.MsgID, err)
		}
		payoutID, seller, currency = ev.PayoutID, ev.SellerID, ev.Currency
		apply = func(p *Payout) (change, error) {
			if err := money.ValidAmount(ev.AmountMinor); err != nil {
				return change{}, fmt.Errorf("%w: payout %s reserved: %w", ErrInvalidEvent, ev.PayoutID, err)
			}
			return change{to: contracts.PayoutStatusCreated, amount: ev.AmountMinor, cause: "wallet:" + d.MsgID.String()}, nil
		}
	case contracts.TypeOf(contracts.SubjectWalletPayoutRejected):
		var ev contracts.PayoutRejected
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			return fmt.Errorf("%w: message %s: decode: %w", ErrInvalidEvent, d.MsgID, err)
		}
		payoutID, seller, currency = ev.PayoutID, ev.SellerID, ev.Currency
		apply = func(p *Payout) (change, error) {
			reason := ev.Reason
			if reason == "" {
				reason = "nothing available"
			}
			return change{to: contracts.PayoutStatusCanceled, reason: reason, cause: "wallet:" + d.MsgID.String()}, nil
		}
	default:
		return fmt.Errorf("%w: message %s: unsupported type %q", ErrInvalidEvent, d.MsgID, d.Type)
	}
	id, err := uuid.Parse(payoutID)
	if err != nil {
		return fmt.Errorf("%w: message %s: payout id %q: %w", ErrInvalidEvent, d.MsgID, payoutID, err)
	}
	p, err := lockPayout(ctx, tx, id)
	if errors.Is(err, ErrNotFound) {
		// Every payout the wallet answers for was requested by this service
		// in the transaction that created its row: an unknown one is a
		// contract bug or a restored database, for an operator.
		return fmt.Errorf("%w: message %s: %w", ErrInvalidEvent, d.MsgID, err)
	}
	if err != nil {
		return err
	}
	if p.SellerID != seller || p.Currency != currency {
		return fmt.Errorf("%w: message %s: payout %s is %s %s, the wallet answered for %s %s",
			ErrInvalidEvent, d.MsgID, p.ID, p.SellerID, p.Currency, seller, currency)
	}
	c, err := apply(&p)
	if err != nil {
		return err
	}
	if p.Status != contracts.PayoutStatusRequested {
		if c.to == contracts.PayoutStatusCreated && p.Status != contracts.PayoutStatusCanceled && c.amount != p.AmountMinor {
			s.log.Error("the wallet reported another amount for a payout already created; ignored",
				"payout_id", p.ID, "amount", p.AmountMinor, "reported", c.amount, "msg_id", d.MsgID)
		}
		s.log.Info("wallet answer for a payout that moved on; ignored", "payout_id", p.ID, "status", p.Status, "type", d.Type)
		return nil
	}
	return s.advance(ctx, tx, &p, c)
}
