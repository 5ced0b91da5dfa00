package ledger_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/internal/testenv"
	"github.com/paypipe/paypipe/outbox"
	"github.com/paypipe/paypipe/services/ledger"
)

func line(account string, t ledger.AccountType, dir string, amount int64) ledger.Line {
	return ledger.Line{Account: account, Type: t, Direction: dir, AmountMinor: amount}
}

func capture(ext, cur string, amount, fee int64) ledger.Entry {
	return ledger.Entry{
		ExternalID: ext, Kind: contracts.EntryOrderCaptured, MerchantID: "m-1", PaymentOrderID: strings.TrimPrefix(ext, "order_captured:"),
		Currency: cur,
		Lines: []ledger.Line{
			line(contracts.AccountPSPReceivable, ledger.Asset, contracts.Debit, amount),
			line(contracts.SellerPayable("s-1"), ledger.Liability, contracts.Credit, amount-fee),
			line(contracts.AccountPlatformFeeRevenue, ledger.Revenue, contracts.Credit, fee),
		},
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := capture("x:1", "USD", 1000, 30).Validate(); err != nil {
		t.Fatal(err)
	}
	mod := func(f func(*ledger.Entry)) ledger.Entry {
		e := capture("x:1", "USD", 1000, 30)
		e.Lines = append([]ledger.Line(nil), e.Lines...)
		f(&e)
		return e
	}
	for _, tc := range []struct {
		name string
		e    ledger.Entry
		want string
	}{
		{"unbalanced", mod(func(e *ledger.Entry) { e.Lines[2].AmountMinor = 31 }), "debits 1000 <> credits 1001"},
		{"one line", mod(func(e *ledger.Entry) { e.Lines = e.Lines[:1] }), "1 lines"},
		{"zero amount", mod(func(e *ledger.Entry) { e.Lines[2].AmountMinor = 0; e.Lines[1].AmountMinor = 1000 }), "must be positive"},
		{"negative amount", mod(func(e *ledger.Entry) { e.Lines[2].AmountMinor = -30; e.Lines[1].AmountMinor = 1030 }), "must be positive"},
		{"direction", mod(func(e *ledger.Entry) { e.Lines[0].Direction = "DEBIT" }), "direction"},
		{"account type", mod(func(e *ledger.Entry) { e.Lines[0].Type = "equity" }), "account type"},
		{"no account", mod(func(e *ledger.Entry) { e.Lines[0].Account = "" }), "account is required"},
		{"currency case", mod(func(e *ledger.Entry) { e.Currency = "usd" }), "unknown currency"},
		{"currency unknown", mod(func(e *ledger.Entry) { e.Currency = "XXX" }), "unknown currency"},
		{"no external id", mod(func(e *ledger.Entry) { e.ExternalID = "" }), "external_id is required"},
		{"control char", mod(func(e *ledger.Entry) { e.MerchantID = "m\n1" }), "invalid characters"},
		{"no kind", mod(func(e *ledger.Entry) { e.Kind = "" }), "kind is required"},
		{"overflow", mod(func(e *ledger.Entry) {
			e.Lines = []ledger.Line{
				line("a", ledger.Asset, contracts.Debit, math.MaxInt64),
				line("a", ledger.Asset, contracts.Debit, 2),
				line("b", ledger.Liability, contracts.Credit, 1),
			}
		}), "overflow"},
	} {
		err := tc.e.Validate()
		if !errors.Is(err, ledger.ErrInvalidEntry) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v; want ErrInvalidEntry mentioning %q", tc.name, err, tc.want)
		}
	}
}

