package wallet_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/wallet"
)

type harness struct {
	t    *testing.T
	pool *pgxpool.Pool
	spec outbox.ConsumerSpec
	logs *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }
func (s *syncBuffer) Reset()         { s.mu.Lock(); defer s.mu.Unlock(); s.b.Reset() }

func newHarness(t *testing.T) *harness {
	pool, _ := testenv.Migrated(t, wallet.Schema())
	logs := &syncBuffer{}
	specs := wallet.Consumers(wallet.WithLogger(slog.New(slog.NewJSONHandler(logs, nil))))
	if len(specs) != 4 || specs[0].Name != contracts.WalletPaymentsConsumer || specs[0].Stream != contracts.StreamPayments {
		t.Fatalf("specs %+v", specs)
	}
	return &harness{t: t, pool: pool, spec: specs[0], logs: logs}
}

// deliver runs the handler in the inbox transaction under a fresh ce-id, as
// the runner does for a message it has not seen.
func (h *harness) deliver(ev contracts.OrderSucceeded) error {
	return h.deliverTyped(ev, contracts.TypeOf(contracts.SubjectOrderSucceeded))
}

func (h *harness) deliverTyped(ev contracts.OrderSucceeded, typ string) error {
	b, err := json.Marshal(ev)
	if err != nil {
		h.t.Fatal(err)
	}
	d := outbox.Delivery{MsgID: uuid.New(), Subject: contracts.SubjectOrderSucceeded, Type: typ, Payload: b}
	_, err = wallet.Store.Handle(context.Background(), h.pool, h.spec.Name, d.MsgID, d.Subject, func(ctx context.Context, tx pgx.Tx) error {
		return h.spec.Handler(ctx, tx, d)
	})
	return err
}

func (h *harness) count(sql string, args ...any) int {
	h.t.Helper()
	var n int
	if err := h.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func (h *harness) events() []contracts.WalletBalanceChanged {
	h.t.Helper()
	rows, err := h.pool.Query(context.Background(), `SELECT headers, payload FROM wallet.outbox ORDER BY id`)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []contracts.WalletBalanceChanged
	var headers map[string]string
	var payload []byte
	if _, err := pgx.ForEachRow(rows, []any{&headers, &payload}, func() error {
		var ev contracts.WalletBalanceChanged
		if err := json.Unmarshal(payload, &ev); err != nil {
			return err
		}
		if headers[outbox.HeaderType] != contracts.TypeOf(contracts.SubjectWalletBalance) || headers[outbox.HeaderSource] != contracts.SourceWallet ||
			headers[outbox.HeaderAggregateVersion] != itoa(ev.Version) || headers[outbox.HeaderAggregateID] != ev.SellerID+"/"+ev.Currency {
			h.t.Errorf("event headers %v for %+v", headers, ev)
		}
		out = append(out, ev)
		return nil
	}); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func order(merchant, seller, cur string, amount, fee int64) contracts.OrderSucceeded {
	return contracts.OrderSucceeded{PaymentOrderID: uuid.NewString(), CheckoutID: uuid.NewString(), MerchantID: merchant,
		SellerID: seller, Currency: cur, AmountMinor: amount, FeeMinor: fee, NetMinor: amount - fee}
}

func TestCreditPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHarness(t)
	merchant, seller := uuid.NewString(), uuid.NewString()

	o1 := order(merchant, seller, "KWD", 12_345, 358)
	if err := h.deliver(o1); err != nil {
		t.Fatal(err)
	}
	if err := h.deliver(o1); err != nil { // the same order re-sent under a new ce-id
		t.Fatalf("re-send: %v", err)
	}
	o2 := order(merchant, seller, "KWD", 1_000, 0)
	if err := h.deliver(o2); err != nil {
		t.Fatal(err)
	}
	o3 := order(merchant, seller, "JPY", 5_000, 150)
	if err := h.deliver(o3); err != nil {
		t.Fatal(err)
	}

	bs, err := wallet.Balances(ctx, h.pool, seller)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 2 || bs[0].Currency != "JPY" || bs[1].Currency != "KWD" {
		t.Fatalf("balances %+v", bs)
	}
	if b := bs[1]; b.PendingMinor != 12_345-358+1_000 || b.AvailableMinor != 0 || b.PaidOutMinor != 0 || b.Version != 2 || b.MerchantID != merchant || b.UpdatedAt.IsZero() {
		t.Fatalf("KWD balance %+v", b)
	}
	if b := bs[0]; b.PendingMinor != 4_850 || b.Version != 1 {
		t.Fatalf("JPY balance %+v", b)
	}
	if n := h.count(`SELECT count(*) FROM wallet.changes WHERE cause = $1`, contracts.CauseOrderSucceeded); n != 3 {
		t.Fatalf("%d changes, want 3", n)
	}
	if n := h.count(`SELECT count(*) FROM wallet.changes WHERE ref = $1 AND delta_pending = $2 AND delta_available = 0 AND delta_paid_out = 0 AND version = 1`,
		o1.PaymentOrderID, o1.NetMinor); n != 1 {
		t.Fatalf("change of %s not recorded as expected", o1.PaymentOrderID)
	}
	evs := h.events()
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3: %+v", len(evs), evs)
	}
	want := contracts.WalletBalanceChanged{SellerID: seller, MerchantID: merchant, Currency: "KWD", Cause: contracts.CauseOrderSucceeded,
		PaymentOrderID: o2.PaymentOrderID, Ref: o2.PaymentOrderID, DeltaPendingMinor: 1_000, PendingMinor: 12_987, Version: 2}
	got := evs[1]
	got.ChangedAt = want.ChangedAt
	if got != want || evs[1].ChangedAt.IsZero() {
		t.Fatalf("event %+v, want %+v", evs[1], want)
	}

	// Conflicts: the same order with other figures, or a seller claimed by
	// another merchant. Nothing changes.
	h.logs.Reset()
	changed := o1
	changed.FeeMinor, changed.NetMinor = 359, o1.NetMinor-1
	if err := h.deliver(changed); !errors.Is(err, wallet.ErrConflict) {
		t.Fatalf("same order, other net: %v; want ErrConflict", err)
	}
	moved := o1
	moved.SellerID = uuid.NewString()
	if err := h.deliver(moved); !errors.Is(err, wallet.ErrConflict) {
		t.Fatalf("same order, other seller: %v; want ErrConflict", err)
	}
	other := order(uuid.NewString(), seller, "KWD", 100, 0)
	if err := h.deliver(other); !errors.Is(err, wallet.ErrConflict) {
		t.Fatalf("seller of another merchant: %v; want ErrConflict", err)
	}
	if !strings.Contains(h.logs.String(), `"level":"ERROR"`) {
		t.Errorf("conflicts not logged: %s", h.logs.String())
	}

	// Invalid events: refused, logged, nothing written.
	for name, f := range map[string]func(*contracts.OrderSucceeded){
		"fee+net≠amount": func(e *contracts.OrderSucceeded) { e.NetMinor++ },
		"zero amount":    func(e *contracts.OrderSucceeded) { e.AmountMinor, e.FeeMinor, e.NetMinor = 0, 0, 0 },
		"negative fee":   func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = -1, e.AmountMinor+1 },
		"currency":       func(e *contracts.OrderSucceeded) { e.Currency = "kwd" },
	} {
		h.logs.Reset()
		ev := order(merchant, seller, "KWD", 700, 21)
		f(&ev)
		if err := h.deliver(ev); !errors.Is(err, wallet.ErrInvalidEvent) {
			t.Errorf("%s: %v; want ErrInvalidEvent", name, err)
		}
		if !strings.Contains(h.logs.String(), `"level":"ERROR"`) {
			t.Errorf("%s: not logged: %s", name, h.logs.String())
		}
	}
	if err := h.deliverTyped(order(merchant, seller, "KWD", 700, 21), "payments.order.succeeded.v9"); !errors.Is(err, wallet.ErrInvalidEvent) {
		t.Errorf("unknown version: %v; want ErrInvalidEvent", err)
	}
	if n := h.count(`SELECT (SELECT count(*) FROM wallet.changes) + (SELECT count(*) FROM wallet.outbox) + (SELECT count(*) FROM wallet.balances)`); n != 3+3+2 {
		t.Fatalf("rejected events wrote rows: %d rows, want 8", n)
	}
	if n := h.count(`SELECT count(*) FROM wallet.inbox`); n != 4 { // o1 twice, o2, o3
		t.Fatalf("%d inbox rows, want 4", n)
	}

	all, err := wallet.All(ctx, h.pool)
	if err != nil || len(all) != 2 || all[0] != bs[0] || all[1] != bs[1] {
		t.Fatalf("All = %+v, %v; want %+v", all, err, bs)
	}
}

