package payment_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/payment"
)

// TestNewConsumersOverJetStream runs the payment service's consumers on a
// real Runner over embedded JetStream: refund reports, payout changes out
// of order, and a message redelivered under a new Nats-Msg-Id with the same
// ce-id (a DLQ replay) which the inbox must skip.
func TestNewConsumersOverJetStream(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e := newAPIEnv(t, payment.Config{})
	nc := testenv.Connect(t, testenv.NATS(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := contracts.Declare(ctx, js, contracts.StreamOptions{}, contracts.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	runner, err := outbox.NewRunner(outbox.RunnerConfig{Store: payment.Store, Pool: e.pool, Conn: nc,
		NakDelay: func(uint64) time.Duration { return 20 * time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	for _, spec := range e.svc.Consumers() {
		if err := runner.Add(spec); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := runner.Run(runCtx); err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	t.Cleanup(func() { stop(); wg.Wait() })

	publish := func(subject string, ceID uuid.UUID, payload any) {
		t.Helper()
		b, err := json.Marshal(payload)
		if err != nil {
			t.Fatal(err)
		}
		if err := contracts.ValidateEvent(contracts.TypeOf(subject), b); err != nil {
			t.Fatalf("test event %s does not validate: %v", subject, err)
		}
		msg := &nats.Msg{Subject: subject, Data: b, Header: nats.Header{}}
		msg.Header.Set(outbox.HeaderID, ceID.String())
		msg.Header.Set(outbox.HeaderType, contracts.TypeOf(subject))
		msg.Header.Set(outbox.HeaderSource, "test")
		msg.Header.Set(outbox.HeaderSpecVersion, "1.0")
		msg.Header.Set(outbox.HeaderTime, time.Now().UTC().Format(time.RFC3339Nano))
		msg.Header.Set(nats.MsgIdHdr, uuid.NewString())
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	processed := func(consumer string) int {
		return e.count(`SELECT count(*) FROM payment.inbox WHERE consumer = $1`, consumer)
	}

	co := e.paidCheckout(e.a, "USD", false, 3000)
	rf := decode[payment.Refund](t, e.post(e.a.key, "/v1/payment_orders/"+co.Orders[0].ID.String()+"/refunds", "r1",
		`{"amount_minor":1000}`), http.StatusCreated)
	report := contracts.RefundReported{RefundID: rf.ID.String(), MerchantID: e.a.id.String(), PSPRefundID: "re_1",
		Status: contracts.RefundStatusSucceeded, AmountMinor: 1000, Currency: "USD", ReportedAt: time.Now().UTC()}
	reportID := uuid.New()
	publish(contracts.SubjectRefundReported, reportID, report)
	publish(contracts.SubjectRefundReported, reportID, report) // replayed: same ce-id
	testenv.Eventually(t, 20*time.Second, "the refund to succeed", func() (bool, error) {
		g := decode[payment.Refund](t, e.get(e.a.key, "/v1/refunds/"+rf.ID.String()), http.StatusOK)
		return g.Status == contracts.RefundStatusSucceeded, nil
	})

	seller := co.Orders[0].SellerID
	payoutID, created := uuid.New(), time.Now().UTC().Truncate(time.Microsecond)
	paid := payoutEvent(e.a, seller, payoutID, contracts.PayoutStatusPaid, 3, created)
	publish(contracts.SubjectPayoutPaid, uuid.New(), paid)
	publish(contracts.SubjectPayoutCreated, uuid.New(), payoutEvent(e.a, seller, payoutID, contracts.PayoutStatusCreated, 1, created))
	testenv.Eventually(t, 20*time.Second, "both payout events to be processed", func() (bool, error) {
		return processed(contracts.PaymentPayoutsConsumer) == 2, nil
	})
	if p := decode[payment.Payout](t, e.get(e.a.key, "/v1/payouts/"+payoutID.String()), http.StatusOK); p.Status != contracts.PayoutStatusPaid {
		t.Fatalf("payout regressed to %s", p.Status)
	}
	// The replay was skipped by the inbox: one effect, one event.
	testenv.Eventually(t, 20*time.Second, "the refund report stream to be drained", func() (bool, error) {
		info, err := js.Consumer(ctx, contracts.StreamPayments, contracts.PaymentRefundReportsConsumer)
		if err != nil {
			return false, err
		}
		ci, err := info.Info(ctx)
		if err != nil {
			return false, err
		}
		return ci.NumPending == 0 && ci.NumAckPending == 0, nil
	})
	if n := processed(contracts.PaymentRefundReportsConsumer); n != 1 {
		t.Fatalf("%d refund reports in the inbox, want 1", n)
	}
	if n := len(e.events(contracts.SubjectRefundSucceeded)); n != 1 {
		t.Fatalf("%d refund.succeeded events, want 1", n)
	}
	e.validateOutbox()
}
