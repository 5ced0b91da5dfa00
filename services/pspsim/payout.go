package pspsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/paypipe/paypipe/contracts/money"
	"github.com/paypipe/paypipe/services/psp"
)

// Payout statuses, in the vocabulary of package psp.
const (
	payoutPending = psp.PayoutPending
	payoutPaid    = psp.PayoutPaid
	payoutFailed  = psp.PayoutFailed
)

// payoutRequest is the body of POST /v1/payouts.
type payoutRequest struct {
	AmountMinor       int64  `json:"amount_minor"`
	Currency          string `json:"currency"`
	MerchantReference string `json:"merchant_reference"`
	Destination       string `json:"destination"`
	Description       string `json:"description"`
}

func (r payoutRequest) validate() error {
	if err := money.ValidAmount(r.AmountMinor); err != nil {
		return invalidParam("amount_minor", "amount_minor %d: want 1 to %d minor units", r.AmountMinor, money.MaxAmount)
	}
	if _, err := money.ParseCurrency(r.Currency); err != nil {
		return invalidParam("currency", "%v", err)
	}
	if msg := checkText(r.MerchantReference, maxReferenceLen, true); msg != "" {
		return invalidParam("merchant_reference", "merchant_reference %s", msg)
	}
	if msg := checkText(r.Destination, maxReferenceLen, true); msg != "" {
		return invalidParam("destination", "destination %s", msg)
	}
	if msg := checkText(r.Description, maxDescriptionLen, false); msg != "" {
		return invalidParam("description", "description %s", msg)
	}
	return nil
}

// payoutRow is one row of pspsim.payouts.
type payoutRow struct {
	Seq                                                       int64
	ID, Reference, Currency, Destination, Description, Status string
	Amount                                                    int64
	FailureCode, IdempotencyKey                               string
	DueAt                                                     time.Time
	PaidAt                                                    *time.Time
	Created, Updated                                          time.Time
}

// payoutCols is scanPayout's column list; payoutRest is it less seq and id,
// for a statement that must qualify those two.
const (
	payoutRest = `merchant_reference, amount_minor, currency, destination, description, status,
coalesce(failure_code, ''), idempotency_key, due_at, paid_at, created_at, updated_at`
	payoutCols = `seq, id, ` + payoutRest
)

func scanPayout(row pgx.Row) (payoutRow, error) {
	var p payoutRow
	err := row.Scan(&p.Seq, &p.ID, &p.Reference, &p.Amount, &p.Currency, &p.Destination, &p.Description, &p.Status,
		&p.FailureCode, &p.IdempotencyKey, &p.DueAt, &p.PaidAt, &p.Created, &p.Updated)
	return p, err
}

func (p payoutRow) view() psp.Payout {
	return psp.Payout{ID: p.ID, Status: p.Status, AmountMinor: p.Amount, Currency: p.Currency,
		MerchantReference: p.Reference, Destination: p.Destination, FailureCode: p.FailureCode,
		Created: p.Created.UTC(), Updated: p.Updated.UTC()}
}

func getPayout(ctx context.Context, q querier, id string) (payoutRow, error) {
	p, err := scanPayout(q.QueryRow(ctx, `SELECT `+payoutCols+` FROM pspsim.payouts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return p, problemf(codeNotFound, "no payout %q", id)
	}
	return p, err
}

// payout runs POST /v1/payouts in one transaction: the key and the pending
// payout, due after PayoutDelay. Whether it will fail is decided now, by the
// faults in force, and kept out of the API's view.
func (s *Server) payout(ctx context.Context, key string, fp []byte, req payoutRequest) (payoutRow, bool, error) {
	id := newID("po_")
	var out payoutRow
	replayed := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		existing, err := claimRequestKey(ctx, tx, key, "payout", fp, id)
		if err != nil {
			return err
		}
		if existing != "" {
			replayed = true
			out, err = getPayout(ctx, tx, existing)
			return err
		}
		planned := s.faults.payoutFailure(req.Destination)
		out, err = scanPayout(tx.QueryRow(ctx, `INSERT INTO pspsim.payouts
(id, merchant_reference, amount_minor, currency, destination, description, status, planned_failure, idempotency_key, due_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', nullif($7, ''), $8, clock_timestamp() + $9::interval) RETURNING `+payoutCols,
			id, req.MerchantReference, req.AmountMinor, req.Currency, req.Destination, req.Description, planned, key, s.cfg.PayoutDelay))
		if err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.ConstraintName == "payouts_merchant_reference_uq" {
				return duplicateObjectReference("payout", req.MerchantReference)
			}
			return lockError(err)
		}
		return nil
	})
	if err != nil {
		return payoutRow{}, false, err
	}
	return out, replayed, nil
}

