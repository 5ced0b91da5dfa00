package pspsim

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/psp"
)

// ErrFutureDay is returned for a settlement day after today (UTC): its
// movements are not known yet.
var ErrFutureDay = errors.New("pspsim: settlement day is in the future")

// settlementTimeout bounds the generation of one file.
const settlementTimeout = 10 * time.Minute

// settlementDay is the UTC midnight of date's calendar day (its own
// year, month and day, whatever its location), or ErrFutureDay.
func settlementDay(date time.Time, now time.Time) (time.Time, error) {
	y, m, d := date.Date()
	day := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	ny, nm, nd := now.UTC().Date()
	if day.After(time.Date(ny, nm, nd, 0, 0, 0, 0, time.UTC)) {
		return day, fmt.Errorf("%w: %s", ErrFutureDay, day.Format(psp.SettlementDateLayout))
	}
	return day, nil
}

// settlementLinesSQL returns the movement lines of day $1 (a date; $2 and
// $3 are the UTC midnights of the day before and the day after), with the
// day's seeded discrepancies as flags, ordered as the file wants them. A
// movement settles on its natural day (capture, creation, arrival) or,
// with settles_late, the next day; a discrepancy applies to the movement
// of its psp_reference on its date. unknown_reference lines come from the
// discrepancy table.
const settlementLinesSQL = `WITH d AS (
  SELECT date, kind, psp_reference, currency::text AS currency FROM pspsim.settlement_discrepancies
  WHERE date BETWEEN $1::date - 1 AND $1::date
), mv AS (
  SELECT 'charge'::text AS typ, c.payment_id AS ref, c.merchant_reference AS mref, c.currency::text AS currency,
         c.amount_minor AS gross, c.fee_minor AS fee, c.fee_bps AS bps, c.charged_at AS at
  FROM pspsim.charges c WHERE c.charged_at >= $2 AND c.charged_at < $3
  UNION ALL
  SELECT 'refund', r.id, r.merchant_reference, r.currency::text, -r.amount_minor, 0::bigint, 0, r.created_at
  FROM pspsim.refunds r WHERE r.status = 'succeeded' AND r.created_at >= $2 AND r.created_at < $3
  UNION ALL
  SELECT 'payout', p.id, p.merchant_reference, p.currency::text, -p.amount_minor, 0::bigint, 0, p.paid_at
  FROM pspsim.payouts p WHERE p.status = 'paid' AND p.paid_at >= $2 AND p.paid_at < $3
), m AS (
  SELECT mv.*, (mv.at AT TIME ZONE 'UTC')::date AS nday FROM mv
)
SELECT typ, ref, mref, currency, gross, fee, bps, at,
  EXISTS (SELECT 1 FROM d WHERE d.psp_reference = m.ref AND d.date = m.nday AND d.kind = 'missing_line') AS missing,
  EXISTS (SELECT 1 FROM d WHERE d.psp_reference = m.ref AND d.date = m.nday AND d.kind = 'duplicated_line') AS dup,
  EXISTS (SELECT 1 FROM d WHERE d.psp_reference = m.ref AND d.date = m.nday AND d.kind = 'altered_amount') AS altered,
  EXISTS (SELECT 1 FROM d WHERE d.psp_reference = m.ref AND d.date = m.nday AND d.kind = 'wrong_fee') AS wrong_fee,
  (SELECT d.currency FROM d WHERE d.psp_reference = m.ref AND d.date = m.nday AND d.kind = 'currency_mismatch') AS other_currency
FROM m
WHERE m.nday + (EXISTS (SELECT 1 FROM d WHERE d.psp_reference = m.ref AND d.date = m.nday AND d.kind = 'settles_late'))::int = $1::date
UNION ALL
SELECT 'charge', x.psp_reference, coalesce(x.merchant_reference, ''), x.currency::text, x.amount_minor, x.fee_minor, 0,
  x.line_created_at, false, false, false, false, NULL
FROM pspsim.settlement_discrepancies x WHERE x.kind = 'unknown_reference' AND x.date = $1::date
ORDER BY 8, 2`

// settlementBalancesSQL returns, per currency, the PSP's true balance
// before day $1 and the net of the movements that settle on it ($2 is the
// UTC midnight after the day). Only settles_late changes a movement's day;
// the other discrepancies change lines, never the books.
const settlementBalancesSQL = `WITH late AS (
  SELECT date, psp_reference FROM pspsim.settlement_discrepancies WHERE kind = 'settles_late' AND date <= $1::date
), mv AS (
  SELECT c.payment_id AS ref, c.currency::text AS currency, c.amount_minor - c.fee_minor AS net, c.charged_at AS at
  FROM pspsim.charges c WHERE c.charged_at < $2
  UNION ALL
  SELECT r.id, r.currency::text, -r.amount_minor, r.created_at FROM pspsim.refunds r WHERE r.status = 'succeeded' AND r.created_at < $2
  UNION ALL
  SELECT p.id, p.currency::text, -p.amount_minor, p.paid_at FROM pspsim.payouts p WHERE p.status = 'paid' AND p.paid_at < $2
), e AS (
  SELECT currency, net, (at AT TIME ZONE 'UTC')::date
    + (EXISTS (SELECT 1 FROM late WHERE late.psp_reference = mv.ref AND late.date = (mv.at AT TIME ZONE 'UTC')::date))::int AS day
  FROM mv
)
SELECT currency, coalesce(sum(net) FILTER (WHERE day < $1::date), 0)::bigint,
       coalesce(sum(net) FILTER (WHERE day = $1::date), 0)::bigint
FROM e GROUP BY currency ORDER BY currency`