func TestOrderCaptured(t *testing.T) {
	t.Parallel()
	po, m, s9 := uuid.NewString(), uuid.NewString(), uuid.NewString()
	ev := contracts.OrderSucceeded{PaymentOrderID: po, CheckoutID: uuid.NewString(), MerchantID: m, SellerID: s9, Currency: "KWD",
		AmountMinor: 10_005, FeeMinor: 301, NetMinor: 9_704}
	e, err := ledger.OrderCaptured(ev)
	if err != nil {
		t.Fatal(err)
	}
	want := []ledger.Line{
		line(contracts.AccountPSPReceivable, ledger.Asset, contracts.Debit, 10_005),
		line("seller_payable:"+s9, ledger.Liability, contracts.Credit, 9_704),
		line(contracts.AccountPlatformFeeRevenue, ledger.Revenue, contracts.Credit, 301),
	}
	if e.ExternalID != "order_captured:"+po || e.Kind != contracts.EntryOrderCaptured || e.Currency != "KWD" ||
		e.MerchantID != m || e.PaymentOrderID != po || !equalLines(e.Lines, want) {
		t.Fatalf("entry %+v", e)
	}
	// A zero fee is left out, not posted as a zero line.
	ev.FeeMinor, ev.NetMinor = 0, 10_005
	if e, err = ledger.OrderCaptured(ev); err != nil || len(e.Lines) != 2 || e.Lines[1].AmountMinor != 10_005 || e.Validate() != nil {
		t.Fatalf("zero fee: %+v, %v", e, err)
	}
	// A 100% fee leaves the seller line out.
	ev.FeeMinor, ev.NetMinor = 10_005, 0
	if e, err = ledger.OrderCaptured(ev); err != nil || len(e.Lines) != 2 || e.Lines[1].Account != contracts.AccountPlatformFeeRevenue {
		t.Fatalf("zero net: %+v, %v", e, err)
	}

	base := contracts.OrderSucceeded{PaymentOrderID: po, CheckoutID: uuid.NewString(), MerchantID: m, SellerID: s9, Currency: "USD",
		AmountMinor: 1000, FeeMinor: 30, NetMinor: 970}
	for _, tc := range []struct {
		name string
		f    func(*contracts.OrderSucceeded)
	}{
		{"fee+net<amount", func(e *contracts.OrderSucceeded) { e.NetMinor = 969 }},
		{"fee+net>amount", func(e *contracts.OrderSucceeded) { e.FeeMinor = 31 }},
		{"zero amount", func(e *contracts.OrderSucceeded) { e.AmountMinor, e.FeeMinor, e.NetMinor = 0, 0, 0 }},
		{"negative fee", func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = -30, 1030 }},
		{"negative net", func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = 1030, -30 }},
		{"overflowing sum", func(e *contracts.OrderSucceeded) { e.FeeMinor, e.NetMinor = math.MaxInt64, math.MaxInt64 }},
		{"too large", func(e *contracts.OrderSucceeded) { e.AmountMinor, e.FeeMinor, e.NetMinor = 1e12, 0, 1e12 }},
		{"currency", func(e *contracts.OrderSucceeded) { e.Currency = "ABC" }},
		{"no seller", func(e *contracts.OrderSucceeded) { e.SellerID = "" }},
		{"no order", func(e *contracts.OrderSucceeded) { e.PaymentOrderID = "" }},
		{"id not a UUID", func(e *contracts.OrderSucceeded) { e.SellerID = "s-1" }},
		{"upper-case UUID", func(e *contracts.OrderSucceeded) { e.SellerID = strings.ToUpper(e.SellerID) }},
	} {
		ev := base
		tc.f(&ev)
		if _, err := ledger.OrderCaptured(ev); !errors.Is(err, ledger.ErrInvalidEvent) {
			t.Errorf("%s: %v; want ErrInvalidEvent", tc.name, err)
		}
	}
}