func (s *Server) handleCreatePayout(w http.ResponseWriter, r *http.Request) {
	key, req, ok := decodeCreate[payoutRequest](s, w, r)
	if !ok {
		return
	}
	if err := s.beforeWork(r.Context(), kindPayout); err != nil {
		s.writeError(w, r, err)
		return
	}
	ctx, cancel := workContext(r)
	defer cancel()
	p, replayed, err := s.payout(ctx, key, fingerprint("POST /v1/payouts", req), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !replayed {
		s.log.Info("payout created", "payout_id", p.ID, "merchant_reference", p.Reference, "amount_minor", p.Amount,
			"currency", p.Currency, "due_at", p.DueAt)
	}
	s.respond(w, r, http.StatusCreated, p.view(), replayed, kindPayout, "payout_id", p.ID)
}

func (s *Server) handleGetPayout(w http.ResponseWriter, r *http.Request) {
	p, err := getPayout(r.Context(), s.pool, r.PathValue("id"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p.view())
}

// PayoutsPage is the body of GET /v1/payouts.
type PayoutsPage struct {
	Payouts []psp.Payout `json:"payouts"`
	HasMore bool         `json:"has_more"`
}

func (s *Server) handleListPayouts(w http.ResponseWriter, r *http.Request) {
	of, err := parseObjectFilter(r.URL.Query(), "merchant_reference", "destination")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.pool.Query(r.Context(), `SELECT `+payoutCols+` FROM pspsim.payouts
WHERE ($1::text IS NULL OR merchant_reference = $1) AND ($2::text IS NULL OR destination = $2)
ORDER BY created_at, id LIMIT $3`, of.get("merchant_reference"), of.get("destination"), of.limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payoutRow, error) { return scanPayout(r) })
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page := PayoutsPage{Payouts: []psp.Payout{}}
	for i, p := range ps {
		if i == of.limit {
			page.HasMore = true
			break
		}
		page.Payouts = append(page.Payouts, p.view())
	}
	writeJSON(w, http.StatusOK, page)
}

// PayoutRecord is one row of the payout log (GET /admin/payouts).
type PayoutRecord struct {
	Seq               int64      `json:"seq"`
	ID                string     `json:"id"`
	MerchantReference string     `json:"merchant_reference"`
	AmountMinor       int64      `json:"amount_minor"`
	Currency          string     `json:"currency"`
	Destination       string     `json:"destination"`
	Status            string     `json:"status"`
	FailureCode       string     `json:"failure_code,omitempty"`
	IdempotencyKey    string     `json:"idempotency_key"`
	Created           time.Time  `json:"created"`
	PaidAt            *time.Time `json:"paid_at,omitempty"`
}

// PayoutRecordsPage is the body of GET /admin/payouts.
type PayoutRecordsPage struct {
	Payouts []PayoutRecord `json:"payouts"`
	HasMore bool           `json:"has_more"`
}

// handleAdminPayouts lists the payout log by seq: one row per merchant
// reference, how tests prove "at most one PSP payout per payout id".
func (s *Server) handleAdminPayouts(w http.ResponseWriter, r *http.Request) {
	aq, err := parseAdminQuery(r.URL.Query(), "merchant_reference", "destination", "status")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	rows, err := s.pool.Query(r.Context(), `SELECT `+payoutCols+` FROM pspsim.payouts
WHERE ($1::text IS NULL OR merchant_reference = $1) AND ($2::text IS NULL OR destination = $2)
  AND ($3::text IS NULL OR status = $3) AND seq > $4
ORDER BY seq LIMIT $5`, aq.filter("merchant_reference"), aq.filter("destination"), aq.filter("status"), aq.after, aq.limit+1)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payoutRow, error) { return scanPayout(r) })
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page := PayoutRecordsPage{Payouts: []PayoutRecord{}}
	for i, p := range ps {
		if i == aq.limit {
			page.HasMore = true
			break
		}
		rec := PayoutRecord{Seq: p.Seq, ID: p.ID, MerchantReference: p.Reference, AmountMinor: p.Amount,
			Currency: p.Currency, Destination: p.Destination, Status: p.Status, FailureCode: p.FailureCode,
			IdempotencyKey: p.IdempotencyKey, Created: p.Created.UTC()}
		if p.PaidAt != nil {
			t := p.PaidAt.UTC()
			rec.PaidAt = &t
		}
		page.Payouts = append(page.Payouts, rec)
	}
	writeJSON(w, http.StatusOK, page)
}