// TestDatabaseGuards: the history is append-only and the balance bounds hold
// in the database, whatever Go does.
func TestDatabaseGuards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	h := newHarness(t)
	if err := h.deliver(order(uuid.NewString(), uuid.NewString(), "USD", 1000, 30)); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE wallet.changes SET delta_pending = delta_pending + 1`,
		`DELETE FROM wallet.changes`,
		`TRUNCATE wallet.changes`,
	} {
		_, err := h.pool.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23000" || !strings.Contains(pe.Message, "append-only") {
			t.Errorf("%s: %v; want the append-only trigger", sql, err)
		}
	}
	for _, sql := range []string{
		`UPDATE wallet.balances SET pending_minor = -1`,
		`UPDATE wallet.balances SET paid_out_minor = -1`,
	} {
		_, err := h.pool.Exec(ctx, sql)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != "23514" {
			t.Errorf("%s: %v; want a check violation", sql, err)
		}
	}
	// available may go negative (a refund after a pay-out).
	if _, err := h.pool.Exec(ctx, `UPDATE wallet.balances SET available_minor = -5`); err != nil {
		t.Errorf("negative available refused: %v", err)
	}
}

// TestConcurrentCredits: many orders of one seller, each delivered twice
// under different ce-ids, all at once. Every order counts exactly once and
// the versions are 1..n with no gap or repeat.
func TestConcurrentCredits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	merchant, seller := uuid.NewString(), uuid.NewString()
	const n = 24
	orders := make([]contracts.OrderSucceeded, n)
	var sum int64
	for i := range orders {
		orders[i] = order(merchant, seller, "EUR", int64(1000+i*37), int64(i))
		sum += orders[i].NetMinor
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for i := range 2 * n {
		wg.Go(func() { errs <- h.deliver(orders[i%n]) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	bs, err := wallet.Balances(context.Background(), h.pool, seller)
	if err != nil || len(bs) != 1 || bs[0].PendingMinor != sum || bs[0].Version != n {
		t.Fatalf("balances %+v, %v; want pending %d version %d", bs, err, sum, n)
	}
	evs := h.events()
	if len(evs) != n {
		t.Fatalf("%d events, want %d", len(evs), n)
	}
	sort.Slice(evs, func(i, j int) bool { return evs[i].Version < evs[j].Version })
	var running int64
	for i, ev := range evs {
		running += ev.DeltaPendingMinor
		if ev.Version != int64(i+1) || ev.PendingMinor != running {
			t.Fatalf("event %d: version %d pending %d; want version %d pending %d", i, ev.Version, ev.PendingMinor, i+1, running)
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
