package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/ledger"
)

// TestConsumerRejectsWhatItCannotPost runs the consumer's handler in the inbox
// transaction, as the runner does: invalid events and conflicting re-sends
// fail (and are logged) without writing anything; re-sends are no-ops.
func TestConsumerRejectsWhatItCannotPost(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, ledger.Schema())
	var logs bytes.Buffer
	specs := ledger.Consumers(ledger.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	if len(specs) != 4 || specs[0].Name != contracts.LedgerPaymentsConsumer || specs[0].Stream != contracts.StreamPayments {
		t.Fatalf("specs %+v", specs)
	}
	spec := specs[0]
	deliver := func(ev contracts.OrderSucceeded, typ string) error {
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		d := outbox.Delivery{MsgID: uuid.New(), Subject: contracts.SubjectOrderSucceeded, Type: typ, Payload: b}
		_, err = ledger.Store.Handle(ctx, pool, spec.Name, d.MsgID, d.Subject, func(ctx context.Context, tx pgx.Tx) error {
			return spec.Handler(ctx, tx, d)
		})
		return err
	}
	typ := contracts.TypeOf(contracts.SubjectOrderSucceeded)
	good := contracts.OrderSucceeded{PaymentOrderID: uuid.NewString(), CheckoutID: uuid.NewString(), MerchantID: uuid.NewString(),
		SellerID: uuid.NewString(), Currency: "EUR", AmountMinor: 2500, FeeMinor: 73, NetMinor: 2427}

	for name, tc := range map[string]struct {
		ev  func(contracts.OrderSucceeded) contracts.OrderSucceeded
		typ string
	}{
		"fee+net≠amount": {func(e contracts.OrderSucceeded) contracts.OrderSucceeded { e.FeeMinor = 74; return e }, typ},
		"zero amount": {func(e contracts.OrderSucceeded) contracts.OrderSucceeded {
			e.AmountMinor, e.FeeMinor, e.NetMinor = 0, 0, 0
			return e
		}, typ},
		"negative net": {func(e contracts.OrderSucceeded) contracts.OrderSucceeded {
			e.FeeMinor, e.NetMinor = 2600, -100
			return e
		}, typ},
		"unknown version": {func(e contracts.OrderSucceeded) contracts.OrderSucceeded { return e }, contracts.SubjectOrderSucceeded + ".v2"},
	} {
		logs.Reset()
		if err := deliver(tc.ev(good), tc.typ); !errors.Is(err, ledger.ErrInvalidEvent) {
			t.Errorf("%s: %v; want ErrInvalidEvent", name, err)
		}
		if !strings.Contains(logs.String(), `"level":"ERROR"`) || !strings.Contains(logs.String(), "rejected payments.order.succeeded") {
			t.Errorf("%s: not logged as an error: %s", name, logs.String())
		}
	}
	if n := count(t, pool, `SELECT (SELECT count(*) FROM ledger.journal_entries) + (SELECT count(*) FROM ledger.inbox) + (SELECT count(*) FROM ledger.outbox)`); n != 0 {
		t.Fatalf("rejected events left %d rows", n)
	}

	if err := deliver(good, typ); err != nil {
		t.Fatal(err)
	}
	if err := deliver(good, typ); err != nil { // re-sent under a new ce-id
		t.Fatalf("re-send: %v", err)
	}
	changed := good
	changed.AmountMinor, changed.NetMinor = 2600, 2527
	logs.Reset()
	if err := deliver(changed, typ); !errors.Is(err, ledger.ErrExternalIDConflict) {
		t.Fatalf("re-send with other figures: %v; want ErrExternalIDConflict", err)
	}
	if !strings.Contains(logs.String(), `"level":"ERROR"`) {
		t.Errorf("conflict not logged: %s", logs.String())
	}
	if n := count(t, pool, `SELECT count(*) FROM ledger.journal_entries`); n != 1 {
		t.Fatalf("%d entries, want 1", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM ledger.inbox`); n != 2 {
		t.Fatalf("%d inbox rows, want 2 (the original and the re-send)", n)
	}
	if n := count(t, pool, `SELECT count(*) FROM ledger.outbox`); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
	payable, err := ledger.SellerPayable(ctx, pool, good.SellerID)
	if err != nil || payable["EUR"] != 2427 || len(payable) != 1 {
		t.Fatalf("payable %v, %v", payable, err)
	}
}