func equalLines(a, b []ledger.Line) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func post(t *testing.T, pool *pgxpool.Pool, e ledger.Entry) (bool, error) {
	t.Helper()
	ctx := context.Background()
	var posted bool
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		var err error
		posted, err = ledger.Post(ctx, tx, e)
		return err
	})
	return posted, err
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestPostIsIdempotentByExternalID(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, ledger.Schema())

	e := capture("order_captured:po-1", "JPY", 1200, 36)
	e.SourceMsgID = uuid.New()
	posted, err := post(t, pool, e)
	if err != nil || !posted {
		t.Fatalf("first post: %v, %v", posted, err)
	}

	// The entry, its postings, its balances and its event.
	var entryID uuid.UUID
	var kind, merchant, cur string
	var src uuid.UUID
	if err := pool.QueryRow(ctx, `SELECT id, kind, merchant_id, currency, source_msg_id FROM ledger.journal_entries WHERE external_id = $1`,
		e.ExternalID).Scan(&entryID, &kind, &merchant, &cur, &src); err != nil {
		t.Fatal(err)
	}
	if entryID != ledger.EntryID(e.ExternalID) || kind != e.Kind || merchant != "m-1" || cur != "JPY" || src != e.SourceMsgID {
		t.Fatalf("entry row: %s %s %s %s %s", entryID, kind, merchant, cur, src)
	}
	if n := count(t, pool, `SELECT count(*) FROM ledger.postings WHERE entry_id = $1`, entryID); n != 3 {
		t.Fatalf("%d postings, want 3", n)
	}
	wantBalances := map[string]int64{contracts.AccountPSPReceivable: 1200, "seller_payable:s-1": 1164, contracts.AccountPlatformFeeRevenue: 36}
	checkBalances(t, pool, "JPY", wantBalances, 1)
	var subject string
	var headers map[string]string
	var payload []byte
	if err := pool.QueryRow(ctx, `SELECT subject, headers, payload FROM ledger.outbox`).Scan(&subject, &headers, &payload); err != nil {
		t.Fatal(err)
	}
	var ev contracts.LedgerEntryPosted
	if err := json.Unmarshal(payload, &ev); err != nil {
		t.Fatal(err)
	}
	if subject != contracts.SubjectLedgerEntryPosted || headers[outbox.HeaderType] != contracts.TypeOf(contracts.SubjectLedgerEntryPosted) ||
		headers[outbox.HeaderSource] != contracts.SourceLedger || headers[outbox.HeaderAggregateID] != entryID.String() ||
		ev.EntryID != entryID.String() || ev.ExternalID != e.ExternalID || ev.PaymentOrderID != "po-1" || ev.Currency != "JPY" ||
		len(ev.Postings) != 3 || ev.Postings[1] != (contracts.Posting{Account: "seller_payable:s-1", Direction: contracts.Credit, AmountMinor: 1164}) ||
		ev.PostedAt.IsZero() {
		t.Fatalf("event %s %v %+v", subject, headers, ev)
	}

	// The same effect again (say, re-sent under a new message id): no-op.
	again := e
	again.SourceMsgID = uuid.New()
	again.PostedAt = time.Now().Add(time.Hour)
	if posted, err := post(t, pool, again); err != nil || posted {
		t.Fatalf("identical re-post: posted=%v, %v; want false, nil", posted, err)
	}

	// Any difference is a conflict, and changes nothing.
	for name, f := range map[string]func(*ledger.Entry){
		"amount":   func(e *ledger.Entry) { e.Lines[0].AmountMinor, e.Lines[1].AmountMinor = 1300, 1264 },
		"account":  func(e *ledger.Entry) { e.Lines[1].Account = "seller_payable:s-2" },
		"merchant": func(e *ledger.Entry) { e.MerchantID = "m-2" },
		"currency": func(e *ledger.Entry) { e.Currency = "KRW" },
		"order":    func(e *ledger.Entry) { e.PaymentOrderID = "po-2" },
		"lines": func(e *ledger.Entry) {
			e.Lines = []ledger.Line{e.Lines[0], line("seller_payable:s-1", ledger.Liability, contracts.Credit, 1200)}
		},
	} {
		c := e
		c.Lines = append([]ledger.Line(nil), e.Lines...)
		f(&c)
		if posted, err := post(t, pool, c); !errors.Is(err, ledger.ErrExternalIDConflict) || posted {
			t.Errorf("%s differs: posted=%v, %v; want ErrExternalIDConflict", name, posted, err)
		}
	}
	checkBalances(t, pool, "JPY", wantBalances, 1)
	if n := count(t, pool, `SELECT (SELECT count(*) FROM ledger.journal_entries) + (SELECT count(*) FROM ledger.outbox)`); n != 2 {
		t.Fatalf("entries+events = %d after replays, want 2", n)
	}

	// A second entry adds to the same balances; an account cannot change type.
	if posted, err := post(t, pool, capture("order_captured:po-2", "JPY", 500, 0)); !errors.Is(err, ledger.ErrInvalidEntry) || posted {
		t.Fatalf("zero fee line posted: %v %v", posted, err) // the caller must leave zero lines out
	}
	e2 := capture("order_captured:po-2", "JPY", 500, 15)
	if posted, err := post(t, pool, e2); err != nil || !posted {
		t.Fatal(posted, err)
	}
	checkBalances(t, pool, "JPY", map[string]int64{contracts.AccountPSPReceivable: 1700, "seller_payable:s-1": 1649, contracts.AccountPlatformFeeRevenue: 51}, 2)
	bad := capture("order_captured:po-3", "JPY", 500, 15)
	bad.Lines[0].Type = ledger.Liability
	if _, err := post(t, pool, bad); !errors.Is(err, ledger.ErrAccountType) {
		t.Fatalf("psp_receivable as a liability: %v; want ErrAccountType", err)
	}
	payable, err := ledger.SellerPayable(ctx, pool, "s-1")
	if err != nil || len(payable) != 1 || payable["JPY"] != 1649 {
		t.Fatalf("SellerPayable = %v, %v", payable, err)
	}
	if v, err := ledger.CheckBalanced(ctx, pool); err != nil || len(v) != 0 {
		t.Fatalf("CheckBalanced = %+v, %v", v, err)
	}
}

