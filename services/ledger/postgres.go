package ledger

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/internal/migrate"
	"github.com/paypipe/paypipe/outbox"
)

// Store is the ledger schema's outbox and inbox.
var Store = outbox.MustStore("ledger")

//go:embed migrations/*.sql
var migrations embed.FS

// Schema is the ledger's migrations: the outbox and inbox tables, then
// migrations/*.sql.
func Schema() migrate.Schema {
	return migrate.Embedded(Store, migrations)
}

// Post records e in the caller's transaction, together with its
// ledger.entry.posted event: both exist if and only if tx commits.
//
// Posting is idempotent by external id, with TigerBeetle's contract: if an
// entry with e.ExternalID exists and records the same effect (kind, merchant,
// payment order, currency and every line), Post does nothing and returns
// posted=false, which callers treat as success; if it differs in any of
// these, Post returns ErrExternalIDConflict. Concurrent Posts of one external
// id serialise on its unique key: one inserts, the others wait for its
// commit and then compare.
//
// Accounts are created on first use with the line's type; a line naming an
// existing account with another type fails with ErrAccountType. Running
// balances are updated in account order, so concurrent posts lock shared
// balance rows in one order and cannot deadlock on them.
func Post(ctx context.Context, tx pgx.Tx, e Entry) (posted bool, err error) {
	if err := e.Validate(); err != nil {
		return false, err
	}
	types := map[string]AccountType{}
	for i, l := range e.Lines {
		if t, ok := types[l.Account]; ok && t != l.Type {
			return false, fmt.Errorf("%w %q: line %d: account %s is %s and %s", ErrInvalidEntry, e.ExternalID, i+1, l.Account, t, l.Type)
		}
		types[l.Account] = l.Type
	}
	postedAt := e.PostedAt
	if postedAt.IsZero() {
		postedAt = time.Now()
	}
	// PostgreSQL keeps microseconds: truncate so the event and the row agree.
	postedAt = postedAt.UTC().Truncate(time.Microsecond)
	id := EntryID(e.ExternalID)
	var srcMsg *uuid.UUID
	if e.SourceMsgID != uuid.Nil {
		srcMsg = &e.SourceMsgID
	}

	tag, err := tx.Exec(ctx, `INSERT INTO ledger.journal_entries
  (id, external_id, kind, merchant_id, payment_order_id, currency, posted_at, source_msg_id,
   reference, psp_reference, psp_amount_minor, created_xid)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, pg_current_xact_id())
ON CONFLICT DO NOTHING`, id, e.ExternalID, e.Kind, nullText(e.MerchantID), nullText(e.PaymentOrderID), e.Currency, postedAt, srcMsg,
		nullText(e.Reference), nullText(e.PSPReference), nullAmount(e.PSPAmountMinor))
	if err != nil {
		return false, fmt.Errorf("ledger: insert entry %q: %w", e.ExternalID, err)
	}
	if tag.RowsAffected() == 0 {
		stored, err := loadEntry(ctx, tx, e.ExternalID)
		if err != nil {
			return false, err
		}
		if same, diff := e.sameEffect(stored); !same {
			return false, fmt.Errorf("%w: %q: %s", ErrExternalIDConflict, e.ExternalID, diff)
		}
		return false, nil
	}

	if err := ensureAccounts(ctx, tx, types); err != nil {
		return false, err
	}

	n := len(e.Lines)
	lines := make([]int32, n)
	accounts := make([]string, n)
	dirs := make([]string, n)
	amounts := make([]int64, n)
	postings := make([]contracts.Posting, n)
	for i, l := range e.Lines {
		lines[i], accounts[i], dirs[i], amounts[i] = int32(i+1), l.Account, l.Direction, l.AmountMinor
		postings[i] = contracts.Posting{Account: l.Account, Direction: l.Direction, AmountMinor: l.AmountMinor}
	}
	tag, err = tx.Exec(ctx, `INSERT INTO ledger.postings (entry_id, line, account, direction, amount_minor, currency)
SELECT $1, l, a, d, m, $2 FROM unnest($3::int[], $4::text[], $5::text[], $6::bigint[]) AS u(l, a, d, m)`,
		id, e.Currency, lines, accounts, dirs, amounts)
	if err != nil {
		return false, fmt.Errorf("ledger: insert postings of %q: %w", e.ExternalID, err)
	}
	if int(tag.RowsAffected()) != n {
		return false, fmt.Errorf("ledger: inserted %d of %d postings of %q", tag.RowsAffected(), n, e.ExternalID)
	}

	if err := addToBalances(ctx, tx, e); err != nil {
		return false, err
	}

	payload, err := json.Marshal(contracts.LedgerEntryPosted{
		EntryID:        id.String(),
		ExternalID:     e.ExternalID,
		Kind:           e.Kind,
		MerchantID:     e.MerchantID,
		PaymentOrderID: e.PaymentOrderID,
		Currency:       e.Currency,
		Postings:       postings,
		Reference:      e.Reference,
		PSPReference:   e.PSPReference,
		PSPAmountMinor: e.PSPAmountMinor,
		PostedAt:       postedAt,
	})
	if err != nil {
		return false, fmt.Errorf("ledger: encode %s: %w", contracts.SubjectLedgerEntryPosted, err)
	}
	if err := Store.Write(ctx, tx, &outbox.Message{
		Subject:          contracts.SubjectLedgerEntryPosted,
		Type:             contracts.TypeOf(contracts.SubjectLedgerEntryPosted),
		Source:           contracts.SourceLedger,
		AggregateID:      id.String(),
		AggregateVersion: 1, // entries are immutable: there is never a version 2
		Payload:          payload,
	}); err != nil {
		return false, fmt.Errorf("ledger: write %s for %q: %w", contracts.SubjectLedgerEntryPosted, e.ExternalID, err)
	}
	return true, nil
}