// runPayouts pays (or fails) due payouts every PayoutInterval,
// PayoutBatchSize at a time (at once again while batches come back full).
// Errors are logged and retried at the next tick.
func (s *Server) runPayouts(ctx context.Context) {
	ticker := time.NewTicker(s.cfg.PayoutInterval)
	defer ticker.Stop()
	for {
		n, err := s.settlePayoutsOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.log.Warn("payout pass failed", "err", err)
		} else if n >= s.cfg.PayoutBatchSize {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
	}
}

// settlePayoutsOnce moves one batch of due payouts to paid or failed and
// queues their webhooks, in one transaction. The transition makes no
// external call, so rows are locked (SKIP LOCKED: several simulators share
// the work) rather than leased; the webhook it queues is delivered by the
// sender, whose claims are leased.
func (s *Server) settlePayoutsOnce(ctx context.Context) (int, error) {
	var n int
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `UPDATE pspsim.payouts p SET
  status = CASE WHEN p.planned_failure IS NULL THEN 'paid' ELSE 'failed' END,
  failure_code = p.planned_failure,
  paid_at = CASE WHEN p.planned_failure IS NULL THEN clock_timestamp() END,
  updated_at = clock_timestamp()
FROM (SELECT id FROM pspsim.payouts WHERE status = 'pending' AND due_at <= clock_timestamp()
      ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED) due
WHERE p.id = due.id AND p.status = 'pending'
RETURNING p.seq, p.id, `+payoutRest, s.cfg.PayoutBatchSize)
		if err != nil {
			return err
		}
		ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payoutRow, error) { return scanPayout(r) })
		if err != nil {
			return err
		}
		for _, p := range ps {
			typ := psp.EventPayoutPaid
			if p.Status == payoutFailed {
				typ = psp.EventPayoutFailed
			}
			if err := s.queuePayoutEvent(ctx, tx, p, typ); err != nil {
				return err
			}
			s.log.Info("payout "+p.Status, "payout_id", p.ID, "merchant_reference", p.Reference, "failure_code", p.FailureCode)
		}
		n = len(ps)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("payouts: %w", err)
	}
	if n > 0 {
		s.wakeSender()
	}
	return n, nil
}

// queuePayoutEvent writes a payout webhook event in tx; its body is fixed now.
func (s *Server) queuePayoutEvent(ctx context.Context, tx pgx.Tx, p payoutRow, typ string) error {
	ev := psp.PayoutEvent{ID: newID("evt_"), Type: typ, Created: time.Now().UTC(), Data: p.view()}
	body, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO pspsim.webhook_events (id, payout_id, type, body) VALUES ($1, $2, $3, $4)`,
		ev.ID, p.ID, typ, string(body)); err != nil {
		return fmt.Errorf("queue %s event: %w", typ, err)
	}
	return nil
}