func checkBalances(t *testing.T, pool *pgxpool.Pool, cur string, want map[string]int64, version int64) {
	t.Helper()
	bs, err := ledger.Balances(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, b := range bs {
		if b.Currency != cur {
			continue
		}
		got[b.Account] = b.Net()
		if b.Version != version {
			t.Errorf("%s %s version %d, want %d", b.Account, cur, b.Version, version)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("balances %v, want %v", got, want)
	}
	for a, w := range want {
		if got[a] != w {
			t.Errorf("%s %s: %d, want %d", a, cur, got[a], w)
		}
	}
}

// TestConcurrentPostsOfOneEffect: many transactions post the same external
// id at once; exactly one posts, the others wait for it and report a no-op.
func TestConcurrentPostsOfOneEffect(t *testing.T) {
	t.Parallel()
	pool, _ := testenv.Migrated(t, ledger.Schema())
	const n = 12
	var wg sync.WaitGroup
	results := make([]bool, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			e := capture("order_captured:po-race", "EUR", 10_000, 290)
			e.SourceMsgID = uuid.New()
			results[i], errs[i] = post(t, pool, e)
		})
	}
	wg.Wait()
	posted := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("post %d: %v", i, errs[i])
		}
		if results[i] {
			posted++
		}
	}
	if posted != 1 {
		t.Fatalf("%d posts reported posted, want 1", posted)
	}
	if got := count(t, pool, `SELECT count(*) FROM ledger.postings`); got != 3 {
		t.Fatalf("%d postings, want 3", got)
	}
	checkBalances(t, pool, "EUR", map[string]int64{contracts.AccountPSPReceivable: 10_000, "seller_payable:s-1": 9_710, contracts.AccountPlatformFeeRevenue: 290}, 1)
}