// nullText stores an optional text as NULL, not as an empty string: the
// columns' CHECKs refuse empty strings.
func nullText(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func nullAmount(v int64) *int64 {
	if v == 0 {
		return nil
	}
	return &v
}

// ensureAccounts creates missing accounts (in name order, like every other
// lock this package takes) and checks that existing ones have the type the
// lines expect.
func ensureAccounts(ctx context.Context, tx pgx.Tx, types map[string]AccountType) error {
	names := make([]string, 0, len(types))
	for name := range types {
		names = append(names, name)
	}
	slices.Sort(names)
	kinds := make([]string, len(names))
	normals := make([]string, len(names))
	for i, name := range names {
		nb, err := types[name].NormalBalance()
		if err != nil {
			return err
		}
		kinds[i], normals[i] = string(types[name]), nb
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ledger.accounts (name, type, normal_balance)
SELECT n, t, nb FROM unnest($1::text[], $2::text[], $3::text[]) AS u(n, t, nb) ORDER BY n
ON CONFLICT (name) DO NOTHING`, names, kinds, normals); err != nil {
		return fmt.Errorf("ledger: create accounts: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT name, type FROM ledger.accounts WHERE name = ANY($1)`, names)
	if err != nil {
		return fmt.Errorf("ledger: read accounts: %w", err)
	}
	found := 0
	var name, typ string
	_, err = pgx.ForEachRow(rows, []any{&name, &typ}, func() error {
		found++
		if AccountType(typ) != types[name] {
			return fmt.Errorf("%w: %s is %s, the entry posts to it as %s", ErrAccountType, name, typ, types[name])
		}
		return nil
	})
	if err != nil {
		return err
	}
	if found != len(names) {
		return fmt.Errorf("ledger: found %d of %d accounts after creating them", found, len(names))
	}
	return nil
}

// addToBalances adds the entry's lines to the running balances, one row per
// account, in account order.
func addToBalances(ctx context.Context, tx pgx.Tx, e Entry) error {
	type dc struct{ d, c int64 }
	per := map[string]dc{}
	for _, l := range e.Lines {
		v := per[l.Account]
		var err error
		if l.Direction == contracts.Debit {
			v.d, err = money.Add(v.d, l.AmountMinor)
		} else {
			v.c, err = money.Add(v.c, l.AmountMinor)
		}
		if err != nil {
			return fmt.Errorf("%w %q: %w", ErrInvalidEntry, e.ExternalID, err)
		}
		per[l.Account] = v
	}
	accounts := make([]string, 0, len(per))
	for a := range per {
		accounts = append(accounts, a)
	}
	slices.Sort(accounts)
	debits := make([]int64, len(accounts))
	credits := make([]int64, len(accounts))
	for i, a := range accounts {
		debits[i], credits[i] = per[a].d, per[a].c
	}
	// bigint addition overflow raises 22003 in PostgreSQL: an overflowing
	// balance fails the posting instead of wrapping.
	if _, err := tx.Exec(ctx, `INSERT INTO ledger.account_balances AS b (account, currency, debits_minor, credits_minor, version)
SELECT a, $1, d, c, 1 FROM unnest($2::text[], $3::bigint[], $4::bigint[]) AS u(a, d, c) ORDER BY a
ON CONFLICT (account, currency) DO UPDATE SET
  debits_minor = b.debits_minor + excluded.debits_minor,
  credits_minor = b.credits_minor + excluded.credits_minor,
  version = b.version + 1,
  updated_at = clock_timestamp()`, e.Currency, accounts, debits, credits); err != nil {
		return fmt.Errorf("ledger: update balances for %q: %w", e.ExternalID, err)
	}
	return nil
}

// loadEntry reads a posted entry for comparison with a replay.
func loadEntry(ctx context.Context, tx pgx.Tx, externalID string) (Entry, error) {
	var e Entry
	var id uuid.UUID
	var src *uuid.UUID
	err := tx.QueryRow(ctx, `SELECT id, external_id, kind, coalesce(merchant_id, ''), coalesce(payment_order_id, ''), currency, posted_at, source_msg_id
FROM ledger.journal_entries WHERE external_id = $1`, externalID).
		Scan(&id, &e.ExternalID, &e.Kind, &e.MerchantID, &e.PaymentOrderID, &e.Currency, &e.PostedAt, &src)
	if errors.Is(err, pgx.ErrNoRows) {
		// The insert conflicted on the id but no entry has this external id:
		// only a hand-made row with a foreign id can do that.
		return Entry{}, fmt.Errorf("%w: %q: entry id %s is taken by another external id", ErrExternalIDConflict, externalID, EntryID(externalID))
	}
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: read entry %q: %w", externalID, err)
	}
	if src != nil {
		e.SourceMsgID = *src
	}
	rows, err := tx.Query(ctx, `SELECT p.account, a.type, p.direction, p.amount_minor
FROM ledger.postings p JOIN ledger.accounts a ON a.name = p.account
WHERE p.entry_id = $1 ORDER BY p.line`, id)
	if err != nil {
		return Entry{}, fmt.Errorf("ledger: read postings of %q: %w", externalID, err)
	}
	var l Line
	var typ string
	if _, err := pgx.ForEachRow(rows, []any{&l.Account, &typ, &l.Direction, &l.AmountMinor}, func() error {
		l.Type = AccountType(typ)
		e.Lines = append(e.Lines, l)
		return nil
	}); err != nil {
		return Entry{}, fmt.Errorf("ledger: read postings of %q: %w", externalID, err)
	}
	return e, nil
}