// balance is one currency's opening and closing balance of a day.
type balance struct {
	currency         string
	opening, closing int64
}

// WriteSettlementCSV writes the settlement file of date's day (UTC) to w,
// in the format of docs/settlement-file.md, from the simulator's database.
// The file is generated row by row from one read-only snapshot, never held
// in memory; the same database gives the same bytes on every call.
func WriteSettlementCSV(ctx context.Context, pool *pgxpool.Pool, w io.Writer, date time.Time) error {
	return writeSettlement(ctx, pool, w, date, nil)
}

// writeSettlement is WriteSettlementCSV; onRow, when set, is called after
// each movement row is read from the database (the streaming test's probe).
func writeSettlement(ctx context.Context, pool *pgxpool.Pool, w io.Writer, date time.Time, onRow func()) error {
	day, err := settlementDay(date, time.Now())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, settlementTimeout)
	defer cancel()
	prev, next := day.AddDate(0, 0, -1), day.AddDate(0, 0, 1)
	// One snapshot: the balances and the lines must describe the same books.
	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("settlement %s: %w", day.Format(psp.SettlementDateLayout), err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	balances, err := dayBalances(ctx, tx, day, prev, next)
	if err != nil {
		return fmt.Errorf("settlement %s: balances: %w", day.Format(psp.SettlementDateLayout), err)
	}
	dateStr := day.Format(psp.SettlementDateLayout)
	cw := csv.NewWriter(w)
	if _, err := io.WriteString(w, psp.SettlementHeader+"\n"); err != nil {
		return err
	}
	for _, b := range balances {
		if err := cw.Write(psp.SettlementLine{RecordType: psp.RecordOpeningBalance, SettlementDate: dateStr,
			Currency: b.currency, NetMinor: b.opening}.Fields()); err != nil {
			return err
		}
	}
	rows, err := tx.Query(ctx, settlementLinesSQL, day, prev, next)
	if err != nil {
		return fmt.Errorf("settlement %s: lines: %w", dateStr, err)
	}
	defer rows.Close()
	for rows.Next() {
		var ln movementLine
		if err := rows.Scan(&ln.typ, &ln.ref, &ln.mref, &ln.currency, &ln.gross, &ln.fee, &ln.bps, &ln.at,
			&ln.missing, &ln.dup, &ln.altered, &ln.wrongFee, &ln.otherCurrency); err != nil {
			return fmt.Errorf("settlement %s: line: %w", dateStr, err)
		}
		if onRow != nil {
			onRow()
		}
		if ln.missing {
			continue
		}
		l, err := ln.line(dateStr)
		if err != nil {
			return fmt.Errorf("settlement %s: %w", dateStr, err)
		}
		copies := 1
		if ln.dup {
			copies = 2
		}
		for range copies {
			if err := cw.Write(l.Fields()); err != nil {
				return err
			}
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("settlement %s: lines: %w", dateStr, err)
	}
	for _, b := range balances {
		if err := cw.Write(psp.SettlementLine{RecordType: psp.RecordClosingBalance, SettlementDate: dateStr,
			Currency: b.currency, NetMinor: b.closing}.Fields()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// dayBalances returns the balances of every currency that has a non-zero
// opening or closing balance or a line in the day's file, sorted by code.
func dayBalances(ctx context.Context, tx pgx.Tx, day, prev, next time.Time) ([]balance, error) {
	rows, err := tx.Query(ctx, settlementBalancesSQL, day, next)
	if err != nil {
		return nil, err
	}
	byCurrency := map[string]*balance{}
	for rows.Next() {
		var b balance
		var dayNet int64
		if err := rows.Scan(&b.currency, &b.opening, &dayNet); err != nil {
			rows.Close()
			return nil, err
		}
		c, err := money.Add(b.opening, dayNet)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("%s: %w", b.currency, err)
		}
		b.closing = c
		byCurrency[b.currency] = &b
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Currencies that appear in the file's lines (a currency_mismatch or an
	// unknown reference can add one with no true movement).
	crow, err := tx.Query(ctx, `SELECT DISTINCT coalesce(other_currency, currency) FROM (`+settlementLinesSQL+`) l WHERE NOT missing`, day, prev, next)
	if err != nil {
		return nil, err
	}
	inFile, err := pgx.CollectRows(crow, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	listed := map[string]bool{}
	for _, c := range inFile {
		listed[c] = true
		if _, ok := byCurrency[c]; !ok {
			byCurrency[c] = &balance{currency: c}
		}
	}
	var out []balance
	for c, b := range byCurrency {
		if listed[c] || b.opening != 0 || b.closing != 0 {
			out = append(out, *b)
		}
	}
	slices.SortFunc(out, func(a, b balance) int { return cmp.Compare(a.currency, b.currency) })
	return out, nil
}

// movementLine is one row of settlementLinesSQL.
type movementLine struct {
	typ, ref, mref, currency        string
	gross, fee                      int64
	bps                             int
	at                              time.Time
	missing, dup, altered, wrongFee bool
	otherCurrency                   *string
}

// line applies the row's discrepancies (other than missing and duplicated)
// and returns the file's line.
func (m movementLine) line(date string) (psp.SettlementLine, error) {
	gross, fee, currency := m.gross, m.fee, m.currency
	if m.altered {
		// +1 % of the amount, at least one minor unit, away from zero; a
		// charge's fee follows at its own rate.
		delta := max(abs(gross)/100, 1)
		if gross < 0 {
			delta = -delta
		}
		gross += delta
		if m.typ == psp.RecordCharge {
			f, err := money.Fee(gross, m.bps)
			if err != nil {
				return psp.SettlementLine{}, fmt.Errorf("%s: altered fee: %w", m.ref, err)
			}
			fee = f
		}
	}
	if m.wrongFee {
		fee = max(2*fee, fee+1)
	}
	if m.otherCurrency != nil {
		currency = *m.otherCurrency
	}
	return psp.SettlementLine{RecordType: m.typ, SettlementDate: date, PSPReference: m.ref, MerchantReference: m.mref,
		Currency: currency, GrossMinor: gross, FeeMinor: fee, NetMinor: gross - fee, CreatedAt: m.at}, nil
}

func abs(n int64) int64 {
	if n < 0 {
		return -n
	}
	return n
}

// WriteSettlementFile writes the settlement file of date's day into dir as
// settlement-YYYY-MM-DD.csv, atomically (a temporary file renamed into
// place, so a reader never sees half a file), and returns its path.
func WriteSettlementFile(ctx context.Context, pool *pgxpool.Pool, date time.Time, dir string) (string, error) {
	day, err := settlementDay(date, time.Now())
	if err != nil {
		return "", err
	}
	final := filepath.Join(dir, psp.SettlementFileName(day))
	f, err := os.CreateTemp(dir, ".settlement-*.csv.tmp")
	if err != nil {
		return "", fmt.Errorf("settlement: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if err := WriteSettlementCSV(ctx, pool, f, day); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("settlement: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("settlement: %w", err)
	}
	if err := os.Rename(f.Name(), final); err != nil {
		_ = os.Remove(f.Name())
		ok = true
		return "", fmt.Errorf("settlement: %w", err)
	}
	ok = true
	return final, nil
}

// WriteSettlement writes the settlement file of date's day into dir (see
// WriteSettlementFile) and returns its path.
func (s *Server) WriteSettlement(ctx context.Context, date time.Time, dir string) (string, error) {
	return WriteSettlementFile(ctx, s.pool, date, dir)
}

// handleSettlement streams GET /v1/settlements/{YYYY-MM-DD}. A failure
// after the first byte cannot change the status any more: the connection is
// aborted, so the client sees a broken transfer, never a short file that
// looks complete.
func (s *Server) handleSettlement(w http.ResponseWriter, r *http.Request) {
	v := r.PathValue("date")
	date, err := time.Parse(psp.SettlementDateLayout, v)
	if err != nil || date.Format(psp.SettlementDateLayout) != v {
		s.writeError(w, r, invalidParam("date", "date %q: want YYYY-MM-DD", v))
		return
	}
	if _, err := settlementDay(date, time.Now()); err != nil {
		s.writeError(w, r, problemf(codeNotFound, "no settlement file for %s yet: the day has not begun (UTC)", v))
		return
	}
	sw := &startedWriter{w: w, start: func() {
		h := w.Header()
		h.Set("Content-Type", "text/csv; charset=utf-8")
		h.Set("Content-Disposition", `attachment; filename="`+psp.SettlementFileName(date)+`"`)
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
	}}
	if err := WriteSettlementCSV(r.Context(), s.pool, sw, date); err != nil {
		if !sw.started {
			s.writeError(w, r, err)
			return
		}
		s.log.Error("settlement file cut short", "date", v, "err", err)
		panic(http.ErrAbortHandler)
	}
}

// startedWriter sends the response's headers before its first byte.
type startedWriter struct {
	w       io.Writer
	start   func()
	started bool
}

func (sw *startedWriter) Write(p []byte) (int, error) {
	if !sw.started {
		sw.started = true
		sw.start()
	}
	return sw.w.Write(p)
}