// TestDatabaseGuards proves the database itself refuses what would break the
// ledger, whatever Go does: raw SQL, not Post.
func TestDatabaseGuards(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, ledger.Schema())
	e := capture("order_captured:po-1", "USD", 10_000, 300)
	if _, err := post(t, pool, e); err != nil {
		t.Fatal(err)
	}
	id := ledger.EntryID(e.ExternalID)
	snapshot := func() string {
		var s string
		if err := pool.QueryRow(ctx, `SELECT coalesce((SELECT string_agg(p::text, ';' ORDER BY p.line) FROM ledger.postings p), '')
  || '|' || (SELECT string_agg(j.external_id || j.currency, ';') FROM ledger.journal_entries j)
  || '|' || (SELECT string_agg(a.name || a.type, ';' ORDER BY a.name) FROM ledger.accounts a)`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := snapshot()

	// Immutability: every statement fails with the trigger's message.
	for _, sql := range []string{
		`UPDATE ledger.postings SET amount_minor = amount_minor + 1 WHERE entry_id = '` + id.String() + `'`,
		`UPDATE ledger.postings SET account = 'platform_fee_revenue' WHERE line = 2`,
		`DELETE FROM ledger.postings WHERE line = 3`,
		`TRUNCATE ledger.postings CASCADE`,
		`UPDATE ledger.journal_entries SET merchant_id = 'someone-else'`,
		`DELETE FROM ledger.journal_entries`,
		`TRUNCATE ledger.journal_entries CASCADE`,
		`UPDATE ledger.accounts SET type = 'expense', normal_balance = 'debit' WHERE name = 'platform_fee_revenue'`,
		`DELETE FROM ledger.accounts WHERE name = 'platform_fee_revenue'`,
	} {
		_, err := pool.Exec(ctx, sql)
		if !isPgError(err, "23000", "append-only") {
			t.Errorf("%s: %v; want the append-only trigger (23000)", sql, err)
		}
	}

	// Balance, checked at COMMIT: each statement succeeds, the commit fails.
	atCommit := func(name, want string, stmts ...string) {
		t.Helper()
		tx, err := pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback(ctx) }()
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				t.Fatalf("%s: statement failed before COMMIT: %s: %v", name, s, err)
			}
		}
		if err := tx.Commit(ctx); !isPgError(err, "23514", want) {
			t.Errorf("%s: COMMIT = %v; want check_violation %q", name, err, want)
		}
	}
	entry := func(ext, cur string) string {
		return `INSERT INTO ledger.journal_entries (id, external_id, kind, merchant_id, currency, posted_at, created_xid)
VALUES ('` + ledger.EntryID(ext).String() + `', '` + ext + `', 'manual', 'm-1', '` + cur + `', now(), '0')`
	}
	posting := func(ext string, ln int, acct, dir string, amount int64, cur string) string {
		return `INSERT INTO ledger.postings (entry_id, line, account, direction, amount_minor, currency)
VALUES ('` + ledger.EntryID(ext).String() + `', ` + itoa(int64(ln)) + `, '` + acct + `', '` + dir + `', ` + itoa(amount) + `, '` + cur + `')`
	}
	atCommit("unbalanced", "does not balance",
		entry("manual:1", "USD"),
		posting("manual:1", 1, "psp_receivable", "debit", 100, "USD"),
		posting("manual:1", 2, "platform_fee_revenue", "credit", 99, "USD"))
	atCommit("one posting", "at least 2",
		entry("manual:2", "USD"),
		posting("manual:2", 1, "psp_receivable", "debit", 100, "USD"))
	atCommit("no postings", "at least 2", entry("manual:3", "USD"))
	atCommit("two debits", "does not balance",
		entry("manual:4", "USD"),
		posting("manual:4", 1, "psp_receivable", "debit", 100, "USD"),
		posting("manual:4", 2, "platform_fee_revenue", "debit", 100, "USD"))
	// Deferred checks cannot be dodged by making them immediate: the entry
	// is then checked before its postings exist.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = tx.Exec(ctx, `SET CONSTRAINTS ALL IMMEDIATE`)
	if _, err := tx.Exec(ctx, entry("manual:5", "USD")); !isPgError(err, "23514", "at least 2") {
		t.Errorf("immediate mode: %v; want check_violation", err)
	}
	_ = tx.Rollback(ctx)

	// Rejected at once: a posting in another currency than its entry, a
	// posting added to an entry committed earlier (even a balanced pair), a
	// zero amount.
	for name, tc := range map[string]struct {
		code, msg string
		stmts     []string
	}{
		"currency": {"23503", "postings_entry_id_currency_fkey", []string{entry("manual:6", "USD"),
			posting("manual:6", 1, "psp_receivable", "debit", 100, "USD"),
			posting("manual:6", 2, "platform_fee_revenue", "credit", 100, "EUR")}},
		"zero": {"23514", "postings_amount_minor_check", []string{entry("manual:7", "USD"),
			posting("manual:7", 1, "psp_receivable", "debit", 0, "USD")}},
		"late postings": {"23000", "only be added in the transaction that creates", []string{
			posting(e.ExternalID, 4, "psp_receivable", "debit", 100, "USD"),
			posting(e.ExternalID, 5, "platform_fee_revenue", "credit", 100, "USD")}},
	} {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			for _, s := range tc.stmts {
				if _, err := tx.Exec(ctx, s); err != nil {
					return err
				}
			}
			return nil
		})
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Code != tc.code || !strings.Contains(pe.Message+" "+pe.ConstraintName, tc.msg) {
			t.Errorf("%s: %v; want %s %q", name, err, tc.code, tc.msg)
		}
	}

	if after := snapshot(); after != before {
		t.Fatalf("the ledger changed:\nbefore %s\nafter  %s", before, after)
	}
	if v, err := ledger.CheckBalanced(ctx, pool); err != nil || len(v) != 0 {
		t.Fatalf("CheckBalanced = %+v, %v", v, err)
	}
}

