package payout

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/paypipe/paypipe/contracts"
	"github.com/paypipe/paypipe/contracts/money"
)

// ErrInvalidRun is wrapped by RunPayouts' validation errors.
var ErrInvalidRun = errors.New("payout: invalid run")

// RunRequest selects what a payout run pays out.
type RunRequest struct {
	// Period names the run: "YYYY-MM-DD" or an RFC 3339 time (UTC). A
	// seller is paid out at most once per currency and period.
	Period string
	// SellerID and Currency, if set, restrict the run to one seller and/or
	// one currency.
	SellerID string
	Currency string
}

// RunResult says what a run did.
type RunResult struct {
	Period string `json:"period"`
	// Candidates is the number of (seller, currency) balances with money
	// available that the run considered.
	Candidates int `json:"candidates"`
	// Requested is the number of payouts this run requested;
	// AlreadyRequested the candidates that had one for the period already
	// (an earlier or concurrent run requested it).
	Requested        int `json:"requested"`
	AlreadyRequested int `json:"already_requested"`
}

// validate checks r and returns it normalised.
func (r RunRequest) validate() (RunRequest, error) {
	var errs []error
	if err := validPeriod(r.Period); err != nil {
		errs = append(errs, err)
	}
	if r.Currency != "" {
		if _, err := money.ParseCurrency(r.Currency); err != nil {
			errs = append(errs, err)
		}
	}
	if len(r.SellerID) > 255 {
		errs = append(errs, errors.New("seller id longer than 255 characters"))
	}
	if len(errs) > 0 {
		return r, fmt.Errorf("%w: %w", ErrInvalidRun, errors.Join(errs...))
	}
	return r, nil
}

// validPeriod accepts a day (2006-01-02) or a UTC time in RFC 3339, each
// exactly as paypipe writes them: one period has one spelling, so it has
// one payout id per seller and currency.
func validPeriod(p string) error {
	if p == "" {
		return errors.New("period is required")
	}
	if d, err := time.Parse(time.DateOnly, p); err == nil && d.Format(time.DateOnly) == p {
		return nil
	}
	if t, err := time.Parse(time.RFC3339, p); err == nil && t.UTC().Format(time.RFC3339) == p {
		return nil
	}
	return fmt.Errorf("period %q: want YYYY-MM-DD or a UTC RFC 3339 time such as 2025-01-02T15:00:00Z", p)
}

// DayPeriod is the period of a daily run on t's UTC day.
func DayPeriod(t time.Time) string { return t.UTC().Format(time.DateOnly) }

// RunPayouts requests one payout per projected (seller, currency) with
// money available, filtered by r, for r.Period. Each payout row (id =
// ID(seller, currency, period), status requested) and its
// payouts.payout.requested event commit together, BatchSize at a time, in
// (seller, currency) order. A payout that exists for the period is left
// alone: the primary key refuses a second, so runs repeated, resumed after
// a crash, or racing on several replicas request each payout once. The
// wallet decides the amount when it reserves it.
func (s *Service) RunPayouts(ctx context.Context, r RunRequest) (RunResult, error) {
	r, err := r.validate()
	if err != nil {
		return RunResult{}, err
	}
	res := RunResult{Period: r.Period}
	var afterSeller, afterCurrency string
	for {
		n, requested, lastSeller, lastCurrency, err := s.runBatch(ctx, r, afterSeller, afterCurrency)
		if err != nil {
			return res, err
		}
		res.Candidates += n
		res.Requested += requested
		res.AlreadyRequested += n - requested
		if n < s.cfg.BatchSize {
			break
		}
		afterSeller, afterCurrency = lastSeller, lastCurrency
	}
	s.log.Info("payout run", "period", res.Period, "seller_id", r.SellerID, "currency", r.Currency,
		"candidates", res.Candidates, "requested", res.Requested, "already_requested", res.AlreadyRequested)
	return res, nil
}