// Balances returns every account's running totals, by account and currency.
func Balances(ctx context.Context, pool *pgxpool.Pool) ([]Balance, error) {
	rows, err := pool.Query(ctx, `SELECT b.account, a.type, b.currency, b.debits_minor, b.credits_minor, b.version
FROM ledger.account_balances b JOIN ledger.accounts a ON a.name = b.account
ORDER BY b.account, b.currency`)
	if err != nil {
		return nil, fmt.Errorf("ledger: read balances: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Balance, error) {
		var b Balance
		var typ string
		err := r.Scan(&b.Account, &typ, &b.Currency, &b.DebitsMinor, &b.CreditsMinor, &b.Version)
		b.Type = AccountType(typ)
		return b, err
	})
	if err != nil {
		return nil, fmt.Errorf("ledger: read balances: %w", err)
	}
	return out, nil
}

// SellerPayable returns what the platform owes a seller per currency: the
// credit balance of seller_payable:<sellerID>.
func SellerPayable(ctx context.Context, pool *pgxpool.Pool, sellerID string) (map[string]int64, error) {
	rows, err := pool.Query(ctx, `SELECT currency, credits_minor - debits_minor FROM ledger.account_balances WHERE account = $1`,
		contracts.SellerPayable(sellerID))
	if err != nil {
		return nil, fmt.Errorf("ledger: read seller payable %s: %w", sellerID, err)
	}
	out := map[string]int64{}
	var cur string
	var bal int64
	if _, err := pgx.ForEachRow(rows, []any{&cur, &bal}, func() error { out[cur] = bal; return nil }); err != nil {
		return nil, fmt.Errorf("ledger: read seller payable %s: %w", sellerID, err)
	}
	return out, nil
}