// TestCheckBalancedFindsViolations: the operator check is not vacuous. A
// table owner can still disable the triggers (which is why the application
// role must not own the tables); CheckBalanced then reports what slipped in.
func TestCheckBalancedFindsViolations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := testenv.Migrated(t, ledger.Schema())
	if _, err := post(t, pool, capture("order_captured:po-1", "KWD", 10_000, 300)); err != nil {
		t.Fatal(err)
	}
	bad := ledger.EntryID("manual:bad")
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for _, s := range []string{
			`ALTER TABLE ledger.postings DISABLE TRIGGER USER`,
			`ALTER TABLE ledger.journal_entries DISABLE TRIGGER USER`,
			`INSERT INTO ledger.journal_entries (id, external_id, kind, merchant_id, currency, posted_at, created_xid)
VALUES ('` + bad.String() + `', 'manual:bad', 'manual', 'm-1', 'KWD', now(), '0')`,
			`INSERT INTO ledger.postings (entry_id, line, account, direction, amount_minor, currency)
VALUES ('` + bad.String() + `', 1, 'psp_receivable', 'debit', 7, 'KWD')`,
			`ALTER TABLE ledger.postings ENABLE TRIGGER USER`,
			`ALTER TABLE ledger.journal_entries ENABLE TRIGGER USER`,
			`UPDATE ledger.account_balances SET credits_minor = credits_minor + 1 WHERE account = 'platform_fee_revenue'`,
		} {
			if _, err := tx.Exec(ctx, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	v, err := ledger.CheckBalanced(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]ledger.Violation{}
	for _, x := range v {
		kinds[x.Kind+" "+x.Account] = x
	}
	if x, ok := kinds[ledger.ViolationUnbalancedEntry+" "]; !ok || x.ExternalID != "manual:bad" || x.DebitsMinor != 7 || x.CreditsMinor != 0 {
		t.Errorf("unbalanced entry not reported: %+v", v)
	}
	if x, ok := kinds[ledger.ViolationGlobal+" "]; !ok || x.Currency != "KWD" || x.DebitsMinor != 10_007 || x.CreditsMinor != 10_000 {
		t.Errorf("global imbalance not reported: %+v", v)
	}
	if x, ok := kinds[ledger.ViolationBalanceTable+" platform_fee_revenue"]; !ok || x.CreditsMinor != 301 {
		t.Errorf("balance drift of platform_fee_revenue not reported: %+v", v)
	}
	if x, ok := kinds[ledger.ViolationBalanceTable+" psp_receivable"]; !ok || x.DebitsMinor != 10_000 {
		t.Errorf("psp_receivable's balance row (without the sneaked posting) not reported: %+v", v)
	}
	if len(v) != 4 {
		t.Errorf("%d violations, want 4: %+v", len(v), v)
	}
}

func isPgError(err error, code, msg string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code && strings.Contains(pe.Message, msg)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }
