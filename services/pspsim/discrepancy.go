package pspsim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/psp"
)

// Kinds of seeded settlement discrepancy (docs/settlement-file.md).
const (
	DiscrepancyMissingLine      = "missing_line"
	DiscrepancyAlteredAmount    = "altered_amount"
	DiscrepancyDuplicatedLine   = "duplicated_line"
	DiscrepancyUnknownReference = "unknown_reference"
	DiscrepancyWrongFee         = "wrong_fee"
	DiscrepancyCurrencyMismatch = "currency_mismatch"
	DiscrepancySettlesLate      = "settles_late"
)

var discrepancyKinds = []string{DiscrepancyMissingLine, DiscrepancyAlteredAmount, DiscrepancyDuplicatedLine,
	DiscrepancyUnknownReference, DiscrepancyWrongFee, DiscrepancyCurrencyMismatch, DiscrepancySettlesLate}

// DiscrepancyRequest is the body of POST /admin/settlement_discrepancies.
type DiscrepancyRequest struct {
	Date         string `json:"date"` // YYYY-MM-DD, today or earlier (UTC)
	Kind         string `json:"kind"`
	PSPReference string `json:"psp_reference,omitempty"`
}

// Discrepancy is a seeded settlement discrepancy, as stored: the line it
// applies to is resolved when it is recorded.
type Discrepancy struct {
	ID           int64  `json:"id"`
	Date         string `json:"date"`
	Kind         string `json:"kind"`
	PSPReference string `json:"psp_reference"`
	// Currency is the replacement (currency_mismatch) or the fabricated
	// line's (unknown_reference); AmountMinor and FeeMinor are the
	// fabricated line's.
	Currency    string    `json:"currency,omitempty"`
	AmountMinor int64     `json:"amount_minor,omitempty"`
	FeeMinor    int64     `json:"fee_minor,omitempty"`
	Created     time.Time `json:"created"`
}

// DiscrepanciesPage is the body of GET /admin/settlement_discrepancies.
type DiscrepanciesPage struct {
	Discrepancies []Discrepancy `json:"discrepancies"`
}

// maxDiscrepancies bounds the listing (and what a test may seed per day).
const maxDiscrepancies = 1000

// sameExponent lists, per exponent, the currencies a currency_mismatch
// swaps in: the first one that differs from the line's.
var sameExponent = map[int][]string{0: {"JPY", "KRW"}, 2: {"USD", "EUR"}, 3: {"KWD", "BHD"}}

func otherCurrency(code string) (string, error) {
	c, err := money.ParseCurrency(code)
	if err != nil {
		return "", err
	}
	for _, o := range sameExponent[c.Exponent] {
		if o != code {
			return o, nil
		}
	}
	return "", fmt.Errorf("no other currency with exponent %d", c.Exponent)
}

func (s *Server) handleAddDiscrepancy(w http.ResponseWriter, r *http.Request) {
	var req DiscrepancyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := workContext(r)
	defer cancel()
	d, err := s.AddDiscrepancy(ctx, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// AddDiscrepancy records a seeded discrepancy (POST
// /admin/settlement_discrepancies). Without a psp_reference it picks a
// charge settling on that date (for unknown_reference: fabricates a line),
// deterministically from Config.Seed, the date, the kind and how many
// discrepancies the date already has. Recording the same date, kind and
// reference again returns the stored one.
func (s *Server) AddDiscrepancy(ctx context.Context, req DiscrepancyRequest) (Discrepancy, error) {
	date, err := time.Parse(psp.SettlementDateLayout, req.Date)
	if err != nil || date.Format(psp.SettlementDateLayout) != req.Date {
		return Discrepancy{}, invalidParam("date", "date %q: want YYYY-MM-DD", req.Date)
	}
	if _, err := settlementDay(date, time.Now()); err != nil {
		return Discrepancy{}, invalidParam("date", "date %s is in the future (UTC)", req.Date)
	}
	known := false
	for _, k := range discrepancyKinds {
		known = known || k == req.Kind
	}
	if !known {
		return Discrepancy{}, invalidParam("kind", "kind %q: want one of %s", req.Kind, strings.Join(discrepancyKinds, ", "))
	}
	if req.PSPReference != "" {
		if msg := checkText(req.PSPReference, maxReferenceLen, true); msg != "" {
			return Discrepancy{}, invalidParam("psp_reference", "psp_reference %s", msg)
		}
	}
	var out Discrepancy
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pspsim.settlement_discrepancies WHERE date = $1`, date).Scan(&n); err != nil {
			return err
		}
		if n >= maxDiscrepancies {
			return invalidParam("date", "%s already has %d discrepancies", req.Date, n)
		}
		rng := s.discrepancyRand(req.Date, req.Kind, n)
		row := discrepancyRow{kind: req.Kind, ref: req.PSPReference}
		if req.Kind == DiscrepancyUnknownReference {
			err = s.fabricateLine(ctx, tx, rng, date, &row)
		} else {
			err = resolveLine(ctx, tx, rng, date, &row)
		}
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO pspsim.settlement_discrepancies
(date, kind, psp_reference, merchant_reference, currency, amount_minor, fee_minor, line_created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (date, kind, psp_reference) DO NOTHING`,
			date, row.kind, row.ref, row.mref, row.currency, row.amount, row.fee, row.at); err != nil {
			return err
		}
		out, err = scanDiscrepancy(tx.QueryRow(ctx, `SELECT `+discrepancyCols+` FROM pspsim.settlement_discrepancies
WHERE date = $1 AND kind = $2 AND psp_reference = $3`, date, row.kind, row.ref))
		return err
	})
	if err != nil {
		return Discrepancy{}, err
	}
	s.log.Info("settlement discrepancy seeded", "date", out.Date, "kind", out.Kind, "psp_reference", out.PSPReference)
	return out, nil
}

// discrepancyRand is the random source of one pick: a function of the
// seed, the date, the kind and the date's count, so a replayed sequence of
// requests picks the same lines.
func (s *Server) discrepancyRand(date, kind string, n int) *rand.Rand {
	h := fnv.New64a()
	fmt.Fprintf(h, "%s|%s|%d", date, kind, n)
	return rand.New(rand.NewPCG(s.cfg.Seed, h.Sum64()))
}

// discrepancyRow is what is stored; nil fields stay NULL.
type discrepancyRow struct {
	kind, ref   string
	mref        *string
	currency    *string
	amount, fee *int64
	at          *time.Time
}