// runBatch requests the payouts of the next BatchSize candidates after
// (afterSeller, afterCurrency), in one transaction.
func (s *Service) runBatch(ctx context.Context, r RunRequest, afterSeller, afterCurrency string) (candidates, requested int, lastSeller, lastCurrency string, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT seller_id, currency, merchant_id FROM payout.balances
WHERE available_minor > 0 AND ($1 = '' OR seller_id = $1) AND ($2 = '' OR currency = $2)
  AND (seller_id, currency) > ($3, $4)
ORDER BY seller_id, currency LIMIT $5`, r.SellerID, r.Currency, afterSeller, afterCurrency, s.cfg.BatchSize)
		if err != nil {
			return fmt.Errorf("payout: run %s: candidates: %w", r.Period, err)
		}
		var ids []uuid.UUID
		var sellers, currencies, merchants []string
		for rows.Next() {
			var seller, currency, merchant string
			if err := rows.Scan(&seller, &currency, &merchant); err != nil {
				rows.Close()
				return fmt.Errorf("payout: run %s: candidates: %w", r.Period, err)
			}
			ids = append(ids, ID(seller, currency, r.Period))
			sellers, currencies, merchants = append(sellers, seller), append(currencies, currency), append(merchants, merchant)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("payout: run %s: candidates: %w", r.Period, err)
		}
		candidates = len(ids)
		if candidates == 0 {
			return nil
		}
		lastSeller, lastCurrency = sellers[candidates-1], currencies[candidates-1]
		// Inserted in (seller, currency) order: concurrent runs wait on each
		// other's rows in the same order, so they cannot deadlock.
		ins, err := tx.Query(ctx, `INSERT INTO payout.payouts (id, merchant_id, seller_id, currency, period, status)
SELECT id, merchant_id, seller_id, currency, $5, 'requested'
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS c(id, merchant_id, seller_id, currency, ord)
ORDER BY ord
ON CONFLICT DO NOTHING
RETURNING id::text, merchant_id, seller_id, currency, created_at`, ids, merchants, sellers, currencies, r.Period)
		if err != nil {
			return fmt.Errorf("payout: run %s: insert: %w", r.Period, err)
		}
		var created []Payout
		for ins.Next() {
			p := Payout{Period: r.Period, Status: contracts.PayoutStatusRequested, Version: 1}
			if err := ins.Scan(&p.ID, &p.MerchantID, &p.SellerID, &p.Currency, &p.CreatedAt); err != nil {
				ins.Close()
				return fmt.Errorf("payout: run %s: insert: %w", r.Period, err)
			}
			created = append(created, p)
		}
		ins.Close()
		if err := ins.Err(); err != nil {
			return fmt.Errorf("payout: run %s: insert: %w", r.Period, err)
		}
		for _, p := range created {
			if _, err := tx.Exec(ctx, `INSERT INTO payout.transitions (payout_id, version, from_status, to_status, cause)
VALUES ($1, 1, NULL, 'requested', $2)`, p.ID, "run:"+r.Period); err != nil {
				return fmt.Errorf("payout: run %s: audit %s: %w", r.Period, p.ID, err)
			}
			ev := contracts.PayoutRequest{
				PayoutID:    p.ID,
				MerchantID:  p.MerchantID,
				SellerID:    p.SellerID,
				Currency:    p.Currency,
				Period:      p.Period,
				RequestedAt: p.CreatedAt.UTC(),
			}
			if err := writeEvent(ctx, tx, contracts.SubjectPayoutRequested, p.ID, 1, ev); err != nil {
				return err
			}
		}
		requested = len(created)
		return nil
	})
	if err != nil {
		return 0, 0, "", "", err
	}
	if requested > 0 {
		s.metrics.transitions.WithLabelValues("", contracts.PayoutStatusRequested).Add(float64(requested))
		s.wakeRelay()
	}
	return candidates, requested, lastSeller, lastCurrency, nil
}