// maxViolations bounds each kind of violation CheckBalanced returns: after a
// corruption the list could be as long as the ledger, and the first thousand
// say enough.
const maxViolations = 1000

// CheckBalanced verifies the ledger's invariants (RELIABILITY.md I2) from the
// postings themselves, in one read-only snapshot:
//
//   - every journal entry has ≥ 2 postings and balances in its currency;
//   - over all postings, Σ debits = Σ credits per currency;
//   - account_balances equals Σ postings for every account and currency.
//
// The database already refuses the first two at COMMIT; this check is what
// operators (`paypipe verify`) and tests run to prove it held. It scans every
// posting: run it off-peak on a large ledger. No violations means an empty
// slice.
func CheckBalanced(ctx context.Context, pool *pgxpool.Pool) ([]Violation, error) {
	var out []Violation
	err := pgx.BeginTxFunc(ctx, pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		out = []Violation{} // a retried transaction starts over
		rows, err := tx.Query(ctx, `SELECT e.id::text, e.external_id, e.currency,
  coalesce(sum(p.amount_minor) FILTER (WHERE p.direction = 'debit'), 0)::bigint,
  coalesce(sum(p.amount_minor) FILTER (WHERE p.direction = 'credit'), 0)::bigint,
  count(p.line)
FROM ledger.journal_entries e LEFT JOIN ledger.postings p ON p.entry_id = e.id
GROUP BY e.id, e.external_id, e.currency
HAVING count(p.line) < 2
    OR coalesce(sum(p.amount_minor) FILTER (WHERE p.direction = 'debit'), 0)
    <> coalesce(sum(p.amount_minor) FILTER (WHERE p.direction = 'credit'), 0)
ORDER BY e.external_id LIMIT $1`, maxViolations)
		if err != nil {
			return fmt.Errorf("ledger: check entries: %w", err)
		}
		var v Violation
		var n int64
		if _, err := pgx.ForEachRow(rows, []any{&v.EntryID, &v.ExternalID, &v.Currency, &v.DebitsMinor, &v.CreditsMinor, &n}, func() error {
			out = append(out, Violation{Kind: ViolationUnbalancedEntry, EntryID: v.EntryID, ExternalID: v.ExternalID,
				Currency: v.Currency, DebitsMinor: v.DebitsMinor, CreditsMinor: v.CreditsMinor,
				Detail: fmt.Sprintf("%d postings, debits %d, credits %d", n, v.DebitsMinor, v.CreditsMinor)})
			return nil
		}); err != nil {
			return fmt.Errorf("ledger: check entries: %w", err)
		}

		rows, err = tx.Query(ctx, `SELECT currency,
  coalesce(sum(amount_minor) FILTER (WHERE direction = 'debit'), 0)::bigint AS d,
  coalesce(sum(amount_minor) FILTER (WHERE direction = 'credit'), 0)::bigint AS c
FROM ledger.postings GROUP BY currency
HAVING coalesce(sum(amount_minor) FILTER (WHERE direction = 'debit'), 0)
    <> coalesce(sum(amount_minor) FILTER (WHERE direction = 'credit'), 0)
ORDER BY currency`)
		if err != nil {
			return fmt.Errorf("ledger: check totals: %w", err)
		}
		if _, err := pgx.ForEachRow(rows, []any{&v.Currency, &v.DebitsMinor, &v.CreditsMinor}, func() error {
			out = append(out, Violation{Kind: ViolationGlobal, Currency: v.Currency, DebitsMinor: v.DebitsMinor, CreditsMinor: v.CreditsMinor,
				Detail: fmt.Sprintf("all postings: debits %d, credits %d", v.DebitsMinor, v.CreditsMinor)})
			return nil
		}); err != nil {
			return fmt.Errorf("ledger: check totals: %w", err)
		}

		rows, err = tx.Query(ctx, `WITH p AS (
  SELECT account, currency,
    coalesce(sum(amount_minor) FILTER (WHERE direction = 'debit'), 0)::bigint AS d,
    coalesce(sum(amount_minor) FILTER (WHERE direction = 'credit'), 0)::bigint AS c
  FROM ledger.postings GROUP BY account, currency)
SELECT coalesce(b.account, p.account), coalesce(b.currency, p.currency),
  b.debits_minor, b.credits_minor, p.d, p.c
FROM ledger.account_balances b FULL JOIN p ON p.account = b.account AND p.currency = b.currency
WHERE b.account IS NULL OR p.account IS NULL OR b.debits_minor <> p.d OR b.credits_minor <> p.c
ORDER BY 1, 2 LIMIT $1`, maxViolations)
		if err != nil {
			return fmt.Errorf("ledger: check balances: %w", err)
		}
		var bd, bc, pd, pc *int64
		if _, err := pgx.ForEachRow(rows, []any{&v.Account, &v.Currency, &bd, &bc, &pd, &pc}, func() error {
			viol := Violation{Kind: ViolationBalanceTable, Account: v.Account, Currency: v.Currency}
			switch {
			case bd == nil:
				viol.Detail = fmt.Sprintf("no balance row; postings: debits %d, credits %d", *pd, *pc)
			case pd == nil:
				viol.DebitsMinor, viol.CreditsMinor = *bd, *bc
				viol.Detail = fmt.Sprintf("balance row debits %d, credits %d; no postings", *bd, *bc)
			default:
				viol.DebitsMinor, viol.CreditsMinor = *bd, *bc
				viol.Detail = fmt.Sprintf("balance row debits %d, credits %d; postings debits %d, credits %d", *bd, *bc, *pd, *pc)
			}
			out = append(out, viol)
			return nil
		}); err != nil {
			return fmt.Errorf("ledger: check balances: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// lockEntry locks a posted entry's row until the transaction ends (entries
// are never updated: the lock only orders transactions that decide on it).
func lockEntry(ctx context.Context, tx pgx.Tx, externalID string) error {
	var one int
	if err := tx.QueryRow(ctx, `SELECT 1 FROM ledger.journal_entries WHERE external_id = $1 FOR UPDATE`, externalID).Scan(&one); err != nil {
		return fmt.Errorf("ledger: lock entry %q: %w", externalID, err)
	}
	return nil
}

// entryExists reports whether an entry with externalID is posted.
func entryExists(ctx context.Context, tx pgx.Tx, externalID string) (bool, error) {
	var ok bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM ledger.journal_entries WHERE external_id = $1)`, externalID).Scan(&ok); err != nil {
		return false, fmt.Errorf("ledger: look up entry %q: %w", externalID, err)
	}
	return ok, nil
}