// resolveLine checks (or picks) the movement a line discrepancy applies
// to: one that settles naturally on date. A currency_mismatch also gets
// its replacement currency.
func resolveLine(ctx context.Context, tx pgx.Tx, rng *rand.Rand, date time.Time, row *discrepancyRow) error {
	from, to := date, date.AddDate(0, 0, 1)
	var currency string
	if row.ref == "" {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM pspsim.charges WHERE charged_at >= $1 AND charged_at < $2`, from, to).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return invalidParam("date", "no charge settles on %s: give a psp_reference", date.Format(psp.SettlementDateLayout))
		}
		if err := tx.QueryRow(ctx, `SELECT payment_id, currency FROM pspsim.charges WHERE charged_at >= $1 AND charged_at < $2
ORDER BY charged_at, payment_id OFFSET $3 LIMIT 1`, from, to, rng.IntN(n)).Scan(&row.ref, &currency); err != nil {
			return err
		}
	} else {
		var at time.Time
		err := tx.QueryRow(ctx, `SELECT currency::text, at FROM (
  SELECT currency, charged_at AS at FROM pspsim.charges WHERE payment_id = $1
  UNION ALL SELECT currency, created_at FROM pspsim.refunds WHERE id = $1 AND status = 'succeeded'
  UNION ALL SELECT currency, paid_at FROM pspsim.payouts WHERE id = $1 AND status = 'paid') m`, row.ref).Scan(&currency, &at)
		if errors.Is(err, pgx.ErrNoRows) {
			return invalidParam("psp_reference", "%s is no charge, succeeded refund or paid payout", row.ref)
		}
		if err != nil {
			return err
		}
		if at.Before(from) || !at.Before(to) {
			return invalidParam("psp_reference", "%s settles on %s, not %s", row.ref, at.UTC().Format(psp.SettlementDateLayout),
				date.Format(psp.SettlementDateLayout))
		}
	}
	if row.kind == DiscrepancyCurrencyMismatch {
		o, err := otherCurrency(currency)
		if err != nil {
			return fmt.Errorf("currency_mismatch for %s: %w", row.ref, err)
		}
		row.currency = &o
	}
	return nil
}

// fabricateLine makes the extra charge line of an unknown_reference: a
// reference the PSP never issued (checked), an amount, a time within the
// day, in the currency of a charge of that day (EUR on a day without one).
func (s *Server) fabricateLine(ctx context.Context, tx pgx.Tx, rng *rand.Rand, date time.Time, row *discrepancyRow) error {
	if row.ref == "" {
		const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
		var b strings.Builder
		b.WriteString("pay_")
		for range 26 {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		row.ref = b.String()
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pspsim.payments WHERE id = $1)
  OR EXISTS (SELECT 1 FROM pspsim.refunds WHERE id = $1) OR EXISTS (SELECT 1 FROM pspsim.payouts WHERE id = $1)`, row.ref).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return invalidParam("psp_reference", "%s was issued by the simulator; an unknown reference must not be", row.ref)
	}
	currency := "EUR"
	if err := tx.QueryRow(ctx, `SELECT currency::text FROM pspsim.charges WHERE charged_at >= $1 AND charged_at < $2
ORDER BY charged_at, payment_id LIMIT 1`, date, date.AddDate(0, 0, 1)).Scan(&currency); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return err
	}
	amount := 100 + rng.Int64N(99_901)
	fee, err := money.Fee(amount, s.cfg.FeeBPS)
	if err != nil {
		return err
	}
	at := date.Add(time.Duration(rng.Int64N(int64(24*time.Hour/time.Second))) * time.Second)
	var u uuid.UUID
	for i := range u {
		u[i] = byte(rng.Uint32())
	}
	u[6], u[8] = u[6]&0x0f|0x40, u[8]&0x3f|0x80 // a version 4 UUID, as paypipe's ids
	mref := u.String()
	row.mref, row.currency, row.amount, row.fee, row.at = &mref, &currency, &amount, &fee, &at
	return nil
}

const discrepancyCols = `id, date, kind, psp_reference, coalesce(currency::text, ''), coalesce(amount_minor, 0), coalesce(fee_minor, 0), created_at`

func scanDiscrepancy(row pgx.Row) (Discrepancy, error) {
	var d Discrepancy
	var date time.Time
	err := row.Scan(&d.ID, &date, &d.Kind, &d.PSPReference, &d.Currency, &d.AmountMinor, &d.FeeMinor, &d.Created)
	d.Date = date.Format(psp.SettlementDateLayout)
	d.Created = d.Created.UTC()
	return d, err
}

func (s *Server) handleListDiscrepancies(w http.ResponseWriter, r *http.Request) {
	var date *time.Time
	for k, vs := range r.URL.Query() {
		if k != "date" || len(vs) != 1 {
			s.writeError(w, r, invalidParam(k, "want only date=YYYY-MM-DD, once"))
			return
		}
		d, err := time.Parse(psp.SettlementDateLayout, vs[0])
		if err != nil {
			s.writeError(w, r, invalidParam("date", "date %q: want YYYY-MM-DD", vs[0]))
			return
		}
		date = &d
	}
	rows, err := s.pool.Query(r.Context(), `SELECT `+discrepancyCols+` FROM pspsim.settlement_discrepancies
WHERE ($1::date IS NULL OR date = $1) ORDER BY id LIMIT $2`, date, maxDiscrepancies)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Discrepancy, error) { return scanDiscrepancy(r) })
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if ds == nil {
		ds = []Discrepancy{}
	}
	writeJSON(w, http.StatusOK, DiscrepanciesPage{Discrepancies: ds})
}
