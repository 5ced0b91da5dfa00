package payment_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/uuid"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/payment"
	"github.com/paypipe/paypipe/services/psp"
)

// deliver hands one event to one of the service's consumers through its
// inbox and fails the test if the handler fails.
func (e *apiEnv) deliver(consumer, subject string, payload any) uuid.UUID {
	e.t.Helper()
	id := uuid.New()
	if _, err := e.svc.Deliver(context.Background(), consumer, subject, id, payload); err != nil {
		e.t.Fatalf("deliver %s to %s: %v", subject, consumer, err)
	}
	return id
}

// paidCheckout creates a checkout of m with one new seller per amount and
// drives it to succeeded through executor's report; with complete, the
// ledger and the wallet then record every order, which completes them.
func (e *apiEnv) paidCheckout(m tenant, currency string, complete bool, amounts ...int64) payment.Checkout {
	e.t.Helper()
	orders := map[uuid.UUID]int64{}
	for i, a := range amounts {
		orders[e.seller(m, fmt.Sprintf("seller %d", i))] = a
	}
	co := decode[payment.Checkout](e.t, e.post(m.key, "/v1/checkouts", uuid.NewString(), checkoutBody(currency, orders)), http.StatusCreated)
	e.deliver(contracts.PaymentRegistrationConsumer, contracts.SubjectCheckoutResolved, contracts.CheckoutRegistered{
		CheckoutID: co.ID.String(), MerchantID: m.id.String(), PSPPaymentID: "pay_" + co.ID.String(),
		PSPStatus: psp.StatusSucceeded, AmountMinor: co.AmountMinor, Currency: co.Currency,
	})
	if complete {
		for _, o := range co.Orders {
			e.deliver(contracts.CompletionLedgerConsumer, contracts.SubjectLedgerEntryPosted, contracts.LedgerEntryPosted{
				EntryID: uuid.NewString(), Kind: contracts.EntryOrderCaptured, MerchantID: m.id.String(),
				PaymentOrderID: o.ID.String(), Currency: o.Currency,
			})
			e.deliver(contracts.CompletionWalletConsumer, contracts.SubjectWalletBalance, contracts.WalletBalanceChanged{
				SellerID: o.SellerID.String(), MerchantID: m.id.String(), Currency: o.Currency, Cause: contracts.CauseOrderSucceeded,
				PaymentOrderID: o.ID.String(), DeltaPendingMinor: o.NetMinor, PendingMinor: o.NetMinor, Version: 1,
			})
		}
	}
	return decode[payment.Checkout](e.t, e.get(m.key, "/v1/checkouts/"+co.ID.String()), http.StatusOK)
}

type outboxRow struct {
	subject, aggregate, ceType string
	version                    string
	payload                    []byte
}

// events returns payment's outbox rows of subject, oldest first.
func (e *apiEnv) events(subject string) []outboxRow {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT subject, aggregate_id, headers, payload FROM payment.outbox
WHERE subject = $1 ORDER BY id`, subject)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var h map[string]string
		if err := rows.Scan(&r.subject, &r.aggregate, &h, &r.payload); err != nil {
			e.t.Fatal(err)
		}
		r.ceType, r.version = h[outbox.HeaderType], h[outbox.HeaderAggregateVersion]
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// validateOutbox checks every event payment wrote against its schema.
func (e *apiEnv) validateOutbox() {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT subject, headers, payload FROM payment.outbox ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var subject string
		var h map[string]string
		var payload []byte
		if err := rows.Scan(&subject, &h, &payload); err != nil {
			e.t.Fatal(err)
		}
		typ := contracts.TypeOf(subject)
		if err := contracts.ValidateEvent(typ, payload); err != nil {
			if errors.Is(err, contracts.ErrUnknownEventType) {
				// TODO: drop once contracts/schemas has every type.
				e.t.Logf("no schema for %s yet; not validated", typ)
				continue
			}
			e.t.Errorf("%s %s: %v", typ, payload, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		e.t.Fatal(err)
	}
	if n == 0 {
		e.t.Error("no event validated")
	}
}
